"""BigQuery: everything up to the network edge (extract and normalize with BigQuery's
capabilities); the load itself needs Google Cloud and is not run here."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from sigma_source.loader import loader_file_format, prepare
from tests.loader_helpers import BALANCE_TRANSACTIONS_SQL, DAILY_REVENUE_SQL, LoaderHarness


@pytest.fixture
def normalized(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)
    pipeline, source, report = prepare(
        harness.options(destination="bigquery", pipeline_name="sigma_bq")
    )
    pipeline.extract(source, loader_file_format=loader_file_format("bigquery"))
    info = pipeline.normalize()
    return pipeline, info, report


def test_bigquery_load_package_holds_parquet_files_for_every_table(normalized):
    pipeline, info, report = normalized
    assert not report.failures
    (load_id,) = info.loads_ids
    package = pipeline.get_load_package_info(load_id)
    jobs = package.jobs["new_jobs"]
    tables = {job.job_file_info.table_name for job in jobs}
    assert {"balance_transactions", "daily_revenue", "_sigma_query_runs"} <= tables
    data_files = [job for job in jobs if job.job_file_info.table_name == "balance_transactions"]
    assert all(job.job_file_info.file_format == "parquet" for job in data_files)
    rows = sum(pq.read_metadata(job.file_path).num_rows for job in data_files)
    loaded = sum(r.row_count for r in report.records if r.query_name == "balance_transactions")
    assert rows == loaded > 0


def test_bigquery_schema_partitions_incremental_tables_on_the_cursor(normalized):
    pipeline, _, _ = normalized
    table = pipeline.default_schema.get_table("balance_transactions")
    columns = table["columns"]
    assert columns["created"].get("x-bigquery-partition") is True
    assert columns["id"].get("x-bigquery-cluster") is True
    assert columns["amount"]["data_type"] == "bigint"
    assert columns["created"]["data_type"] == "timestamp"
    assert table["write_disposition"] == "merge"
    assert "x-bigquery-partition" not in str(pipeline.default_schema.get_table("daily_revenue"))
