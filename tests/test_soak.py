"""Soak: many consecutive incremental runs, new rows between them, random transient faults.

Every run must succeed (the faults are all retried), start exactly one query run per window
(a retry never starts a second one), and at the end each table must equal what the emulator
holds: no row lost, none twice, in the `merge`, `append` and `replace` tables alike.

The number of runs is `SIGMA_LOAD_SOAK_RUNS`: 100 by default, to keep CI short; the figures
in the README come from a run with 200.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace

import pytest

from sigma_source.emulator import Emulator
from tests.reliability_helpers import (
    APPEND_SQL,
    EXPECTED_ROWS,
    THREE_QUERIES,
    CliProject,
    assert_lineage_agrees,
)
from tests.test_reliability_faults import TRANSIENT

RUNS = int(os.environ.get("SIGMA_LOAD_SOAK_RUNS", "100"))
CHECK_EVERY = 25
FAULTS = list(TRANSIENT.items())


def _assert_tables_equal_sigma(project: CliProject, emulator: Emulator) -> None:
    for table, (columns, source_sql) in EXPECTED_ROWS.items():
        assert project.rows(table, columns) == sorted(emulator.execute(source_sql)), table
        assert_lineage_agrees(project, table)


@pytest.mark.slow
def test_consecutive_runs_with_new_rows_and_transient_faults_load_exactly_sigmas_tables(
    tmp_path, record_property
):
    rng = random.Random(2024)
    injected = 0
    started = time.monotonic()
    with Emulator(seed=7, scale=300) as emulator:
        project = CliProject(tmp_path, emulator.url)
        for name, sql in THREE_QUERIES.items():
            project.write_query(name, sql)
        for run in range(1, RUNS + 1):
            emulator.add_rows("balance_transactions", rng.randint(0, 5) or 1)
            if rng.random() < 0.7:
                emulator.add_rows("charges", rng.randint(1, 4))
            for _, fault in rng.sample(FAULTS, rng.randint(0, 2)):
                # `times=1`: a fault that hits a query's request once, which a retry outlasts.
                emulator.add_fault(replace(fault, times=1) if fault.times else fault)
                injected += 1
            created_before = emulator.created_query_run_count

            result = project.run()

            assert result.ok, f"run {run}: {result.failures}"
            created = emulator.created_query_run_count - created_before
            assert created == len(result.records), f"run {run} started a query run twice"
            emulator.clear_faults()
            if run % CHECK_EVERY == 0 or run == RUNS:
                _assert_tables_equal_sigma(project, emulator)

    seconds = time.monotonic() - started
    print(f"soak: {RUNS} runs, {injected} transient faults injected, {seconds:.0f} s")
    record_property("soak_runs", RUNS)
    record_property("soak_faults", injected)


def test_runs_without_new_rows_load_nothing_twice_into_an_append_table(tmp_path, emulator):
    project = CliProject(tmp_path, emulator.url)
    project.write_query("charges", APPEND_SQL)
    columns, source_sql = EXPECTED_ROWS["charges"]

    for _ in range(3):
        assert project.run().ok

    assert project.rows("charges", columns) == sorted(emulator.execute(source_sql))
