"""Load the Stripe Sigma queries in pipelines/queries/ into DuckDB (or another destination).

Copy this script into your own project and adapt it. Settings come from .dlt/config.toml and
.dlt/secrets.toml ([sources.sigma]) or SOURCES__SIGMA__* environment variables; see README.md.

    python pipelines/sigma_pipeline.py                      # DuckDB file sigma_load.duckdb
    python pipelines/sigma_pipeline.py postgres             # [destination.postgres] credentials
"""

from __future__ import annotations

import sys

from sigma_source.loader import RunOptions, run
from sigma_source.report import print_run_table


def main(destination: str = "duckdb") -> int:
    result = run(RunOptions(destination=destination))
    print_run_table(result.records)
    for line in result.failures.values():
        print(f"FAILED {line}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
