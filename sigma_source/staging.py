"""Stage one downloaded result as typed Arrow on disk, checked whole before any row is loaded.

Parsing the entire file before the first row reaches dlt is what makes a query's load all or
nothing: a type violation in the last line must not leave the first million rows loaded. The
staged copy is an Arrow IPC stream, read back batch by batch, so memory stays bounded by the
batch size, not the result size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sigma_source import arrow_csv
from sigma_source.errors import ConfigError, CSVTypeError
from sigma_source.lineage import RUN_ID_COLUMN
from sigma_source.project import Query
from sigma_source.sigma_types import stored_sigma_types

_CURSOR_TYPES = ("timestamp", "date")


@dataclass(frozen=True)
class StoredColumns:
    """The columns dlt already holds for a query's table, and how dlt normalizes names."""

    columns: Mapping[str, Mapping[str, Any]]
    normalize_name: Callable[[str], str]


@dataclass(frozen=True)
class StagedResult:
    """A result file, typed and checked, waiting on disk to be yielded to dlt."""

    path: Path
    schema: pa.Schema
    types: dict[str, str]
    row_count: int
    max_cursor: datetime | None

    def batches(self) -> Iterator[pa.RecordBatch]:
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_stream(source)
            yield from reader


def stage_result(
    query: Query,
    csv_path: Path,
    staged_path: Path,
    *,
    query_run_id: str | None,
    stored: StoredColumns | None = None,
    earlier_types: Mapping[str, str] | None = None,
) -> StagedResult:
    """Parse `csv_path` into typed batches (plus the lineage column) at `staged_path`.

    `earlier_types` are the types of an earlier window of the same query in this run: every
    window of one run must load with the same column types.
    """
    resolved = _column_types(query, csv_path, stored, earlier_types or {})
    cursor = query.config.cursor
    _check_cursor(query, cursor, resolved.types)
    schema = _target_schema(query, resolved.schema)
    row_count = 0
    max_cursor: Any = None
    with pa.OSFile(str(staged_path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in arrow_csv.read_batches(csv_path, resolved, query_name=query.name):
            batch = _with_lineage(batch, query_run_id, schema, query)
            writer.write_batch(batch)
            row_count += batch.num_rows
            if cursor:
                max_cursor = _max(max_cursor, pc.max(batch.column(cursor)).as_py())
    return StagedResult(
        staged_path, schema, dict(resolved.types), row_count, _as_utc_datetime(max_cursor)
    )


def _column_types(
    query: Query, csv_path: Path, stored: StoredColumns | None, earlier: Mapping[str, str]
) -> arrow_csv.ResolvedTypes:
    stored_types: dict[str, str] = {}
    if stored is not None:
        header = arrow_csv.read_header(csv_path)
        stored_types = stored_sigma_types(
            stored.columns, header, normalize_name=stored.normalize_name
        )
    stored_types.update(earlier)
    if query.config.cursor:
        # A window with no rows would infer the cursor as text; Sigma cursors are timestamps
        # unless the query declares otherwise (`columns={'day': 'date'}`).
        stored_types.setdefault(query.config.cursor, "timestamp")
    return arrow_csv.resolve_file_types(
        csv_path,
        query_name=query.name,
        declared=dict(query.config.columns or {}),
        stored=stored_types,
    )


def _check_cursor(query: Query, cursor: str | None, types: Mapping[str, str]) -> None:
    if not cursor:
        return
    if cursor not in types:
        raise ConfigError(
            f"{query.path}: cursor column {cursor!r} is not in the query's result "
            f"(columns: {', '.join(types)})"
        )
    if types[cursor] not in _CURSOR_TYPES:
        raise ConfigError(
            f"{query.path}: cursor column {cursor!r} is {types[cursor]}; "
            "a cursor must be a timestamp or date column"
        )


def _target_schema(query: Query, result_schema: pa.Schema) -> pa.Schema:
    """The result's typed schema; primary key columns are NOT NULL, as dlt declares them."""
    primary_key = set(query.config.primary_key or ())
    fields = [
        field.with_nullable(False) if field.name in primary_key else field
        for field in result_schema
    ]
    return pa.schema([*fields, pa.field(RUN_ID_COLUMN, pa.string(), nullable=False)])


def _with_lineage(
    batch: pa.RecordBatch, query_run_id: str | None, schema: pa.Schema, query: Query
) -> pa.RecordBatch:
    for name in query.config.primary_key or ():
        nulls = batch.column(name).null_count
        if nulls:
            raise CSVTypeError(
                f"{query.name}: primary key column {name!r} is empty in {nulls} row(s); "
                "a primary key must never be NULL"
            )
    run_ids = pa.repeat(pa.scalar(query_run_id or "", pa.string()), batch.num_rows)
    columns = [*batch.columns, run_ids]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _max(current: Any, candidate: Any) -> Any:
    if candidate is None:
        return current
    return candidate if current is None else max(current, candidate)


def _as_utc_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    raise TypeError(f"unsupported cursor value {value!r}")
