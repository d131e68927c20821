"""`sigma-load freshness` shows Sigma's own `data_load_time`.

Sigma states it only on the runs of queries scheduled in the Dashboard, so `freshness` asks
for the newest of those (one request, when an api_key is set). The emulator starts with a few
scheduled runs whose data_load_time is three hours before their creation, as Sigma's is."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
import requests

from sigma_source.emulator import Fault
from tests.cli_helpers import CUSTOMERS_BY_COUNTRY_SQL, TEST_KEY, CliProject

SCHEDULED = "/v1/sigma/scheduled_query_runs"


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    project = CliProject(tmp_path, emulator)
    project.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    assert project.invoke("run").exit_code == 0
    return project


def _newest_scheduled_run(cli: CliProject) -> dict:
    listed = requests.get(f"{cli.emulator.url}{SCHEDULED}", auth=(TEST_KEY, ""), timeout=10)
    assert listed.status_code == 200, listed.text
    return max(listed.json()["data"], key=lambda run: run["data_load_time"])


def _asked(cli: CliProject) -> list:
    return [request for request in cli.emulator.requests if request.path == SCHEDULED]


def test_freshness_shows_the_data_load_time_of_the_newest_scheduled_run(cli):
    newest = _newest_scheduled_run(cli)
    stamp = datetime.fromtimestamp(newest["data_load_time"], timezone.utc)
    asked_before = len(_asked(cli))

    (record,) = cli.json("freshness")
    table = cli.invoke("freshness")

    assert record["data_load_time"] == stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert table.exit_code == 0
    said = " ".join(table.stdout.split())
    assert re.search(
        rf"Sigma's data is as of {stamp:%Y-%m-%d %H:%M:%S} UTC \(\dh( \d+[ms])? ago\): the "
        rf"data_load_time of its newest scheduled query run, {newest['id']}\.",
        said,
    ), said
    assert len(_asked(cli)) == asked_before + 2  # one request per check


def test_freshness_does_not_ask_when_told_not_to(cli):
    (record,) = cli.json("freshness", "--no-data-load-time")

    assert record["data_load_time"] is None
    assert _asked(cli) == []


def test_freshness_without_an_api_key_checks_the_tables_and_does_not_ask(cli):
    result = cli.invoke("freshness", env={"SOURCES__SIGMA__API_KEY": None})

    assert (result.exit_code, result.stderr) == (0, "")
    assert "Sigma's data is as of" not in result.stdout
    assert _asked(cli) == []


def test_freshness_when_stripe_cannot_say_notes_it_and_keeps_its_verdict(cli):
    cli.emulator.add_fault(Fault(kind="status", status=500, path=SCHEDULED, times=None))

    result = cli.invoke("freshness")

    assert result.exit_code == 0
    assert result.stderr.startswith("note: Sigma's data_load_time is unknown: ")
    assert "customers_by_country" in result.stdout
