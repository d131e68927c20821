"""DuckDB loads: the file stays open through each dlt load step and is let go when it ends,
and the destination's capabilities are those dlt would work out, resolved once a run."""

from __future__ import annotations

import dlt
import duckdb
import pytest
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from sigma_source import duckdb_open, loader
from sigma_source.dlt_steps import StepHooks, following_dlt_steps
from tests.loader_helpers import LoaderHarness


def _open_elsewhere_in_this_process(path: str) -> bool:
    """Whether a connection with other settings gets the file: DuckDB refuses it while the
    process holds the file open with different ones."""
    try:
        duckdb.connect(path, config={"threads": 1}).close()
    except duckdb.ConnectionException:
        return False
    return True


class _ProbeAtLoadEnd(StepHooks):
    """Registered before the loader's own hooks: hears the load step end before they do."""

    held_at_load_end: bool | None = None

    def __init__(self, pipeline_name: str, path: str) -> None:
        super().__init__(pipeline_name)
        self.path = path

    def step_ended(self, step: str, pipeline, *, failed: bool) -> None:
        if step == "load":
            self.held_at_load_end = not _open_elsewhere_in_this_process(self.path)


def test_the_file_stays_open_to_the_end_of_the_load_step_and_no_longer(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("few", "select id, amount from balance_transactions limit 10")
    probe = _ProbeAtLoadEnd("sigma_test", str(harness.duckdb_path))

    with following_dlt_steps(probe):
        result = harness.run()

    assert result.ok, result.failures
    assert probe.held_at_load_end is True
    assert _open_elsewhere_in_this_process(str(harness.duckdb_path))


def test_a_load_step_that_raises_lets_the_file_go(tmp_path):
    path = str(tmp_path / "held.duckdb")
    pipeline = loader.make_pipeline(
        loader.RunOptions(duckdb_path=path, pipelines_dir=str(tmp_path / "state"))
    )

    with pytest.raises(RuntimeError), duckdb_open.duckdb_open_during_each_load("sigma_load"):
        holding = _only_holding_hooks()
        holding.step_started("load", pipeline)
        assert not _open_elsewhere_in_this_process(path)
        raise RuntimeError("the load failed before dlt reported the step's end")

    assert _open_elsewhere_in_this_process(path)


def test_nothing_is_held_for_the_other_steps(tmp_path):
    path = str(tmp_path / "held.duckdb")
    pipeline = loader.make_pipeline(
        loader.RunOptions(duckdb_path=path, pipelines_dir=str(tmp_path / "state"))
    )

    with duckdb_open.duckdb_open_during_each_load("sigma_load"):
        holding = _only_holding_hooks()
        for step in ("extract", "normalize"):
            holding.step_started(step, pipeline)
            assert _open_elsewhere_in_this_process(path)


def test_a_file_that_cannot_be_opened_is_left_to_dlts_load_to_report(tmp_path):
    path = str(tmp_path / "no such folder" / "held.duckdb")
    pipeline = loader.make_pipeline(
        loader.RunOptions(duckdb_path=path, pipelines_dir=str(tmp_path / "state"))
    )

    with duckdb_open.duckdb_open_during_each_load("sigma_load"):
        holding = _only_holding_hooks()
        holding.step_started("load", pipeline)  # raises nothing: dlt would log it as a warning

        assert holding._held is None


def _only_holding_hooks() -> StepHooks:
    from dlt.pipeline import trace

    (holding,) = [m for m in trace.TRACKING_MODULES if isinstance(m, duckdb_open._HoldingEachLoad)]
    return holding


def test_capabilities_are_dlts_own(tmp_path):
    credentials = DuckDbCredentials(str(tmp_path / "caps.duckdb"))
    ours = loader._duckdb_destination(credentials).capabilities()
    dlts = dlt.destinations.duckdb(credentials=credentials).capabilities()

    assert dict(ours) == dict(dlts)


def test_capabilities_resolve_the_configuration_once(tmp_path, monkeypatch):
    destination = loader._duckdb_destination(DuckDbCredentials(str(tmp_path / "caps.duckdb")))
    resolved = []
    dlt_configuration = destination.configuration
    monkeypatch.setattr(
        destination,
        "configuration",
        lambda *args, **kwargs: resolved.append(args) or dlt_configuration(*args, **kwargs),
    )

    for _ in range(3):
        destination.capabilities()

    assert len(resolved) == 1
