"""Run the sigma source through a dlt pipeline into DuckDB, Postgres or BigQuery.

This is what `sigma-load run` and `pipelines/sigma_pipeline.py` call. It adds what a bare
`pipeline.run(sigma_source())` lacks for unattended jobs: it finishes a load left pending by
a crash before extracting anew, keeps the DuckDB file and dataset names from colliding, and
turns the per-query outcome into a result the caller can act on (exit non-zero on failure).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.pipeline import LoadInfo, get_dlt_pipelines_dir
from dlt.load.exceptions import LoadClientJobException
from dlt.pipeline.exceptions import PipelineStepFailed

from sigma_source.dlt_steps import StepHooks, following_dlt_steps
from sigma_source.duckdb_memory import duckdb_memory_sized_to_each_load
from sigma_source.duckdb_open import duckdb_open_during_each_load
from sigma_source.errors import ConfigError, SigmaLoadError
from sigma_source.events import EventCallback, Phase, ProgressEvent
from sigma_source.lineage import QueryRunRecord
from sigma_source.repair import (
    finish_interrupted_roll_back,
    finish_pending_load,
    remove_interrupted_schema_writes,
    roll_back_if_aborted,
)
from sigma_source.settings import check_known_keys, config_error
from sigma_source.source import RunReport, remove_leftover_staging, sigma_source

DESTINATIONS = ("duckdb", "postgres", "bigquery")
DEFAULT_PIPELINE_NAME = "sigma_load"
DEFAULT_DATASET = "sigma"
# DuckDB's memory outside a load (opening the file, restoring dlt's state). Each load's limit
# is sized to the files it inserts (see `duckdb_memory`), unless the caller sets one.
DUCKDB_MEMORY_LIMIT_OUTSIDE_LOADS = "128MB"
JEMALLOC_DECAY_MS = 200  # see `use_memory_returning_allocator`


@dataclass(frozen=True)
class RunOptions:
    """What to run and where to load it; `source_settings` override `[sources.sigma]`."""

    destination: str = "duckdb"
    dataset: str = DEFAULT_DATASET
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    select: Sequence[str] = ()
    exclude: Sequence[str] = ()
    full_refresh: bool = False
    vars: dict[str, Any] = field(default_factory=dict)
    # None: dlt's own setting (`destination.duckdb.credentials`), else <pipeline_name>.duckdb
    duckdb_path: str | None = None
    # None: sized before each load to the rows it inserts (see `duckdb_memory`); a DuckDB
    # size ("2GB") fixes it instead, for every load.
    duckdb_memory_limit: str | None = None
    # False: DuckDB stores text that no dictionary fits (ids) uncompressed, not FSST-compressed
    # (see `_duckdb_credentials`); True: DuckDB's default, a smaller file for a slower load.
    duckdb_fsst_compression: bool = False
    pipelines_dir: str | None = None
    source_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Resolved here so that every reader of the options (`runs`, `ls` and `freshness` too)
        # opens the file the run loads into. A setting that is wrong is reported by
        # `duckdb_file()`, where the run reports its errors.
        if self.duckdb_path is None and self.destination == "duckdb":
            with contextlib.suppress(ConfigError):
                object.__setattr__(self, "duckdb_path", configured_duckdb_file())


@dataclass
class RunResult:
    """The outcome of one run: per-query records, failures, and dlt's load info."""

    records: list[QueryRunRecord]
    failures: dict[str, str]
    load_info: LoadInfo | None
    pipeline: Any

    @property
    def ok(self) -> bool:
        return not self.failures


def configure_dlt() -> None:
    """dlt settings the loader's guarantees depend on, whatever the user's config says."""
    # Arrow rows get no _dlt_load_id unless asked, and lineage joins on it.
    dlt.config["normalize.parquet_normalizer.add_dlt_load_id"] = True
    # A load that fails for good is rolled back with its state, so the cursor never runs ahead.
    dlt.config["load.auto_abort_on_terminal_error"] = True
    # Load files are written once and read once, on this machine: gzip (at level 9) took 25 of
    # the 30 s of a 1M-row Postgres load. The staged parquet files are compressed by staging.
    dlt.config["normalize.data_writer.disable_compression"] = True
    # A loaded package would keep its data files (each run's whole result) forever. Packages
    # with a failed job keep theirs: rolling back a refused load reads which jobs it ran.
    dlt.config["load.delete_completed_jobs"] = True


def use_memory_returning_allocator() -> None:
    """Make pyarrow allocate from jemalloc, which hands freed memory back to the system.

    pyarrow's default (mimalloc) keeps what staging freed, and DuckDB's load then comes on
    top of it: jemalloc took the peak RSS of a 1M-row load from ~480 to ~380 MB, at the
    same speed. An explicit `ARROW_DEFAULT_MEMORY_POOL` is left alone, as is a pyarrow
    built without jemalloc.

    jemalloc hands freed pages back over `JEMALLOC_DECAY_MS`, which pyarrow sets to a
    second: the ~100 MB staging had used were still held when DuckDB's insert started a
    quarter of a second later. At 200 ms they are back by then, and staging is as fast
    (at 0 ms, every free returns its pages, and staging took 20% longer).
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(JEMALLOC_DECAY_MS)


def make_pipeline(options: RunOptions) -> dlt.Pipeline:
    destination = _destination(options)
    kwargs: dict[str, Any] = {}
    if options.pipelines_dir:
        kwargs["pipelines_dir"] = options.pipelines_dir
    return dlt.pipeline(
        pipeline_name=options.pipeline_name,
        destination=destination,
        dataset_name=options.dataset,
        **kwargs,
    )


def run(options: RunOptions, report: RunReport | None = None) -> RunResult:
    """Load the selected queries; failed queries are reported, never raised mid-run.

    Pass your own `report` (with `on_event` to follow progress) to keep what each query did
    even when a later step of the load raises.
    """
    into_duckdb = options.destination == "duckdb"
    sized = into_duckdb and not options.duckdb_memory_limit
    with (
        pipeline_lock(options),
        duckdb_memory_sized_to_each_load(options.pipeline_name, sized),
        duckdb_open_during_each_load(options.pipeline_name, into_duckdb),
    ):
        pipeline, source, report = prepare(options, report)
        try:
            with reporting_dlt_steps(report, options.pipeline_name):
                info = pipeline.run(
                    source, loader_file_format=loader_file_format(options.destination)
                )
        except PipelineStepFailed as error:
            cause = _root_exception(error)
            if isinstance(cause, ConfigurationException):  # e.g. no Postgres credentials
                raise config_error(cause) from error
            roll_back_if_aborted(pipeline, error)
            raise SigmaLoadError(f"{error.step} step failed: {_failure(error, options)}") from error
    return RunResult(report.records, dict(report.failures), info, pipeline)


@contextlib.contextmanager
def pipeline_lock(options: RunOptions) -> Iterator[None]:
    """Hold the pipeline for one run; refuse at once if another process holds it.

    Two runs of one pipeline at a time (a cron job that overran its slot) would load the
    same windows twice and race on dlt's state. The lock is an OS file lock, so a killed
    run never leaves it held. It sits beside the pipeline's working folder, which dlt may
    wipe and recreate.
    """
    from filelock import FileLock, Timeout

    pipelines_dir = Path(options.pipelines_dir or get_dlt_pipelines_dir())
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    path = pipelines_dir / f".{options.pipeline_name}.sigma-load.lock"
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SigmaLoadError(
            f"pipeline {options.pipeline_name!r} is being loaded by another sigma-load run "
            f"(lock {path}); let it finish, or give this run another --pipeline-name"
        ) from None
    try:
        yield
    finally:
        lock.release()


def prepare(
    options: RunOptions, report: RunReport | None = None
) -> tuple[dlt.Pipeline, Any, RunReport]:
    """The pipeline (with any pending load finished) and the source, ready to run."""
    configure_dlt()
    use_memory_returning_allocator()
    # A typo in [sources.sigma] would otherwise leave a default silently in force.
    check_known_keys(inspect.signature(sigma_source).parameters)
    pipeline = make_pipeline(options)
    remove_interrupted_schema_writes(pipeline)
    _repair_what_earlier_runs_left(pipeline, options)
    remove_leftover_staging(pipeline.working_dir)
    report = report if report is not None else RunReport()
    try:
        source = sigma_source(
            select=list(options.select),
            exclude=list(options.exclude),
            full_refresh=options.full_refresh,
            vars=dict(options.vars),
            report=report,
            **options.source_settings,
        )
    except ConfigurationException as error:
        raise config_error(error) from error
    # One extract worker per query: each waits on Sigma, bounded by max_concurrent_runs.
    dlt.config["extract.workers"] = max(len(source.resources), 1)
    return pipeline, source, report


def _destination(options: RunOptions) -> Any:
    if options.destination not in DESTINATIONS:
        raise ConfigError(
            f"--destination {options.destination!r}: choose one of {', '.join(DESTINATIONS)}"
        )
    if options.destination == "duckdb":
        path = duckdb_file(options)
        if Path(path).stem == options.dataset:
            raise ConfigError(
                f"DuckDB file {path!r} and dataset {options.dataset!r} share a name: DuckDB "
                "names the catalog after the file, so every table reference would be "
                "ambiguous; change --dataset, or the file's name (--pipeline-name, or "
                f"{DUCKDB_SETTING} if you set it)"
            )
        return _duckdb_destination(_duckdb_credentials(path, options))
    if options.destination == "postgres":
        return dlt.destinations.postgres()
    return dlt.destinations.bigquery()


def duckdb_file(options: RunOptions) -> str:
    """The absolute path of the DuckDB file the run loads into.

    In order: `options.duckdb_path`, dlt's own setting `destination.duckdb.credentials`, and
    `<pipeline_name>.duckdb` in the working directory.

    Absolute: dlt resolves a relative path against the folder the pipeline was first run
    in, so a run from another folder would load into (and restore state from) a file
    elsewhere instead of the one in the working directory.
    """
    path = options.duckdb_path or configured_duckdb_file() or f"{options.pipeline_name}.duckdb"
    return os.path.abspath(path)


DUCKDB_SETTING = "destination.duckdb.credentials"
NOT_A_FILE = (":memory:", ":pipeline:", ":external:")  # dlt's special DuckDB locations


def configured_duckdb_file() -> str | None:
    """The DuckDB file named by dlt's own setting, or None when it is not set.

    `[destination.duckdb] credentials` in .dlt/config.toml or secrets.toml (a path, or a
    `duckdb:///` URL), its `database` key, or DESTINATION__DUCKDB__CREDENTIALS. Only the file
    is taken from it: sigma-load opens the file with its own settings. The value never
    appears in an error, as a value that does not fit may be another database's URL with its
    password.
    """
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    value = _dlt_setting(DUCKDB_SETTING)
    if isinstance(value, dict):
        value = value.get("database")
    if value is None:
        value = _dlt_setting(f"{DUCKDB_SETTING}.database")
    if value is None or value == "":
        return None
    expected = (
        f"{DUCKDB_SETTING} (DESTINATION__DUCKDB__CREDENTIALS) must name a DuckDB file: a path "
        "such as warehouse/stripe.duckdb, or duckdb:///warehouse/stripe.duckdb"
    )
    if not isinstance(value, str) or ("://" in value and not value.startswith("duckdb:")):
        raise ConfigError(expected)
    try:
        database = DuckDbCredentials(value).database
    except Exception:
        raise ConfigError(expected) from None
    if not isinstance(database, str) or not database or database in NOT_A_FILE:
        raise ConfigError(f"{expected}; sigma-load loads into a file, not {database!r}")
    return database


def _dlt_setting(key: str) -> Any:
    """A value from dlt's providers: environment, .dlt/secrets.toml, .dlt/config.toml."""
    value = dlt.secrets.get(key)
    return value if value is not None else dlt.config.get(key)


def _duckdb_credentials(path: str, options: RunOptions) -> Any:
    """The DuckDB file, opened with the settings that make loading fast and bounded in memory.

    Row order in a table is not a guarantee SQL gives (nor dlt, which loads files in
    parallel); letting DuckDB drop it lets every thread insert its own row groups, which
    loads 1M rows about twice as fast and without buffering them.

    FSST, DuckDB's compression of text that no dictionary fits (ids, free text), is off
    unless the caller asks for it: weighing and applying it for every text column was a
    third of the CPU of inserting 1M balance transactions (2.5 → 1.75 CPU-s), for a file
    a quarter smaller (64 → 49 MiB). Low-cardinality text is still dictionary-compressed.
    """
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    if options.duckdb_memory_limit:
        _check_duckdb_memory_limit(options.duckdb_memory_limit)
    memory_limit = options.duckdb_memory_limit or DUCKDB_MEMORY_LIMIT_OUTSIDE_LOADS
    settings = {"preserve_insertion_order": False, "memory_limit": memory_limit}
    if not options.duckdb_fsst_compression:
        settings["disabled_compression_methods"] = "fsst"
    return DuckDbCredentials(path, global_config=settings)


def _duckdb_destination(credentials: Any) -> Any:
    """dlt's DuckDB destination, its configuration resolved once for its capabilities.

    dlt asks a destination for its capabilities a dozen times a run, and unless it is given a
    configuration, resolves one from every config provider first: 5 ms a call, 0.05 s of a
    1M-row run on the main thread. The configuration cannot change within a run: it is
    resolved on the first call and given to the later ones.
    """
    destination = dlt.destinations.duckdb(credentials=credentials)
    dlt_capabilities = destination.capabilities

    @functools.cache
    def configuration() -> Any:
        # Credentials copied, as dlt does: resolving must not touch the ones loads use.
        initial = destination.spec(credentials=credentials.copy())
        return destination.configuration(initial, accept_partial=True)

    def capabilities(config: Any = None, naming: Any = None) -> Any:
        return dlt_capabilities(config if config is not None else configuration(), naming)

    destination.capabilities = capabilities
    return destination


def _check_duckdb_memory_limit(value: str) -> None:
    """Refuse a memory limit DuckDB cannot read, naming the option (DuckDB's own parser)."""
    import duckdb

    try:
        duckdb.connect(":memory:", config={"memory_limit": value}).close()
    except duckdb.Error:
        raise ConfigError(
            f"RunOptions.duckdb_memory_limit={value!r}: not a size DuckDB reads; give one "
            "such as '2GB' or '512MB', or leave it unset to size it to each load"
        ) from None


NORMALIZING = "dlt is normalizing"


@contextlib.contextmanager
def reporting_dlt_steps(report: RunReport, pipeline_name: str) -> Iterator[None]:
    """Tell the report's listener when dlt normalizes and loads the queries it staged.

    The source reports a query as `waiting` once its rows are staged. As dlt's normalize
    step starts, every waiting query hears `waiting` again with the message NORMALIZING; as
    its load step starts, `loading`; and when the load step succeeds, `loaded`. A failed
    load is the caller's to report (the run raises).
    """
    if report.on_event is None:
        yield
        return
    phases = _QueryPhasesOverDltSteps(report.on_event, pipeline_name)
    report.on_event = phases
    try:
        with following_dlt_steps(phases):
            yield
    finally:
        report.on_event = phases.listener


class _QueryPhasesOverDltSteps(StepHooks):
    """The report's listener, moving the queries waiting for dlt's steps on."""

    def __init__(self, listener: EventCallback, pipeline_name: str) -> None:
        super().__init__(pipeline_name)
        self.listener = listener
        self._latest: dict[str, ProgressEvent] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self._latest[event.query] = event
        self.listener(event)

    def step_started(self, step: str, pipeline: Any) -> None:
        if step == "normalize":
            self._advance("waiting", "waiting", NORMALIZING)
        elif step == "load":
            self._advance("waiting", "loading")

    def step_ended(self, step: str, pipeline: Any, *, failed: bool) -> None:
        if step == "load" and not failed:
            self._advance("loading", "loaded")

    def _advance(self, phase: str, to: Phase, message: str | None = None) -> None:
        with self._lock:
            moving = [event for event in self._latest.values() if event.phase == phase]
        for event in moving:
            self(replace(event, phase=to, message=message, at=time.monotonic()))


def loader_file_format(destination: str) -> str | None:
    """The file format dlt loads with, unless a table says otherwise.

    Postgres has no parquet loader without ADBC: pyarrow-written CSV goes in through COPY.
    With the ADBC driver installed each query's table asks for its staged parquet instead
    (see `source._choose_file_format`); the lineage and dlt's own tables stay CSV.
    """
    return "csv" if destination == "postgres" else None


def _repair_what_earlier_runs_left(pipeline: dlt.Pipeline, options: RunOptions) -> None:
    """Finish the load and the roll back a killed run left half done; one line if that fails."""
    try:
        finish_pending_load(pipeline)
        finish_interrupted_roll_back(pipeline)
    except PipelineStepFailed as error:
        roll_back_if_aborted(pipeline, error)
        raise SigmaLoadError(
            f"a load left pending by an earlier run failed again: {_failure(error, options)}"
        ) from error
    except SigmaLoadError:
        raise
    except Exception as error:  # the destination, reached by the repair's own SQL
        raise SigmaLoadError(
            f"repairing what an earlier run left failed: {_failure(error, options)}"
        ) from error


def _failure(error: BaseException, options: RunOptions) -> str:
    """What went wrong, in one line; for a corrupt DuckDB file, also what to do about it."""
    corrupt = re.search(r"Corrupt database file[^\n]*", _chain_text(error))
    if corrupt and options.destination == "duckdb":
        return (
            f"the DuckDB file {duckdb_file(options)} is corrupt ({corrupt.group(0).strip()}); "
            "DuckDB can leave its file so when killed while writing a checkpoint. Restore the "
            "file from a backup, or move it aside and reload every table from Sigma with "
            "`sigma-load run --full-refresh`"
        )
    return _root_cause(error)


def _chain_text(error: BaseException) -> str:
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(texts)


def _root_exception(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _root_cause(error: BaseException) -> str:
    failed_job = _failed_job_in(error)
    if failed_job is not None:
        # dlt's message is a whole traceback; what the destination said, and of which table,
        # is what a reader needs.
        table = failed_job.job_id.split(".")[0]
        return f"table {table}: {_first_line(_root_exception(failed_job.client_exception))}"
    return _first_line(_root_exception(error))


def _failed_job_in(error: BaseException | None) -> LoadClientJobException | None:
    """The load job behind `error`, failed for good or out of retries: the end of its chain,
    or on the way (Postgres through ADBC chains the driver's error under it)."""
    while error is not None:
        if isinstance(error, LoadClientJobException) and error.client_exception is not None:
            return error
        error = error.__cause__
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
