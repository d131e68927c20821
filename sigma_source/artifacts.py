"""`target/run_results.json`: what one `sigma-load run` did, for tools and for the morning after.

Modelled on dbt's `run_results.json`: written after every run that got as far as running
queries, failed ones included, so a scheduler or a notebook can read per query its status,
error, Sigma query runs, window, rows, bytes and time per phase, with the dlt load id and
the versions of the tools involved. The document holds only what the loader already shows
(errors are scrubbed of secrets by the client); the API key is never among the inputs.
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigma_source.events import utc_stamp
from sigma_source.lineage import SUCCEEDED, QueryRunRecord

if TYPE_CHECKING:
    from sigma_source.loader import RunOptions, RunResult
    from sigma_source.progress import RunTracker

RUN_RESULTS_FILE = "run_results.json"
SCHEMA_VERSION = 1
RUN_SUCCESS, RUN_FAILED, RUN_ERROR = "success", "failed", "error"
"""success: every query loaded; failed: some query failed; error: the load itself failed."""


@dataclass
class RunOutcome:
    """Everything `run_results.json` is made of, gathered by the caller during the run."""

    args: dict[str, Any]
    records: list[QueryRunRecord]
    failures: Mapping[str, str]
    timings: Mapping[str, Mapping[str, float]]
    started_at: str
    elapsed_seconds: float
    load_ids: list[str] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RecordedRun:
    """A run and its record: the loader's result (None if the load failed), the query run
    records (known even then), the run_results document and where it was written."""

    result: RunResult | None
    records: list[QueryRunRecord]
    run_results: dict[str, Any]
    path: Path

    @property
    def ok(self) -> bool:
        return self.run_results["status"] == RUN_SUCCESS


def run_and_record(
    options: RunOptions,
    tracker: RunTracker,
    *,
    args: Mapping[str, Any],
    target_dir: str | os.PathLike[str] = "target",
) -> RecordedRun:
    """Run the loader with `tracker` following it, then write `run_results.json`.

    A failing load (the load step, say) is recorded, not raised: the file must exist after
    every run a scheduler looks into. A `ConfigError` is raised before anything ran, and
    then no file is written.
    """
    from sigma_source.errors import ConfigError, SigmaLoadError
    from sigma_source.loader import run
    from sigma_source.progress import rows_per_query
    from sigma_source.source import RunReport

    report = RunReport(on_event=tracker)
    started_at, clock = utc_stamp(), time.monotonic()
    result, error = None, None
    try:
        result = run(options, report)
    except ConfigError:
        raise
    except SigmaLoadError as problem:
        error = str(problem)
    failures = dict(report.failures)
    tracker.finish(rows_per_query(report.records), failures, error=error)
    outcome = RunOutcome(
        args=dict(args),
        records=list(report.records),
        failures=failures,
        timings=tracker.timings(),
        started_at=started_at,
        elapsed_seconds=time.monotonic() - clock,
        load_ids=list(result.load_info.loads_ids) if result and result.load_info else [],
        steps=step_seconds(result.pipeline.last_trace.steps) if result else {},
        error=error,
    )
    document = run_results(outcome, utc_stamp())
    path = write_run_results(target_dir, document)
    return RecordedRun(result, outcome.records, document, path)


def run_results(outcome: RunOutcome, generated_at: str) -> dict[str, Any]:
    """The JSON document, as plain data (no datetimes)."""
    names = sorted({record.query_name for record in outcome.records} | set(outcome.failures))
    if outcome.error:
        status = RUN_ERROR
    elif outcome.failures:
        status = RUN_FAILED
    else:
        status = RUN_SUCCESS
    return {
        "metadata": {
            "schema_version": SCHEMA_VERSION,
            "generated_at": generated_at,
            "invocation_id": str(uuid.uuid4()),
            "versions": versions(),
        },
        "args": outcome.args,
        "status": status,
        "error": outcome.error,
        "started_at": outcome.started_at,
        "elapsed_seconds": round(outcome.elapsed_seconds, 3),
        "load_id": outcome.load_ids[-1] if outcome.load_ids else None,
        "load_ids": list(outcome.load_ids),
        "steps": outcome.steps,
        "results": [_query_result(name, outcome) for name in names],
    }


def write_run_results(target_dir: str | os.PathLike[str], document: Mapping[str, Any]) -> Path:
    """Write `target_dir/run_results.json` atomically; returns its path."""
    folder = Path(target_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_RESULTS_FILE
    partial = folder / f".{RUN_RESULTS_FILE}.partial"
    partial.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def versions() -> dict[str, str | None]:
    """Versions of the packages that decide what a load does, for a bug report or an audit."""
    from sigma_source import __version__

    found: dict[str, str | None] = {"sigma-load": __version__}
    for package in ("dlt", "pyarrow", "duckdb"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["python"] = platform.python_version()
    return found


def _query_result(name: str, outcome: RunOutcome) -> dict[str, Any]:
    records = [record for record in outcome.records if record.query_name == name]
    error = outcome.failures.get(name)
    if error is None and outcome.error:
        error = f"not loaded: {outcome.error}"
    loaded = [record for record in records if record.status == SUCCEEDED]
    return {
        "query": name,
        "status": "failed" if error else "loaded",
        "error": _without_name(name, error),
        "rows": sum(record.row_count for record in loaded) if not error else 0,
        "bytes": sum(record.file_size_bytes or 0 for record in records),
        "query_run_ids": [record.query_run_id for record in records if record.query_run_id],
        "timings": dict(outcome.timings.get(name, {})),
        "runs": [_run(record) for record in records],
    }


def _run(record: QueryRunRecord) -> dict[str, Any]:
    return {
        "query_run_id": record.query_run_id,
        "saved_query_id": record.saved_query_id,
        "status": record.status,
        "error": record.error,
        "window": {"start": _iso(record.cursor_start), "end": _iso(record.cursor_end)},
        "rows": record.row_count,
        "bytes": record.file_size_bytes,
        "file_id": record.file_id,
        "sql_sha256": record.sql_sha256,
        "poll_count": record.poll_count,
        "wait_seconds": record.wait_seconds,
        "download_seconds": record.download_seconds,
        "created_at": _iso(record.created_at),
        "finalized_at": _iso(record.finalized_at),
    }


def _iso(moment: Any) -> str | None:
    return utc_stamp(moment) if moment is not None else None


def _without_name(name: str, error: str | None) -> str | None:
    """Failure lines read `name: message`; inside the query's own entry the name is noise."""
    if error is not None and error.startswith(f"{name}: "):
        return error[len(name) + 2 :]
    return error


def step_seconds(trace_steps: Iterable[Any]) -> dict[str, float]:
    """Seconds per dlt step (extract, normalize, load) from a pipeline trace."""
    seconds: dict[str, float] = {}
    for step in trace_steps:
        if step.started_at and step.finished_at:
            spent = (step.finished_at - step.started_at).total_seconds()
            seconds[step.step] = round(seconds.get(step.step, 0.0) + spent, 3)
    return seconds
