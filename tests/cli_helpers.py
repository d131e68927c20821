"""Helpers for CLI tests: a query project in a temporary working directory, and the real
`sigma-load` commands run in-process (Typer's runner) against an emulator on a socket."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from typer.testing import CliRunner, Result

from sigma_source.cli import app
from sigma_source.emulator import Emulator

TEST_KEY = "sk_test_cli_4242424242"

BALANCE_TRANSACTIONS_SQL = """
{{ config(primary_key='id', cursor='created', lag='3h', initial_value='2024-01-01',
          tags=['finance']) }}
select id, amount, fee, net, currency, type, created
from balance_transactions
{% if is_incremental() %}
where created >= {{ cursor_start }} and created < {{ cursor_end }}
{% endif %}
"""

CUSTOMERS_BY_COUNTRY_SQL = """
{{ config(write_disposition='replace', tags=['customers']) }}
select address_country as country, count(*) as customers
from customers
group by address_country
"""

BROKEN_SQL = "select nope from balance_transactions"


@dataclass
class CliProject:
    """A project folder `queries/` under `tmp_path`, which is also the working directory.

    Settings come from the environment as a user would set them (`SOURCES__SIGMA__*`, the
    project folder included). `run` writes `sigma_load.duckdb` and `target/` into `tmp_path`;
    dlt keeps its pipeline state in `tmp_path/dlt` (DLT_DATA_DIR), never in the user's home.
    """

    tmp_path: Path
    emulator: Emulator

    @property
    def project_dir(self) -> Path:
        return self.tmp_path / "queries"

    @property
    def duckdb_path(self) -> Path:
        return self.tmp_path / "sigma_load.duckdb"

    @property
    def env(self) -> dict[str, str]:
        return {
            "SOURCES__SIGMA__API_KEY": TEST_KEY,
            "SOURCES__SIGMA__API_BASE": self.emulator.url,
            "SOURCES__SIGMA__FILES_BASE": self.emulator.url,
            "SOURCES__SIGMA__PROJECT_DIR": "queries",
            "DLT_DATA_DIR": str(self.tmp_path / "dlt"),
        }

    def write_query(self, name: str, sql: str) -> Path:
        self.project_dir.mkdir(exist_ok=True)
        path = self.project_dir / f"{name}.sql"
        path.write_text(textwrap.dedent(sql).lstrip())
        return path

    def invoke(self, *args: str, input: str | None = None, env: dict | None = None) -> Result:
        """Run `sigma-load ARGS` in-process, as the console script would."""
        return CliRunner().invoke(
            app, list(args), input=input, env={**self.env, **(env or {})}, catch_exceptions=False
        )

    def json(self, *args: str, exit_code: int = 0) -> Any:
        """Run a command with `--format json`, check its exit code, parse its output."""
        result = self.invoke(*args, "--format", "json")
        assert result.exit_code == exit_code, result.output
        return json.loads(result.stdout)

    def sql(self, query: str) -> list[tuple]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as connection:
            return connection.sql(query).fetchall()

    def run_results(self, target_dir: str = "target") -> dict[str, Any]:
        return json.loads((self.tmp_path / target_dir / "run_results.json").read_text())


def one_line_error(result: Result) -> str:
    """The command's stderr, which must be exactly one `error: ...` line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@contextmanager
def duckdb_held_by_another_process(path: Path, seconds: float | None = None) -> Iterator[None]:
    """Another process (as a load would) holds the DuckDB file open for writing: for the
    block, or for `seconds` from the start of the block when given."""
    script = (
        "import sys, time, duckdb\n"
        "connection = duckdb.connect(sys.argv[1])\n"
        "print('held', flush=True)\n"
        "time.sleep(float(sys.argv[2])) if len(sys.argv) > 2 else sys.stdin.read()\n"
        "connection.close()\n"
    )
    args = [sys.executable, "-c", script, str(path), *([str(seconds)] if seconds else [])]
    holder = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=30)
