"""`sigma-load run` and `sigma-load demo` as a user runs them: real processes, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from tests.cli_helpers import BALANCE_TRANSACTIONS_SQL as TAGGED_BALANCE_TRANSACTIONS_SQL
from tests.cli_helpers import CUSTOMERS_BY_COUNTRY_SQL, CliProject, one_line_error
from tests.loader_helpers import BALANCE_TRANSACTIONS_SQL, TEST_KEY, LoaderHarness, posted_sql

REPO = Path(__file__).resolve().parent.parent


def _sigma_load(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sigma_source", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def cli_env(tmp_path, emulator) -> dict[str, str]:
    return {
        "SOURCES__SIGMA__API_KEY": TEST_KEY,
        "SOURCES__SIGMA__API_BASE": emulator.url,
        "SOURCES__SIGMA__FILES_BASE": emulator.url,
        "DLT_DATA_DIR": str(tmp_path / "dlt-data"),
    }


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    """`balance_transactions` (tag finance) and `customers_by_country` (tag customers)."""
    monkeypatch.chdir(tmp_path)
    project = CliProject(tmp_path, emulator)
    project.write_query("balance_transactions", TAGGED_BALANCE_TRANSACTIONS_SQL)
    project.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    return project


def _tables(cli: CliProject) -> set[str]:
    rows = cli.sql("select table_name from information_schema.tables where table_schema = 'sigma'")
    return {name for (name,) in rows if not name.startswith("_")}


def test_run_loads_into_sigma_load_duckdb_in_the_working_directory(tmp_path, emulator, cli_env):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    done = _sigma_load(["run", "--project-dir", "queries"], tmp_path, cli_env)

    assert done.returncode == 0, done.stderr
    assert "balance_transactions" in done.stdout and "succeeded" in done.stdout
    with duckdb.connect(str(tmp_path / "sigma_load.duckdb"), read_only=True) as connection:
        count = connection.sql("select count(*) from sigma.balance_transactions").fetchone()[0]
    assert count == emulator.execute("select count(*) from balance_transactions")[0][0]
    assert TEST_KEY not in done.stdout + done.stderr


def test_run_exits_1_with_one_line_per_failed_query(tmp_path, emulator, cli_env):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    harness.write_query("broken", "select nope from balance_transactions")

    done = _sigma_load(["run", "--project-dir", "queries"], tmp_path, cli_env)

    assert done.returncode == 1
    failed = [line for line in done.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED broken: ")
    assert "Traceback" not in done.stderr


def test_run_exits_2_on_an_unknown_selector(tmp_path, emulator, cli_env):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    done = _sigma_load(["run", "--project-dir", "queries", "--select", "nope"], tmp_path, cli_env)

    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "nope" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_run_refuses_a_duckdb_file_named_like_its_dataset(tmp_path, emulator, cli_env):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    done = _sigma_load(
        ["run", "--project-dir", "queries", "--pipeline-name", "sigma"], tmp_path, cli_env
    )

    assert done.returncode == 2
    assert "ambiguous" in done.stderr


def test_demo_loads_the_example_project_into_sigma_demo_duckdb(tmp_path):
    env = {"DLT_DATA_DIR": str(tmp_path / "dlt-data")}
    (tmp_path / "pipelines").symlink_to(REPO / "pipelines")

    done = _sigma_load(["demo", "--scale", "3000"], tmp_path, env)

    assert done.returncode == 0, done.stderr
    for name in ("balance_transactions", "charges", "daily_revenue"):
        assert name in done.stdout
    assert "qry_" in done.stdout and "Example query" in done.stdout
    with duckdb.connect(str(tmp_path / "sigma_demo.duckdb"), read_only=True) as connection:
        count = connection.sql("select count(*) from sigma.balance_transactions").fetchone()[0]
    assert count == 3000


def test_run_full_refresh_rebuilds_the_table_from_the_initial_value(cli, emulator):
    assert cli.invoke("run").exit_code == 0
    emulator.add_rows("balance_transactions", 15)
    assert cli.invoke("run").exit_code == 0  # incremental: a second load in the table
    assert cli.sql("select count(distinct _dlt_load_id) from sigma.balance_transactions") == [(2,)]
    asked_before = len(posted_sql(emulator))

    result = cli.invoke("run", "--full-refresh", "--select", "balance_transactions")

    assert result.exit_code == 0, result.output
    (sql,) = posted_sql(emulator)[asked_before:]
    assert "created >= timestamp '2024-01-01 00:00:00.000'" in sql
    expected = emulator.execute("select count(*) from balance_transactions")[0][0]
    loads = cli.sql(
        "select count(*), count(distinct id), count(distinct _dlt_load_id) "
        "from sigma.balance_transactions"
    )
    assert loads == [(expected, expected, 1)]  # every row once, all from the refresh's load
    listed = next(entry for entry in cli.json("ls") if entry["query"] == "balance_transactions")
    (highest,) = cli.sql("select max(created) from sigma.balance_transactions")[0]
    assert datetime.fromisoformat(listed["last_cursor"].replace("Z", "+00:00")) == highest


def test_run_exclude_leaves_out_queries_by_name_and_by_tag(cli, emulator):
    result = cli.invoke("run", "--exclude", "customers_by_country")

    assert result.exit_code == 0, result.output
    assert _tables(cli) == {"balance_transactions"}
    assert not [sql for sql in posted_sql(emulator) if "from customers" in sql]

    result = cli.invoke("run", "--exclude", "tag:finance")

    assert result.exit_code == 0, result.output
    assert _tables(cli) == {"balance_transactions", "customers_by_country"}
    runs = cli.sql("select query_name, count(*) from sigma._sigma_query_runs group by 1 order by 1")
    assert runs == [("balance_transactions", 1), ("customers_by_country", 1)]


def test_run_loads_into_the_duckdb_file_set_in_dlt_s_own_setting(cli):
    setting = {"DESTINATION__DUCKDB__CREDENTIALS": "stripe.duckdb"}

    result = cli.invoke("run", env=setting)

    assert result.exit_code == 0, result.output
    assert not cli.duckdb_path.exists()  # no sigma_load.duckdb beside it
    with duckdb.connect(str(cli.tmp_path / "stripe.duckdb"), read_only=True) as connection:
        count = connection.sql("select count(*) from sigma.balance_transactions").fetchone()[0]
    assert count > 0
    history = cli.invoke("runs", "--format", "json", env=setting)  # reads the same file
    assert history.exit_code == 0, history.output
    assert "balance_transactions" in history.stdout


def test_run_refuses_a_dlt_duckdb_setting_that_is_not_a_file(cli):
    result = cli.invoke("run", env={"DESTINATION__DUCKDB__CREDENTIALS": ":memory:"})

    assert result.exit_code == 2
    assert one_line_error(result).startswith("error: destination.duckdb.credentials")
