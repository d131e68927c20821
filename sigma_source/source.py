"""The dlt source: one resource per query in the project, run concurrently.

Each resource renders its SQL for this run's cursor window, runs it on Sigma, downloads the
result and turns it into typed Arrow rows. All of that happens before the resource yields
anything, into a parquet staging file on disk that dlt then imports as it is, so that a query
which fails at any stage (API, download, parse, type violation) contributes no rows at all and
leaves its table and its cursor as they were, while the other queries load. Failures are
recorded in the `_sigma_query_runs` table and in the `RunReport` the caller passes in.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
from dlt.destinations.adapters import bigquery_adapter
from dlt.extract.resource import DltResource

from sigma_source.api_objects import QueryRun
from sigma_source.arrow_csv import DEFAULT_BLOCK_SIZE, read_header
from sigma_source.client import ClientConfig, SigmaClient
from sigma_source.errors import ConfigError, CSVFormatError, SigmaLoadError
from sigma_source.events import EventCallback, ProgressEvent
from sigma_source.lineage import FAILED, LINEAGE_COLUMNS, LINEAGE_TABLE, QueryRunRecord
from sigma_source.project import (
    Query,
    Window,
    check_renders,
    load_project,
    plan_windows,
    render_sql,
    select_queries,
)
from sigma_source.runs import ResultDownload, run_on_sigma, usual_run_seconds
from sigma_source.staging import (
    StagedResult,
    StagingFile,
    StoredColumns,
    UntypedColumns,
    parquet_compression,
    retyped_columns,
    stage_result,
)

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_FILES_BASE = "https://files.stripe.com"
DEFAULT_PROJECT_DIR = "pipelines/queries"
STAGING_FOLDER = "sigma_staging"  # inside the pipeline's working folder
# Run times kept per query, to poll a run sparsely until near its usual finish.
RUN_SECONDS_KEPT = 5
# Staging a result (parse + parquet encoding) keeps two threads busy; more at once than the
# cores can run only adds memory, one row group buffer each.
STAGING_SLOTS = max(1, (os.cpu_count() or 2) // 2)
# A result still downloading after this long is parsed as it arrives, so that parsing hides
# behind a slow download. One that arrives sooner is parsed once whole: on a fast link the
# two would only contend for the same cores (and a whole file reads a little faster).
# None: always wait for the whole file.
FOLLOW_AFTER_SECONDS: float | None = 1.0
# pyarrow needs a block to hold a row at least; far smaller blocks only slow parsing down.
MIN_CSV_BLOCK_SIZE = 4096


@dataclass
class RunReport:
    """What happened to each query in one run; filled in by the resources, read by the caller.

    `on_event`, if given, hears each query's progress as it happens (from worker threads).
    """

    records: list[QueryRunRecord] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    on_event: EventCallback | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def emit(self, event: ProgressEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def add_records(self, records: Sequence[QueryRunRecord]) -> None:
        with self._lock:
            self.records.extend(records)

    def add_failure(self, query_name: str, message: str) -> None:
        with self._lock:
            self.failures[query_name] = message


@dataclass
class _RunContext:
    """Shared by every resource of one source instance."""

    client: SigmaClient
    now: datetime
    poll_timeout: float
    full_refresh: bool
    vars: dict[str, Any]
    report: RunReport
    slots: threading.BoundedSemaphore  # query runs on Sigma, up to max_concurrent_runs
    staging_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(STAGING_SLOTS)
    )
    destination: str | None = None  # of the pipeline about to run the source, if known
    csv_block_size: int = DEFAULT_BLOCK_SIZE  # bytes of a result CSV parsed at a time


@dlt.source(name="sigma", section="sigma")
def sigma_source(
    api_key: str = dlt.secrets.value,
    api_base: str = DEFAULT_API_BASE,
    files_base: str = DEFAULT_FILES_BASE,
    stripe_version: str | None = None,
    stripe_account: str | None = None,
    project_dir: str = DEFAULT_PROJECT_DIR,
    max_concurrent_runs: int = 4,
    poll_timeout: float = 1800.0,
    request_timeout: float = ClientConfig.request_timeout,
    max_attempts: int = ClientConfig.max_attempts,
    backoff_factor: float = ClientConfig.backoff_factor,
    max_retry_delay: float = ClientConfig.max_retry_delay,
    download_attempts: int = ClientConfig.download_attempts,
    poll_interval: float = ClientConfig.poll_interval,
    poll_fast_seconds: float = ClientConfig.poll_fast_seconds,
    poll_max_interval: float = ClientConfig.poll_max_interval,
    csv_block_size: int = DEFAULT_BLOCK_SIZE,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    full_refresh: bool = False,
    vars: dict[str, Any] | None = None,  # noqa: A002 - the template function is called var()
    report: RunReport | None = None,
) -> list[DltResource]:
    """Stripe Sigma queries from `project_dir`, one dlt resource (and table) per SQL file.

    Settings come from `[sources.sigma]` in `.dlt/config.toml` / `.dlt/secrets.toml` or the
    `SOURCES__SIGMA__<KEY>` environment variables. Pass a `RunReport` to learn which queries
    failed: a failed query never stops the others, so the load itself succeeds.

    Retry settings (seconds and attempt counts, see `ClientConfig`): `request_timeout`,
    `max_attempts` per request, `backoff_factor` and `max_retry_delay` of the jittered
    exponential backoff, `download_attempts` per result file, and `poll_interval`,
    `poll_fast_seconds` and `poll_max_interval` between polls of a running query (a run is
    polled at least every `poll_interval` during its first `poll_fast_seconds`).

    `csv_block_size`: bytes of a result file parsed at a time (default 1 MiB); with the
    parquet row group, it bounds each query's memory while staging.
    """
    queries = select_queries(load_project(project_dir), select, exclude)
    if max_concurrent_runs < 1:
        raise ConfigError(f"max_concurrent_runs={max_concurrent_runs}: must be at least 1")
    if csv_block_size < MIN_CSV_BLOCK_SIZE:
        raise ConfigError(
            f"csv_block_size={csv_block_size}: must be at least {MIN_CSV_BLOCK_SIZE} (bytes)"
        )
    client = SigmaClient(
        ClientConfig(
            api_key=api_key,
            api_base=api_base,
            files_base=files_base,
            stripe_version=stripe_version,
            stripe_account=stripe_account,
            poll_timeout=poll_timeout,
            request_timeout=request_timeout,
            max_attempts=max_attempts,
            backoff_factor=backoff_factor,
            max_retry_delay=max_retry_delay,
            download_attempts=download_attempts,
            poll_interval=poll_interval,
            poll_fast_seconds=poll_fast_seconds,
            poll_max_interval=poll_max_interval,
        )
    )
    _reserve_io_threads()
    context = _RunContext(
        client=client,
        now=_utc_now_ms(),
        poll_timeout=poll_timeout,
        full_refresh=full_refresh,
        vars=dict(vars or {}),
        report=report if report is not None else RunReport(),
        slots=threading.BoundedSemaphore(max_concurrent_runs),
        destination=_active_destination_name(),
        csv_block_size=csv_block_size,
    )
    return [_query_resource(query, context) for query in queries]


def _reserve_io_threads() -> None:
    """Leave pyarrow's I/O threads enough for every result read as it arrives.

    pyarrow's CSV reader reads ahead on an I/O thread, which waits there for a download's
    bytes: with fewer threads than staging slots, one slow download could hold up the
    reading of another query's result that is already whole.
    """
    wanted = 2 * STAGING_SLOTS
    if pa.io_thread_count() < wanted:
        pa.set_io_thread_count(wanted)


def _query_resource(query: Query, context: _RunContext) -> DltResource:
    config = query.config
    write_disposition = "replace" if context.full_refresh else config.write_disposition
    resource = dlt.resource(
        _query_items,
        name=query.name,
        table_name=query.name,
        write_disposition=write_disposition,
        primary_key=list(config.primary_key or []),
        parallelized=True,
    )(query, context)
    _declare_lineage_table(resource)  # before any hint that is the query's table's alone
    if config.cursor and _loading_into_bigquery():
        # Partition by day on the cursor, cluster by key: windows then scan few partitions.
        resource = bigquery_adapter(
            resource, partition=config.cursor, cluster=list(config.primary_key or []) or None
        )
    if write_disposition == "replace":
        # A table the load replaces takes new column types by being rebuilt (main thread).
        resource.add_map(lambda item: rebuild_if_retyped(query.name, item))
    # Runs on the main thread, where dlt's load package (and so the load id) is known.
    return resource.add_map(_stamp_load_id)


def _query_items(query: Query, context: _RunContext) -> Iterator[Any]:
    records: list[QueryRunRecord] = []
    staging_dir = _new_staging_dir(query)
    staging = StagingFile(
        staging_dir / "rows.parquet",
        load_id=_load_id_for_rows(),
        compression=parquet_compression(context.destination),
    )
    try:
        try:
            staged = _run_and_stage(query, context, records, staging_dir, staging)
        except SigmaLoadError as error:
            yield from _fail(query, context, records, str(error))
            return
        except Exception as error:  # an unexpected bug must still not sink the other queries
            yield from _fail(query, context, records, f"{type(error).__name__}: {error}")
            return
        _advance_cursor(query, context, staged)
        _remember_run_seconds(query, records)
        _choose_file_format(query, context, has_rows=staging.row_count > 0)
        yield from _rows(staged, staging)
        context.report.add_records(records)
        for record in records:
            yield _lineage_item(record)
    finally:
        # dlt has hard-linked (or copied) the staged file into its load package by now: it
        # imports an item before it asks this generator for the next one.
        staging.abort()
        shutil.rmtree(staging_dir, ignore_errors=True)


def _run_and_stage(
    query: Query,
    context: _RunContext,
    records: list[QueryRunRecord],
    staging_dir: Path,
    staging: StagingFile,
) -> list[StagedResult]:
    """Run every window of the query (oldest first) and stage each result; all or nothing.

    A slot of `max_concurrent_runs` is held while Sigma runs the query and the file
    downloads. The rows are parsed and encoded in a staging slot (as the file arrives, when
    its download is slow): the next query runs on Sigma while this one is parsed.
    """
    check_renders(query, now=context.now, vars=context.vars)
    windows = plan_windows(query.config, last_cursor=_last_cursor(query, context), now=context.now)
    # Also on a full refresh: a column a result has no value for keeps the table's type.
    stored = _stored_columns(query.name)
    untyped = UntypedColumns.from_state(_query_state(query.name))
    staged: list[StagedResult] = []
    for index, window in enumerate(windows):
        on_event = _window_events(context.report, index + 1, len(windows))
        on_event(ProgressEvent(query.name, "rendering"))
        record = _new_record(query, context, window)
        records.append(record)
        csv_path = staging_dir / f"{index}.csv"
        run, download = _run_and_download(query, context, record, csv_path, on_event)
        with download.reading(follow_after=FOLLOW_AFTER_SECONDS) as result_file:
            _check_column_names(query, read_header(result_file))
            with context.staging_slots:
                result = stage_result(
                    query,
                    result_file,
                    staging,
                    query_run_id=record.query_run_id,
                    stored=stored,
                    earlier_types=_types_of_first_rows(staged),
                    refresh=context.full_refresh,
                    replaces_table=context.full_refresh
                    or query.config.write_disposition == "replace",
                    api_schema=run.result_schema,
                    untyped=untyped,
                    block_size=context.csv_block_size,
                )
        csv_path.unlink()
        record.row_count = result.row_count
        staged.append(result)
    staging.close()
    untyped.save_to(_query_state(query.name))
    rows = sum(result.row_count for result in staged)
    last = len(windows)
    context.report.emit(ProgressEvent(query.name, "waiting", window=last, windows=last, rows=rows))
    return staged


def _run_and_download(
    query: Query,
    context: _RunContext,
    record: QueryRunRecord,
    csv_path: Path,
    on_event: EventCallback,
) -> tuple[QueryRun, ResultDownload]:
    """Run the window's query on Sigma, and start downloading its result to `csv_path`.

    The run holds a slot of `max_concurrent_runs` until its file is downloaded; the
    download's thread frees it, whether or not the rows are still being read.
    """
    context.slots.acquire()
    try:
        run = run_on_sigma(
            context.client,
            record,
            poll_timeout=context.poll_timeout,
            expected_seconds=_expected_run_seconds(query),
            on_event=on_event,
        )
    except BaseException:
        context.slots.release()
        raise

    def ended(whole: bool) -> None:
        context.slots.release()
        if whole:
            on_event(
                ProgressEvent(
                    query.name,
                    "staging",
                    query_run_id=record.query_run_id,
                    bytes=record.file_size_bytes,
                )
            )

    download = ResultDownload(context.client, record, csv_path, on_event=on_event, on_end=ended)
    return run, download


def _check_column_names(query: Query, names: list[str]) -> None:
    """Refuse a column without a name, and two columns dlt would load as one (`id` and
    `ID`): either would fail the whole load, every query's, instead of this query alone."""
    normalize = dlt.current.source_schema().naming.normalize_identifier
    seen: dict[str, str] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise CSVFormatError(
                f"{query.name}: result column {position} has no name ({name!r}); "
                "give it one (an alias) in the SQL"
            )
        loaded_as = normalize(name)
        if loaded_as in seen:
            raise CSVFormatError(
                f"{query.name}: result columns {seen[loaded_as]!r} and {name!r} would both load "
                f"as column {loaded_as!r}; rename one (an alias) in the SQL"
            )
        seen[loaded_as] = name


def _window_events(report: RunReport, window: int, windows: int) -> EventCallback:
    """The report's event callback, numbering each event with the query's window."""
    return lambda event: report.emit(replace(event, window=window, windows=windows))


def _types_of_first_rows(staged: list[StagedResult]) -> dict[str, str] | None:
    """Types of the first earlier window that had rows; empty windows infer nothing."""
    return next((result.types for result in staged if result.row_count), None)


def _new_record(query: Query, context: _RunContext, window: Window) -> QueryRunRecord:
    saved_query = query.config.saved_query
    sql = None if saved_query else render_sql(query, window=window, vars=context.vars)
    return QueryRunRecord(
        query_name=query.name,
        sql=sql,
        saved_query_id=saved_query,
        cursor_start=window.start,
        cursor_end=window.end if query.config.cursor else None,
    )


def _fail(
    query: Query, context: _RunContext, records: list[QueryRunRecord], message: str
) -> Iterator[Any]:
    """Record the failure; leave the query's table and cursor exactly as they were."""
    run_id = records[-1].query_run_id if records else None
    if run_id and run_id not in message:
        message = f"query run {run_id}: {message}"  # so the line can be traced in Stripe
    line = f"{query.name}: {message}"
    context.report.add_failure(query.name, line)
    context.report.emit(ProgressEvent(query.name, "failed", message=message))
    # The last run is the one that failed, even if Sigma's part of it succeeded and its
    # result then failed to parse; the earlier windows' runs are discarded with it.
    for record in records[:-1]:
        record.discard(f"not loaded: a later run of {query.name} failed")
    if records:
        records[-1].status, records[-1].error, records[-1].row_count = FAILED, message, 0
    if not records:
        records.append(QueryRunRecord(query_name=query.name, error=message))
    context.report.add_records(records)
    # A replace (or full-refresh) resource that yields no rows would truncate its table.
    dlt.current.source().resources[query.name].apply_hints(write_disposition="append")
    for record in records:
        yield _lineage_item(record)


def _rows(staged: list[StagedResult], staging: StagingFile) -> Iterator[Any]:
    with_rows = [result for result in staged if result.row_count]
    if not with_rows:
        if staged:
            # A header-only result still creates the table with its typed columns.
            yield staged[-1].schema.empty_table()
        return
    # dlt takes the table's columns from the (empty) Arrow table, exactly as it would from
    # the rows themselves, and links the file into its load package without reading it.
    yield dlt.mark.with_file_import(
        str(staging.path),
        "parquet",
        staging.row_count,
        hints=with_rows[0].schema.empty_table(),
    )


def _declare_lineage_table(resource: DltResource) -> None:
    """Give the run records (`_sigma_query_runs`) their own table hints within the resource.

    dlt starts a table variant from a copy of the resource's hints as they are when the
    variant is made. Made when the first record is extracted, it inherited the query table's
    BigQuery partition and cluster columns (a `CLUSTER BY id` BigQuery refuses, on columns the
    records do not have) and its Postgres file format. So the variant is made here, from a
    clean slate, and later hints on the resource stay the query's table's own.
    """
    resource.apply_hints(
        table_name=LINEAGE_TABLE,
        write_disposition="append",
        primary_key=[],
        columns={},  # an empty value removes a hint copied from the resource
        additional_table_hints={},
        file_format="",
        create_table_variant=True,
    )
    resource.apply_hints(
        table_name=LINEAGE_TABLE, columns=LINEAGE_COLUMNS, create_table_variant=True
    )


def _lineage_item(record: QueryRunRecord) -> Any:
    hints = dlt.mark.make_hints(
        table_name=LINEAGE_TABLE,
        write_disposition="append",
        primary_key=[],
        columns=LINEAGE_COLUMNS,
    )
    return dlt.mark.with_hints(record.to_row(), hints, create_table_variant=True)


def remove_leftover_staging(working_dir: str | Path) -> None:
    """Delete the staging folders of runs that were killed: nothing reads them again, and a
    job killed night after night would otherwise fill the disk with downloads."""
    shutil.rmtree(Path(working_dir) / STAGING_FOLDER, ignore_errors=True)


def _new_staging_dir(query: Query) -> Path:
    """A fresh folder for the query's downloads and staged rows.

    Inside the pipeline's working folder when there is one: on the same file system as
    dlt's load packages, so dlt imports the staged file by a hard link instead of a copy
    (and a /tmp in memory is spared the downloads).
    """
    parent: Path | None = None
    try:
        parent = Path(dlt.current.pipeline().working_dir) / STAGING_FOLDER
        parent.mkdir(parents=True, exist_ok=True)
    except Exception:  # no active pipeline (the source iterated on its own): use /tmp
        parent = None
    return Path(tempfile.mkdtemp(prefix=f"{query.name}-", dir=parent))


def _load_id_for_rows() -> str | None:
    """dlt's load id, for the staged rows' `_dlt_load_id`; None when dlt adds no such column.

    dlt adds the column to Arrow rows it writes itself; a file it imports must carry it.
    """
    from dlt.common.configuration import resolve_configuration
    from dlt.normalize.configuration import ItemsNormalizerConfiguration

    config = resolve_configuration(
        ItemsNormalizerConfiguration(), sections=("normalize", "parquet_normalizer")
    )
    if not config.add_dlt_load_id:
        return None
    return str(dlt.current.load_package_state()["load_id"])


def _stamp_load_id(item: Any) -> Any:
    if isinstance(item, dict) and "query_run_id" in item:
        item["load_id"] = dlt.current.load_package_state()["load_id"]
    return item


# --- cursor state ---------------------------------------------------------------------------
# Kept in the source-level state, keyed by query name, rather than in dlt's resource state:
# dlt resets resource state whenever a resource is `replace`, which would lose the cursor of a
# full refresh that then fails.


def _query_state(query_name: str) -> dict[str, Any]:
    queries = dlt.current.source_state().setdefault("queries", {})
    return queries.setdefault(query_name, {})


def _last_cursor(query: Query, context: _RunContext) -> datetime | None:
    if not query.config.cursor or context.full_refresh:
        return None
    value = _query_state(query.name).get("last_cursor")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):  # the state was edited by hand, or is corrupt
        raise ConfigError(
            f"{query.name}: the cursor kept in dlt's pipeline state (last_cursor={value!r}) "
            "is not a timestamp; reload the table with --full-refresh"
        ) from None


def _advance_cursor(query: Query, context: _RunContext, staged: list[StagedResult]) -> None:
    if not query.config.cursor:
        return
    seen = [result.max_cursor for result in staged if result.max_cursor is not None]
    previous = _last_cursor(query, context)  # None on a full refresh: it starts over
    if previous is not None:
        seen.append(previous)
    state = _query_state(query.name)
    if seen:
        state["last_cursor"] = max(seen).isoformat()
    else:
        # Nothing loaded yet, or a full refresh that loaded no rows (and emptied the table):
        # the next run starts from `initial_value`, not from the cursor before the refresh.
        state.pop("last_cursor", None)


def _expected_run_seconds(query: Query) -> float | None:
    return usual_run_seconds(_query_state(query.name).get("run_seconds"))


def _remember_run_seconds(query: Query, records: list[QueryRunRecord]) -> None:
    """Keep the query's latest run times; saved with the cursor, when its rows are loaded."""
    state = _query_state(query.name)
    known = state.get("run_seconds") if isinstance(state.get("run_seconds"), list) else []
    new = [record.wait_seconds for record in records if record.wait_seconds is not None]
    if new:
        state["run_seconds"] = [*known, *new][-RUN_SECONDS_KEPT:]


def _stored_columns(table_name: str) -> StoredColumns | None:
    """Columns dlt already holds for the table, so a column never changes type between runs."""
    schema = dlt.current.source_schema()
    table = schema.tables.get(table_name)
    if not table or not table.get("columns"):
        return None
    return StoredColumns(dict(table["columns"]), schema.naming.normalize_identifier)


def _loading_into_bigquery() -> bool:
    """True when the active pipeline (the one about to run this source) loads into BigQuery."""
    return _active_destination_name() == "bigquery"


def _active_destination_name() -> str | None:
    """The destination of the active pipeline (the one about to run this source)."""
    try:
        destination = dlt.current.pipeline().destination
    except Exception:  # no active pipeline: the source is being built on its own
        return None
    return None if destination is None else destination.destination_name


def _choose_file_format(query: Query, context: _RunContext, *, has_rows: bool) -> None:
    """Postgres: load the staged parquet itself, through ADBC (binary COPY), when installed.

    That took a 1M-row load from 15 s (CSV written, then parsed again by `COPY`) to 6 s.
    dlt's ADBC job cannot load a file without rows, so an empty result goes as CSV. Set on
    every run: dlt keeps a table's last file format in its schema.
    """
    if context.destination != "postgres":
        return
    file_format = "parquet" if has_rows and has_postgres_adbc_driver() else "csv"
    dlt.current.source().resources[query.name].apply_hints(file_format=file_format)


def has_postgres_adbc_driver() -> bool:
    """Whether `adbc-driver-postgresql` (the `postgres` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("adbc_driver_postgresql") is not None


def _utc_now_ms() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def rebuild_if_retyped(table_name: str, item: Any) -> Any:
    """A dlt map step for a table the load replaces: rebuild it if its column types change.

    dlt never changes a column's type in place: rows of a new type would fail in the
    destination (`Could not convert string 'x1' to INT64`) after the table was truncated.
    So when the rows' Arrow schema (`item`, the table dlt takes a query's columns from)
    has another type for a column than the table, the table is dropped from dlt's schema
    and listed in the load package's `dropped_tables`, dlt's own refresh mechanism: the
    load then drops the table and creates it anew with the rows' types, just before it
    loads them. Only queries whose result was staged whole get here, so a query that fails
    leaves its table, and its types, as they were. Runs on dlt's main thread (map steps
    do), where the schema may be changed.
    """
    if not isinstance(item, pa.Table):
        return item
    schema = dlt.current.source_schema()
    name = schema.naming.normalize_table_identifier(table_name)
    table = schema.tables.get(name)
    if not table or not table.get("columns"):
        return item
    changed = retyped_columns(
        table["columns"], item.schema, normalize_name=schema.naming.normalize_identifier
    )
    if not changed:
        return item
    package_state = dlt.current.load_package_state()["state"]
    package_state.setdefault("dropped_tables", []).extend(schema.drop_tables([name]))
    logger.info(
        "table %s is rebuilt: %s",
        name,
        ", ".join(f"{column} {old} -> {new}" for column, (old, new) in changed.items()),
    )
    return item
