"""The dlt source: one resource per query in the project, run concurrently.

Each resource renders its SQL for this run's cursor window, runs it on Sigma, downloads the
result and turns it into typed Arrow batches. All of that happens before the resource yields
its first row, into a staging file on disk, so that a query which fails at any stage (API,
download, parse, type violation) contributes no rows at all and leaves its table and its
cursor as they were, while the other queries load. Failures are recorded in the
`_sigma_query_runs` table and in the `RunReport` the caller passes in.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
from dlt.destinations.adapters import bigquery_adapter
from dlt.extract.resource import DltResource

from sigma_source.client import ClientConfig, SigmaClient
from sigma_source.errors import ConfigError, SigmaLoadError
from sigma_source.lineage import LINEAGE_COLUMNS, LINEAGE_TABLE, QueryRunRecord
from sigma_source.project import (
    Query,
    Window,
    load_project,
    plan_windows,
    render_sql,
    select_queries,
)
from sigma_source.runs import execute_query_run
from sigma_source.staging import StagedResult, StoredColumns, stage_result

DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_FILES_BASE = "https://files.stripe.com"
DEFAULT_PROJECT_DIR = "pipelines/queries"


@dataclass
class RunReport:
    """What happened to each query in one run; filled in by the resources, read by the caller."""

    records: list[QueryRunRecord] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
    slots: threading.BoundedSemaphore


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
    """
    queries = select_queries(load_project(project_dir), select, exclude)
    if max_concurrent_runs < 1:
        raise ConfigError(f"max_concurrent_runs={max_concurrent_runs}: must be at least 1")
    client = SigmaClient(
        ClientConfig(
            api_key=api_key,
            api_base=api_base,
            files_base=files_base,
            stripe_version=stripe_version,
            stripe_account=stripe_account,
            poll_timeout=poll_timeout,
        )
    )
    context = _RunContext(
        client=client,
        now=_utc_now_ms(),
        poll_timeout=poll_timeout,
        full_refresh=full_refresh,
        vars=dict(vars or {}),
        report=report if report is not None else RunReport(),
        slots=threading.BoundedSemaphore(max_concurrent_runs),
    )
    return [_query_resource(query, context) for query in queries]


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
    if config.cursor and _loading_into_bigquery():
        # Partition by day on the cursor, cluster by key: windows then scan few partitions.
        resource = bigquery_adapter(
            resource, partition=config.cursor, cluster=list(config.primary_key or []) or None
        )
    # Runs on the main thread, where dlt's load package (and so the load id) is known.
    return resource.add_map(_stamp_load_id)


def _query_items(query: Query, context: _RunContext) -> Iterator[Any]:
    records: list[QueryRunRecord] = []
    staging_dir = Path(tempfile.mkdtemp(prefix=f"sigma-load-{query.name}-"))
    try:
        try:
            with context.slots:
                staged = _run_and_stage(query, context, records, staging_dir)
        except SigmaLoadError as error:
            yield from _fail(query, context, records, str(error))
            return
        except Exception as error:  # an unexpected bug must still not sink the other queries
            yield from _fail(query, context, records, f"{type(error).__name__}: {error}")
            return
        _advance_cursor(query, context, staged)
        yield from _rows(staged)
        context.report.add_records(records)
        for record in records:
            yield _lineage_item(record)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)


def _run_and_stage(
    query: Query, context: _RunContext, records: list[QueryRunRecord], staging_dir: Path
) -> list[StagedResult]:
    """Run every window of the query (oldest first) and stage each result; all or nothing."""
    windows = plan_windows(query.config, last_cursor=_last_cursor(query, context), now=context.now)
    stored = None if context.full_refresh else _stored_columns(query.name)
    staged: list[StagedResult] = []
    for index, window in enumerate(windows):
        record = _new_record(query, context, window)
        records.append(record)
        csv_path = staging_dir / f"{index}.csv"
        execute_query_run(context.client, record, csv_path, poll_timeout=context.poll_timeout)
        result = stage_result(
            query,
            csv_path,
            staging_dir / f"{index}.arrows",
            query_run_id=record.query_run_id,
            stored=stored,
            earlier_types=_types_of_first_rows(staged),
        )
        csv_path.unlink()
        record.row_count = result.row_count
        staged.append(result)
    return staged


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
    line = f"{query.name}: {message}"
    context.report.add_failure(query.name, line)
    for record in records:
        if record.status == "failed" or record.error:
            continue
        record.discard(f"not loaded: a later run of {query.name} failed")
    if records and records[-1].status == "failed":
        records[-1].error = message
    if not records:
        records.append(QueryRunRecord(query_name=query.name, error=message))
    context.report.add_records(records)
    # A replace (or full-refresh) resource that yields no rows would truncate its table.
    dlt.current.source().resources[query.name].apply_hints(write_disposition="append")
    for record in records:
        yield _lineage_item(record)


def _rows(staged: list[StagedResult]) -> Iterator[pa.RecordBatch | pa.Table]:
    with_rows = [result for result in staged if result.row_count]
    if not with_rows and staged:
        # A header-only result still creates the table with its typed columns.
        yield staged[-1].schema.empty_table()
    for result in with_rows:
        yield from result.batches()


def _lineage_item(record: QueryRunRecord) -> Any:
    hints = dlt.mark.make_hints(
        table_name=LINEAGE_TABLE,
        write_disposition="append",
        primary_key=[],
        columns=LINEAGE_COLUMNS,
    )
    return dlt.mark.with_hints(record.to_row(), hints, create_table_variant=True)


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
    return datetime.fromisoformat(value) if value else None


def _advance_cursor(query: Query, context: _RunContext, staged: list[StagedResult]) -> None:
    if not query.config.cursor:
        return
    seen = [result.max_cursor for result in staged if result.max_cursor is not None]
    previous = _last_cursor(query, context)
    if previous is not None:
        seen.append(previous)
    if seen:
        _query_state(query.name)["last_cursor"] = max(seen).isoformat()


def _stored_columns(table_name: str) -> StoredColumns | None:
    """Columns dlt already holds for the table, so a column never changes type between runs."""
    schema = dlt.current.source_schema()
    table = schema.tables.get(table_name)
    if not table or not table.get("columns"):
        return None
    return StoredColumns(dict(table["columns"]), schema.naming.normalize_identifier)


def _loading_into_bigquery() -> bool:
    """True when the active pipeline (the one about to run this source) loads into BigQuery."""
    try:
        destination = dlt.current.pipeline().destination
    except Exception:  # no active pipeline: the source is being built on its own
        return False
    return destination is not None and destination.destination_name == "bigquery"


def _utc_now_ms() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
