"""Stage a query's results as one parquet file on disk, checked whole before dlt sees a row.

Parsing every result file of a query before handing anything to dlt is what makes a query's
load all or nothing: a type violation in the last line must not leave the first million rows
loaded. The staged file is the very file dlt loads: typed columns, the lineage column and
dlt's `_dlt_load_id`, in the order dlt's table has them. dlt imports it into its load package
as it is (a hard link), so the rows are encoded once, here, in the worker thread that ran the
query, instead of again on dlt's main thread. Memory stays bounded by one row group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sigma_source import arrow_csv
from sigma_source.arriving_file import ArrivingFile, DownloadRestarted
from sigma_source.errors import ConfigError, CSVTypeError
from sigma_source.lineage import RUN_ID_COLUMN
from sigma_source.project import Query
from sigma_source.sigma_types import (
    VARCHAR,
    parse_api_type,
    parse_sigma_type,
    sigma_type_from_arrow,
    stored_sigma_types,
)

DLT_LOAD_ID_COLUMN = "_dlt_load_id"
# Rows per parquet row group. Large enough for good compression and few, cheap row groups;
# small enough that the buffered group stays a few tens of MB, and that DuckDB, which loads
# one row group per thread, has enough of them to share evenly among its threads. On 1M
# balance transactions (2 cores), 64Ki rows against 128Ki: DuckDB's insert 1.14 s against
# 1.21 s (16 groups keep both threads busy to the end, 8 left one idle), staging's peak
# memory 20 MB lower, the DuckDB file as large; 32Ki rows was no faster.
ROW_GROUP_ROWS = 64 * 1024
# Compression of the staged file, by where it goes. DuckDB and Postgres (through ADBC) read it
# once, from this disk: compressing only costs CPU (on 1M balance transactions, snappy took
# 0.34 s of encoding against 0.20 s uncompressed, and DuckDB loaded both as fast). BigQuery
# uploads it, and snappy makes the upload 20% smaller.
_UNCOMPRESSED_FOR = ("duckdb", "postgres")


def parquet_compression(destination: str | None) -> str:
    """The staged file's parquet compression for rows bound for `destination`."""
    return "none" if destination in _UNCOMPRESSED_FOR else "snappy"


# Dictionary encoding only for the constant lineage columns. For the data columns it cost a
# third of the encoding CPU (ids and amounts overflow the dictionary and fall back to plain
# anyway) and left the snappy-compressed file the same size and as fast to load.
_DICTIONARY_COLUMNS = [RUN_ID_COLUMN, DLT_LOAD_ID_COLUMN]
# No column statistics (min / max / null count per page and row group): nothing filters on
# the staged file, which is read once, whole, by the load. Computing them (min / max of every
# string) was 15% of the encoding CPU, and DuckDB loads the file as fast without them.
_WRITE_STATISTICS = False

_CURSOR_TYPES = ("timestamp", "date")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredColumns:
    """The columns dlt already holds for a query's table, and how dlt normalizes names."""

    columns: Mapping[str, Mapping[str, Any]]
    normalize_name: Callable[[str], str]


@dataclass(frozen=True)
class StagedResult:
    """One result file of a query, typed, checked and written to the query's staging file."""

    schema: pa.Schema  # the table's columns as dlt gets them, without `_dlt_load_id`
    types: dict[str, str]
    row_count: int
    max_cursor: datetime | None


class UntypedColumns:
    """The columns of a query's table that are varchar only because no value was seen for
    them when they were created (a header-only first load, a column NULL everywhere).

    Kept in the query's dlt state between runs (`names`). Staging a result updates it: a
    column leaves it once a value decides it (declared, or text after all), and while its
    values suggest a narrower type than the varchar the table holds, staging warns once
    per run, naming the remedy.
    """

    STATE_KEY = "untyped_columns"

    def __init__(self, names: object = ()) -> None:
        # Anything but a list of names (a state edited by hand) counts as none.
        valid = isinstance(names, (list, tuple, set, frozenset))
        self.names: set[str] = {n for n in names if isinstance(n, str)} if valid else set()
        self._warned: set[str] = set()

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> UntypedColumns:
        return cls(state.get(cls.STATE_KEY, ()))

    def save_to(self, state: dict[str, Any]) -> None:
        if self.names:
            state[self.STATE_KEY] = sorted(self.names)
        else:
            state.pop(self.STATE_KEY, None)

    def update(self, query: Query, resolved: arrow_csv.ResolvedTypes) -> None:
        """Take in what one result file says about the columns (see the class docstring)."""
        for name in sorted(self.names & set(resolved.types)):
            rule, sigma_type = resolved.rules[name], resolved.types[name]
            suggested = resolved.suggested.get(name)
            if sigma_type != VARCHAR or rule in ("declared", "api"):
                self.names.discard(name)  # retyped, or varchar by decision
            elif rule == "inferred":
                if name not in resolved.valueless:
                    self.names.discard(name)  # its values are text
            elif suggested == VARCHAR:
                self.names.discard(name)  # the table's varchar fits its values after all
            elif suggested is not None and name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "query %r: column %r is varchar because the load that created it had no "
                    "values for it, but its values now suggest %s; to load it as %s, declare "
                    "config(columns={%r: %r}) and run `sigma-load run --full-refresh --select %s`",
                    query.name,
                    name,
                    suggested,
                    suggested,
                    name,
                    suggested,
                    query.name,
                )
        self.names |= resolved.valueless


class StagingFile:
    """The parquet file that collects every row of one query (all its windows) for dlt.

    `load_id` is dlt's id of the load package the file goes into, written into every row as
    `_dlt_load_id` (None: no such column, as when dlt is not configured to add it). The file
    is complete, and may be handed to dlt, only after `close()`.
    """

    def __init__(self, path: Path, *, load_id: str | None, compression: str = "snappy") -> None:
        self.path = path
        self.row_count = 0
        self._load_ids = None if load_id is None else ConstantColumn(load_id, _LOAD_ID_TYPE)
        self._compression = compression
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    @property
    def is_empty(self) -> bool:
        return self._writer is None and not self._pending

    def reset(self) -> None:
        """Forget every row written so far: the file starts again, empty."""
        self.abort()
        self.path.unlink(missing_ok=True)
        self.row_count = 0

    def write(self, batch: pa.RecordBatch) -> None:
        """Add a batch; rows are written a row group at a time."""
        if not batch.num_rows:
            return
        if self._load_ids is not None:
            batch = batch.append_column(
                pa.field(DLT_LOAD_ID_COLUMN, _LOAD_ID_TYPE, nullable=False),
                self._load_ids.of_length(batch.num_rows),
            )
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def close(self) -> None:
        """Write what is buffered and finish the file."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        # Hand what parsing and encoding used back to the system now: the load comes next.
        # (jemalloc's freed pages go back over its decay time whatever this does; see
        # `loader.use_memory_returning_allocator`.)
        pa.default_memory_pool().release_unused()

    def abort(self) -> None:
        """Drop what is buffered and let go of the file (a failed query's rows are discarded)."""
        self._pending, self._pending_rows = [], 0
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _flush(self) -> None:
        if not self._pending:
            return
        group = pa.Table.from_batches(self._pending)
        self._pending, self._pending_rows = [], 0
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                str(self.path),
                group.schema,
                compression=self._compression,
                use_dictionary=_DICTIONARY_COLUMNS,
                write_statistics=_WRITE_STATISTICS,
            )
        self._writer.write_table(group, row_group_size=group.num_rows)
        self.row_count += group.num_rows


# dlt adds `_dlt_load_id` to Arrow rows as a one-value dictionary with int8 indices: the
# same here, so the staged file's schema is the one dlt would have written.
_LOAD_ID_TYPE = pa.dictionary(pa.int8(), pa.string())


class ConstantColumn:
    """One value repeated down a column, for batch after batch of rows.

    Built once, at the longest length asked for so far, and sliced (without copying) to
    each batch: a new array for every batch cost about a fifth of staging's CPU on 1M rows.
    """

    def __init__(self, value: str, type_: pa.DataType) -> None:
        self.value = value
        self.type = type_
        self._built: pa.Array = self._build(0)

    def of_length(self, rows: int) -> pa.Array:
        if rows > len(self._built):
            self._built = self._build(rows)
        return self._built.slice(0, rows)

    def _build(self, rows: int) -> pa.Array:
        if pa.types.is_dictionary(self.type):
            indices = pa.repeat(pa.scalar(0, self.type.index_type), rows)
            return pa.DictionaryArray.from_arrays(indices, pa.array([self.value], pa.string()))
        return pa.repeat(pa.scalar(self.value, self.type), rows)


def stage_result(
    query: Query,
    csv_path: Path | ArrivingFile,
    staging: StagingFile,
    *,
    query_run_id: str | None,
    stored: StoredColumns | None = None,
    earlier_types: Mapping[str, str] | None = None,
    refresh: bool = False,
    replaces_table: bool = False,
    api_schema: Mapping[str, str] | None = None,
    untyped: UntypedColumns | None = None,
    block_size: int = arrow_csv.DEFAULT_BLOCK_SIZE,
) -> StagedResult:
    """Parse `csv_path` into typed rows (plus the lineage column) appended to `staging`.

    An `ArrivingFile` (a download still under way) is read as it arrives when the rows can
    be undone (`staging` is empty); otherwise, once it is whole.

    `stored` are the columns the query's table holds. Their types bind (rule 3) unless
    `refresh` (a full refresh: the table is loaded anew, its types inferred anew, except for
    columns this result has no value for, which keep theirs). A type declared in
    `config(columns=…)`, or given by the API's result schema (`api_schema`), that differs
    from the stored one fails the query before anything loads, unless `replaces_table`
    (a full refresh or a `replace` query: the table is then rebuilt with the new type, see
    `source.rebuild_if_retyped`). `earlier_types` are the types of an earlier window of the same
    query in this run: every window of one run must load with the same column types.
    `untyped`, the query's `UntypedColumns`, is updated with what this file says.
    `block_size` is the bytes of CSV parsed at a time (see `arrow_csv.read_batches`).

    Columns no rule types are inferred as the rows are read (`arrow_csv.InferringRead`):
    one pass over the file, the rows typed as the first block suggests. When later values
    need other types, the rows staged so far are discarded and the file is read again with
    the types the whole file gives; either way the staged rows are the same.
    """
    header = arrow_csv.read_header(csv_path)
    stored_types: dict[str, str] = {}
    if stored is not None:
        stored_types = stored_sigma_types(
            stored.columns, header, normalize_name=stored.normalize_name
        )
    if not (refresh or replaces_table):
        _check_against_stored(query, header, stored_types, api_schema)
    rules = _type_rules(query, stored_types, earlier_types or {}, refresh, api_schema)
    watch = untyped.names if untyped is not None else ()
    staged, resolved = _stage(query, csv_path, staging, rules, watch, query_run_id, block_size)
    if untyped is not None:
        untyped.update(query, resolved)
    return staged


def _stage(
    query: Query,
    csv_path: Path | ArrivingFile,
    staging: StagingFile,
    rules: dict[str, Any],
    watch: Collection[str],
    query_run_id: str | None,
    block_size: int,
) -> tuple[StagedResult, arrow_csv.ResolvedTypes]:
    """Stage the rows in one pass if that can be undone, else after a pass that types them."""
    read = {"query_name": query.name, "block_size": block_size}
    if staging.is_empty:
        try:
            reading = arrow_csv.InferringRead(csv_path, watch=watch, **read, **rules)
            staged = _stage_rows(query, reading.types, reading, staging, query_run_id)
            return staged, reading.types
        except (arrow_csv.TypesChanged, DownloadRestarted):
            staging.reset()
    # The file holds an earlier window's rows, which a reset would lose, or the one pass
    # guessed wrong (or its download started over): settle every type over the whole file.
    if isinstance(csv_path, ArrivingFile):
        csv_path = csv_path.wait_until_complete()
    resolved = arrow_csv.resolve_file_types(csv_path, watch=watch, **read, **rules)
    batches = arrow_csv.read_batches(csv_path, resolved, **read)
    return _stage_rows(query, resolved, batches, staging, query_run_id), resolved


def _check_against_stored(
    query: Query,
    header: list[str],
    stored_types: Mapping[str, str],
    api_schema: Mapping[str, str] | None,
) -> None:
    """Refuse a declared (or API) type other than the one the table holds, before loading.

    dlt cannot change a column's type in place: the load would fail in the destination and
    take every other query of the run down with it. Only a table the load replaces can take
    a new type (it is rebuilt).
    """
    declared = query.config.columns or {}
    api = api_schema or {}
    for name in header:
        if name not in stored_types:
            continue
        if name in declared:
            wanted = parse_sigma_type(declared[name], column=name, where=f"query {query.name!r}")
            origin = "is declared"
        elif name in api:
            wanted, origin = parse_api_type(api[name], column=name), "has in Sigma's result schema"
        else:
            continue
        if wanted != stored_types[name]:
            raise ConfigError(
                f"query {query.name!r}: column {name!r} {origin} {wanted} but table "
                f"{query.name} stores it as {stored_types[name]}; to change its type, rebuild "
                f"the table: `sigma-load run --full-refresh --select {query.name}`"
            )


def _stage_rows(
    query: Query,
    resolved: arrow_csv.ResolvedTypes,
    batches: Iterable[pa.RecordBatch],
    staging: StagingFile,
    query_run_id: str | None,
) -> StagedResult:
    cursor = query.config.cursor
    _check_cursor(query, cursor, resolved.types)
    schema = _target_schema(query, resolved.schema)
    row_count = 0
    max_cursor: Any = None
    run_ids = ConstantColumn(query_run_id or "", pa.string())
    with closing(arrow_csv.prefetched(iter(batches))) as parsed:
        for batch in parsed:
            batch = _with_lineage(batch, run_ids, schema, query)
            staging.write(batch)
            row_count += batch.num_rows
            if cursor and batch.num_rows:
                max_cursor = _max(max_cursor, pc.max(batch.column(cursor)).as_py())
    return StagedResult(schema, dict(resolved.types), row_count, _as_utc_datetime(max_cursor))


def _type_rules(
    query: Query,
    stored_types: Mapping[str, str],
    earlier: Mapping[str, str],
    refresh: bool,
    api_schema: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The rules that type a result file's columns, as `arrow_csv` takes them."""
    binding = {} if refresh else dict(stored_types)
    binding.update(earlier)
    # A window with no rows would infer the cursor as text; Sigma cursors are timestamps
    # unless the query declares otherwise (`columns={'day': 'date'}`).
    cursor = {query.config.cursor: "timestamp"} if query.config.cursor else {}
    return {
        "declared": dict(query.config.columns or {}),
        "api_schema": api_schema,
        "stored": binding,
        "cursor": cursor,
        "if_no_values": stored_types if refresh else None,
    }


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
    batch: pa.RecordBatch, run_ids: ConstantColumn, schema: pa.Schema, query: Query
) -> pa.RecordBatch:
    for name in query.config.primary_key or ():
        nulls = batch.column(name).null_count
        if nulls:
            raise CSVTypeError(
                f"{query.name}: primary key column {name!r} is empty in {nulls} row(s); "
                "a primary key must never be NULL"
            )
    columns = [*batch.columns, run_ids.of_length(batch.num_rows)]
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


# --- A table the load replaces, rebuilt when its column types change -------------------------


def retyped_columns(
    dlt_columns: Mapping[str, Mapping[str, Any]],
    rows: pa.Schema,
    *,
    normalize_name: Callable[[str], str] | None = None,
) -> dict[str, tuple[str, str]]:
    """{column: (type the table holds, type of the rows)} for each column that differs.

    `dlt_columns` are the table's columns in dlt's schema; `rows` the Arrow schema of the
    rows about to be loaded. Columns only one side has are no change of type.
    """
    stored = stored_sigma_types(dlt_columns, rows.names, normalize_name=normalize_name)
    changed = {}
    for field in rows:
        new = sigma_type_from_arrow(field.type)
        if field.name in stored and new is not None and new != stored[field.name]:
            changed[field.name] = (stored[field.name], new)
    return changed
