"""pipelines/sigma_pipeline.py, the script users copy: run as they run it, against the emulator.

The script is run from a working directory that holds the repository's `pipelines/` (the
example project) and `.dlt/config.toml`, with the emulator set through the environment as the
README says. It writes `sigma_load.duckdb` there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tests.loader_helpers import TEST_KEY, posted_sql

REPO = Path(__file__).resolve().parent.parent
INCREMENTAL = ("balance_transactions", "charges")  # the examples with a cursor, lag 3h


@pytest.fixture
def workdir(tmp_path) -> Path:
    (tmp_path / "pipelines").symlink_to(REPO / "pipelines")
    (tmp_path / ".dlt").mkdir()
    shutil.copy(REPO / ".dlt" / "config.toml", tmp_path / ".dlt" / "config.toml")
    return tmp_path


def _run_script(workdir: Path, emulator) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SOURCES__SIGMA__API_KEY": TEST_KEY,
        "SOURCES__SIGMA__API_BASE": emulator.url,
        "SOURCES__SIGMA__FILES_BASE": emulator.url,
        "DLT_DATA_DIR": str(workdir / "dlt-data"),
    }
    return subprocess.run(
        [sys.executable, "pipelines/sigma_pipeline.py"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _sql(workdir: Path, query: str) -> list[tuple]:
    with duckdb.connect(str(workdir / "sigma_load.duckdb"), read_only=True) as connection:
        return connection.sql(query).fetchall()


def _trino_ms(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def test_pipeline_script_loads_the_example_project_then_only_the_lagged_window(workdir, emulator):
    first = _run_script(workdir, emulator)

    assert first.returncode == 0, first.stderr
    for table in (*INCREMENTAL, "daily_revenue"):
        assert table in first.stdout
        assert _sql(workdir, f"select count(*) from sigma.{table}")[0][0] > 0
    for table in INCREMENTAL:
        expected = emulator.execute(f"select count(*) from {table}")[0][0]
        assert _sql(workdir, f"select count(*) from sigma.{table}")[0][0] == expected
    last_cursor = {
        table: _sql(workdir, f"select max(created) from sigma.{table}")[0][0]
        for table in INCREMENTAL
    }
    asked_before = len(posted_sql(emulator))
    for table in INCREMENTAL:
        emulator.add_rows(table, 20)

    second = _run_script(workdir, emulator)

    assert second.returncode == 0, second.stderr
    asked = posted_sql(emulator)[asked_before:]
    for table in INCREMENTAL:
        starts = [
            re.search(r"created >= timestamp '([^']+)'", sql).group(1)
            for sql in asked
            if f"from {table}" in sql and "created < timestamp" in sql  # not daily_revenue
        ]
        # The window starts 3 h (the lag) before the highest cursor loaded; a long window is
        # split into backfill chunks, oldest first, none reaching back further.
        start = _trino_ms(last_cursor[table] - timedelta(hours=3))
        assert starts and starts[0] == start and min(starts) == start, starts
        expected = emulator.execute(f"select count(*) from {table}")[0][0]
        counts = _sql(workdir, f"select count(*), count(distinct id) from sigma.{table}")
        assert counts == [(expected, expected)]  # every row once, the lag's overlap merged
        loaded = _sql(
            workdir,
            f"select sum(row_count) from sigma._sigma_query_runs where query_name = '{table}' "
            "and load_id = (select max(load_id) from sigma._sigma_query_runs)",
        )[0][0]
        overlap = emulator.execute(
            f"select count(*) from {table} where created >= timestamp '{start}'"
        )[0][0]
        assert loaded == overlap >= 20
