"""The same project loads into the real Postgres with identical rows and types."""

from __future__ import annotations

import uuid

import pytest

from tests.loader_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    DAILY_REVENUE_SQL,
    POSTGRES_DSN,
    LoaderHarness,
    connect_test_postgres,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres(monkeypatch):
    """A fresh dataset name on the local Postgres; skipped (or failed in CI) without a server."""
    connection = connect_test_postgres()
    dataset = f"sigma_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_DSN)
    yield connection, dataset
    with connection.cursor() as cursor:
        cursor.execute(f'drop schema if exists "{dataset}" cascade')
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


def test_project_loads_into_postgres_with_the_same_rows_and_types_as_duckdb(
    tmp_path, emulator, postgres
):
    connection, dataset = postgres
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)

    into_duckdb = harness.run()
    into_postgres = harness.run(destination="postgres", dataset=dataset, pipeline_name="sigma_pg")

    assert into_duckdb.ok and into_postgres.ok, (into_duckdb.failures, into_postgres.failures)
    columns = "id, amount, fee, net, currency, type, created"
    duck = harness.sql(f"select {columns} from sigma.balance_transactions order by id")
    pg = _pg_rows(connection, f"select {columns} from {dataset}.balance_transactions order by id")
    assert len(pg) == len(duck) > 0
    assert pg == duck

    pg_types = dict(
        _pg_rows(
            connection,
            "select column_name, data_type from information_schema.columns "
            f"where table_schema = '{dataset}' and table_name = 'balance_transactions'",
        )
    )
    duck_types = dict(
        harness.sql(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'sigma' and table_name = 'balance_transactions'"
        )
    )
    assert pg_types["amount"] == "bigint" and pg_types["created"] == "timestamp with time zone"
    assert {k: _normalise_type(v) for k, v in pg_types.items()} == {
        k: _normalise_type(v.replace("TIMESTAMP WITH TIME ZONE", "timestamptz"))
        for k, v in duck_types.items()
    }


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
