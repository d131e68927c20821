"""Emulator: the control API (driving an emulator from another process), `serve()`, and the
curl examples of Stripe's Sigma docs working unchanged except for the host."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from sigma_source.emulator import Emulator
from sigma_source.errors import ConfigError

SCHEDULED = "/v1/sigma/scheduled_query_runs"


# --- control API ----------------------------------------------------------------------------


def test_a_fault_posted_as_json_applies_to_the_next_request(emulator, sigma_http):
    added = requests.post(
        f"{emulator.url}/_emulator/faults", json={"kind": "status", "status": 503, "retry_after": 1}
    )

    response = sigma_http.get(f"{emulator.url}{SCHEDULED}")

    assert added.status_code == 200
    assert added.json()["fault"]["status"] == 503
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"


def test_faults_are_listed_and_cleared_over_http(emulator, sigma_http):
    requests.post(f"{emulator.url}/_emulator/faults", json={"kind": "drop", "times": None})

    listed = requests.get(f"{emulator.url}/_emulator/faults").json()["data"]
    cleared = requests.delete(f"{emulator.url}/_emulator/faults")

    assert [fault["kind"] for fault in listed] == ["drop"]
    assert cleared.status_code == 200
    assert sigma_http.get(f"{emulator.url}{SCHEDULED}").status_code == 200


def test_a_bad_fault_is_refused_naming_the_valid_fields(emulator):
    response = requests.post(
        f"{emulator.url}/_emulator/faults", json={"kind": "status", "sttus": 1}
    )

    assert response.status_code == 400
    assert "sttus" in response.json()["error"]["message"]
    assert "retry_after" in response.json()["error"]["message"]


def test_recorded_requests_are_served_as_json_with_the_key_masked(emulator, sigma_http, api_key):
    sigma_http.post(f"{emulator.url}/v1/sigma/query_runs", data={"sql": "select 1"})

    records = requests.get(f"{emulator.url}/_emulator/requests").json()["data"]

    [record] = records
    assert (record["method"], record["path"], record["form"], record["status"]) == (
        "POST",
        "/v1/sigma/query_runs",
        {"sql": "select 1"},
        200,
    )
    assert record["headers"]["Authorization"] == "Bearer sk_test_****cdef"
    assert api_key not in json.dumps(records)


def test_control_requests_need_no_key_and_are_not_recorded(emulator):
    response = requests.get(f"{emulator.url}/_emulator")

    assert response.status_code == 200
    assert response.json()["seed"] == 42
    assert response.json()["row_counts"]["balance_transactions"] == 500
    assert emulator.requests == []


def test_rows_are_added_over_http(emulator):
    response = requests.post(f"{emulator.url}/_emulator/rows", json={"table": "charges", "n": 7})

    assert response.status_code == 200
    assert emulator.execute("select count(*) from charges")[0][0] == 250 + 7


def test_adding_rows_to_an_unknown_table_is_a_400(emulator):
    response = requests.post(f"{emulator.url}/_emulator/rows", json={"table": "nope", "n": 1})

    assert response.status_code == 400
    assert "charges" in response.json()["error"]["message"]


def test_run_seconds_is_set_over_http(emulator, sigma_http):
    requests.post(f"{emulator.url}/_emulator/settings", json={"run_seconds": 30})

    created = sigma_http.post(f"{emulator.url}/v1/sigma/query_runs", data={"sql": "select 1"})
    time.sleep(0.1)
    later = sigma_http.get(f"{emulator.url}/v1/sigma/query_runs/{created.json()['id']}")

    assert emulator.run_seconds == 30
    assert later.json()["status"] == "running"


def test_query_runs_and_their_count_are_served_over_http(emulator, run_query):
    run = run_query("select 1")

    served = requests.get(f"{emulator.url}/_emulator/query_runs").json()

    assert served["created_query_run_count"] == 1
    assert served["data"][run["id"]]["status"] == "succeeded"


# --- serve(): the blocking entry point of `sigma-load emulator` -------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_prints_its_url_and_stops_cleanly_on_a_signal(api_key, stop_signal):
    code = "from sigma_source.emulator import serve; serve(port=0, seed=5, scale=40)"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline().strip()
        match = re.fullmatch(
            r"Sigma emulator on (http://127\.0\.0\.1:\d+) \(seed=5, scale=40\)", line
        )
        if match is None:
            process.kill()
            pytest.fail(f"serve printed {line!r}; stderr: {process.stderr.read()}")
        response = requests.get(f"{match.group(1)}{SCHEDULED}", auth=(api_key, ""))
        assert response.status_code == 200
    finally:
        process.send_signal(stop_signal)
        process.wait(timeout=10)

    log = process.stderr.read()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    assert '"GET /v1/sigma/scheduled_query_runs HTTP/1.1" 200' in log


# --- the curl examples of Stripe's docs -------------------------------------------------------
# As printed in the README, for an emulator on its default port; the tests swap in their own.

README_HOST = "http://127.0.0.1:12111"
CREATE_RUN = (
    "curl http://127.0.0.1:12111/v1/sigma/query_runs -u sk_test_xxx: "
    '-d sql="select id from balance_transactions limit 5"'
)
RETRIEVE_RUN = "curl http://127.0.0.1:12111/v1/sigma/query_runs/{run_id} -u sk_test_xxx:"
DOWNLOAD = "curl http://127.0.0.1:12111/v1/files/{file_id}/contents -u sk_test_xxx:"
CREATE_SAVED = (
    "curl http://127.0.0.1:12111/v1/sigma/saved_queries -u sk_test_xxx: "
    '-d sql="select id, amount from charges limit 5" -d name="Five charges"'
)
UPDATE_SAVED = (
    "curl http://127.0.0.1:12111/v1/sigma/saved_queries/{saved_id} -u sk_test_xxx: "
    '-d name="Five charges, renamed"'
)
RETRIEVE_SAVED = "curl http://127.0.0.1:12111/v1/sigma/saved_queries/{saved_id} -u sk_test_xxx:"
DELETE_SAVED = (
    "curl -X DELETE http://127.0.0.1:12111/v1/sigma/saved_queries/{saved_id} -u sk_test_xxx:"
)
LIST_SCHEDULED = (
    "curl -G http://127.0.0.1:12111/v1/sigma/scheduled_query_runs -u sk_test_xxx: -d limit=3"
)

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def shell(emulator, command: str, **ids: str) -> str:
    """Run a README curl command in a shell, pointed at this emulator; returns its output."""
    line = command.format(**ids).replace(README_HOST, emulator.url)
    result = subprocess.run(
        line + " --silent --show-error", shell=True, capture_output=True, text=True, check=True
    )
    return result.stdout


@needs_curl
def test_stripes_curl_examples_run_a_query_and_download_its_result(emulator):
    created = json.loads(shell(emulator, CREATE_RUN))
    run = created
    for _ in range(200):
        run = json.loads(shell(emulator, RETRIEVE_RUN, run_id=created["id"]))
        if run["status"] != "running":
            break
        time.sleep(0.02)

    contents = shell(emulator, DOWNLOAD, file_id=run["result"]["file"])

    assert created["status"] == "running"
    assert run["status"] == "succeeded"
    lines = contents.splitlines()
    assert lines[0] == "id"
    assert len(lines) == 6
    assert all(line.startswith("txn_") for line in lines[1:])


@needs_curl
def test_stripes_curl_examples_manage_a_saved_query(emulator):
    created = json.loads(shell(emulator, CREATE_SAVED))

    updated = json.loads(shell(emulator, UPDATE_SAVED, saved_id=created["id"]))
    retrieved = json.loads(shell(emulator, RETRIEVE_SAVED, saved_id=created["id"]))
    deleted = json.loads(shell(emulator, DELETE_SAVED, saved_id=created["id"]))

    assert created["object"] == "sigma.sigma_api_query"
    assert created["sql"] == "select id, amount from charges limit 5"
    assert updated["name"] == "Five charges, renamed"
    assert retrieved == updated
    assert deleted == {"id": created["id"], "object": "sigma.sigma_api_query", "deleted": True}


@needs_curl
def test_stripes_curl_example_lists_scheduled_runs(emulator):
    listing = json.loads(shell(emulator, LIST_SCHEDULED))

    assert listing["object"] == "list"
    assert len(listing["data"]) == 3
    assert listing["has_more"] is True


# --- settings errors --------------------------------------------------------------------------


def test_a_busy_port_is_one_clear_config_error(emulator):
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{emulator.port}"):
        Emulator(scale=5, port=emulator.port).start()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"scale": 0}, "--scale"),
        ({"run_seconds": -1}, "--run-seconds"),
        ({"data_start": "2025-01-01", "data_end": "2024-01-01"}, "data window"),
    ],
)
def test_bad_emulator_settings_are_config_errors_naming_the_setting(settings, named):
    with pytest.raises(ConfigError, match=named):
        Emulator(**settings)
