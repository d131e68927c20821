"""Every loaded row traces back to its query run, its SQL and its dlt load."""

from __future__ import annotations

import hashlib

import pytest

from sigma_source.lineage import LINEAGE_COLUMNS
from tests.loader_helpers import BALANCE_TRANSACTIONS_SQL, DAILY_REVENUE_SQL, LoaderHarness


@pytest.fixture
def loaded(tmp_path, emulator) -> LoaderHarness:
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)
    assert harness.run().ok
    emulator.add_rows("balance_transactions", 12)
    assert harness.run().ok
    return harness


def test_lineage_table_has_exactly_the_documented_columns(loaded):
    columns = {
        name
        for (name,) in loaded.sql(
            "select column_name from information_schema.columns "
            "where table_schema = 'sigma' and table_name = '_sigma_query_runs'"
        )
    }
    assert columns - {"_dlt_load_id", "_dlt_id"} == set(LINEAGE_COLUMNS)


def _data_tables(loaded: LoaderHarness) -> list[str]:
    """Every table the project's queries loaded (dlt's and the lineage table start with _)."""
    names = loaded.sql(
        "select table_name from information_schema.tables where table_schema = 'sigma' order by 1"
    )
    tables = [name for (name,) in names if not name.startswith("_")]
    assert tables == ["balance_transactions", "daily_revenue"]
    return tables


def test_every_loaded_row_has_a_run_of_its_own_query_recorded_in_lineage(loaded):
    for table in _data_tables(loaded):
        orphans = loaded.sql(
            f"select count(*) from sigma.{table} t "
            "left join sigma._sigma_query_runs r on r.query_run_id = t._sigma_query_run_id "
            f"and r.query_name = '{table}' and r.status = 'succeeded' "
            "where r.query_run_id is null"
        )
        assert orphans == [(0,)], table
        assert loaded.sql(f"select count(*) from sigma.{table}")[0][0] > 0, table


def test_lineage_row_count_matches_rows_loaded_by_each_run(loaded):
    # Rows re-read through the lag are merged, and a replace keeps only the last run's rows:
    # a run's rows still in the table are never more than it loaded.
    for table in _data_tables(loaded):
        mismatches = loaded.sql(
            f"""
            select r.query_run_id, r.row_count, count(t._sigma_query_run_id)
            from sigma._sigma_query_runs r
            left join sigma.{table} t on t._sigma_query_run_id = r.query_run_id
            where r.query_name = '{table}'
            group by 1, 2
            having r.row_count < count(t._sigma_query_run_id)
            """
        )
        assert mismatches == [], table
    last_run = loaded.sql(
        """
        select r.row_count, count(t.id)
        from sigma._sigma_query_runs r
        join sigma.balance_transactions t on t._sigma_query_run_id = r.query_run_id
        where r.load_id = (select max(load_id) from sigma._sigma_query_runs)
        group by 1
        """
    )
    assert last_run and last_run[0][0] == last_run[0][1]


def test_lineage_load_id_is_the_dlt_load_of_the_rows(loaded):
    rows = loaded.sql(
        "select distinct r.load_id = t._dlt_load_id, r.load_id = r._dlt_load_id "
        "from sigma._sigma_query_runs r "
        "join sigma.balance_transactions t on t._sigma_query_run_id = r.query_run_id"
    )
    assert rows == [(True, True)]
    loads = loaded.sql("select count(*) from sigma._dlt_loads where status = 0")[0][0]
    assert loads == 2


def test_lineage_records_sql_hash_window_file_and_timings(loaded):
    rows = loaded.sql(
        "select sql, sql_sha256, file_id, file_size_bytes, poll_count, wait_seconds, "
        "download_seconds, cursor_start, cursor_end, created_at, finalized_at, status "
        "from sigma._sigma_query_runs where query_name = 'balance_transactions'"
    )
    assert len(rows) == 2
    for sql, sha, file_id, size, polls, wait, download, start, end, created, done, status in rows:
        assert sha == hashlib.sha256(sql.encode()).hexdigest()
        assert "from balance_transactions" in sql and "{{" not in sql
        assert file_id.startswith("file_") and size > 0
        assert polls >= 1 and wait >= 0 and download >= 0
        assert start < end and created is not None and done is not None
        assert status == "succeeded"


def test_lineage_never_stores_the_api_key(loaded):
    from tests.loader_helpers import TEST_KEY

    dump = loaded.sql("select * from sigma._sigma_query_runs")
    assert TEST_KEY not in repr(dump)
