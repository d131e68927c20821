"""Run the sigma source through a dlt pipeline into DuckDB, Postgres or BigQuery.

This is what `sigma-load run` and `pipelines/sigma_pipeline.py` call. It adds what a bare
`pipeline.run(sigma_source())` lacks for unattended jobs: it finishes a load left pending by
a crash before extracting anew, keeps the DuckDB file and dataset names from colliding, and
turns the per-query outcome into a result the caller can act on (exit non-zero on failure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed

from sigma_source.errors import ConfigError, SigmaLoadError
from sigma_source.lineage import QueryRunRecord
from sigma_source.source import RunReport, sigma_source

DESTINATIONS = ("duckdb", "postgres", "bigquery")
DEFAULT_PIPELINE_NAME = "sigma_load"
DEFAULT_DATASET = "sigma"


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
    duckdb_path: str | None = None
    pipelines_dir: str | None = None
    source_settings: dict[str, Any] = field(default_factory=dict)


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


def run(options: RunOptions) -> RunResult:
    """Load the selected queries; failed queries are reported, never raised mid-run."""
    pipeline, source, report = prepare(options)
    try:
        info = pipeline.run(source, loader_file_format=loader_file_format(options.destination))
    except PipelineStepFailed as error:
        raise SigmaLoadError(f"{error.step} step failed: {_root_cause(error)}") from error
    return RunResult(report.records, dict(report.failures), info, pipeline)


def prepare(options: RunOptions) -> tuple[dlt.Pipeline, Any, RunReport]:
    """The pipeline (with any pending load finished) and the source, ready to run."""
    configure_dlt()
    pipeline = make_pipeline(options)
    _finish_pending_load(pipeline)
    report = RunReport()
    source = sigma_source(
        select=list(options.select),
        exclude=list(options.exclude),
        full_refresh=options.full_refresh,
        vars=dict(options.vars),
        report=report,
        **options.source_settings,
    )
    # One extract worker per query: each waits on Sigma, bounded by max_concurrent_runs.
    dlt.config["extract.workers"] = max(len(source.resources), 1)
    return pipeline, source, report


def _destination(options: RunOptions) -> Any:
    if options.destination not in DESTINATIONS:
        raise ConfigError(
            f"--destination {options.destination!r}: choose one of {', '.join(DESTINATIONS)}"
        )
    if options.destination == "duckdb":
        path = options.duckdb_path or f"{options.pipeline_name}.duckdb"
        if Path(path).stem == options.dataset:
            raise ConfigError(
                f"DuckDB file {path!r} and dataset {options.dataset!r} share a name: DuckDB "
                "names the catalog after the file, so every table reference would be "
                "ambiguous; change --dataset or --pipeline-name"
            )
        return dlt.destinations.duckdb(credentials=path)
    if options.destination == "postgres":
        return dlt.destinations.postgres()
    return dlt.destinations.bigquery()


def loader_file_format(destination: str) -> str | None:
    # Postgres has no parquet loader without ADBC: pyarrow-written CSV goes in through COPY.
    return "csv" if destination == "postgres" else None


def _finish_pending_load(pipeline: dlt.Pipeline) -> None:
    """Load what a crashed or killed run left behind before extracting anew.

    dlt would otherwise load the pending package and silently ignore the new data.
    """
    if not pipeline.has_pending_data:
        return
    try:
        pipeline.normalize()
        pipeline.load()
    except PipelineStepFailed as error:
        raise SigmaLoadError(
            f"a load left pending by an earlier run failed again: {_root_cause(error)}"
        ) from error


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
