"""A failing query never stops the others and leaves its own table and cursor untouched."""

from __future__ import annotations

import re

import pytest

from sigma_source.emulator import Fault
from tests.loader_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    DAILY_REVENUE_SQL,
    LoaderHarness,
    posted_sql,
)


def _window_start(sql: str) -> str:
    return re.search(r"created >= (timestamp '[^']+')", sql).group(1)


@pytest.fixture
def harness(tmp_path, emulator) -> LoaderHarness:
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)
    return harness


def test_bad_sql_fails_only_its_own_query(harness):
    harness.write_query("broken", "select no_such_column from balance_transactions")

    result = harness.run()

    assert not result.ok
    assert list(result.failures) == ["broken"]
    assert result.failures["broken"].startswith("broken: ")
    assert "\n" not in result.failures["broken"]
    assert harness.sql("select count(*) from sigma.balance_transactions")[0][0] > 0
    assert not harness.table_exists("broken")


def test_failed_run_is_recorded_in_lineage_with_zero_rows(harness, emulator):
    emulator.add_fault(
        Fault(kind="run_status", run_status="failed", message="Query exceeded limits")
    )

    result = harness.run(select=["daily_revenue"])

    assert not result.ok
    assert "Query exceeded limits" in result.failures["daily_revenue"]
    rows = harness.sql(
        "select query_name, status, row_count, error, query_run_id from sigma._sigma_query_runs"
    )
    assert len(rows) == 1
    name, status, row_count, error, run_id = rows[0]
    assert (name, status, row_count) == ("daily_revenue", "failed", 0)
    assert "Query exceeded limits" in error
    assert run_id.startswith("qry_")


def test_failed_incremental_run_keeps_table_and_cursor(harness, emulator):
    harness.run(select=["balance_transactions"])
    before = harness.sql("select count(*), max(_dlt_load_id) from sigma.balance_transactions")
    emulator.add_rows("balance_transactions", 5)
    emulator.add_fault(Fault(kind="run_status", run_status="timed_out", message="took too long"))

    failed = harness.run(select=["balance_transactions"])
    assert not failed.ok
    assert harness.sql("select count(*), max(_dlt_load_id) from sigma.balance_transactions") == (
        before
    )

    retried = harness.run(select=["balance_transactions"])
    assert retried.ok, retried.failures
    starts = [_window_start(sql) for sql in posted_sql(emulator)]
    assert starts[-1] == starts[-2], "the cursor must not have advanced after the failed run"
    total = emulator.execute("select count(*) from balance_transactions")[0][0]
    assert harness.sql("select count(*) from sigma.balance_transactions")[0][0] == total


def test_failed_replace_query_does_not_truncate_its_table(harness, emulator):
    harness.run(select=["daily_revenue"])
    before = harness.sql("select count(*) from sigma.daily_revenue")[0][0]
    emulator.add_fault(Fault(kind="run_status", run_status="failed", message="boom"))

    result = harness.run(select=["daily_revenue"])

    assert not result.ok
    assert harness.sql("select count(*) from sigma.daily_revenue")[0][0] == before > 0


def test_failed_full_refresh_keeps_table_and_cursor(harness, emulator):
    harness.run(select=["balance_transactions"])
    before = harness.sql("select count(*) from sigma.balance_transactions")[0][0]
    emulator.add_fault(Fault(kind="run_status", run_status="canceled", message="canceled"))

    failed = harness.run(select=["balance_transactions"], full_refresh=True)
    assert not failed.ok
    assert harness.sql("select count(*) from sigma.balance_transactions")[0][0] == before

    harness.run(select=["balance_transactions"])
    assert "timestamp '2024-01-01 00:00:00.000'" not in posted_sql(emulator)[-1]


def test_type_violation_against_stored_types_fails_the_query_and_loads_nothing(harness, emulator):
    harness.write_query("codes", "select id, amount as code from balance_transactions limit 20")
    harness.run(select=["codes"])
    harness.write_query(
        "codes", "select id, 'x' || cast(amount as varchar) as code from balance_transactions"
    )

    result = harness.run(select=["codes"])

    assert not result.ok
    message = result.failures["codes"]
    assert "code" in message and "--full-refresh" in message
    assert harness.sql("select count(*) from sigma.codes")[0][0] == 20


def test_missing_cursor_column_is_a_clear_error_naming_the_file(harness):
    harness.write_query(
        "no_cursor",
        "{{ config(primary_key='id', cursor='created', initial_value='2024-01-01') }}\n"
        "select id, amount from balance_transactions\n"
        "where created >= {{ cursor_start }} and created < {{ cursor_end }}",
    )

    result = harness.run(select=["no_cursor"])

    assert "no_cursor.sql" in result.failures["no_cursor"]
    assert "'created'" in result.failures["no_cursor"]


def test_a_failing_backfill_chunk_discards_the_whole_query(tmp_path, emulator):
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
    # The second chunk starts 180 days after the initial value.
    emulator.add_fault(
        Fault(
            kind="run_status",
            run_status="failed",
            message="chunk failed",
            sql_contains="created >= timestamp '2024-06-29",
        )
    )

    result = harness.run()

    assert not result.ok
    assert not harness.table_exists("charges")
    statuses = sorted(harness.sql("select status, row_count from sigma._sigma_query_runs"))
    assert statuses == [("discarded", 0), ("failed", 0)]
