"""The emulator's data: an in-memory DuckDB holding the Sigma tables, and the SQL runner that
writes query results as Sigma's CSV.

DuckDB is sandboxed to the emulator's own temp folder, so a query cannot read or write any other
file on the machine: the SQL a client sends is as contained as it is on Stripe.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sigma_source.emulator import data

if TYPE_CHECKING:
    import duckdb

# Sigma's CSV: header row, RFC 4180 quoting, empty field = NULL, timestamps to the millisecond.
_CSV_OPTIONS = "HEADER, DELIMITER ',', QUOTE '\"', TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S.%g'"


class QuerySQLError(Exception):
    """The SQL of a query run cannot run; the message is one line, as Sigma reports it."""


class Warehouse:
    """Synthetic Sigma tables in DuckDB: generated from (seed, scale), queried by runs."""

    def __init__(self, *, seed: int, scale: int, window: data.DataWindow, workdir: Path) -> None:
        import duckdb

        self.seed = seed
        self.workdir = workdir
        spill = workdir / "duckdb-spill"
        spill.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(config={"temp_directory": str(spill)})
        self._con.execute(f"SET allowed_directories = ['{workdir}/']")
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")
        self.initial_counts = data.generate(self._con, seed=seed, scale=scale, window=window)
        self._next_index = dict(self.initial_counts)
        self._append_lock = threading.Lock()
        self._running: set[duckdb.DuckDBPyConnection] = set()
        self._running_lock = threading.Lock()

    def execute(self, sql: str) -> list[tuple]:
        """Run any SQL on the tables (tests use it to compute expected results)."""
        with self._con.cursor() as cursor:
            return cursor.execute(sql).fetchall()

    def write_csv(self, sql: str, path: Path) -> None:
        """Run one SELECT and write its result to `path` as Sigma's CSV."""
        with self._con.cursor() as cursor:
            with self._running_lock:
                self._running.add(cursor)
            try:
                query = _single_select(cursor, sql)
                cursor.execute(f"COPY ({query}) TO '{path}' ({_CSV_OPTIONS})")
            except QuerySQLError:
                raise
            except Exception as error:  # DuckDB raises many classes; all mean "bad query"
                raise QuerySQLError(_one_line(str(error))) from error
            finally:
                with self._running_lock:
                    self._running.discard(cursor)

    def add_rows(self, table: str, n: int) -> None:
        """Append `n` rows to `table`, all later than its existing rows and not in the future."""
        if n < 1:
            raise ValueError(f"add_rows needs a positive row count, not {n}")
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
        return {
            table: self.execute(f'SELECT count(*) FROM "{table}"')[0][0]
            for table in self._next_index
        }

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
    """The query text if `sql` is exactly one SELECT; Sigma runs nothing else."""
    import duckdb

    statements = cursor.extract_statements(sql)
    if len(statements) != 1:
        raise QuerySQLError(f"expected exactly one SQL statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QuerySQLError("only SELECT statements can run in Sigma")
    return statements[0].query


def _one_line(message: str) -> str:
    """DuckDB's message without its multi-line caret diagram, on one line."""
    message = message.split("\n\nLINE ")[0]
    return " ".join(message.split())
