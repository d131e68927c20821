"""What `sigma-load run` shows while it works: log lines off a terminal, a live table on one,
JSON lines for machines, nothing but errors with --quiet."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from sigma_source.artifacts import run_and_record
from sigma_source.emulator import Fault
from sigma_source.events import ProgressEvent
from sigma_source.progress import JSON_KEYS, LineDisplay, LiveDisplay, RunTracker
from tests.cli_helpers import BROKEN_SQL, CUSTOMERS_BY_COUNTRY_SQL
from tests.loader_helpers import LoaderHarness

ORDER = ["rendering", "running", "downloading", "staging", "waiting", "loading", "loaded"]
LINE = re.compile(r"(\d\d:\d\d:\d\d) (\w+) (.*)")


def _phases(lines: list[str], query: str) -> list[str]:
    words = {
        "rendering SQL": "rendering",
        "running": "running",
        "downloading": "downloading",
        "reading": "staging",
        "staged": "waiting",
        "loading": "loading",
        "loaded": "loaded",
        "failed": "failed",
    }
    found = []
    for line in lines:
        match = LINE.fullmatch(line)
        if match and match.group(2) == query:
            found.append(next(p for w, p in words.items() if match.group(3).startswith(w)))
    return found


def test_off_a_terminal_each_query_logs_one_line_per_phase_on_stderr(cli):
    result = cli.invoke("run")

    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert _phases(lines, "customers_by_country") == ORDER
    assert any(re.search(r"running qry_\w+ \d+ s$", line) for line in lines)
    assert lines[-1].endswith("customers_by_country loaded 11 rows")


def test_a_failing_query_logs_its_failure_as_it_happens(cli):
    cli.write_query("broken", BROKEN_SQL)

    result = cli.invoke("run")

    phases = _phases(result.stderr.splitlines(), "broken")
    assert phases[0] == "rendering" and phases[-1] == "failed"
    assert result.stderr.splitlines()[-1].startswith("FAILED broken: ")


def test_quiet_prints_nothing_when_all_loads(cli):
    result = cli.invoke("run", "--quiet")

    assert result.exit_code == 0
    assert (result.stdout, result.stderr) == ("", "")


def test_quiet_still_prints_one_line_per_failed_query(cli):
    cli.write_query("broken", BROKEN_SQL)

    result = cli.invoke("run", "-q")

    assert result.exit_code == 1 and result.stdout == ""
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == ["FAILED broken"]


def test_json_log_format_prints_only_json_objects_with_stable_keys(cli):
    result = cli.invoke("run", "--log-format", "json")

    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    progress = [event for event in events if event["event"] == "progress"]
    assert all(tuple(event) == JSON_KEYS for event in progress)
    assert [event["phase"] for event in progress] == ORDER
    assert progress[-1]["rows"] == 11 and progress[1]["query_run_id"].startswith("qry_")
    assert all(event["ts"].endswith("Z") for event in events)


def test_json_log_format_ends_with_a_summary_of_the_run(cli):
    cli.write_query("broken", BROKEN_SQL)

    result = cli.invoke("run", "--log-format", "json")

    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["event"] == "run"
    assert (summary["status"], summary["queries"], summary["failed"]) == ("failed", 2, 1)
    assert summary["run_results"] == "target/run_results.json"
    assert summary["load_id"] == cli.run_results()["load_id"]


def test_json_log_format_with_quiet_prints_the_summary_only(cli):
    result = cli.invoke("run", "--log-format", "json", "--quiet")

    assert result.exit_code == 0
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["run"]


def test_json_log_format_carries_the_loaders_warnings_as_log_events(cli):
    cli.emulator.add_fault(Fault(kind="status", status=503, path="/v1/sigma/query_runs$"))

    result = cli.invoke("run", "--log-format", "json")

    assert result.exit_code == 0
    logs = [e for e in map(json.loads, result.stdout.splitlines()) if e["event"] == "log"]
    assert logs and logs[0]["level"] == "warning" and logs[0]["logger"].startswith("sigma_source")
    assert "503" in logs[0]["message"]


def test_on_a_terminal_a_live_table_shows_each_query_ticking(tmp_path, emulator):
    emulator.run_seconds = 0.6
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    screen = io.StringIO()
    display = LiveDisplay(Console(file=screen, force_terminal=True, width=100))

    display.start()
    try:
        recorded = run_and_record(
            harness.options(), RunTracker(display), args={}, target_dir=tmp_path / "target"
        )
    finally:
        display.stop()

    assert recorded.ok
    drawn = screen.getvalue()
    assert "\x1b[1A" in drawn  # the cursor moves up: redrawn in place
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    assert re.search(r"customers_by_country\s+running qry_\w+ \d+ s", text)
    assert re.search(r"customers_by_country\s+loaded 11 rows", text)


def test_log_lines_repeat_a_phase_at_most_once_per_interval():
    stream = io.StringIO()
    tracker = RunTracker(LineDisplay(stream, interval=60))

    tracker(ProgressEvent("charges", "downloading", bytes=0))
    for received in range(1, 50):
        tracker(ProgressEvent("charges", "downloading", bytes=received * 1_000_000))
    tracker(ProgressEvent("charges", "staging", bytes=49_000_000))

    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "downloading",
        "reading 49.0 MB of CSV into typed columns",
    ]


def test_a_new_window_of_a_backfill_is_always_shown():
    stream = io.StringIO()
    tracker = RunTracker(LineDisplay(stream, interval=60))

    for window in (1, 2):
        tracker(ProgressEvent("charges", "running", window=window, windows=2, seconds=0))

    assert [line.split(" ", 2)[2] for line in stream.getvalue().splitlines()] == [
        "[1/2] running 0 s",
        "[2/2] running 0 s",
    ]


def test_the_tracker_adds_up_the_time_of_each_phase():
    tracker = RunTracker()

    tracker(ProgressEvent("charges", "running", at=10.0))
    tracker(ProgressEvent("charges", "downloading", at=12.5))
    tracker(ProgressEvent("charges", "running", window=2, windows=2, at=13.0))
    tracker(ProgressEvent("charges", "loading", at=14.0))
    tracker(ProgressEvent("charges", "loaded", at=15.0))

    assert tracker.timings() == {"charges": {"running": 3.5, "downloading": 0.5, "loading": 1.0}}
