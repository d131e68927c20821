"""`freshness`, `ls`, `compile` and `runs` while a load holds the DuckDB file.

DuckDB lets one process write a file and no other process read it meanwhile. A scheduler's
freshness check during a load must not alert: the commands wait a little for the file, then
read the pipeline's local state (the same cursors and load times), with a note on stderr."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from tests.cli_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    CUSTOMERS_BY_COUNTRY_SQL,
    CliProject,
    duckdb_held_by_another_process,
    one_line_error,
)

NEVER = "36500d"
THRESHOLDS = f"freshness={{'warn_after': '1d', 'error_after': '{NEVER}'}}"


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sigma_source.history.BUSY_WAIT_SECONDS", 1.0)
    project = CliProject(tmp_path, emulator)
    project.write_query(
        "balance_transactions",
        BALANCE_TRANSACTIONS_SQL.replace("tags=['finance']", f"tags=['finance'], {THRESHOLDS}"),
    )
    project.write_query(
        "customers_by_country",
        CUSTOMERS_BY_COUNTRY_SQL.replace(
            "tags=['customers']", "tags=['customers'], freshness={'error_after': '1h'}"
        ),
    )
    assert project.invoke("run").exit_code == 0
    return project


def _facts(records: list[dict]) -> list[tuple]:
    return [(r["query"], r["status"], r["newest_cursor"]) for r in records]


def _load_times(records: list[dict]) -> list[datetime]:
    return [datetime.fromisoformat(r["loaded_at"]) for r in records]


def test_freshness_while_a_load_holds_the_file_reads_the_local_state_and_does_not_alert(cli):
    expected = cli.json("freshness")

    with duckdb_held_by_another_process(cli.duckdb_path):
        result = cli.invoke("freshness", "--format", "json")
        table = cli.invoke("freshness")

    assert (result.exit_code, table.exit_code) == (0, 0), result.output
    assert _facts(json.loads(result.stdout)) == _facts(expected)
    # The local state dates a load by its package's completion, a few ms after the
    # destination's own record of it.
    local_times, destination_times = _load_times(json.loads(result.stdout)), _load_times(expected)
    for local, destination in zip(local_times, destination_times, strict=True):
        assert abs((local - destination).total_seconds()) < 2
    assert [r["status"] for r in expected] == ["warn", "pass"]
    for output in (result, table):
        assert "STALE" not in output.stderr
        assert output.stderr.startswith("note: the DuckDB file ")
        assert "showing the pipeline's local state in " in output.stderr


def test_freshness_waits_for_a_file_held_only_briefly(cli, monkeypatch):
    monkeypatch.setattr("sigma_source.history.BUSY_WAIT_SECONDS", 10.0)

    with duckdb_held_by_another_process(cli.duckdb_path, seconds=1.5):
        started = time.monotonic()
        result = cli.invoke("freshness")

    assert result.exit_code == 0
    assert time.monotonic() - started >= 1.0  # it waited for the file...
    assert "note:" not in result.stderr  # ...and then read it


def test_freshness_without_local_state_to_fall_back_on_fails_without_a_stale_line(cli):
    elsewhere = ("--pipelines-dir", str(cli.tmp_path / "no_state_here"))

    with duckdb_held_by_another_process(cli.duckdb_path):
        result = cli.invoke("freshness", *elsewhere)

    assert result.exit_code == 1
    line = one_line_error(result)
    assert "is held by another process (a load?), still after 1 s" in line
    assert "there is no local state of pipeline 'sigma_load'" in line


def test_compile_while_a_load_holds_the_file_plans_from_the_local_state(cli):
    expected = cli.json("compile")

    with duckdb_held_by_another_process(cli.duckdb_path):
        result = cli.invoke("compile", "--format", "json")

    assert result.exit_code == 0
    planned = json.loads(result.stdout)
    assert [r["cursor_start"] for r in planned] == [r["cursor_start"] for r in expected]
    assert result.stderr.startswith("note: the DuckDB file ")


def test_runs_while_a_load_holds_the_file_says_so_and_when_to_try_again(cli):
    with duckdb_held_by_another_process(cli.duckdb_path):
        result = cli.invoke("runs")

    assert result.exit_code == 1
    assert one_line_error(result).endswith(
        "is held by another process (a load?), still after 1 s; try again when it is free"
    )
