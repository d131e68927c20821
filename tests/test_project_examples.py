"""The example project in pipelines/queries: it loads, renders and runs on DuckDB.

The emulator runs SQL on DuckDB, so the examples must be plain SQL both Trino and DuckDB take.
Here they run against small tables with the Sigma column names and types they read.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from sigma_source.project import Window, load_project, plan_windows, render_sql

UTC = timezone.utc
EXAMPLES = Path(__file__).resolve().parents[1] / "pipelines" / "queries"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

# Columns as Sigma types them (coreapi dataset), limited to those the examples read.
BALANCE_TRANSACTIONS = """create table balance_transactions (
    id varchar, created timestamp, available_on timestamp, type varchar,
    reporting_category varchar, status varchar, currency varchar, amount bigint, fee bigint,
    net bigint, exchange_rate double, source_id varchar, description varchar)"""
CHARGES = """create table charges (
    id varchar, created timestamp, customer_id varchar, payment_intent varchar,
    invoice_id varchar, amount bigint, amount_refunded bigint, currency varchar, status varchar,
    paid boolean, captured boolean, refunded boolean, failure_code varchar, outcome_type varchar,
    outcome_risk_level varchar, card_brand varchar, card_country varchar,
    balance_transaction_id varchar)"""


@pytest.fixture(scope="module")
def queries():
    return {query.name: query for query in load_project(EXAMPLES)}


@pytest.fixture
def sigma():
    """An in-memory DuckDB with a few rows around the examples' window bounds."""
    connection = duckdb.connect()
    connection.execute(BALANCE_TRANSACTIONS)
    connection.execute(CHARGES)
    for index, created in enumerate(
        ["2023-12-31 23:59:59.999", "2024-01-01 00:00:00.000", "2024-03-05 10:00:00.000"]
    ):
        connection.execute(
            "insert into balance_transactions (id, created, currency, amount, fee, net) "
            "values (?, ?, 'usd', 1000, 59, 941)",
            [f"txn_{index}", created],
        )
    for index, (created, status) in enumerate(
        [
            ("2024-03-05 10:00:00", "succeeded"),
            ("2024-03-05 18:30:00", "succeeded"),
            ("2024-03-06 09:00:00", "failed"),
            ("2023-06-01 00:00:00", "succeeded"),
        ]
    ):
        connection.execute(
            "insert into charges (id, created, amount, amount_refunded, currency, status) "
            "values (?, ?, 2000, 500, 'eur', ?)",
            [f"ch_{index}", created, status],
        )
    yield connection
    connection.close()


def test_the_example_project_holds_the_three_documented_queries(queries):
    assert sorted(queries) == ["balance_transactions", "charges", "daily_revenue"]


def test_balance_transactions_is_an_incremental_merge_on_id_with_a_three_hour_lag(queries):
    config = queries["balance_transactions"].config

    assert (config.primary_key, config.cursor, config.write_disposition) == (
        ("id",),
        "created",
        "merge",
    )
    assert config.lag == timedelta(hours=3)
    assert config.initial_value == datetime(2024, 1, 1, tzinfo=UTC)


def test_charges_backfills_in_90_day_chunks(queries):
    config = queries["charges"].config

    windows = plan_windows(config, last_cursor=None, now=NOW)

    assert config.backfill_chunk == timedelta(days=90)
    assert windows[0].start == config.initial_value
    assert all(w.end - w.start <= timedelta(days=90) for w in windows)
    assert windows[-1].end == NOW


def test_daily_revenue_is_rebuilt_whole_on_every_run(queries):
    config = queries["daily_revenue"].config

    assert config.write_disposition == "replace"
    assert config.cursor is None
    assert plan_windows(config, last_cursor=None, now=NOW) == [Window(None, NOW)]


def test_balance_transactions_reads_its_window_start_inclusive_end_exclusive(queries, sigma):
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 5, 10, tzinfo=UTC))

    sql = render_sql(queries["balance_transactions"], window=window)

    assert [row[0] for row in sigma.sql(sql).fetchall()] == ["txn_1"]


def test_balance_transactions_reads_everything_when_not_incremental(queries, sigma):
    sql = render_sql(queries["balance_transactions"], window=Window(None, NOW))

    assert len(sigma.sql(sql).fetchall()) == 3


def test_every_charges_chunk_renders_and_runs(queries, sigma):
    windows = plan_windows(queries["charges"].config, last_cursor=None, now=NOW)

    ids = [
        row[0]
        for window in windows
        for row in sigma.sql(render_sql(queries["charges"], window=window)).fetchall()
    ]

    assert sorted(ids) == ["ch_0", "ch_1", "ch_2", "ch_3"]


def test_daily_revenue_sums_succeeded_charges_per_day_and_currency(queries, sigma):
    sql = render_sql(queries["daily_revenue"], window=Window(None, NOW))

    rows = sigma.sql(sql + " order by 1").fetchall()

    assert rows == [(datetime(2024, 3, 5), "eur", 2, 4000, 1000, 3000)]


def test_daily_revenue_start_can_be_moved_with_a_var(queries, sigma):
    query = queries["daily_revenue"]

    sql = render_sql(query, window=Window(None, NOW), vars={"revenue_since": "2023-01-01"})

    assert "created >= timestamp '2023-01-01'" in sql
    assert len(sigma.sql(sql).fetchall()) == 2
