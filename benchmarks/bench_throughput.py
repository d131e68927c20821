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
    with_file_size,
)

SIGMA_LOAD = "sigma-load run"
SIGMA_LOAD_REPEAT = "sigma-load run, repeat load (types stored)"
LIMIT = "limit (GET + DuckDB read_csv)"
NAIVE = "naive (GET + csv.DictReader → dlt)"
SIGMA_LOAD_WHOLE = "sigma-load run, file parsed once whole"
# A link far slower than loopback, on which the download takes most of a run.
SLOW_LINK_BYTES_PER_SECOND = 40 << 20
# The CLI with parsing while downloading turned off.
_NEVER_FOLLOW = [
    PYTHON,
    "-c",
    "import sigma_source.source as source; source.FOLLOW_AFTER_SECONDS = None; "
    "from sigma_source.cli import main; main()",
]
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


def measure_slow_link(emulator: EmulatorProcess, rows: int, repeat: int) -> Throughput:
    """sigma-load against the limit when the result file arrives at SLOW_LINK_BYTES_PER_SECOND.

    Stripe's files host is far from a loopback socket: there the download, not the parse,
    takes most of a run. sigma-load parses a result still downloading after
    `FOLLOW_AFTER_SECONDS` as it arrives; the same run with that turned off (the file
    parsed once whole) shows what that is worth.
    """
    log(f"throughput at {rows:,} rows over a {SLOW_LINK_BYTES_PER_SECOND >> 20} MiB/s link")
    file_url = emulator.file_url(emulator.run_query(WHOLE_TABLE))
    emulator.add_fault(
        {
            "kind": "slow",
            "bytes_per_second": SLOW_LINK_BYTES_PER_SECOND,
            "path": "/contents$",
            "times": None,
        }
    )
    try:
        series = repeat_interleaved(
            {
                SIGMA_LOAD: lambda: _sigma_load(emulator, WHOLE_TABLE, rows),
                SIGMA_LOAD_WHOLE: lambda: _sigma_load(
                    emulator, WHOLE_TABLE, rows, launcher=_NEVER_FOLLOW, label=SIGMA_LOAD_WHOLE
                ),
                LIMIT: lambda: _baseline("limit", file_url),
            },
            repeat,
        )
    finally:
        emulator.clear_faults()
    return Throughput(rows, series)


def _sigma_load(
    emulator: EmulatorProcess,
    sql: str,
    rows: int,
    *,
    repeat_load: bool = False,
    launcher: list[str] | None = None,
    label: str | None = None,
) -> Measurement:
    """One timed run; with `repeat_load`, after an untimed first load of the same query."""
    loads = 2 if repeat_load else 1  # the query appends: the repeat load adds its rows again
    label = label or (SIGMA_LOAD_REPEAT if repeat_load else SIGMA_LOAD)
    return run_sigma_load(
        emulator.url,
        {TABLE: sql},
        label=f"{label} ({rows:,})",
        verify=lambda duckdb_file: _check_rows(duckdb_file, f"sigma.{TABLE}", rows * loads),
        untimed_runs=loads - 1,
        launcher=launcher,
    )


def _baseline(name: str, file_url: str) -> Measurement:
    with scratch_dir(name) as work:
        command = [PYTHON, "-m", "benchmarks.baselines", name, file_url, str(work)]
        measurement = measure(command, cwd=Path(__file__).resolve().parent.parent, label=name)
        return with_file_size(measurement, work / f"{name}.duckdb")


def _check_rows(duckdb_file: Path, table: str, expected: int) -> None:
    import duckdb

    with duckdb.connect(str(duckdb_file), read_only=True) as con:
        (count,) = con.execute(f"select count(*) from {table}").fetchone()
    if count != expected:
        raise AssertionError(f"{duckdb_file}: {table} holds {count:,} rows, not {expected:,}")
