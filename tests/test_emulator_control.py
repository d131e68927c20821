"""Emulator: the control API (driving an emulator from another process), `serve()`, and the
curl examples of Stripe's Sigma docs working unchanged except for the host."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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
        stop(process, stop_signal)

    log = process.stderr.read()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    assert '"GET /v1/sigma/scheduled_query_runs HTTP/1.1" 200' in log


# --- `sigma-load emulator`: the real command and its flags ----------------------------------


def test_the_emulator_command_applies_port_seed_scale_and_run_seconds(api_key):
    port = free_port()
    command = [*SIGMA_LOAD, "emulator", "--port", str(port), "--seed", "7", "--scale", "300"]
    process = subprocess.Popen(
        [*command, "--run-seconds", "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    sql = "select id, amount from balance_transactions order by id"
    try:
        line = process.stdout.readline().strip()
        if line != f"Sigma emulator on {url} (seed=7, scale=300)":
            process.kill()
            pytest.fail(f"the command printed {line!r}; stderr: {process.stderr.read()}")
        settings = requests.get(f"{url}/_emulator").json()
        http = requests.Session()
        http.auth = (api_key, "")
        created = http.post(f"{url}/v1/sigma/query_runs", data={"sql": sql}).json()
        started = time.monotonic()
        run = http.get(f"{url}/v1/sigma/query_runs/{created['id']}").json()
        statuses = [run["status"]]
        while run["status"] == "running" and time.monotonic() - started < 10:
            time.sleep(0.05)
            run = http.get(f"{url}/v1/sigma/query_runs/{created['id']}").json()
            statuses.append(run["status"])
        ran_for = time.monotonic() - started
        result = http.get(f"{url}/v1/files/{run['result']['file']}/contents").text
    finally:
        stop(process, signal.SIGINT)

    # --scale: the row count; --run-seconds: how long the run stayed running.
    assert (settings["seed"], settings["scale"], settings["run_seconds"]) == (7, 300, 1.5)
    assert settings["row_counts"]["balance_transactions"] == 300
    assert statuses[0] == "running" and statuses[-1] == "succeeded"
    assert 1.0 <= ran_for < 5
    # --seed: the data of seed 7, not of the default seed 42.
    rows = [row.split(",") for row in result.splitlines()[1:]]
    with Emulator(seed=7, scale=300) as same, Emulator(seed=42, scale=300) as other:
        assert rows == [[id_, str(amount)] for id_, amount in same.execute(sql)]
        assert rows != [[id_, str(amount)] for id_, amount in other.execute(sql)]
    # A clean stop on Ctrl-C.
    log = process.stderr.read()
    assert process.returncode == 0, log
    assert "Traceback" not in log


def stop(process: subprocess.Popen[str], stop_signal: int) -> None:
    """Send `stop_signal` and wait for the exit; a server that ignores it is killed, so that
    a failing test leaves no emulator running, and the test fails on the timeout."""
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The installed console script, as a user runs it (`python -m sigma_source` if not installed).
_SCRIPT = Path(sys.executable).with_name("sigma-load")
SIGMA_LOAD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "sigma_source"]


# --- the README's curl examples (Stripe's docs, unchanged except for the host) ----------------
# Read from README.md itself, so a README that drifts from what works fails here. Only the host
# and the ids (`qry_...`, `file_...`, `qfl_...`) are substituted, as a user would.

README = Path(__file__).resolve().parents[1] / "README.md"
README_HOST = "http://127.0.0.1:12111"
PLACEHOLDER = re.compile(r"\b(?:qry|file|qfl)_\.\.\.")
CREATE_RUN = ("POST", "/v1/sigma/query_runs")
RETRIEVE_RUN = ("GET", "/v1/sigma/query_runs/qry_...")
DOWNLOAD = ("GET", "/v1/files/file_.../contents")
CREATE_SAVED = ("POST", "/v1/sigma/saved_queries")
UPDATE_SAVED = ("POST", "/v1/sigma/saved_queries/qfl_...")
RETRIEVE_SAVED = ("GET", "/v1/sigma/saved_queries/qfl_...")
DELETE_SAVED = ("DELETE", "/v1/sigma/saved_queries/qfl_...")
LIST_SCHEDULED = ("GET", "/v1/sigma/scheduled_query_runs")


@dataclass(frozen=True)
class CurlExample:
    line: str
    method: str
    path: str
    data: dict[str, str]


def readme_curl_lines() -> list[str]:
    """Every `curl` line of the README's bash blocks."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]


def parse_curl(line: str) -> CurlExample:
    words = shlex.split(line, comments=True)
    [url] = [word for word in words if word.startswith("http")]
    sent = [words[i + 1] for i, word in enumerate(words) if word == "-d"]
    data = dict(item.split("=", 1) for item in sent if "=" in item)  # form fields, not JSON
    if "-X" in words:
        method = words[words.index("-X") + 1]
    else:
        method = "POST" if sent and "-G" not in words else "GET"
    return CurlExample(line, method, urlsplit(url).path, data)


def api_examples() -> dict[tuple[str, str], CurlExample]:
    examples = [parse_curl(line) for line in readme_curl_lines() if "/v1/" in line]
    return {(example.method, example.path): example for example in examples}


@pytest.fixture
def curl() -> Callable[..., str]:
    """Runs a README curl line against the test's emulator; returns what it printed.

    Without curl the test is skipped, or fails when SIGMA_LOAD_REQUIRE_CURL=1 (CI)."""
    if shutil.which("curl") is None:
        if os.environ.get("SIGMA_LOAD_REQUIRE_CURL") == "1":
            pytest.fail("SIGMA_LOAD_REQUIRE_CURL=1 but curl is not installed")
        pytest.skip("curl is not installed")
    return run_curl


def run_curl(emulator: Emulator, example: CurlExample, **ids: str) -> str:
    assert example.line.startswith(f"curl {README_HOST}/") or f" {README_HOST}/" in example.line
    line = example.line.replace(README_HOST, emulator.url)
    for placeholder, value in ids.items():
        line = line.replace(placeholder, value)
    assert not PLACEHOLDER.search(line), f"an id left to fill in: {line}"
    command = "curl --silent --show-error " + line.removeprefix("curl ")
    result = subprocess.run(command, shell=True, capture_output=True, text=True, check=True)
    return result.stdout


def test_the_readme_shows_a_curl_example_for_every_sigma_call():
    missing = {
        CREATE_RUN,
        RETRIEVE_RUN,
        DOWNLOAD,
        CREATE_SAVED,
        UPDATE_SAVED,
        RETRIEVE_SAVED,
        DELETE_SAVED,
        LIST_SCHEDULED,
    } - set(api_examples())

    assert not missing, f"README.md has no curl example for {sorted(missing)}"


def test_the_readmes_curl_examples_run_a_query_and_download_its_result(emulator, curl):
    examples = api_examples()
    create = examples[CREATE_RUN]

    created = json.loads(curl(emulator, create))
    run = created
    for _ in range(200):
        run = json.loads(curl(emulator, examples[RETRIEVE_RUN], **{"qry_...": created["id"]}))
        if run["status"] != "running":
            break
        time.sleep(0.02)
    contents = curl(emulator, examples[DOWNLOAD], **{"file_...": run["result"]["file"]})

    assert created["status"] == "running"
    assert run["status"] == "succeeded", run["error"]
    rows = list(csv.reader(io.StringIO(contents)))
    assert rows[0]
    assert len(rows) - 1 == len(emulator.execute(create.data["sql"]))


def test_the_readmes_curl_examples_manage_a_saved_query(emulator, curl):
    examples = api_examples()
    create, update = examples[CREATE_SAVED], examples[UPDATE_SAVED]

    created = json.loads(curl(emulator, create))
    ids = {"qfl_...": created["id"]}
    updated = json.loads(curl(emulator, update, **ids))
    retrieved = json.loads(curl(emulator, examples[RETRIEVE_SAVED], **ids))
    deleted = json.loads(curl(emulator, examples[DELETE_SAVED], **ids))

    assert created["object"] == "sigma.sigma_api_query"
    assert {key: created[key] for key in create.data} == create.data
    assert {key: updated[key] for key in update.data} == update.data
    assert retrieved == updated
    assert deleted == {"id": created["id"], "object": "sigma.sigma_api_query", "deleted": True}


def test_the_readmes_curl_example_lists_scheduled_runs(emulator, curl):
    example = api_examples()[LIST_SCHEDULED]

    listing = json.loads(curl(emulator, example))

    assert listing["object"] == "list"
    assert len(listing["data"]) == int(example.data.get("limit", 10))


def test_the_readmes_control_api_examples_answer(emulator, curl):
    examples = [parse_curl(line) for line in readme_curl_lines() if "/_emulator" in line]

    answers = [json.loads(curl(emulator, example)) for example in examples]

    assert len(examples) >= 4
    assert all("error" not in answer for answer in answers), answers


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
