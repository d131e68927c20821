"""`sigma-load runs` and `run` show how long a failed query run took, not `-`."""

from __future__ import annotations

import pytest

from tests.cli_helpers import BROKEN_SQL, CliProject


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    emulator.run_seconds = 0.5  # the broken SQL fails on Sigma after half a second
    project = CliProject(tmp_path, emulator)
    project.write_query("broken", BROKEN_SQL)
    return project


def test_runs_shows_the_seconds_a_failed_run_took(cli):
    assert cli.invoke("run").exit_code == 1

    (failed,) = cli.json("runs")
    table = cli.invoke("runs").stdout

    assert failed["status"] == "failed"
    assert 0.5 <= failed["seconds"] < 5
    (line,) = [line for line in table.splitlines() if failed["query_run_id"] in line]
    assert f" {failed['seconds']:.1f} │" in line and "│       - │" not in line


def test_the_run_table_shows_the_seconds_a_failed_run_took(cli):
    result = cli.invoke("run")

    (line,) = [line for line in result.stdout.splitlines() if line.startswith("│ broken ")]
    assert float(line.rstrip(" │").rsplit("│", 1)[1]) >= 0.5
