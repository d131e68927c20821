"""`sigma-load demo`: the whole product against a local emulator, no Stripe account needed."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from sigma_source.errors import ConfigError
from sigma_source.report import output_console, print_run_table

DEMO_KEY = "sk_test_sigma_load_demo"
EXAMPLE_QUERY = """
select currency, count(*) as transactions, sum(amount) / 100.0 as volume
from sigma.balance_transactions
group by currency
order by volume desc
limit 5
"""


def run_demo(*, project_dir: str, scale: int, duckdb_path: str) -> int:
    """Start the emulator, load the example project into `duckdb_path`, show the result."""
    from sigma_source.emulator import Emulator
    from sigma_source.loader import RunOptions, run

    if not Path(project_dir).is_dir():
        raise ConfigError(
            f"--project-dir {project_dir!r}: no such folder; run the demo from the repository "
            "root or point --project-dir at a folder of *.sql files"
        )
    console = output_console()
    Path(duckdb_path).unlink(missing_ok=True)
    with (
        Emulator(seed=42, scale=scale, run_seconds=0.5) as emulator,
        tempfile.TemporaryDirectory(prefix="sigma-demo-") as state_dir,
    ):
        console.print(f"Sigma emulator on {emulator.url} ({scale:,} balance transactions)")
        options = RunOptions(
            pipeline_name="sigma_demo",
            duckdb_path=duckdb_path,
            pipelines_dir=state_dir,
            source_settings={
                "api_key": DEMO_KEY,
                "api_base": emulator.url,
                "files_base": emulator.url,
                "project_dir": project_dir,
            },
        )
        result = run(options)
    print_run_table(result.records, console)
    for line in result.failures.values():
        console.print(f"[red]FAILED[/red] {line}")
    _show_example_query(console, duckdb_path)
    return 0 if result.ok else 1


def _show_example_query(console: Console, duckdb_path: str) -> None:
    import duckdb

    with duckdb.connect(duckdb_path, read_only=True) as connection:
        rows = connection.sql(EXAMPLE_QUERY).fetchall()
    console.print(f"\nLoaded into {duckdb_path}. Example query:{EXAMPLE_QUERY}")
    for currency, count, volume in rows:
        console.print(f"  {currency:<5} {count:>8,} transactions  {volume:>16,.2f}")
    console.print(f"\nExplore it: duckdb {duckdb_path}  (tables live in schema 'sigma')")
