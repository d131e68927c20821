"""Benchmark: a Sigma result CSV → typed Arrow, against pyarrow's and DuckDB's own readers.

The file is `select * from balance_transactions` as the emulator serves it (seed 1): Sigma's
CSV dialect, 15 columns (bigint amounts, UTC timestamps, a sparse double, quoted text with
commas and newlines). Contenders, each run in its own subprocess so its peak RSS is its own:

- sigma-load, types known: `read_batches` with every type resolved (a table loaded before);
- sigma-load, infer while reading: `InferringRead`, the one pass of a first load (types
  inferred as the rows are parsed);
- pyarrow read_csv: pyarrow's multi-threaded inferring reader, whole table in memory
  (`newlines_in_values=True`, which this file needs);
- duckdb read_csv: `create table … as select * from read_csv(…)` in an in-memory DuckDB.

Timing covers the parse only (not interpreter start or imports). Peak RSS is the process's
`ru_maxrss`; "over base" subtracts the RSS after imports. Ratios compare median times with
the baselines measured in the same run (> 1 means faster than the baseline).

    python -m benchmarks.bench_csv_parse                      # 1M rows, 5 repetitions
    python -m benchmarks.bench_csv_parse --rows 1000000 2000000 3000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEED = 1
TABLE = "balance_transactions"
PYARROW = "pyarrow read_csv (inferring)"
DUCKDB = "duckdb read_csv → table"
INFER_AND_READ = "sigma-load, infer while reading"
CONTENDERS = ("sigma-load, types known", INFER_AND_READ, PYARROW, DUCKDB)


# --- Contenders (run inside the worker subprocess) ----------------------------------------


def _sigma_types_known(path: Path) -> int:
    from sigma_source.arrow_csv import read_batches
    from sigma_source.emulator.tables import TABLES

    types = {column.name: column.sigma_type for column in TABLES[TABLE].columns}
    return sum(batch.num_rows for batch in read_batches(path, types, query_name=TABLE))


def _sigma_infer_and_read(path: Path) -> int:
    from sigma_source.arrow_csv import InferringRead

    return sum(batch.num_rows for batch in InferringRead(path, query_name=TABLE))


def _pyarrow_read_csv(path: Path) -> int:
    import pyarrow.csv as pa_csv

    options = pa_csv.ParseOptions(newlines_in_values=True)
    return pa_csv.read_csv(path, parse_options=options).num_rows


def _duckdb_read_csv(path: Path) -> int:
    import duckdb

    with duckdb.connect() as con:
        con.execute("create table t as select * from read_csv(?)", [str(path)])
        return con.execute("select count(*) from t").fetchone()[0]


_RUNNERS: dict[str, Callable[[Path], int]] = dict(
    zip(
        CONTENDERS,
        (_sigma_types_known, _sigma_infer_and_read, _pyarrow_read_csv, _duckdb_read_csv),
        strict=True,
    )
)
_IMPORTS = {  # imported before the clock starts, so each contender is timed on parsing alone
    CONTENDERS[0]: ("pyarrow.csv", "sigma_source.arrow_csv", "sigma_source.emulator.tables"),
    CONTENDERS[1]: ("pyarrow.csv", "sigma_source.arrow_csv"),
    PYARROW: ("pyarrow.csv",),
    DUCKDB: ("duckdb",),
}


def _peak_rss_kib() -> int:
    """This process's peak RSS. Linux's VmHWM, as ru_maxrss can carry a parent's peak over exec."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1])


def _worker(contender: str, path: Path) -> None:
    import importlib

    for module in _IMPORTS[contender]:
        importlib.import_module(module)
    base_kib = _peak_rss_kib()
    started = time.perf_counter()
    rows = _RUNNERS[contender](path)
    seconds = time.perf_counter() - started
    result = {"rows": rows, "seconds": seconds, "peak_kib": _peak_rss_kib(), "base_kib": base_kib}
    print(json.dumps(result))


# --- The result file ---------------------------------------------------------------------------


def result_file(rows: int, workdir: Path) -> Path:
    """`select * from balance_transactions` at `rows` rows, from the emulator (cached)."""
    path = workdir / f"{TABLE}_seed{SEED}_{rows}.csv"
    if path.exists():
        return path
    import requests

    from sigma_source.emulator import Emulator

    print(f"generating {path.name} with the emulator …", file=sys.stderr)
    with Emulator(seed=SEED, scale=rows) as emulator, requests.Session() as http:
        http.headers["Authorization"] = "Bearer sk_test_benchmark"
        run = http.post(
            f"{emulator.url}/v1/sigma/query_runs", data={"sql": f"select * from {TABLE}"}
        ).json()
        while run["status"] == "running":
            time.sleep(0.2)
            run = http.get(f"{emulator.url}/v1/sigma/query_runs/{run['id']}").json()
        if run["status"] != "succeeded":
            raise SystemExit(f"emulator query run {run['id']} ended {run['status']}")
        url = f"{emulator.url}/v1/files/{run['result']['file']}/contents"
        partial = path.with_suffix(".part")
        with http.get(url, stream=True) as response, partial.open("wb") as file:
            response.raise_for_status()
            for chunk in response.iter_content(1 << 20):
                file.write(chunk)
        partial.rename(path)
    return path


# --- Measuring and reporting -----------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    rows: int
    seconds: float
    peak_mib: float
    over_base_mib: float


def measure(contender: str, path: Path) -> Measurement:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", contender, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{contender} failed on {path.name}:\n{done.stderr.strip()}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(
        rows=result["rows"],
        seconds=result["seconds"],
        peak_mib=result["peak_kib"] / 1024,
        over_base_mib=(result["peak_kib"] - result["base_kib"]) / 1024,
    )


def run_all(sizes: list[int], repeat: int, workdir: Path) -> dict[tuple[int, str], list]:
    results: dict[tuple[int, str], list[Measurement]] = {}
    for size in sizes:
        path = result_file(size, workdir)
        for repetition in range(repeat):
            # Rotate the order so no contender always runs on a warmer (or busier) machine.
            shift = repetition % len(CONTENDERS)
            for contender in CONTENDERS[shift:] + CONTENDERS[:shift]:
                measurement = measure(contender, path)
                results.setdefault((size, contender), []).append(measurement)
                print(
                    f"{size:>9,} rows  {contender:<28} {measurement.seconds:6.2f} s  "
                    f"{measurement.peak_mib:6.0f} MiB",
                    file=sys.stderr,
                )
    return results


def markdown(results: dict[tuple[int, str], list[Measurement]], sizes: list[int]) -> str:
    lines = [
        "| rows | contender | median s | min s | max s | rows/s (median) | speed vs pyarrow "
        "| speed vs duckdb | peak RSS MiB (median) | over base MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        medians = {
            contender: statistics.median(m.seconds for m in results[(size, contender)])
            for contender in CONTENDERS
        }
        for contender in CONTENDERS:
            runs = results[(size, contender)]
            seconds = [m.seconds for m in runs]
            median = medians[contender]
            lines.append(
                f"| {size:,} | {contender} | {median:.2f} | {min(seconds):.2f} | "
                f"{max(seconds):.2f} | {runs[0].rows / median:,.0f} | "
                f"{medians[PYARROW] / median:.2f}× | {medians[DUCKDB] / median:.2f}× | "
                f"{statistics.median(m.peak_mib for m in runs):.0f} | "
                f"{statistics.median(m.over_base_mib for m in runs):.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sigma-load-bench"
    )
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker[0], Path(args.worker[1]))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = run_all(args.rows, args.repeat, args.workdir)
    for (size, contender), runs in results.items():
        if any(m.rows != size for m in runs):
            raise SystemExit(f"{contender} read {runs[0].rows:,} rows of {size:,}")
    print(markdown(results, args.rows))


if __name__ == "__main__":
    main()
