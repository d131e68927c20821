"""Throughput and memory: `sigma-load run` of a whole balance_transactions result into DuckDB.

`sigma-load run` is timed twice: a first load into a fresh pipeline (every column's type
inferred by a pass over the file) and a repeat load into a pipeline that loaded the same
query once before (types stored in dlt's schema: no inference pass), as a daily refresh runs.

Against, in the same run and on the same file:
- the limit: plain streaming GET + DuckDB `CREATE TABLE … AS SELECT * FROM read_csv(…)`;
- naive: the same GET + `csv.DictReader` rows into a dlt pipeline (on a 100k-row slice).

Each contender is a process of its own, timed from start to exit (interpreter start and
imports included: users pay them too) with its peak RSS. The emulator has run every query
once before the clock starts and serves the same file again, so its own work is not timed.
"""

from __future__ import annotations

from dataclasses import dataclass
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

SIGMA_LOAD = "sigma-load run"
SIGMA_LOAD_REPEAT = "sigma-load run, repeat load (types stored)"
LIMIT = "limit (GET + DuckDB read_csv)"
NAIVE = "naive (GET + csv.DictReader → dlt)"
NAIVE_ROWS = 100_000
WHOLE_TABLE = f"select * from {TABLE}"
NAIVE_SLICE = f"select * from {TABLE} limit {NAIVE_ROWS}"


@dataclass
class Throughput:
    rows: int
    series: dict[str, Series]

    def rows_per_second(self, name: str) -> float:
        return self.rows / self.series[name].median_seconds

    @property
    def ratio_to_limit(self) -> float:
        """Speed as a fraction of the limit's (1.0 = as fast as DuckDB loading the CSV)."""
        return self.ratio(SIGMA_LOAD)

    def ratio(self, name: str) -> float:
        """The speed of contender `name` as a fraction of the limit's."""
        return self.series[LIMIT].median_seconds / self.series[name].median_seconds


def measure_throughput(emulator: EmulatorProcess, rows: int, repeat: int) -> Throughput:
    """sigma-load (first and repeat load) against the limit on the emulator's whole table."""
    log(f"throughput at {rows:,} rows ({repeat} runs each)")
    file_url = emulator.file_url(emulator.run_query(WHOLE_TABLE))  # also warms the emulator
    series = repeat_interleaved(
        {
            SIGMA_LOAD: lambda: _sigma_load(emulator, WHOLE_TABLE, rows),
            SIGMA_LOAD_REPEAT: lambda: _sigma_load(emulator, WHOLE_TABLE, rows, repeat_load=True),
            LIMIT: lambda: _baseline("limit", file_url),
        },
        repeat,
    )
    return Throughput(rows, series)


def measure_naive(emulator: EmulatorProcess, repeat: int) -> Throughput:
    """The naive loader, and sigma-load for reference, on a 100k-row slice."""
    log(f"naive loader at {NAIVE_ROWS:,} rows ({repeat} runs each)")
    file_url = emulator.file_url(emulator.run_query(NAIVE_SLICE))
    series = repeat_interleaved(
        {
            SIGMA_LOAD: lambda: _sigma_load(emulator, NAIVE_SLICE, NAIVE_ROWS),
            NAIVE: lambda: _baseline("naive", file_url),
        },
        repeat,
    )
    return Throughput(NAIVE_ROWS, series)


def _sigma_load(
    emulator: EmulatorProcess, sql: str, rows: int, *, repeat_load: bool = False
) -> Measurement:
    """One timed run; with `repeat_load`, after an untimed first load of the same query."""
    loads = 2 if repeat_load else 1  # the query appends: the repeat load adds its rows again
    return run_sigma_load(
        emulator.url,
        {TABLE: sql},
        label=f"{SIGMA_LOAD_REPEAT if repeat_load else SIGMA_LOAD} ({rows:,})",
        verify=lambda duckdb_file: _check_rows(duckdb_file, f"sigma.{TABLE}", rows * loads),
        untimed_runs=loads - 1,
    )


def _baseline(name: str, file_url: str) -> Measurement:
    with scratch_dir(name) as work:
        command = [PYTHON, "-m", "benchmarks.baselines", name, file_url, str(work)]
        return measure(command, cwd=Path(__file__).resolve().parent.parent, label=name)


def _check_rows(duckdb_file: Path, table: str, expected: int) -> None:
    import duckdb

    with duckdb.connect(str(duckdb_file), read_only=True) as con:
        (count,) = con.execute(f"select count(*) from {table}").fetchone()
    if count != expected:
        raise AssertionError(f"{duckdb_file}: {table} holds {count:,} rows, not {expected:,}")
