"""CLI start: wall time of `sigma-load --help` (the imports a command line pays up front)."""

from __future__ import annotations

from benchmarks.harness import Series, log, measure, sigma_load_command

HELP = "sigma-load --help"


def measure_help(repeat: int) -> Series:
    log(f"cli start ({repeat} runs)")
    series = Series(HELP)
    for _ in range(repeat):
        series.runs.append(measure(sigma_load_command("--help"), label=HELP))
    return series
