"""One run of a pipeline at a time: an overlapping run is refused at once, in one line."""

from __future__ import annotations

import time

import pytest

from sigma_source.errors import SigmaLoadError
from tests.reliability_helpers import INCREMENTAL_SQL, CliProject


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url)
    project.write_query("balance_transactions", INCREMENTAL_SQL)
    return project


def _start_slow_run(project: CliProject, emulator):
    """A `sigma-load run` that is waiting on Sigma (and so holding its pipeline)."""
    emulator.run_seconds = 3.0
    process = project.start_cli("run")
    deadline = time.monotonic() + 30
    while not any(r.path == "/v1/sigma/query_runs" for r in emulator.requests):
        assert process.poll() is None and time.monotonic() < deadline, "the run did not start"
        time.sleep(0.02)
    return process


def test_a_run_of_a_pipeline_another_run_is_loading_is_refused(project, emulator):
    first = _start_slow_run(project, emulator)
    try:
        with pytest.raises(SigmaLoadError, match="being loaded by another sigma-load run"):
            project.run()
        second = project.cli("run")
    finally:
        assert first.wait(timeout=60) == 0

    assert second.returncode == 1
    errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "pipeline 'sigma_load' is being loaded" in errors[0]
    assert sum(r.path == "/v1/sigma/query_runs" for r in emulator.requests) == 1


def test_a_killed_run_leaves_its_pipeline_free(project, emulator):
    first = _start_slow_run(project, emulator)
    first.kill()
    first.wait(timeout=30)
    emulator.run_seconds = 0.0

    assert project.run().ok


def test_the_pipeline_is_free_again_after_a_run(project):
    assert project.run().ok
    assert project.run().ok
