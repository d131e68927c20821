"""`compile` and `ls` plan from the cursors `run` will use after a crash left a load pending.

A kill can come after dlt put a run's new cursors into a load package and before it saved
them locally. The next `run` finishes that package and takes over its cursors
(`repair.finish_pending_load`); `compile` and `ls` read the same package state, so they show
the window that run will read, not the older one the local state still holds."""

from __future__ import annotations

import pytest

from sigma_source.loader import RunOptions, prepare
from tests.cli_helpers import BALANCE_TRANSACTIONS_SQL, CliProject


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    project = CliProject(tmp_path, emulator)
    for name, value in project.env.items():  # the in-process extract below sees them too
        monkeypatch.setenv(name, value)
    project.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    return project


def _leave_a_pending_package_newer_than_the_local_state(cli: CliProject) -> None:
    """Extract a run's rows and cursors into a load package, then put back the local state
    from before: what a kill between the two writes leaves."""
    state_file = cli.tmp_path / "dlt" / "pipelines" / "sigma_load" / "state.json"
    before = state_file.read_text()
    pipeline, source, _ = prepare(RunOptions())
    pipeline.extract(source)
    assert pipeline.list_extracted_load_packages()
    state_file.write_text(before)


def test_compile_and_ls_show_the_cursor_of_a_pending_package_as_run_will_use_it(cli):
    assert cli.invoke("run").exit_code == 0
    loaded_cursor = cli.json("ls")[0]["last_cursor"]
    cli.emulator.add_rows("balance_transactions", 5)
    _leave_a_pending_package_newer_than_the_local_state(cli)

    pending_cursor = cli.json("ls")[0]["last_cursor"]
    (planned,) = cli.json("compile")
    assert cli.invoke("run").exit_code == 0

    assert pending_cursor > loaded_cursor
    (ran,) = cli.run_results()["results"]
    assert [run["window"]["start"] for run in ran["runs"]] == [planned["cursor_start"]]
    assert cli.json("ls")[0]["last_cursor"] >= pending_cursor
