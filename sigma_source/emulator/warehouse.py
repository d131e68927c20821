"""The emulator's data: an in-memory DuckDB holding the Sigma tables, and the SQL runner that
writes query results as Sigma's CSV.

DuckDB is sandboxed to the emulator's own temp folder, so a query cannot read or write any other
file on the machine: the SQL a client sends is as contained as it is on Stripe.

A table's rows are generated the first time SQL mentions it, and DuckDB's memory is capped (it
spills to the temp folder beyond): an emulator serving 5M balance transactions then neither
generates the tables a test never reads nor holds gigabytes of RAM.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from sigma_source.emulator import data

if TYPE_CHECKING:
    import duckdb

# Sigma's CSV: header row, RFC 4180 quoting, empty field = NULL, timestamps to the millisecond.
# An empty string is an empty field too (Sigma's CSV cannot tell it from NULL): DuckDB would
# write it as `""`, so `_empty_strings_as_null` turns it into NULL first.
_CSV_OPTIONS = "HEADER, DELIMITER ',', QUOTE '\"', TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S.%g'"
# DuckDB's memory for the tables; beyond it pages spill to the temp folder. Measured at 5M
# rows: generating five tables took 15 s within 1 GB, 23 s (and 3.7 GB) without a limit; a
# database file instead of memory took 27 s.
_MEMORY_LIMIT = "1GB"
# Tables are generated side by side: a single INSERT does not keep both cores busy.
_GENERATE_THREADS = 3


class QuerySQLError(Exception):
    """The SQL of a query run cannot run; the message is one line, as Sigma reports it."""


class Warehouse:
    """Synthetic Sigma tables in DuckDB: generated from (seed, scale), queried by runs.

    Set `reuse_results` to answer SQL that already ran, on data that has not changed since,
    with a link to the earlier result file instead of running it again: benchmarks use it so
    that what they time is the client, not the emulator. It is off by default, as SQL with
    `now()` or `random()` would otherwise repeat itself.
    """

    def __init__(self, *, seed: int, scale: int, window: data.DataWindow, workdir: Path) -> None:
        import duckdb

        self.seed = seed
        self.workdir = workdir
        self.window = window
        self.reuse_results = False
        spill = workdir / "duckdb-spill"
        spill.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(
            config={"temp_directory": str(spill), "memory_limit": _MEMORY_LIMIT}
        )
        self._con.execute(f"SET allowed_directories = ['{workdir}/']")
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")
        self.initial_counts = data.row_counts(scale)
        data.create_tables(self._con)
        self._unfilled = set(self.initial_counts)
        self._fill_lock = threading.Lock()
        self._next_index = dict(self.initial_counts)
        self._append_lock = threading.Lock()
        self._results: dict[str, Path] = {}
        self._results_lock = threading.Lock()
        self._running: set[duckdb.DuckDBPyConnection] = set()
        self._running_lock = threading.Lock()

    @property
    def generated_tables(self) -> frozenset[str]:
        """The tables whose rows exist; the others are generated when SQL first names them."""
        return frozenset(self.initial_counts) - self._unfilled

    def execute(self, sql: str) -> list[tuple]:
        """Run any SQL on the tables (tests use it to compute expected results)."""
        self._fill_tables_in(sql)
        with self._con.cursor() as cursor:
            return cursor.execute(sql).fetchall()

    def write_csv(self, sql: str, path: Path) -> None:
        """Run one SELECT and write its result to `path` as Sigma's CSV."""
        if self._reuse_result(sql, path):
            return
        self._fill_tables_in(sql)
        with self._con.cursor() as cursor:
            with self._running_lock:
                self._running.add(cursor)
            try:
                query = _empty_strings_as_null(cursor, _single_select(cursor, sql))
                cursor.execute(f"COPY (\n{query}\n) TO '{path}' ({_CSV_OPTIONS})")
            except QuerySQLError:
                raise
            except Exception as error:  # DuckDB raises many classes; all mean "bad query"
                raise QuerySQLError(_one_line(str(error))) from error
            finally:
                with self._running_lock:
                    self._running.discard(cursor)
        if self.reuse_results:
            with self._results_lock:
                self._results[sql] = path

    def _reuse_result(self, sql: str, path: Path) -> bool:
        if not self.reuse_results:
            return False
        with self._results_lock:
            earlier = self._results.get(sql)
        if earlier is None or not earlier.exists():
            return False
        try:
            os.link(earlier, path)
        except OSError:
            shutil.copyfile(earlier, path)
        return True

    def add_rows(self, table: str, n: int) -> None:
        """Append `n` rows to `table`, all later than its existing rows and not in the future."""
        if n < 1:
            raise ValueError(f"add_rows needs a positive row count, not {n}")
        if table in self._unfilled:
            self._fill([table])
        with self._results_lock:
            self._results.clear()  # the data changed: no earlier result holds any more
        with self._append_lock, self._con.cursor() as cursor:
            window = data.later_window(cursor, table, n)
            data.insert_rows(
                cursor,
                table=table,
                seed=self.seed,
                counts=self.initial_counts,
                first_index=self._next_index[table],
                n=n,
                window=window,
            )
            self._next_index[table] += n

    def row_counts(self) -> dict[str, int]:
        # A table not generated yet will hold exactly its initial rows: no need to make them.
        return {
            table: self._next_index[table]
            if table in self._unfilled
            else self.execute(f'SELECT count(*) FROM "{table}"')[0][0]
            for table in self._next_index
        }

    def _fill_tables_in(self, sql: str) -> None:
        """Generate the rows of every table `sql` may read that has none yet.

        Every word of the SQL that names a table counts, even inside a string: generating a
        table too many costs time, one too few gives a wrong answer.
        """
        if not self._unfilled:
            return
        words = set(re.findall(r"[a-z_][a-z0-9_]*", sql.lower()))
        self._fill(words & self._unfilled)

    def _fill(self, tables: set[str] | list[str]) -> None:
        with self._fill_lock:
            todo = [table for table in sorted(tables) if table in self._unfilled]
            if not todo:
                return

            def fill(table: str) -> None:
                with self._con.cursor() as cursor:
                    data.fill_table(
                        cursor,
                        table,
                        seed=self.seed,
                        counts=self.initial_counts,
                        window=self.window,
                    )

            workers = min(_GENERATE_THREADS, len(todo))
            with ThreadPoolExecutor(workers, thread_name_prefix="sigma-data") as pool:
                list(pool.map(fill, todo))
            self._unfilled.difference_update(todo)

    def interrupt(self) -> None:
        """Stop the queries still running (the emulator is stopping)."""
        with self._running_lock:
            running = list(self._running)
        for cursor in running:
            with contextlib.suppress(Exception):  # it may have finished meanwhile
                cursor.interrupt()

    def close(self) -> None:
        self._con.close()


def _single_select(cursor: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The query text if `sql` is exactly one SELECT; Sigma runs nothing else.

    Without its closing `;`, and to be wrapped on lines of its own (it may end in a comment).
    """
    import duckdb

    statements = cursor.extract_statements(sql)
    if len(statements) != 1:
        raise QuerySQLError(f"expected exactly one SQL statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QuerySQLError("only SELECT statements can run in Sigma")
    return statements[0].query.strip().rstrip(";")


def _empty_strings_as_null(cursor: duckdb.DuckDBPyConnection, query: str) -> str:
    """`query` with each of its text columns' empty strings made NULL.

    Sigma writes an empty string and NULL alike, as an empty field; DuckDB would quote an
    empty string (`""`). The columns keep their names (DuckDB's, with a duplicate renamed
    `name_1` as COPY itself names it), order, types and the rows' order.
    """
    columns = cursor.execute(f"DESCRIBE SELECT * FROM (\n{query}\n)").fetchall()
    texts = [_quoted(name) for name, column_type, *_ in columns if column_type == "VARCHAR"]
    if not texts:
        return query
    nullified = ", ".join(f"NULLIF({name}, '') AS {name}" for name in texts)
    return f"SELECT * REPLACE ({nullified}) FROM (\n{query}\n)"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one_line(message: str) -> str:
    """DuckDB's message without its multi-line caret diagram, on one line."""
    message = message.split("\n\nLINE ")[0]
    return " ".join(message.split())
