"""SIGKILL `sigma-load run` anywhere; one clean rerun repairs everything.

Each kill aims at a phase (polling Sigma, downloading, extracting, normalizing, loading),
waits for that phase to show (the emulator's request log, dlt's package folders), then
kills the process after a random delay. After every kill one clean run must leave each table
equal to what the emulator holds — no row missing, none loaded by two runs or two loads —
and `_sigma_query_runs` agreeing with the data.

A kill between the destination committing a load job and dlt recording it makes dlt apply
that job again when the package resumes; the loader first deletes what such a job may have
committed to an `append` table, so those hold each row once too. And a kill after dlt put
new cursors into a load package but before it saved them on disk: the rerun finishes that
package and adopts its cursors, so its own window does not read the same rows again.

The number of kills is `SIGMA_LOAD_CRASH_KILLS` (default 50) into DuckDB, spread over the
seeds, and `SIGMA_LOAD_CRASH_KILLS_POSTGRES` (default 10) into the real Postgres.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from sigma_source.emulator import Emulator, Fault
from sigma_source.errors import SigmaLoadError
from sigma_source.loader import prepare
from tests.reliability_helpers import (
    EXPECTED_ROWS,
    THREE_QUERIES,
    CliProject,
    assert_lineage_agrees,
)

SEEDS = (11, 23, 37, 41, 59)
KILLS = int(os.environ.get("SIGMA_LOAD_CRASH_KILLS", "50"))
PG_KILLS = int(os.environ.get("SIGMA_LOAD_CRASH_KILLS_POSTGRES", "10"))
PG_SEED = 71
PHASES = ("polling", "downloading", "extracting", "normalizing", "loading")
# How long after its phase shows a kill may come (seconds): about as long as the phase lasts.
DELAY = {"polling": 0.5, "downloading": 0.4, "extracting": 0.1, "normalizing": 0.02, "loading": 0.3}
RUN_SECONDS_WHEN_POLLING = 0.6
SLOW_DOWNLOAD = Fault(kind="slow", path=r"/contents$", bytes_per_second=150_000, times=None)


def _aim(emulator: Emulator, phase: str) -> None:
    """Make `phase` last long enough to be hit."""
    emulator.clear_faults()
    emulator.run_seconds = RUN_SECONDS_WHEN_POLLING if phase == "polling" else 0.0
    if phase == "downloading":
        emulator.add_fault(SLOW_DOWNLOAD)


def _package_dirs(project: CliProject, *parts: str) -> list[Path]:
    folder = project.working_dir.joinpath(*parts)
    return [path for path in folder.glob("*") if path.is_dir()] if folder.is_dir() else []


def _shows(phase: str, project: CliProject, emulator: Emulator) -> bool:
    requests = emulator.requests
    if phase == "polling":
        return any(r.path.startswith("/v1/sigma/query_runs/") for r in requests)
    if phase in ("downloading", "extracting"):
        downloads = sum(r.path.endswith("/contents") for r in requests)
        return downloads >= (1 if phase == "downloading" else len(THREE_QUERIES))
    if phase == "normalizing":
        return bool(_package_dirs(project, "normalize", "extracted"))
    return bool(_package_dirs(project, "load", "normalized"))


def _left_behind(project: CliProject) -> str:
    """Where the killed run stopped, from the load packages it left."""
    normalized = _package_dirs(project, "load", "normalized")
    if any(any((package / "completed_jobs").glob("*")) for package in normalized):
        return "load package partly loaded"
    if normalized:
        return "load package normalized, loading"
    if _package_dirs(project, "load", "new") or _package_dirs(project, "normalize", "extracted"):
        return "load package extracted, normalizing"
    return "no load package yet"


def _kill_during(project: CliProject, emulator: Emulator, phase: str, rng: random.Random) -> bool:
    """Start `sigma-load run`, SIGKILL it in `phase`; False if it finished first."""
    _aim(emulator, phase)
    emulator.request_log.clear()
    process = project.start_cli("run")
    try:
        while process.poll() is None and not _shows(phase, project, emulator):
            time.sleep(0.002)
        time.sleep(rng.uniform(0, DELAY[phase]))
        if process.poll() is not None:
            return False
        process.kill()
        return True
    finally:
        process.kill()
        process.wait(timeout=30)


def _assert_consistent(project: CliProject, emulator: Emulator, after: str = "") -> None:
    """Each table holds exactly what Sigma holds, and its lineage agrees."""
    for table, (columns, source_sql) in EXPECTED_ROWS.items():
        loaded = project.rows(table, columns)
        assert loaded == sorted(emulator.execute(source_sql)), f"{table} differs from Sigma{after}"
        assert_lineage_agrees(project, table)


def _kill_and_rerun(
    project: CliProject, emulator: Emulator, kills_wanted: int, rng: random.Random
) -> tuple[Counter[str], Counter[str]]:
    """Kill `sigma-load run` `kills_wanted` times, a clean run after each; check each time.

    Returns the kills by phase aimed at, and by what the killed run left behind.
    """
    aimed: Counter[str] = Counter()
    stopped: Counter[str] = Counter()
    for name, sql in THREE_QUERIES.items():
        project.write_query(name, sql)
    tried: Counter[str] = Counter()
    while sum(aimed.values()) < kills_wanted:
        attempts = sum(tried.values()) + 1
        assert attempts <= 3 * kills_wanted, f"only {sum(aimed.values())} kills landed"
        # The phase hit least so far (of those, the one tried least): a short phase the run
        # got through before the kill is aimed at again, so every phase gets its kills.
        phase = min(PHASES, key=lambda name: (aimed[name], tried[name]))
        tried[phase] += 1
        emulator.add_rows("balance_transactions", rng.randint(1, 40))
        emulator.add_rows("charges", rng.randint(1, 20))
        after = " after a run that finished"
        if _kill_during(project, emulator, phase, rng):
            aimed[phase] += 1
            where = _left_behind(project)
            stopped[where] += 1
            after = f" after a kill aimed at {phase} ({where})"
        emulator.clear_faults()
        emulator.run_seconds = 0.0

        try:
            rerun = project.run()
        except SigmaLoadError as error:
            if "Corrupt database file" not in str(error):
                raise
            # DuckDB's own limit (see the README's Guarantees): it rewrites a metadata block in
            # place when it checkpoints, and a kill in mid-write tears it. Seen once in about
            # 300 kills; reported as what it is, not hidden.
            pytest.xfail(f"DuckDB tore a metadata block when killed mid-checkpoint: {error}")

        assert rerun.ok, rerun.failures
        assert not rerun.pipeline.has_pending_data
        _assert_consistent(project, emulator, after)
        assert not list((project.working_dir / "sigma_staging").glob("*")), "staging left"
    print(f"attempts by phase: {dict(tried)}")
    return aimed, stopped


def _assert_every_phase_hit(aimed: Counter[str], stopped: Counter[str]) -> None:
    if sum(aimed.values()) < len(PHASES):
        return
    assert set(aimed) == set(PHASES)
    # A kill with a load package pending is the case that matters most: some must land there.
    assert sum(count for where, count in stopped.items() if "package" in where) > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_one_clean_run_after_a_sigkill_anywhere_loads_exactly_what_sigma_holds(
    tmp_path, seed, record_property
):
    rng = random.Random(seed)
    with Emulator(seed=seed, scale=2000) as emulator:
        project = CliProject(tmp_path, emulator.url)
        aimed, stopped = _kill_and_rerun(project, emulator, round(KILLS / len(SEEDS)), rng)

    survived = sum(aimed.values())
    print(f"seed {seed}: {survived} kills survived; aimed {dict(aimed)}; {dict(stopped)}")
    record_property("kills_survived", survived)
    _assert_every_phase_hit(aimed, stopped)


@pytest.mark.slow
@pytest.mark.postgres
def test_one_clean_run_after_a_sigkill_repairs_a_postgres_load(
    tmp_path, postgres_dataset, record_property
):
    dsn, dataset = postgres_dataset
    rng = random.Random(PG_SEED)
    with Emulator(seed=PG_SEED, scale=2000) as emulator:
        project = CliProject(tmp_path, emulator.url, postgres_dsn=dsn, dataset=dataset)
        aimed, stopped = _kill_and_rerun(project, emulator, PG_KILLS, rng)

    survived = sum(aimed.values())
    print(f"postgres: {survived} kills survived; aimed {dict(aimed)}; {dict(stopped)}")
    record_property("kills_survived", survived)
    _assert_every_phase_hit(aimed, stopped)


# --- the states a kill can leave, made on purpose (fast and deterministic) ----------------


def _project_with_data(tmp_path: Path, emulator: Emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url)
    for name, sql in THREE_QUERIES.items():
        project.write_query(name, sql)
    return project


def test_a_package_half_deleted_after_normalizing_does_not_block_the_next_run(tmp_path, emulator):
    project = _project_with_data(tmp_path, emulator)
    assert project.run().ok
    (loaded,) = _package_dirs(project, "load", "loaded")
    # The kill came while dlt deleted the extracted input it had just normalized.
    leftover = project.working_dir / "normalize" / "extracted" / loaded.name
    shutil.copytree(loaded, leftover)
    shutil.rmtree(leftover / "new_jobs", ignore_errors=True)
    emulator.add_rows("charges", 3)

    rerun = project.run()

    assert rerun.ok, rerun.failures
    _assert_consistent(project, emulator)


def test_a_package_left_whole_after_normalizing_is_loaded_once(tmp_path, emulator):
    project = _project_with_data(tmp_path, emulator)
    pipeline, source, _ = prepare(project.options())
    pipeline.extract(source)
    (extracted,) = _package_dirs(project, "normalize", "extracted")
    kept = tmp_path / "kept"
    shutil.copytree(extracted, kept)
    pipeline.normalize()
    # The kill came after dlt renamed the normalized package into place, before it deleted
    # the extracted input.
    shutil.copytree(kept, extracted)

    rerun = project.run()

    assert rerun.ok, rerun.failures
    _assert_consistent(project, emulator)


def test_a_schema_write_cut_short_does_not_block_the_next_run(tmp_path, emulator):
    project = _project_with_data(tmp_path, emulator)
    assert project.run().ok
    state_file = project.working_dir / "state.json"
    older_state = state_file.read_text()
    emulator.add_rows("charges", 3)
    assert project.run().ok
    # The kill came after the destination stored the new state, while dlt was writing the
    # schema locally: the local state is older than the destination's, and the schema folder
    # holds dlt's temporary file (named by a random id) from the interrupted atomic write.
    state_file.write_text(older_state)
    (project.working_dir / "schemas" / "61045eb417b7241a").write_text('{"half": ')
    emulator.add_rows("charges", 2)

    rerun = project.run()

    assert rerun.ok, rerun.failures
    _assert_consistent(project, emulator)


def _kill_after_commit_before_record(
    project: CliProject, emulator: Emulator, *, marked: tuple[str, ...] = ()
) -> None:
    """Leave the state a kill leaves when it comes after the destination committed a load's
    jobs and before dlt recorded any: the package pending again, its append jobs (the
    table's, the lineage's, dlt's state) as started, the others as new. The started jobs of
    the tables in `marked` got as far as dlt's pending-transition marker ("completed")."""
    emulator.add_rows("charges", 4)
    pipeline, source, _ = prepare(project.options())
    pipeline.extract(source)
    pipeline.normalize()
    (load_id,) = pipeline.list_normalized_load_packages()
    package = project.working_dir / "load" / "normalized" / load_id
    kept = project.tmp_path / "kept"
    shutil.copytree(package, kept)
    pipeline.load()
    with pipeline.sql_client() as client:
        loads = client.make_qualified_table_name("_dlt_loads")
        client.execute_sql(f"delete from {loads} where load_id = %s", load_id)
    shutil.rmtree(project.working_dir / "load" / "loaded" / load_id)
    shutil.copytree(kept, package)
    for prefix in ("charges.", "_sigma_query_runs.", "_dlt_pipeline_state."):
        for job in (package / "new_jobs").glob(f"{prefix}*"):
            job.rename(package / "started_jobs" / job.name)
            if prefix.rstrip(".") in marked:
                transitions = package / ".pending_transitions"
                transitions.mkdir(exist_ok=True)
                (transitions / job.name).write_text(
                    json.dumps({"state": "completed", "failed_message": None})
                )


def test_load_jobs_committed_but_not_recorded_are_not_applied_twice(tmp_path, emulator):
    project = _project_with_data(tmp_path, emulator)
    assert project.run().ok
    _kill_after_commit_before_record(project, emulator)

    rerun = project.run()

    assert rerun.ok, rerun.failures
    _assert_consistent(project, emulator)
    assert project.sql("select count(*) - count(distinct id) from sigma.charges") == [(0,)]


def test_a_started_job_dlt_marked_completed_keeps_its_rows(tmp_path, emulator):
    # dlt does not run such a job again, so nothing may be taken from its table.
    project = _project_with_data(tmp_path, emulator)
    assert project.run().ok
    _kill_after_commit_before_record(project, emulator, marked=("charges", "_sigma_query_runs"))

    rerun = project.run()

    assert rerun.ok, rerun.failures
    _assert_consistent(project, emulator)


@pytest.mark.postgres
def test_postgres_load_jobs_committed_but_not_recorded_are_not_applied_twice(
    tmp_path, emulator, postgres_dataset
):
    dsn, dataset = postgres_dataset
    project = CliProject(tmp_path, emulator.url, postgres_dsn=dsn, dataset=dataset)
    for name, sql in THREE_QUERIES.items():
        project.write_query(name, sql)
    assert project.run().ok
    _kill_after_commit_before_record(project, emulator)

    rerun = project.run()

    assert rerun.ok, rerun.failures
    _assert_consistent(project, emulator)
