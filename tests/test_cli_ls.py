"""`sigma-load ls`: the queries a run would load, their config and their current state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import pytest

from tests.cli_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    CUSTOMERS_BY_COUNTRY_SQL,
    CliProject,
    duckdb_held_by_another_process,
    one_line_error,
)


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    project = CliProject(tmp_path, emulator)
    project.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    project.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    return project


def test_ls_shows_each_querys_table_write_disposition_key_cursor_and_tags(cli):
    listed = cli.json("ls")

    assert [
        {key: entry[key] for key in ("query", "table", "write_disposition", "primary_key")}
        | {"cursor": entry["cursor"], "tags": entry["tags"]}
        for entry in listed
    ] == [
        {
            "query": "balance_transactions",
            "table": "sigma.balance_transactions",
            "write_disposition": "merge",
            "primary_key": ["id"],
            "cursor": "created",
            "tags": ["finance"],
        },
        {
            "query": "customers_by_country",
            "table": "sigma.customers_by_country",
            "write_disposition": "replace",
            "primary_key": [],
            "cursor": None,
            "tags": ["customers"],
        },
    ]


def test_ls_before_any_run_says_never_loaded(cli):
    result = cli.invoke("ls")

    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if "balance_transactions" in line]
    assert len(rows) == 1 and rows[0].rstrip(" │").endswith("never")
    assert [entry["last_loaded_at"] for entry in cli.json("ls")] == [None, None]


def test_ls_after_a_run_shows_the_loaded_cursor_and_the_load_time(cli):
    assert cli.invoke("run").exit_code == 0
    newest = cli.sql("select max(created) from sigma.balance_transactions")[0][0]
    inserted = _to_ms(cli.sql("select max(inserted_at) from sigma._dlt_loads")[0][0])

    listed = {entry["query"]: entry for entry in cli.json("ls")}

    assert _parsed(listed["balance_transactions"]["last_cursor"]) == newest
    assert _parsed(listed["balance_transactions"]["last_loaded_at"]) == inserted
    assert listed["customers_by_country"]["last_cursor"] is None
    assert _parsed(listed["customers_by_country"]["last_loaded_at"]) == inserted


def test_ls_keeps_the_last_good_load_time_of_a_query_that_failed_since(cli):
    assert cli.invoke("run").exit_code == 0
    first_load = cli.json("ls")[0]["last_loaded_at"]
    cli.write_query("balance_transactions", "select nope from balance_transactions")

    assert cli.invoke("run").exit_code == 1

    assert cli.json("ls")[0]["last_loaded_at"] == first_load


def test_ls_honours_select_and_exclude(cli):
    assert [e["query"] for e in cli.json("ls", "--select", "tag:customers")] == [
        "customers_by_country"
    ]
    assert [e["query"] for e in cli.json("ls", "--exclude", "customers_*")] == [
        "balance_transactions"
    ]


def test_ls_changes_nothing_on_disk_and_calls_no_api(cli):
    before = sorted(path.name for path in cli.tmp_path.iterdir())

    assert cli.invoke("ls").exit_code == 0

    assert sorted(path.name for path in cli.tmp_path.iterdir()) == before
    assert cli.emulator.requests == []


def test_ls_of_an_unknown_selector_exits_2_with_one_line(cli):
    result = cli.invoke("ls", "--select", "balance_transaction")

    assert result.exit_code == 2
    assert "did you mean 'balance_transactions'" in one_line_error(result)


def test_ls_of_a_missing_project_folder_exits_2(cli):
    result = cli.invoke("ls", "--project-dir", "nowhere")

    assert result.exit_code == 2
    assert "'nowhere': no such folder" in one_line_error(result)


def test_ls_of_a_duckdb_file_a_load_holds_shows_the_local_state_with_a_note(cli, monkeypatch):
    assert cli.invoke("run").exit_code == 0
    before = cli.json("ls")
    monkeypatch.setattr("sigma_source.history.BUSY_WAIT_SECONDS", 0.5)

    with duckdb_held_by_another_process(cli.duckdb_path):
        result = cli.invoke("ls", "--format", "json")

    assert result.exit_code == 0
    listed = json.loads(result.stdout)
    assert [entry["last_cursor"] for entry in listed] == [e["last_cursor"] for e in before]
    for entry, earlier in zip(listed, before, strict=True):
        assert abs(_parsed(entry["last_loaded_at"]) - _parsed(earlier["last_loaded_at"])) < (
            timedelta(seconds=1)
        )
    assert result.stderr.startswith("note: the DuckDB file ")
    assert "held by another process (a load?): showing the pipeline's local state" in (
        result.stderr
    )


def test_ls_of_a_duckdb_file_that_cannot_be_opened_exits_1_with_one_line(cli):
    assert cli.invoke("run").exit_code == 0

    with duckdb.connect(str(cli.duckdb_path)):  # this process holds it with other settings
        result = cli.invoke("ls")

    assert result.exit_code == 1
    assert one_line_error(result).startswith("error: duckdb dataset 'sigma': cannot read: ")


def _parsed(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _to_ms(moment: datetime) -> datetime:
    """JSON times carry milliseconds."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def test_ls_shows_how_long_each_query_usually_runs_on_sigma(cli, emulator):
    assert [entry["usual_run_seconds"] for entry in cli.json("ls")] == [None, None]
    emulator.run_seconds = 0.3

    assert cli.invoke("run").exit_code == 0

    usual = [entry["usual_run_seconds"] for entry in cli.json("ls")]
    assert all(0.3 <= seconds < 2.0 for seconds in usual), usual
    table = cli.invoke("ls").stdout
    assert "usual run" in table and f"{usual[0]:.1f} s" in table
