"""Postgres takes the staged parquet through ADBC when it can, and CSV when it must."""

from __future__ import annotations

import pytest

from tests.loader_helpers import LoaderHarness

pytestmark = pytest.mark.postgres

APPEND_SQL = """
{{ config(cursor='created', initial_value='2024-01-01') }}
select id, amount, currency, created
from balance_transactions
where created >= {{ cursor_start }} and created < {{ cursor_end }}
"""
EMPTY_SQL = "select id, amount from balance_transactions where amount < 0 and amount > 0"


def _options(dataset: str) -> dict[str, str]:
    return {"destination": "postgres", "dataset": dataset, "pipeline_name": "sigma_pg_formats"}


def _file_formats(result) -> set[str]:
    """The file formats of the jobs dlt loaded for the query tables."""
    package = result.load_info.load_packages[0]
    return {
        job.job_file_info.file_format
        for jobs in package.jobs.values()
        for job in jobs
        if not job.job_file_info.table_name.startswith("_")
    }


def test_rows_go_to_postgres_as_the_staged_parquet_when_adbc_is_installed(
    tmp_path, emulator, postgres_dataset
):
    pytest.importorskip("adbc_driver_postgresql")
    _, dataset = postgres_dataset
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", APPEND_SQL)

    result = harness.run(**_options(dataset))

    assert result.ok, result.failures
    assert _file_formats(result) == {"parquet"}


def test_a_window_without_new_rows_loads_into_postgres(tmp_path, emulator, postgres_dataset):
    dsn, dataset = postgres_dataset
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", APPEND_SQL)
    assert harness.run(**_options(dataset)).ok

    again = harness.run(**_options(dataset))  # nothing new since the first run

    assert again.ok, again.failures
    assert _file_formats(again) <= {"csv"}
    emulator.add_rows("balance_transactions", 4)
    assert harness.run(**_options(dataset)).ok


def test_a_header_only_result_creates_its_table_in_postgres(tmp_path, emulator, postgres_dataset):
    import psycopg2

    dsn, dataset = postgres_dataset
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("nothing", EMPTY_SQL)

    result = harness.run(**_options(dataset))

    assert result.ok, result.failures
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(f'select id, amount from "{dataset}".nothing')
        assert cursor.fetchall() == []
