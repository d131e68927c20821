"""`sigma-load run` and `sigma-load demo` as a user runs them: real processes, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.loader_helpers import BALANCE_TRANSACTIONS_SQL, TEST_KEY, LoaderHarness

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
