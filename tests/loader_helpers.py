"""Helpers for end-to-end tests of the loader: a query project on disk and runs against it."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from sigma_source.loader import RunOptions, RunResult, run

TEST_KEY = "sk_test_loader_e2e_4242"

BALANCE_TRANSACTIONS_SQL = """
{{ config(primary_key='id', cursor='created', lag='3h', initial_value='2024-01-01') }}
select id, amount, fee, net, currency, type, created
from balance_transactions
{% if is_incremental() %}
where created >= {{ cursor_start }} and created < {{ cursor_end }}
{% endif %}
"""

DAILY_REVENUE_SQL = """
{{ config(write_disposition='replace') }}
select date_trunc('day', created) as day, currency, sum(amount) as amount, count(*) as n
from balance_transactions
group by 1, 2
"""


@dataclass
class LoaderHarness:
    """A query project, a DuckDB file and a pipeline state folder, all under tmp_path."""

    tmp_path: Path
    emulator_url: str
    queries: dict[str, str] = field(default_factory=dict)

    @property
    def project_dir(self) -> Path:
        return self.tmp_path / "queries"

    @property
    def duckdb_path(self) -> Path:
        return self.tmp_path / "warehouse.duckdb"

    def write_query(self, name: str, sql: str) -> None:
        self.project_dir.mkdir(exist_ok=True)
        (self.project_dir / f"{name}.sql").write_text(textwrap.dedent(sql).lstrip())

    def options(self, **overrides: Any) -> RunOptions:
        settings = {
            "api_key": TEST_KEY,
            "api_base": self.emulator_url,
            "files_base": self.emulator_url,
            "project_dir": str(self.project_dir),
            "poll_timeout": 60.0,
        }
        settings.update(overrides.pop("source_settings", {}))
        values: dict[str, Any] = {
            "duckdb_path": str(self.duckdb_path),
            "pipelines_dir": str(self.tmp_path / "state"),
            "pipeline_name": "sigma_test",
            "source_settings": settings,
        }
        values.update(overrides)
        return RunOptions(**values)

    def run(self, **overrides: Any) -> RunResult:
        return run(self.options(**overrides))

    def sql(self, query: str) -> list[tuple]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as connection:
            return connection.sql(query).fetchall()

    def table_exists(self, table: str) -> bool:
        rows = self.sql(
            "select count(*) from information_schema.tables "
            f"where table_schema = 'sigma' and table_name = '{table}'"
        )
        return rows[0][0] == 1


def posted_sql(emulator: Any) -> list[str]:
    """The SQL of every query run the emulator was asked to create, in order."""
    return [
        request.form["sql"]
        for request in emulator.requests
        if request.method == "POST"
        and request.path == "/v1/sigma/query_runs"
        and "sql" in request.form
    ]


POSTGRES_DSN = os.environ.get(
    "SIGMA_LOAD_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/test"
)


def connect_test_postgres() -> Any:
    """An autocommit connection to the test Postgres (`SIGMA_LOAD_TEST_POSTGRES`).

    Skips the test without a server, or fails it when SIGMA_LOAD_REQUIRE_POSTGRES=1 (CI).
    """
    import pytest

    psycopg2 = pytest.importorskip("psycopg2")
    try:
        connection = psycopg2.connect(POSTGRES_DSN, connect_timeout=3)
    except psycopg2.OperationalError as error:
        reason = f"PostgreSQL not reachable at {POSTGRES_DSN}: {str(error).strip()}"
        if os.environ.get("SIGMA_LOAD_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SIGMA_LOAD_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    connection.autocommit = True
    return connection
