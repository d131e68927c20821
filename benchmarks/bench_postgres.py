"""Postgres: `sigma-load run --destination postgres` against `psql \\copy` of the same CSV.

The baseline downloads the file with a plain GET (as sigma-load does) and copies it into an
equivalent table (the same columns and types) with psql's `\\copy`. Each run gets a fresh
schema, dropped afterwards. Needs the PostgreSQL server of the test suite (127.0.0.1:5432,
database `test`, trust authentication) and `psql`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from benchmarks.harness import (
    PYTHON,
    TABLE,
    EmulatorProcess,
    Measurement,
    Series,
    log,
    measure,
    repeat_interleaved,
    run_sigma_load,
    scratch_dir,
)

# dlt insists on a password even where the server trusts the client.
DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"
SIGMA_LOAD = "sigma-load run --destination postgres"
COPY = "GET + psql \\copy"
_POSTGRES_TYPES = {
    "varchar": "text",
    "bigint": "bigint",
    "double": "double precision",
    "boolean": "boolean",
    "timestamp": "timestamp with time zone",
    "date": "date",
}
_schemas = count()


@dataclass
class PostgresLoad:
    rows: int
    series: dict[str, Series]

    @property
    def ratio_to_copy(self) -> float:
        return self.series[COPY].median_seconds / self.series[SIGMA_LOAD].median_seconds


def postgres_available() -> bool:
    if shutil.which("psql") is None:
        return False
    done = subprocess.run(["psql", DSN, "-c", "select 1"], capture_output=True, check=False)
    return done.returncode == 0


def measure_postgres(emulator: EmulatorProcess, rows: int, repeat: int) -> PostgresLoad:
    log(f"postgres at {rows:,} rows ({repeat} runs each)")
    sql = f"select * from {TABLE}"
    file_url = emulator.file_url(emulator.run_query(sql))
    series = repeat_interleaved(
        {
            SIGMA_LOAD: lambda: _sigma_load(emulator, sql),
            COPY: lambda: _psql_copy(file_url),
        },
        repeat,
    )
    return PostgresLoad(rows, series)


def _sigma_load(emulator: EmulatorProcess, sql: str) -> Measurement:
    schema = f"sigma_bench_{next(_schemas)}"
    try:
        return run_sigma_load(
            emulator.url,
            {TABLE: sql},
            label=SIGMA_LOAD,
            extra_args=["--destination", "postgres", "--dataset", schema],
            env={"DESTINATION__POSTGRES__CREDENTIALS": DSN},
        )
    finally:
        _psql(f"drop schema if exists {schema} cascade")


def _psql_copy(file_url: str) -> Measurement:
    schema = f"sigma_bench_copy_{next(_schemas)}"
    _psql(f"create schema {schema}; create table {schema}.{TABLE} ({_columns()})")
    try:
        with scratch_dir("copy") as work:
            command = [PYTHON, "-m", "benchmarks.baselines", "psql-copy", file_url, str(work)]
            command += ["--dsn", DSN, "--table", f"{schema}.{TABLE}"]
            return measure(command, cwd=Path(__file__).resolve().parent.parent, label=COPY)
    finally:
        _psql(f"drop schema if exists {schema} cascade")


def _columns() -> str:
    from sigma_source.emulator.tables import TABLES

    return ", ".join(
        f'"{column.name}" {_POSTGRES_TYPES.get(column.sigma_type, "numeric")}'
        for column in TABLES[TABLE].columns
    )


def _psql(statement: str) -> None:
    subprocess.run(
        ["psql", DSN, "-v", "ON_ERROR_STOP=1", "-q", "-c", statement],
        check=True,
        capture_output=True,
    )
