"""When the destination refuses part of a load (a constraint, a full disk, a permission),
the run fails loudly naming the table, the cursors stay, and the next run repairs what it
can: `merge` and `replace` tables exactly. An `append` table may hold that window twice:
dlt applies a load table by table, so the tables written before the refusal keep their
rows while the cursor is rolled back with the load."""

from __future__ import annotations

import subprocess

import duckdb
import pytest

from sigma_source import loader
from sigma_source.errors import SigmaLoadError
from tests.reliability_helpers import APPEND_SQL, INCREMENTAL_SQL, CliProject

BLOCKED_COLUMNS = "x bigint, id varchar, _sigma_query_run_id varchar, _dlt_load_id varchar"


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    """Three queries; the DuckDB table of `zblocker` will refuse its next rows."""
    project = CliProject(tmp_path, emulator.url)
    project.write_query("balance_transactions", INCREMENTAL_SQL)
    project.write_query("charges", APPEND_SQL)
    project.write_query("zblocker", "select 1 as x, id from balance_transactions limit 3")
    assert project.run().ok
    _set_blocker_table(project, f"{BLOCKED_COLUMNS}, check (x < 0)")
    emulator.add_rows("balance_transactions", 5)
    emulator.add_rows("charges", 5)
    return project


def _set_blocker_table(project: CliProject, columns: str) -> None:
    with duckdb.connect(str(project.duckdb_path)) as connection:
        connection.execute(f"create or replace table sigma.zblocker ({columns})")


def test_a_refused_load_fails_the_cli_in_one_line_naming_table_and_reason(project):
    cursor = project.last_cursor("balance_transactions")

    done = project.cli("run")

    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: load step failed: table zblocker: Constraint Error: CHECK constraint failed "
        "on table zblocker with expression CHECK((x < 0))"
    ]
    assert project.last_cursor("balance_transactions") == cursor


def test_after_a_refused_load_the_next_run_makes_merge_tables_exact(project, emulator):
    project.cli("run")
    _set_blocker_table(project, BLOCKED_COLUMNS)

    assert project.run().ok

    columns = "id, amount, fee, net, currency, type, created"
    expected = sorted(emulator.execute(f"select {columns} from balance_transactions"))
    assert project.rows("balance_transactions", columns) == expected


def test_after_a_refused_load_an_append_table_holds_each_row_once(project, emulator):
    project.cli("run")
    _set_blocker_table(project, BLOCKED_COLUMNS)

    assert project.run().ok

    assert project.sql("select count(*) - count(distinct id) from sigma.charges") == [(0,)]


def test_a_run_from_another_folder_loads_the_duckdb_file_in_that_folder(tmp_path, emulator):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    project = CliProject(first, emulator.url)  # its dlt state is shared by both runs
    project.write_query("balance_transactions", INCREMENTAL_SQL)

    assert project.cli("run").returncode == 0
    moved = subprocess.run(
        project.cli_command("run"), cwd=second, env=project.env(), capture_output=True, text=True
    )

    assert moved.returncode == 0, moved.stderr
    with duckdb.connect(str(second / "sigma_load.duckdb"), read_only=True) as connection:
        loaded = connection.sql("select count(*) from sigma.balance_transactions").fetchone()
    assert loaded == emulator.execute("select count(*) from balance_transactions")[0]


def test_a_refused_load_leaves_no_lineage_claiming_rows_that_are_not_there(project):
    assert project.cli("run").returncode == 1

    load_id = project.sql("select max(_dlt_load_id) from sigma._sigma_query_runs")[0][0]
    in_refused_load = project.sql(
        "select query_name, status, row_count from sigma._sigma_query_runs "
        f"where _dlt_load_id = '{load_id}' order by query_name"
    )
    assert [row[:2] for row in in_refused_load] == [
        ("balance_transactions", "succeeded"),  # merged: its rows did land
        ("charges", "failed"),  # appended, then taken back
        ("zblocker", "failed"),  # refused
    ]
    assert project.sql(f"select count(*) from sigma.charges where _dlt_load_id = '{load_id}'") == [
        (0,)
    ]


def test_a_roll_back_cut_short_by_a_kill_is_finished_by_the_next_run(project, monkeypatch):
    # The kill came after dlt aborted the refused load, before its rows were taken back.
    monkeypatch.setattr(loader, "roll_back_if_aborted", lambda pipeline, error: None)
    with pytest.raises(SigmaLoadError, match="table zblocker"):
        project.run()
    monkeypatch.undo()
    _set_blocker_table(project, BLOCKED_COLUMNS)

    assert project.run().ok

    assert project.sql("select count(*) - count(distinct id) from sigma.charges") == [(0,)]
