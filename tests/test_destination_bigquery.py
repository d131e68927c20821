"""BigQuery: everything up to the network edge (extract and normalize with BigQuery's
capabilities); the load itself needs Google Cloud and is not run here."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from sigma_source.lineage import LINEAGE_COLUMNS, LINEAGE_TABLE
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


def test_bigquery_parquet_files_are_snappy_compressed_for_the_upload(normalized):
    pipeline, info, _ = normalized
    (load_id,) = info.loads_ids
    jobs = pipeline.get_load_package_info(load_id).jobs["new_jobs"]
    data_files = [job for job in jobs if job.job_file_info.table_name == "balance_transactions"]
    row_group = pq.read_metadata(data_files[0].file_path).row_group(0)
    codecs = {row_group.column(index).compression for index in range(row_group.num_columns)}
    assert codecs == {"SNAPPY"}


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


def _bigquery_hints(table: dict) -> list[str]:
    """Every `x-bigquery-*` hint of a table schema, on the table or on one of its columns."""
    found = [key for key in table if key.startswith("x-bigquery")]
    for name, column in table["columns"].items():
        found += [f"{name}.{key}" for key in column if key.startswith("x-bigquery")]
    return found


def test_bigquery_lineage_table_has_no_partition_or_cluster_hints(normalized):
    # The hints of a query's table once leaked onto the run records, which the same resource
    # yields: dlt would have created `_sigma_query_runs` ... CLUSTER BY id, which BigQuery
    # refuses (the table has no column id).
    pipeline, _, _ = normalized
    lineage = pipeline.default_schema.get_table(LINEAGE_TABLE)
    assert _bigquery_hints(lineage) == []
    assert set(lineage["columns"]) - {"_dlt_load_id", "_dlt_id"} == set(LINEAGE_COLUMNS)
    assert lineage["write_disposition"] == "append"
    assert _bigquery_hints(pipeline.default_schema.get_table("daily_revenue")) == []


def test_every_table_in_the_bigquery_package_is_well_formed(normalized):
    pipeline, info, _ = normalized
    schema = pipeline.default_schema
    (load_id,) = info.loads_ids
    packaged = {
        job.job_file_info.table_name
        for job in pipeline.get_load_package_info(load_id).jobs["new_jobs"]
    }
    assert packaged <= set(schema.tables)
    for name in packaged:
        table = schema.get_table(name)
        columns = table["columns"]
        # A column without a type is one dlt could not create (it received no data).
        assert [c for c, column in columns.items() if not column.get("data_type")] == [], name
        partitioned = [c for c, column in columns.items() if column.get("x-bigquery-partition")]
        assert len(partitioned) <= 1, name
        for column in partitioned:
            assert columns[column]["data_type"] in ("timestamp", "date"), name
        clustered = [c for c, column in columns.items() if column.get("x-bigquery-cluster")]
        clustered += table.get("x-bigquery-cluster-columns", [])
        assert set(clustered) <= set(columns), name
        if table.get("write_disposition") == "merge":
            assert [c for c, column in columns.items() if column.get("primary_key")], name


def test_bigquery_create_table_statements(normalized, monkeypatch):
    """The DDL dlt's BigQuery client would send, generated without reaching Google Cloud.

    dlt's BigQuery client needs google-cloud-bigquery, which the `dev` extra installs.
    """
    pipeline, _, _ = normalized
    prefix = "DESTINATION__BIGQUERY__CREDENTIALS__"
    monkeypatch.setenv(f"{prefix}PROJECT_ID", "example-project")
    monkeypatch.setenv(f"{prefix}CLIENT_EMAIL", "loader@example-project.iam.gserviceaccount.com")
    monkeypatch.setenv(f"{prefix}PRIVATE_KEY", "never used: no connection is opened")
    client = pipeline.destination_client()  # not entered: entering would connect

    def create_table(name: str) -> str:
        columns = list(client.prepare_load_table(name)["columns"].values())
        return client._get_table_update_sql(name, columns, generate_alter=False)[0]

    data = create_table("balance_transactions")
    assert "PARTITION BY DATE(`created`)" in data and "CLUSTER BY `id`" in data
    lineage = create_table(LINEAGE_TABLE)
    assert "PARTITION BY" not in lineage and "CLUSTER BY" not in lineage
    assert "`row_count` INT64" in lineage
