"""Where the time of one `sigma-load run` goes: the phases of the run, timed from inside.

Runs the CLI in this process, with timers wrapped around the steps (query run, download,
staging, dlt's extract / normalize / load, DuckDB's insert) and the process's RSS sampled
every 10 ms, and writes them as JSON: each step with its peak RSS. The caller times the
whole process, so interpreter start and teardown are what is left over.

    python -m benchmarks.profile_run OUT.json run --project-dir … --pipeline-name …
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_STARTED = time.perf_counter()
_spans: list[tuple[str, float, float, str]] = []
_rss: list[tuple[float, int]] = []  # (seconds since start, RSS in KiB)
_cpu: list[tuple[float, float]] = []  # (seconds since start, process CPU seconds so far)
SAMPLE_SECONDS = 0.01
STAGING = "staging (one pass: infer, parse, parquet)"
DUCKDB_INSERT = "DuckDB insert of the staged parquet (dlt's copy job)"


def _sample(stop: threading.Event) -> None:
    """Sample the process's RSS and CPU time (all threads) every SAMPLE_SECONDS."""
    page_kib = resource.getpagesize() // 1024
    with open("/proc/self/statm") as statm:
        while not stop.is_set():
            statm.seek(0)
            resident_pages = int(statm.read().split()[1])
            usage = resource.getrusage(resource.RUSAGE_SELF)
            at = time.perf_counter() - _STARTED
            _rss.append((at, resident_pages * page_kib))
            _cpu.append((at, usage.ru_utime + usage.ru_stime))
            stop.wait(SAMPLE_SECONDS)


def _peak_mib(start: float, end: float) -> float | None:
    """The highest RSS sampled between `start` and `end`; None for a step too short to sample."""
    inside = [kib for at, kib in _rss if start <= at <= end]
    return max(inside) / 1024 if inside else None


def _cores_busy(start: float, end: float) -> float | None:
    """CPU seconds per wall second between `start` and `end`: how many cores the step kept busy."""
    inside = [(at, cpu) for at, cpu in _cpu if start <= at <= end]
    if len(inside) < 2 or inside[-1][0] - inside[0][0] < 5 * SAMPLE_SECONDS:
        return None
    (first_at, first_cpu), (last_at, last_cpu) = inside[0], inside[-1]
    return (last_cpu - first_cpu) / (last_at - first_at)


def _timed(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            thread = threading.current_thread().name
            _spans.append((label, started - _STARTED, time.perf_counter() - _STARTED, thread))

    setattr(owner, name, wrapper)


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    import sigma_source.cli

    imported_cli = time.perf_counter() - _STARTED
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob
    from dlt.pipeline.pipeline import Pipeline

    import sigma_source.arrow_csv
    import sigma_source.client
    import sigma_source.loader
    import sigma_source.source

    imported = time.perf_counter() - _STARTED
    _timed(sigma_source.client.SigmaClient, "wait", "query run (poll until finished)")
    _timed(sigma_source.client.SigmaClient, "download_file", "download")
    # A pass of its own only when the one pass's first block guessed wrong, or for a later
    # window of a query: absent from an ordinary first load.
    _timed(sigma_source.arrow_csv, "resolve_file_types", "type inference pass")
    _timed(sigma_source.source, "stage_result", STAGING)
    _timed(DuckDbCopyJob, "run", DUCKDB_INSERT)
    _timed(sigma_source.loader, "prepare", "prepare (pipeline, pending loads, source)")
    for step in ("extract", "normalize", "load"):
        _timed(Pipeline, step, f"dlt {step}")
    sys.argv = ["sigma-load", *argv]
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(stop,), daemon=True)
    sampler.start()
    code = 0
    try:
        sigma_source.cli.main()
    except SystemExit as exit_:
        code = exit_.code or 0
    stop.set()
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "imports_cli_seconds": imported_cli,
        "imports_seconds": imported,
        "finished_seconds": time.perf_counter() - _STARTED,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "spans": [
            {
                "step": label,
                "start": start,
                "end": end,
                "thread": thread,
                "peak_mib": _peak_mib(start, end),
                "cores_busy": _cores_busy(start, end),
            }
            for label, start, end, thread in _spans
        ],
    }
    with open(out, "w") as file:
        json.dump(report, file)
    sys.exit(code)


if __name__ == "__main__":
    main()
