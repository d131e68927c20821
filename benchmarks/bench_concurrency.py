"""Concurrency: 8 queries whose runs each take 3 s on Sigma, against one such query.

Both are `sigma-load run` end to end. The runs wait on Sigma concurrently, up to
`max_concurrent_runs` at once: measured with 8 (so all eight run together) and with the
default, 4 (two rounds).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.harness import (
    TABLE,
    EmulatorProcess,
    Measurement,
    Series,
    log,
    repeat_interleaved,
    run_sigma_load,
)

RUN_SECONDS = 3.0
QUERIES = 8
ONE = "1 query"
EIGHT = f"{QUERIES} queries, max_concurrent_runs=8"
EIGHT_DEFAULT = f"{QUERIES} queries, max_concurrent_runs=4 (default)"


def _query(day: int) -> str:
    """About 8,000 rows: three days of the emulator's year of balance transactions."""
    return (
        f"select * from {TABLE} where created >= timestamp '2024-02-{day:02d}' "
        f"and created < timestamp '2024-02-{day + 3:02d}'"
    )


QUERY_SET = {f"q{index}": _query(1 + 3 * index) for index in range(QUERIES)}


@dataclass
class Concurrency:
    series: dict[str, Series]

    def ratio(self, name: str) -> float:
        return self.series[name].median_seconds / self.series[ONE].median_seconds


def measure_concurrency(emulator: EmulatorProcess, repeat: int) -> Concurrency:
    log(f"concurrency: {QUERIES} queries of {RUN_SECONDS:g} s against one ({repeat} runs each)")
    for sql in QUERY_SET.values():
        emulator.run_query(sql)  # warm the emulator's results before run_seconds applies
    emulator.settings(run_seconds=RUN_SECONDS)
    try:
        series = repeat_interleaved(
            {
                ONE: lambda: _run(emulator, {"q0": QUERY_SET["q0"]}, ONE, 1),
                EIGHT: lambda: _run(emulator, QUERY_SET, EIGHT, QUERIES),
                EIGHT_DEFAULT: lambda: _run(emulator, QUERY_SET, EIGHT_DEFAULT, 4),
            },
            repeat,
        )
    finally:
        emulator.settings(run_seconds=0)
    return Concurrency(series)


def _run(
    emulator: EmulatorProcess, queries: dict[str, str], label: str, concurrent_runs: int
) -> Measurement:
    return run_sigma_load(
        emulator.url, queries, label=label, settings={"max_concurrent_runs": concurrent_runs}
    )
