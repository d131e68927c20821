"""The fault guarantees hold in the real Postgres too: retried faults load exactly, a
permanent one loads nothing and leaves the cursor, and the next run repairs."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from sigma_source.emulator import Fault
from tests.reliability_helpers import (
    APPEND_SQL,
    INCREMENTAL_SQL,
    CliProject,
    assert_lineage_agrees,
)

pytestmark = pytest.mark.postgres

COLUMNS = {
    "balance_transactions": "id, amount, fee, net, currency, type, created",
    "charges": "id, customer_id, amount, currency, status, created",
}


@pytest.fixture
def project(tmp_path, emulator, postgres_dataset) -> CliProject:
    dsn, dataset = postgres_dataset
    project = CliProject(tmp_path, emulator.url, postgres_dsn=dsn, dataset=dataset)
    project.write_query("balance_transactions", INCREMENTAL_SQL)
    project.write_query("charges", APPEND_SQL)
    return project


def _assert_equal_to_sigma(project: CliProject, emulator) -> None:
    for table, columns in COLUMNS.items():
        expected = sorted(emulator.execute(f"select {columns} from {table}"))
        assert project.rows(table, columns) == expected, table
        assert_lineage_agrees(project, table)


def test_transient_faults_are_retried_into_exactly_sigmas_rows(project, emulator):
    emulator.add_fault(Fault(kind="truncate", fraction=0.3, path=r"/contents$", times=2))
    emulator.add_fault(Fault(kind="drop_after", method="POST", path=r"/query_runs$", times=2))
    emulator.add_fault(Fault(kind="status", status=503, path=r"/query_runs/qry_", times=2))

    result = project.run()

    assert result.ok, result.failures
    assert emulator.created_query_run_count == 2
    _assert_equal_to_sigma(project, emulator)


def test_a_permanent_fault_loads_nothing_and_the_next_run_repairs(project, emulator):
    project.run()
    before = {table: project.rows(table, columns) for table, columns in COLUMNS.items()}
    cursors = {table: project.last_cursor(table) for table in COLUMNS}
    emulator.add_rows("balance_transactions", 9)
    emulator.add_rows("charges", 4)
    emulator.add_fault(Fault(kind="run_status", run_status="failed", times=None))

    failed = project.cli("run")

    assert failed.returncode == 1
    assert sorted(
        line.split(":")[0] for line in failed.stderr.splitlines() if "FAILED" in line
    ) == [
        "FAILED balance_transactions",
        "FAILED charges",
    ]
    assert {table: project.rows(table, columns) for table, columns in COLUMNS.items()} == before
    assert {table: project.last_cursor(table) for table in COLUMNS} == cursors

    emulator.clear_faults()
    assert project.run().ok
    _assert_equal_to_sigma(project, emulator)


def test_missing_postgres_credentials_fail_the_cli_with_exit_2_saying_where_to_put_them(
    project,
):
    env = project.env()
    del env["DESTINATION__POSTGRES__CREDENTIALS"]

    done = project.cli("run", env=env)

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: destination.postgres.credentials is not set: put it under "
        "[destination.postgres] in .dlt/secrets.toml or set DESTINATION__POSTGRES__CREDENTIALS"
    )


def test_postgres_credentials_without_a_password_fail_the_cli_naming_the_password(project):
    # dlt asks for a password even where the server (trust authentication) would not.
    env = project.env()
    url = urlsplit(env["DESTINATION__POSTGRES__CREDENTIALS"])
    without_password = url._replace(netloc=f"{url.username}@{url.hostname}:{url.port}")
    env["DESTINATION__POSTGRES__CREDENTIALS"] = urlunsplit(without_password)

    done = project.cli("run", env=env)

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: destination.postgres.credentials is set but has no password: add it to the "
        "credentials (a URL takes it as user:password@host), or set "
        "DESTINATION__POSTGRES__CREDENTIALS__PASSWORD"
    )


def test_a_run_with_no_new_rows_succeeds_and_changes_nothing(project, emulator):
    assert project.run().ok
    before = {table: project.rows(table, columns) for table, columns in COLUMNS.items()}

    again = project.run()

    assert again.ok, again.failures
    assert {table: project.rows(table, columns) for table, columns in COLUMNS.items()} == before


def test_a_load_postgres_refuses_is_rolled_back_and_the_next_run_loads_each_row_once(
    project, emulator
):
    project.write_query("zblocker", "select 1 as x, id from balance_transactions limit 3")
    assert project.run().ok
    blocker = f"{project.dataset}.zblocker"
    project.sql(f"alter table {blocker} add constraint refuse check (x < 0) not valid; select 1")
    emulator.add_rows("balance_transactions", 5)
    emulator.add_rows("charges", 5)

    refused = project.cli("run")
    # dlt retries a Postgres constraint error through ADBC rather than aborting the load:
    # the load stays pending, and each run tries it first until the cause is fixed.
    still_refused = project.cli("run")

    assert refused.returncode == 1
    assert "error: load step failed: table zblocker: " in refused.stderr
    assert still_refused.returncode == 1
    assert (
        "error: a load left pending by an earlier run failed again: table zblocker: "
        in still_refused.stderr
    )
    project.sql(f"alter table {blocker} drop constraint refuse; select 1")
    assert project.run().ok
    _assert_equal_to_sigma(project, emulator)
    assert project.sql(f"select count(*) - count(distinct id) from {project.dataset}.charges") == [
        (0,)
    ]
