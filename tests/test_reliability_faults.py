"""The fault matrix: every fault Sigma's API can throw at a run, on a real socket.

A transient fault is retried and the run loads exactly the rows it should, from exactly one
query run (a retried create replays the first answer by its Idempotency-Key). A permanent
fault fails the query with one line naming the query, the run and the Request-Id where they
exist: exit code 1, no rows, the cursor where it was; and the next run, once the fault has
cleared, loads exactly what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from sigma_source.emulator import Fault
from tests.loader_helpers import TEST_KEY
from tests.reliability_helpers import (
    INCREMENTAL_SQL,
    CliProject,
    assert_lineage_agrees,
    assert_no_secret_anywhere,
)

TABLE = "balance_transactions"
COLUMNS = "id, amount, fee, net, currency, type, created"
CREATE = r"^/v1/sigma/query_runs$"
POLL = r"^/v1/sigma/query_runs/qry_"
DOWNLOAD = r"/contents$"
RUN_ID = re.compile(r"qry_[A-Za-z0-9]{24}")

TRANSIENT: dict[str, Fault] = {
    "429 with Retry-After on create": Fault(
        kind="status", status=429, retry_after=0.2, method="POST", path=CREATE, times=2
    ),
    "429 without Retry-After on poll": Fault(kind="status", status=429, path=POLL, times=2),
    "500 on create": Fault(kind="status", status=500, method="POST", path=CREATE, times=2),
    "503 on poll": Fault(kind="status", status=503, path=POLL, times=3),
    "503 on download": Fault(kind="status", status=503, path=DOWNLOAD, times=2),
    "connection reset on create, before the run starts": Fault(
        kind="drop", method="POST", path=CREATE, times=2
    ),
    "connection reset on create, after the run started": Fault(
        kind="drop_after", method="POST", path=CREATE, times=2
    ),
    "connection reset on poll": Fault(kind="drop", path=POLL, times=2),
    "connection reset on download": Fault(kind="drop", path=DOWNLOAD, times=2),
    "truncated download": Fault(kind="truncate", fraction=0.4, path=DOWNLOAD, times=2),
    "slow download": Fault(kind="slow", bytes_per_second=60_000, path=DOWNLOAD),
}


@dataclass(frozen=True)
class Permanent:
    """A fault that outlasts every retry, and what its one-line error must name."""

    fault: Fault | None
    says: str
    names_run: bool
    names_request: bool
    settings: tuple[tuple[str, object], ...] = ()


PERMANENT: dict[str, Permanent] = {
    "query run failed": Permanent(
        Fault(kind="run_status", run_status="failed", message="Query exceeded limits"),
        "Query exceeded limits",
        names_run=True,
        names_request=True,
    ),
    "query run canceled": Permanent(
        Fault(kind="run_status", run_status="canceled"),
        "canceled",
        names_run=True,
        names_request=True,
    ),
    "query run timed out": Permanent(
        Fault(kind="run_status", run_status="timed_out"),
        "timed_out",
        names_run=True,
        names_request=True,
    ),
    "result file expired": Permanent(
        Fault(kind="expire_file", path=DOWNLOAD), "expired", names_run=True, names_request=True
    ),
    "result file 404": Permanent(
        Fault(kind="status", status=404, path=DOWNLOAD, times=None),
        "HTTP 404",
        names_run=True,
        names_request=True,
    ),
    "401 bad API key": Permanent(
        None,
        "HTTP 401",
        names_run=False,
        names_request=True,
        settings=(("api_key", "sk_live_revoked_0000000000000000"),),
    ),
    "403 key without Sigma permission": Permanent(
        Fault(kind="status", status=403, times=None),
        "HTTP 403",
        names_run=False,
        names_request=True,
    ),
    "malformed JSON from create": Permanent(
        Fault(kind="malformed_json", method="POST", path=CREATE),
        "not JSON",
        names_run=False,
        names_request=True,
    ),
    "malformed JSON from poll": Permanent(
        Fault(kind="malformed_json", path=POLL), "not JSON", names_run=True, names_request=True
    ),
    "500 on every attempt": Permanent(
        Fault(kind="status", status=500, times=None),
        "gave up after 4 attempts",
        names_run=False,
        names_request=True,
    ),
    "429 on every attempt": Permanent(
        Fault(kind="status", status=429, path=POLL, times=None),
        "gave up after 4 attempts",
        names_run=True,
        names_request=True,
    ),
    "connection reset on every download": Permanent(
        Fault(kind="drop", path=DOWNLOAD, times=None),
        "after 4 attempts",
        names_run=True,
        names_request=False,
    ),
    "truncated on every download": Permanent(
        Fault(kind="truncate", fraction=0.5, path=DOWNLOAD, times=None),
        "after 3 attempts",
        names_run=True,
        names_request=True,
    ),
    "query still running at poll_timeout": Permanent(
        None,
        "poll_timeout",
        names_run=True,
        names_request=True,
        settings=(("poll_timeout", 0.3),),
    ),
}

FAULTS_TRIED = len(TRANSIENT) + len(PERMANENT)


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url)
    project.write_query(TABLE, INCREMENTAL_SQL)
    return project


def _expected(emulator) -> list[tuple]:
    return sorted(emulator.execute(f"select {COLUMNS} from {TABLE}"))


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_fault_is_retried_and_loads_exactly_the_rows_from_one_query_run(
    project, emulator, fault
):
    emulator.add_fault(fault)

    result = project.run()

    assert result.ok, result.failures
    assert project.rows(TABLE, COLUMNS) == _expected(emulator)
    assert emulator.created_query_run_count == 1
    assert emulator.faults.pending() == [], "the fault never hit"
    assert_lineage_agrees(project, TABLE)


@pytest.mark.parametrize("case", PERMANENT.values(), ids=PERMANENT.keys())
def test_permanent_fault_fails_with_one_line_loads_nothing_and_the_next_run_repairs(
    project, emulator, case
):
    project.run()
    loaded, cursor = project.rows(TABLE, COLUMNS), project.last_cursor(TABLE)
    emulator.add_rows(TABLE, 7)
    if case.fault is not None:
        emulator.add_fault(case.fault)
    if dict(case.settings).get("poll_timeout"):
        emulator.run_seconds = 5.0
    env = project.env(**{f"SOURCES__SIGMA__{k.upper()}": str(v) for k, v in case.settings})

    failed = project.cli("run", env=env)

    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    lines = [line for line in failed.stderr.splitlines() if line.startswith(("FAILED", "error"))]
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith(f"FAILED {TABLE}: ") and case.says in lines[0]
    assert bool(RUN_ID.search(lines[0])) == case.names_run, lines[0]
    assert ("Request-Id req_" in lines[0]) == case.names_request, lines[0]
    assert project.rows(TABLE, COLUMNS) == loaded
    assert project.last_cursor(TABLE) == cursor
    for key in (TEST_KEY, *[v for k, v in case.settings if k == "api_key"]):
        assert_no_secret_anywhere(project, key, failed.stdout, failed.stderr)

    emulator.clear_faults()
    emulator.run_seconds = 0.0
    repaired = project.run()

    assert repaired.ok, repaired.failures
    assert project.rows(TABLE, COLUMNS) == _expected(emulator)
    assert_lineage_agrees(project, TABLE)


def test_a_retried_create_replays_the_first_answer_instead_of_starting_a_second_run(
    project, emulator
):
    emulator.add_fault(Fault(kind="drop_after", method="POST", path=CREATE, times=3))

    result = project.run()

    assert result.ok, result.failures
    creates = [
        r for r in emulator.requests if r.method == "POST" and r.path == "/v1/sigma/query_runs"
    ]
    assert len(creates) == 4
    assert len({r.headers["Idempotency-Key"] for r in creates}) == 1
    assert emulator.created_query_run_count == 1


def test_transient_faults_through_the_cli_exit_0_with_every_row(project, emulator):
    for fault in (TRANSIENT["503 on poll"], TRANSIENT["truncated download"]):
        emulator.add_fault(fault)
    emulator.add_fault(Fault(kind="drop_after", method="POST", path=CREATE))

    done = project.cli("run")

    assert done.returncode == 0, done.stderr
    assert project.rows(TABLE, COLUMNS) == _expected(emulator)
    assert emulator.created_query_run_count == 1


def test_a_permanent_fault_in_one_query_leaves_the_other_queries_loading(project, emulator):
    project.write_query("charges", "select id, amount, created from charges")
    emulator.add_fault(Fault(kind="run_status", run_status="failed", sql_contains="from charges"))

    done = project.cli("run")

    assert done.returncode == 1
    assert [line.split(":")[0] for line in done.stderr.splitlines() if "FAILED" in line] == [
        "FAILED charges"
    ]
    assert project.rows(TABLE, COLUMNS) == _expected(emulator)
    assert not project.table_exists("charges")


def test_a_retry_waits_at_least_as_long_as_retry_after_asks(project, emulator):
    emulator.add_fault(
        Fault(kind="status", status=429, retry_after=0.4, method="POST", path=CREATE)
    )

    assert project.run().ok

    creates = [r for r in emulator.requests if r.method == "POST"]
    assert len(creates) == 2
    assert creates[1].received_at - creates[0].received_at >= 0.4
