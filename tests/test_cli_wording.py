"""Counts read as English (`1 query`, `2 queries`), and an unknown setting lists the settings
there are, not the arguments each run passes itself."""

from __future__ import annotations

import pytest

from tests.cli_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    one_line_error,
)

RUN_ARGUMENTS = ("exclude", "full_refresh", "report", "select", "vars")


def test_one_of_a_kind_is_singular(cli):
    run = cli.invoke("run")
    listed = cli.invoke("ls")
    history = cli.invoke("runs")

    assert "1 of 1 query loaded, 11 rows, in " in run.stdout
    assert listed.stdout.startswith("1 query, each loading table sigma.<query>")
    assert history.stdout.startswith("last 1 query run (times in UTC)")


def test_several_are_plural(cli):
    cli.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    run = cli.invoke("run")

    assert "2 of 2 queries loaded, " in run.stdout
    assert cli.invoke("ls").stdout.startswith("2 queries, each loading table")
    assert cli.invoke("runs").stdout.startswith("last 2 query runs")


def test_an_unknown_setting_lists_only_real_settings(cli):
    result = cli.invoke("run", env={"SOURCES__SIGMA__POLL_TIMOUT": "60"})

    assert result.exit_code == 2
    line = one_line_error(result)
    assert "unknown setting; did you mean 'poll_timeout'? valid: " in line
    valid = line.rsplit("valid: ", 1)[1].split(", ")
    assert {"api_key", "project_dir", "poll_timeout", "max_concurrent_runs"} <= set(valid)
    assert not set(RUN_ARGUMENTS) & set(valid)


@pytest.mark.parametrize("argument", ["select", "full_refresh"])
def test_a_run_argument_set_as_a_setting_is_unknown(cli, argument):
    result = cli.invoke("run", env={f"SOURCES__SIGMA__{argument.upper()}": "x"})

    assert result.exit_code == 2
    assert f"sources.sigma.{argument} (environment variable " in one_line_error(result)
