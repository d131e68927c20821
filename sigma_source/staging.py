"""Stage a query's results as one parquet file on disk, checked whole before dlt sees a row.

Parsing every result file of a query before handing anything to dlt is what makes a query's
load all or nothing: a type violation in the last line must not leave the first million rows
loaded. The staged file is the very file dlt loads: typed columns, the lineage column and
dlt's `_dlt_load_id`, in the order dlt's table has them. dlt imports it into its load package
as it is (a hard link), so the rows are encoded once, here, in the worker thread that ran the
query, instead of again on dlt's main thread. Memory stays bounded by one row group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sigma_source import arrow_csv
from sigma_source.errors import ConfigError, CSVTypeError
from sigma_source.lineage import RUN_ID_COLUMN
from sigma_source.project import Query
from sigma_source.sigma_types import stored_sigma_types

DLT_LOAD_ID_COLUMN = "_dlt_load_id"
# Rows per parquet row group. Large enough for good compression and few, cheap row groups;
# small enough that the buffered group stays a few tens of MB, and that DuckDB, which loads
# one row group per thread, has several to share among its threads.
ROW_GROUP_ROWS = 128 * 1024
# Measured on 1M balance transactions: snappy costs little more CPU than no compression and
# loads into DuckDB as fast, in a file 20% smaller (which matters for BigQuery uploads).
PARQUET_COMPRESSION = "snappy"
# Dictionary encoding only for the constant lineage columns. For the data columns it cost a
# third of the encoding CPU (ids and amounts overflow the dictionary and fall back to plain
# anyway) and left the snappy-compressed file the same size and as fast to load.
_DICTIONARY_COLUMNS = [RUN_ID_COLUMN, DLT_LOAD_ID_COLUMN]
# No column statistics (min / max / null count per page and row group): nothing filters on
# the staged file, which is read once, whole, by the load. Computing them (min / max of every
# string) was 15% of the encoding CPU, and DuckDB loads the file as fast without them.
_WRITE_STATISTICS = False

_CURSOR_TYPES = ("timestamp", "date")


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


class StagingFile:
    """The parquet file that collects every row of one query (all its windows) for dlt.

    `load_id` is dlt's id of the load package the file goes into, written into every row as
    `_dlt_load_id` (None: no such column, as when dlt is not configured to add it). The file
    is complete, and may be handed to dlt, only after `close()`.
    """

    def __init__(self, path: Path, *, load_id: str | None) -> None:
        self.path = path
        self.row_count = 0
        self._load_id = load_id
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
        if self._load_id is not None:
            batch = batch.append_column(
                pa.field(DLT_LOAD_ID_COLUMN, _LOAD_ID_TYPE, nullable=False),
                _constant_dictionary(self._load_id, batch.num_rows),
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
        # Hand what parsing and encoding used back to the system now: the load comes next,
        # and the allocator would otherwise keep it (~130 MB) through the load's own peak.
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
                compression=PARQUET_COMPRESSION,
                use_dictionary=_DICTIONARY_COLUMNS,
                write_statistics=_WRITE_STATISTICS,
            )
        self._writer.write_table(group, row_group_size=group.num_rows)
        self.row_count += group.num_rows


# dlt adds `_dlt_load_id` to Arrow rows as a one-value dictionary with int8 indices: the
# same here, so the staged file's schema is the one dlt would have written.
_LOAD_ID_TYPE = pa.dictionary(pa.int8(), pa.string())


def _constant_dictionary(value: str, rows: int) -> pa.DictionaryArray:
    indices = pa.repeat(pa.scalar(0, pa.int8()), rows)
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], pa.string()))


def stage_result(
    query: Query,
    csv_path: Path,
    staging: StagingFile,
    *,
    query_run_id: str | None,
    stored: StoredColumns | None = None,
    earlier_types: Mapping[str, str] | None = None,
) -> StagedResult:
    """Parse `csv_path` into typed rows (plus the lineage column) appended to `staging`.

    `earlier_types` are the types of an earlier window of the same query in this run: every
    window of one run must load with the same column types.

    Columns no rule types are inferred by a pass over the whole file. That pass runs on a
    helper thread while the rows are already parsed with the types the first block suggests
    (a guess that holds for nearly every result): if the pass ends with other types, the
    rows are parsed again with those. Either way the staged rows are exactly those a parse
    after the pass would give. The CSV is parsed on one more thread while this one encodes
    parquet, so both cores work.
    """
    typing = _BackgroundTyping(
        lambda on_guess: _column_types(query, csv_path, stored, earlier_types or {}, on_guess)
    )
    guess = typing.first_answer()
    if guess is None or not staging.is_empty:
        return _stage_rows(query, csv_path, staging, typing.result(), query_run_id)
    try:
        staged: StagedResult | Exception = _stage_rows(
            query, csv_path, staging, guess, query_run_id, give_up=lambda: typing.refutes(guess)
        )
    except _GuessRefuted as refuted:
        staged = refuted
    except Exception as error:  # raised again below if the guess holds: then it is the answer
        staged = error
    if typing.result() == guess:
        if isinstance(staged, Exception):
            raise staged
        return staged
    staging.reset()
    return _stage_rows(query, csv_path, staging, typing.result(), query_run_id)


class _GuessRefuted(Exception):
    """The inference pass ended with other types than the guess the rows were parsed with."""


class _BackgroundTyping:
    """Resolves a result file's column types on a helper thread, sharing its first guess."""

    def __init__(self, resolve: Callable[[Callable[[arrow_csv.ResolvedTypes], None]], Any]):
        self._guess: arrow_csv.ResolvedTypes | None = None
        self._result: arrow_csv.ResolvedTypes | None = None
        self._error: BaseException | None = None
        self._answered = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(resolve,), name="sigma-infer", daemon=True
        )
        self._thread.start()

    def _run(self, resolve: Callable[[Callable[[arrow_csv.ResolvedTypes], None]], Any]) -> None:
        try:
            self._result = resolve(self._guessed)
        except BaseException as error:  # handed to the caller by result()
            self._error = error
        finally:
            self._done.set()
            self._answered.set()

    def _guessed(self, guess: arrow_csv.ResolvedTypes) -> None:
        self._guess = guess
        self._answered.set()

    def first_answer(self) -> arrow_csv.ResolvedTypes | None:
        """The guess from the first block; None when the final answer came first."""
        self._answered.wait()
        return None if self._done.is_set() else self._guess

    def result(self) -> arrow_csv.ResolvedTypes:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def refutes(self, guess: arrow_csv.ResolvedTypes) -> bool:
        """Whether the pass has already ended, with other types or an error."""
        return self._done.is_set() and (self._error is not None or self._result != guess)


def _stage_rows(
    query: Query,
    csv_path: Path,
    staging: StagingFile,
    resolved: arrow_csv.ResolvedTypes,
    query_run_id: str | None,
    *,
    give_up: Callable[[], bool] = lambda: False,
) -> StagedResult:
    cursor = query.config.cursor
    _check_cursor(query, cursor, resolved.types)
    schema = _target_schema(query, resolved.schema)
    row_count = 0
    max_cursor: Any = None
    batches = arrow_csv.read_batches(csv_path, resolved, query_name=query.name)
    with closing(arrow_csv.prefetched(batches)) as parsed:
        for batch in parsed:
            if give_up():
                raise _GuessRefuted
            batch = _with_lineage(batch, query_run_id, schema, query)
            staging.write(batch)
            row_count += batch.num_rows
            if cursor and batch.num_rows:
                max_cursor = _max(max_cursor, pc.max(batch.column(cursor)).as_py())
    return StagedResult(schema, dict(resolved.types), row_count, _as_utc_datetime(max_cursor))


def _column_types(
    query: Query,
    csv_path: Path,
    stored: StoredColumns | None,
    earlier: Mapping[str, str],
    on_guess: Callable[[arrow_csv.ResolvedTypes], None] | None = None,
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
        on_guess=on_guess,
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
