"""Incremental loads end to end: emulator on a socket, real dlt pipeline, real DuckDB file."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.loader_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    DAILY_REVENUE_SQL,
    LoaderHarness,
    posted_sql,
)


@pytest.fixture
def harness(tmp_path, emulator) -> LoaderHarness:
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)
    return harness


def _trino_ms(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def test_first_run_loads_every_row_of_every_query(harness, emulator):
    result = harness.run()

    assert result.ok, result.failures
    expected = emulator.execute("select count(*) from balance_transactions")[0][0]
    assert harness.sql("select count(*) from sigma.balance_transactions")[0][0] == expected
    days = emulator.execute(
        "select count(*) from (select distinct date_trunc('day', created), currency "
        "from balance_transactions)"
    )[0][0]
    assert harness.sql("select count(*) from sigma.daily_revenue")[0][0] == days


def test_first_run_window_starts_at_initial_value(harness, emulator):
    harness.run(select=["balance_transactions"])

    (sql,) = posted_sql(emulator)
    assert "created >= timestamp '2024-01-01 00:00:00.000'" in sql
    assert "created < timestamp '" in sql


def test_second_run_asks_only_for_the_window_after_the_last_cursor_minus_lag(harness, emulator):
    harness.run(select=["balance_transactions"])
    (last_cursor,) = harness.sql("select max(created) from sigma.balance_transactions")[0]
    emulator.add_rows("balance_transactions", 25)

    result = harness.run(select=["balance_transactions"])

    assert result.ok, result.failures
    expected_start = _trino_ms(last_cursor - timedelta(hours=3))
    assert f"created >= timestamp '{expected_start}'" in posted_sql(emulator)[-1]
    (record,) = result.records
    assert record.cursor_start.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] == expected_start
    overlap = emulator.execute(
        f"select count(*) from balance_transactions where created >= timestamp '{expected_start}'"
    )[0][0]
    assert record.row_count == overlap
    assert overlap >= 25


def test_lag_overlap_is_merged_without_duplicates(harness, emulator):
    harness.run(select=["balance_transactions"])
    emulator.add_rows("balance_transactions", 40)
    harness.run(select=["balance_transactions"])

    total, distinct = harness.sql(
        "select count(*), count(distinct id) from sigma.balance_transactions"
    )[0]
    assert total == distinct
    assert total == emulator.execute("select count(*) from balance_transactions")[0][0]


def test_full_refresh_rebuilds_the_table_from_the_initial_value(harness, emulator):
    harness.run(select=["balance_transactions"])
    emulator.add_rows("balance_transactions", 10)

    result = harness.run(select=["balance_transactions"], full_refresh=True)

    assert result.ok, result.failures
    assert "created >= timestamp '2024-01-01 00:00:00.000'" in posted_sql(emulator)[-1]
    loads = harness.sql("select count(distinct _dlt_load_id) from sigma.balance_transactions")
    assert loads[0][0] == 1
    expected = emulator.execute("select count(*) from balance_transactions")[0][0]
    assert harness.sql("select count(*) from sigma.balance_transactions")[0][0] == expected


def test_full_refresh_that_loads_no_rows_still_resets_the_cursor(harness, emulator):
    harness.run(select=["balance_transactions"])
    # The refreshed query finds nothing (say, Sigma's data was restated): the table is emptied.
    harness.write_query(
        "balance_transactions",
        """
        {{ config(primary_key='id', cursor='created', lag='3h', initial_value='2024-01-01') }}
        select id, amount, fee, net, currency, type, created
        from balance_transactions
        where 1 = 0
        {% if is_incremental() %}
        and created >= {{ cursor_start }} and created < {{ cursor_end }}
        {% endif %}
        """,
    )
    refreshed = harness.run(select=["balance_transactions"], full_refresh=True)
    assert refreshed.ok, refreshed.failures
    assert harness.sql("select count(*) from sigma.balance_transactions")[0][0] == 0
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    result = harness.run(select=["balance_transactions"])

    # Starting from the cursor loaded before the refresh would leave the table nearly empty.
    assert result.ok, result.failures
    assert "created >= timestamp '2024-01-01 00:00:00.000'" in posted_sql(emulator)[-1]
    expected = emulator.execute("select count(*) from balance_transactions")[0][0]
    assert harness.sql("select count(*) from sigma.balance_transactions")[0][0] == expected


def test_replace_query_replaces_its_rows_on_every_run(harness, emulator):
    harness.run(select=["daily_revenue"])
    harness.run(select=["daily_revenue"])

    loads = harness.sql("select count(distinct _dlt_load_id) from sigma.daily_revenue")
    assert loads[0][0] == 1


def test_append_query_appends_each_run(harness, emulator):
    harness.write_query("fees", "select id, fee from balance_transactions where fee > 0 limit 7")
    harness.run(select=["fees"])
    harness.run(select=["fees"])

    assert harness.sql("select count(*) from sigma.fees")[0][0] == 14


def test_backfill_chunks_split_the_first_window_into_consecutive_runs_oldest_first(
    tmp_path, emulator
):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query(
        "charges",
        """
        {{ config(primary_key='id', cursor='created', initial_value='2024-01-01',
                  backfill_chunk='180d') }}
        select id, amount, created from charges
        where created >= {{ cursor_start }} and created < {{ cursor_end }}
        """,
    )

    result = harness.run()

    assert result.ok, result.failures
    windows = sorted((r.cursor_start, r.cursor_end) for r in result.records)
    assert len(windows) >= 2
    assert _trino_ms(windows[0][0]) == "2024-01-01 00:00:00.000"
    for (_, end), (next_start, _) in zip(windows, windows[1:], strict=False):
        assert end == next_start
    assert all(end - start <= timedelta(days=180) for start, end in windows)
    sent = posted_sql(emulator)
    assert len(sent) == len(windows)
    assert f"timestamp '{_trino_ms(windows[0][0])}'" in sent[0]
    expected = emulator.execute("select count(*) from charges")[0][0]
    assert harness.sql("select count(*) from sigma.charges")[0][0] == expected
