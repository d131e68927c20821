"""The baselines sigma-load is measured against, each run as a process of its own.

- `limit`: what the machine can do at best with the same file: a plain streaming HTTP GET to
  disk, then DuckDB's own `CREATE TABLE … AS SELECT * FROM read_csv(…)` into a new file.
- `naive`: the straightforward loader: the same GET, then `csv.DictReader` rows (all text)
  into the same kind of dlt pipeline and DuckDB file.
- `psql-copy`: the same GET, then `psql \\copy` into an equivalent Postgres table.

    python -m benchmarks.baselines limit FILE_URL WORKDIR
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import requests

API_KEY = "sk_test_benchmark_0000000000000042"


def download(url: str, path: Path) -> Path:
    """A plain streaming GET to disk, 1 MiB at a time."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with requests.get(url, headers=headers, stream=True, timeout=300) as response:
        response.raise_for_status()
        with path.open("wb") as out:
            for chunk in response.iter_content(1 << 20):
                out.write(chunk)
    return path


def limit(url: str, workdir: Path) -> None:
    import duckdb

    csv_path = download(url, workdir / "result.csv")
    with duckdb.connect(str(workdir / "limit.duckdb")) as con:
        con.execute("create table result as select * from read_csv(?)", [str(csv_path)])


def naive(url: str, workdir: Path) -> None:
    import csv

    import dlt

    csv_path = download(url, workdir / "result.csv")
    pipeline = dlt.pipeline(
        pipeline_name="naive",
        destination=dlt.destinations.duckdb(str(workdir / "naive_load.duckdb")),
        dataset_name="naive",
        pipelines_dir=str(workdir / "dlt"),
    )
    with csv_path.open(newline="", encoding="utf-8") as file:
        pipeline.run(csv.DictReader(file), table_name="result")


def psql_copy(url: str, workdir: Path, dsn: str, table: str) -> None:
    csv_path = download(url, workdir / "result.csv")
    command = f"\\copy {table} from '{csv_path}' with (format csv, header)"
    subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-c", command], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", choices=["limit", "naive", "psql-copy"])
    parser.add_argument("url")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--dsn")
    parser.add_argument("--table")
    args = parser.parse_args()
    if args.baseline == "limit":
        limit(args.url, args.workdir)
    elif args.baseline == "naive":
        naive(args.url, args.workdir)
    else:
        psql_copy(args.url, args.workdir, args.dsn, args.table)


if __name__ == "__main__":
    main()
