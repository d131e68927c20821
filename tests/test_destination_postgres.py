"""The same project loads into the real Postgres with identical rows and types."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.loader_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    POSTGRES_DSN,
    LoaderHarness,
    connect_test_postgres,
)

pytestmark = pytest.mark.postgres

EXAMPLES = Path(__file__).resolve().parents[1] / "pipelines" / "queries"


@pytest.fixture
def postgres(monkeypatch):
    """A fresh dataset name on the local Postgres; skipped (or failed in CI) without a server."""
    connection = connect_test_postgres()
    dataset = f"sigma_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_DSN)
    try:
        yield connection, dataset
    finally:
        with connection.cursor() as cursor:
            for schema in (dataset, f"{dataset}_staging"):  # dlt merges through _staging
                cursor.execute(f'drop schema if exists "{schema}" cascade')
        connection.close()


def _pg_rows(connection, sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def _normalise_type(name: str) -> str:
    name = name.lower()
    return {
        "character varying": "varchar",
        "text": "varchar",
        "timestamp with time zone": "timestamptz",
        "timestamp with time zone(6)": "timestamptz",
        "double precision": "double",
    }.get(name, name)


def _columns(rows: list[tuple]) -> dict[str, dict[str, str]]:
    """{table: {column: type}} from (table, column, type) rows of information_schema."""
    tables: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        tables.setdefault(table, {})[column] = _normalise_type(data_type)
    return tables


def _sort_key(row: tuple) -> tuple:
    """Sorts rows the same whatever the database: no collation, NULLs last, instants in UTC."""
    return tuple(
        (value is None, value.astimezone(timezone.utc).isoformat())
        if isinstance(value, datetime) and value.tzinfo
        else (value is None, str(value))
        for value in row
    )


COLUMNS_SQL = (
    "select table_name, column_name, data_type from information_schema.columns "
    "where table_schema = '{schema}'"
)
# Differ by load: which run and load wrote the row, and dlt's row key.
PER_LOAD_COLUMNS = {"_sigma_query_run_id", "_dlt_load_id", "_dlt_id"}


def test_example_project_loads_into_postgres_with_the_same_rows_and_types_as_duckdb(
    tmp_path, emulator, postgres
):
    connection, dataset = postgres
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.project_dir.symlink_to(EXAMPLES)

    into_duckdb = harness.run()
    into_postgres = harness.run(destination="postgres", dataset=dataset, pipeline_name="sigma_pg")

    assert into_duckdb.ok and into_postgres.ok, (into_duckdb.failures, into_postgres.failures)
    duck = _columns(harness.sql(COLUMNS_SQL.format(schema="sigma")))
    pg = _columns(_pg_rows(connection, COLUMNS_SQL.format(schema=dataset)))
    data_tables = sorted(name for name in duck if not name.startswith("_"))
    assert data_tables == ["balance_transactions", "charges", "daily_revenue"]
    for table in [*data_tables, "_sigma_query_runs"]:
        assert pg[table] == duck[table], table
    assert pg["charges"]["paid"] == "boolean" and pg["charges"]["created"] == "timestamptz"
    assert pg["balance_transactions"]["exchange_rate"] == "double"

    for table in data_tables:
        columns = ", ".join(sorted(set(duck[table]) - PER_LOAD_COLUMNS))
        duck_rows = harness.sql(f"select {columns} from sigma.{table}")
        pg_rows = _pg_rows(connection, f"select {columns} from {dataset}.{table}")
        assert len(pg_rows) == len(duck_rows) > 0, table
        assert sorted(pg_rows, key=_sort_key) == sorted(duck_rows, key=_sort_key), table


def test_postgres_incremental_run_merges_new_rows_and_records_lineage(tmp_path, emulator, postgres):
    connection, dataset = postgres
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    options = {"destination": "postgres", "dataset": dataset, "pipeline_name": "sigma_pg_inc"}

    assert harness.run(**options).ok
    emulator.add_rows("balance_transactions", 9)
    assert harness.run(**options).ok

    total, distinct = _pg_rows(
        connection, f"select count(*), count(distinct id) from {dataset}.balance_transactions"
    )[0]
    assert total == distinct == emulator.execute("select count(*) from balance_transactions")[0][0]
    runs = _pg_rows(
        connection, f"select count(*) from {dataset}._sigma_query_runs where status = 'succeeded'"
    )
    assert runs[0][0] == 2
