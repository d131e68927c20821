"""A caller of `loader.run` hears each query through to `loaded`, as the CLI's display does:
the source reports up to `waiting`, and the loader follows dlt's normalize and load steps."""

from __future__ import annotations

from sigma_source.events import ProgressEvent
from sigma_source.loader import NORMALIZING, run
from sigma_source.source import RunReport
from tests.loader_helpers import DAILY_REVENUE_SQL, LoaderHarness


def _phases(events: list[ProgressEvent], query: str) -> list[str]:
    phases = [event.phase for event in events if event.query == query]
    # Downloads report their progress repeatedly: one entry per phase in a row.
    return [phase for i, phase in enumerate(phases) if i == 0 or phases[i - 1] != phase]


def _run(harness: LoaderHarness) -> tuple[list[ProgressEvent], RunReport]:
    events: list[ProgressEvent] = []
    report = RunReport(on_event=events.append)
    run(harness.options(), report)
    return events, report


def test_a_library_run_hears_each_query_loading_then_loaded(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)

    events, _ = _run(harness)

    assert _phases(events, "daily_revenue")[-3:] == ["waiting", "loading", "loaded"]
    loaded = next(e for e in events if e.query == "daily_revenue" and e.phase == "loaded")
    assert loaded.rows == harness.sql("select count(*) from sigma.daily_revenue")[0][0]


def test_a_staged_query_hears_that_dlt_is_normalizing(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)

    events, _ = _run(harness)

    waiting = [e for e in events if e.query == "daily_revenue" and e.phase == "waiting"]
    assert [e.message for e in waiting][-1] == NORMALIZING


def test_a_failed_query_is_never_reported_loading(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)
    harness.write_query("broken", "select nope from balance_transactions")

    events, report = _run(harness)

    assert "broken" in report.failures
    assert _phases(events, "broken")[-1] == "failed"
    assert not {"loading", "loaded"} & set(_phases(events, "broken"))
    assert _phases(events, "daily_revenue")[-1] == "loaded"


def test_the_report_keeps_the_callers_listener_after_the_run(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("daily_revenue", DAILY_REVENUE_SQL)
    events: list[ProgressEvent] = []
    report = RunReport(on_event=events.append)

    run(harness.options(), report)

    assert report.on_event == events.append
