"""`sigma-load runs`: the history of query runs, read back from `_sigma_query_runs`."""

from __future__ import annotations

import uuid

import pytest

from tests.cli_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    BROKEN_SQL,
    CUSTOMERS_BY_COUNTRY_SQL,
    CliProject,
)
from tests.loader_helpers import POSTGRES_DSN, connect_test_postgres


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    project = CliProject(tmp_path, emulator)
    project.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    project.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    return project


def test_runs_lists_each_query_run_with_window_rows_status_and_seconds(cli):
    assert cli.invoke("run").exit_code == 0
    lineage = cli.sql(
        "select query_run_id, row_count, wait_seconds + download_seconds "
        "from sigma._sigma_query_runs where query_name = 'balance_transactions'"
    )

    history = cli.json("runs")

    assert {row["query"] for row in history} == {"balance_transactions", "customers_by_country"}
    balance = next(row for row in history if row["query"] == "balance_transactions")
    assert (balance["query_run_id"], balance["rows"]) == lineage[0][:2]
    assert balance["seconds"] == pytest.approx(lineage[0][2], abs=0.001)
    assert balance["status"] == "succeeded"
    assert balance["cursor_start"] == "2024-01-01T00:00:00.000Z"
    assert balance["cursor_end"] is not None and balance["loaded_at"] is not None


def test_runs_shows_the_newest_load_first_and_honours_limit(cli):
    assert cli.invoke("run", "--select", "customers_by_country").exit_code == 0
    assert cli.invoke("run", "--select", "balance_transactions").exit_code == 0

    history = cli.json("runs", "--limit", "1")

    assert [row["query"] for row in history] == ["balance_transactions"]


def test_runs_select_shows_only_the_selected_queries(cli):
    assert cli.invoke("run").exit_code == 0

    history = cli.json("runs", "--select", "tag:customers")

    assert [row["query"] for row in history] == ["customers_by_country"]


def test_runs_shows_a_failed_run_with_its_error(cli):
    cli.write_query("broken", BROKEN_SQL)
    assert cli.invoke("run").exit_code == 1

    result = cli.invoke("runs", "--select", "broken")
    failed = cli.json("runs", "--select", "broken")

    assert failed[0]["status"] == "failed" and failed[0]["rows"] == 0
    assert 'column "nope" not found' in failed[0]["error"]
    assert failed[0]["query_run_id"] in result.stdout and "error" in result.stdout


def test_runs_table_shows_run_ids_and_windows(cli):
    assert cli.invoke("run").exit_code == 0
    run_ids = [row["query_run_id"] for row in cli.json("runs")]

    result = cli.invoke("runs")

    assert result.exit_code == 0
    assert all(run_id in result.stdout for run_id in run_ids)
    assert "2024-01-01 00:00 →" in result.stdout and "full" in result.stdout


def test_runs_before_any_run_shows_none_and_succeeds(cli):
    result = cli.invoke("runs")

    assert result.exit_code == 0
    assert "query runs (times in UTC): none" in result.stdout


def test_runs_needs_no_project_folder(cli):
    assert cli.invoke("run").exit_code == 0

    result = cli.invoke("runs", env={"SOURCES__SIGMA__PROJECT_DIR": "gone"})

    assert result.exit_code == 0 and "balance_transactions" in result.stdout


@pytest.mark.postgres
def test_runs_and_ls_read_a_postgres_destination(cli, monkeypatch):
    connection = connect_test_postgres()
    dataset = f"sigma_cli_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_DSN)
    where = ("--destination", "postgres", "--dataset", dataset, "--pipeline-name", "sigma_pg")
    try:
        assert cli.invoke("run", *where).exit_code == 0

        history = cli.json("runs", *where)
        listed = cli.json("ls", *where)
    finally:
        with connection.cursor() as cursor:
            for schema in (dataset, f"{dataset}_staging"):
                cursor.execute(f'drop schema if exists "{schema}" cascade')
        connection.close()

    assert {row["status"] for row in history} == {"succeeded"}
    assert all(entry["last_loaded_at"] for entry in listed)
    assert not cli.duckdb_path.exists()
