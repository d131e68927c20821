"""Every `sigma-load run` writes `target/run_results.json`, like dbt's, failures included."""

from __future__ import annotations

import duckdb
import pytest

from tests.cli_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    BROKEN_SQL,
    CUSTOMERS_BY_COUNTRY_SQL,
    TEST_KEY,
    CliProject,
)

PHASES = {"rendering", "running", "downloading", "staging", "waiting", "loading"}


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    project = CliProject(tmp_path, emulator)
    project.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    project.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    return project


def _by_query(document: dict) -> dict[str, dict]:
    return {result["query"]: result for result in document["results"]}


def test_run_results_record_each_query_with_its_runs_rows_bytes_and_window(cli):
    assert cli.invoke("run").exit_code == 0

    document = cli.run_results()
    results = _by_query(document)

    assert document["status"] == "success" and document["error"] is None
    balance = results["balance_transactions"]
    table_rows = cli.sql("select count(*) from sigma.balance_transactions")[0][0]
    assert (balance["status"], balance["error"], balance["rows"]) == ("loaded", None, table_rows)
    lineage = cli.sql(
        "select query_run_id, file_size_bytes from sigma._sigma_query_runs "
        "where query_name = 'balance_transactions'"
    )
    assert balance["query_run_ids"] == [lineage[0][0]]
    assert balance["bytes"] == lineage[0][1] > 0
    assert balance["runs"][0]["window"]["start"] == "2024-01-01T00:00:00.000Z"
    assert results["customers_by_country"]["runs"][0]["window"] == {"start": None, "end": None}


def test_run_results_time_each_phase_of_each_query(cli):
    cli.emulator.run_seconds = 0.3
    assert cli.invoke("run", "--select", "customers_by_country").exit_code == 0

    timings = _by_query(cli.run_results())["customers_by_country"]["timings"]

    assert set(timings) == PHASES
    assert timings["running"] >= 0.3
    assert all(seconds >= 0 for seconds in timings.values())
    assert set(cli.run_results()["steps"]) >= {"extract", "normalize", "load"}


def test_run_results_carry_the_dlt_load_id_and_versions(cli):
    assert cli.invoke("run").exit_code == 0

    document = cli.run_results()

    with duckdb.connect(str(cli.duckdb_path), read_only=True) as connection:
        load_ids = [
            row[0] for row in connection.sql("select load_id from sigma._dlt_loads").fetchall()
        ]
    assert document["load_id"] == load_ids[-1] and document["load_ids"] == load_ids
    assert set(document["metadata"]["versions"]) == {
        "sigma-load",
        "dlt",
        "pyarrow",
        "duckdb",
        "python",
    }
    assert document["metadata"]["generated_at"].endswith("Z")
    assert document["args"]["command"] == "run" and document["args"]["select"] == []


def test_run_results_are_written_when_a_query_fails(cli):
    cli.write_query("broken", BROKEN_SQL)

    result = cli.invoke("run")

    assert result.exit_code == 1
    document = cli.run_results()
    broken = _by_query(document)["broken"]
    assert document["status"] == "failed"
    assert broken["status"] == "failed" and 'column "nope" not found' in broken["error"]
    assert not broken["error"].startswith("broken: ")
    assert broken["rows"] == 0 and broken["query_run_ids"] == [broken["runs"][0]["query_run_id"]]
    assert _by_query(document)["balance_transactions"]["status"] == "loaded"


def test_run_results_are_written_when_the_load_itself_fails(cli):
    with duckdb.connect(str(cli.duckdb_path)) as connection:
        connection.sql("create schema sigma")
        connection.sql("create table sigma.customers_by_country (country integer)")

    result = cli.invoke("run", "--select", "customers_by_country")

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: load step failed: ")
    document = cli.run_results()
    assert document["status"] == "error" and document["error"].startswith("load step failed")
    query = _by_query(document)["customers_by_country"]
    assert query["status"] == "failed" and query["error"] == f"not loaded: {document['error']}"
    assert query["query_run_ids"] and query["rows"] == 0


def test_run_results_never_hold_the_api_key(cli):
    cli.write_query("broken", BROKEN_SQL)
    cli.invoke("run")

    assert TEST_KEY not in (cli.tmp_path / "target" / "run_results.json").read_text()


def test_run_results_go_to_the_target_dir_given(cli):
    assert cli.invoke("run", "--target-dir", "out/artefacts").exit_code == 0

    assert cli.run_results("out/artefacts")["status"] == "success"
    assert not (cli.tmp_path / "target").exists()


def test_a_configuration_error_exits_2_and_writes_no_run_results(cli):
    result = cli.invoke("run", "--destination", "snowflake")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: --destination 'snowflake': choose one of")
    assert not (cli.tmp_path / "target").exists()
