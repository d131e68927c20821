"""Emulator: every injected fault, as a client meets it on the socket."""

from __future__ import annotations

import http.client
import json
import time

import pytest
import requests

from sigma_source.emulator import Emulator, Fault

RUNS = "/v1/sigma/query_runs"
SCHEDULED = "/v1/sigma/scheduled_query_runs"


@pytest.fixture
def result_file(run_query) -> str:
    """The id of a result file of a few kilobytes."""
    run = run_query("select id, description, created from balance_transactions limit 100")
    return run["result"]["file"]


def test_an_unknown_fault_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match="truncate"):
        Fault(kind="explode")


# --- status ---------------------------------------------------------------------------------


def test_a_429_fault_answers_a_rate_limit_error_with_retry_after(emulator, sigma_http):
    emulator.add_fault(Fault(kind="status", status=429, retry_after=2))

    limited = sigma_http.get(f"{emulator.url}{SCHEDULED}")
    after = sigma_http.get(f"{emulator.url}{SCHEDULED}")

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json()["error"]["code"] == "rate_limit"
    assert limited.headers["Request-Id"].startswith("req_")
    assert after.status_code == 200


def test_a_5xx_fault_is_an_api_error_and_can_say_whether_to_retry(emulator, sigma_http):
    emulator.add_fault(Fault(kind="status", status=503, should_retry=False))

    response = sigma_http.get(f"{emulator.url}{SCHEDULED}")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "api_error"
    assert response.headers["Stripe-Should-Retry"] == "false"


def test_a_status_fault_can_name_its_error(emulator, sigma_http):
    emulator.add_fault(
        Fault(kind="status", status=403, error_type="invalid_request_error", code="x", message="No")
    )

    error = sigma_http.get(f"{emulator.url}{SCHEDULED}").json()["error"]

    assert (error["type"], error["code"], error["message"]) == ("invalid_request_error", "x", "No")


def test_a_fault_hits_times_requests_then_is_spent(emulator, sigma_http):
    emulator.add_fault(Fault(kind="status", status=500, times=2))

    statuses = [sigma_http.get(f"{emulator.url}{SCHEDULED}").status_code for _ in range(3)]

    assert statuses == [500, 500, 200]


def test_a_fault_with_times_none_never_wears_off(emulator, sigma_http):
    emulator.add_fault(Fault(kind="status", status=502, times=None))

    statuses = {sigma_http.get(f"{emulator.url}{SCHEDULED}").status_code for _ in range(5)}

    assert statuses == {502}


def test_faults_match_on_method_and_path(emulator, sigma_http):
    emulator.add_fault(Fault(kind="status", status=500, method="POST", path="saved_queries$"))

    listing = sigma_http.get(f"{emulator.url}{SCHEDULED}")
    run = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"})
    saved = sigma_http.post(f"{emulator.url}/v1/sigma/saved_queries", data={"sql": "select 1"})

    assert (listing.status_code, run.status_code, saved.status_code) == (200, 200, 500)


def test_a_status_fault_can_hit_only_runs_whose_sql_contains_a_text(emulator, sigma_http):
    emulator.add_fault(Fault(kind="status", status=500, sql_contains="from charges"))

    other = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"})
    hit = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select id from charges"})

    assert (other.status_code, hit.status_code) == (200, 500)
    assert emulator.created_query_run_count == 1


def test_clear_faults_removes_every_fault(emulator, sigma_http):
    emulator.add_fault(Fault(kind="status", status=500, times=None))

    emulator.clear_faults()

    assert sigma_http.get(f"{emulator.url}{SCHEDULED}").status_code == 200


def test_faults_never_leak_between_emulators(emulator, sigma_http, api_key):
    emulator.add_fault(Fault(kind="status", status=500, times=None))

    with Emulator(scale=20) as other:
        response = requests.get(f"{other.url}{SCHEDULED}", auth=(api_key, ""))

    assert response.status_code == 200


# --- dropped connections --------------------------------------------------------------------


def test_drop_closes_the_connection_without_an_answer_or_any_work(emulator, sigma_http):
    emulator.add_fault(Fault(kind="drop", method="POST"))

    with pytest.raises(requests.ConnectionError):
        sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"})

    assert emulator.created_query_run_count == 0
    assert emulator.requests[-1].status is None


def test_drop_after_does_the_work_then_closes_without_an_answer(emulator, sigma_http):
    emulator.add_fault(Fault(kind="drop_after", method="POST", path=f"^{RUNS}$"))

    with pytest.raises(requests.ConnectionError):
        sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"})

    assert emulator.created_query_run_count == 1
    assert len(emulator.query_runs) == 1


def test_a_retry_after_drop_after_with_the_same_key_replays_the_run(emulator, sigma_http):
    emulator.add_fault(Fault(kind="drop_after", method="POST", path=f"^{RUNS}$"))
    headers = {"Idempotency-Key": "retry-me"}
    with pytest.raises(requests.ConnectionError):
        sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}, headers=headers)

    retry = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}, headers=headers)

    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert [retry.json()["id"]] == list(emulator.query_runs)
    assert emulator.created_query_run_count == 1


# --- late answers ---------------------------------------------------------------------------


def test_delay_does_the_work_then_answers_seconds_late(emulator, sigma_http):
    emulator.add_fault(Fault(kind="delay", seconds=0.5, method="POST", path=f"^{RUNS}$"))
    started = time.monotonic()

    response = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"})

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5
    assert [response.json()["id"]] == list(emulator.query_runs)


def test_a_client_that_stops_waiting_for_a_delayed_answer_times_out_but_the_work_is_done(
    emulator, sigma_http
):
    emulator.add_fault(Fault(kind="delay", seconds=5, method="POST", path=f"^{RUNS}$"))
    started = time.monotonic()

    with pytest.raises(requests.exceptions.ReadTimeout):
        sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}, timeout=0.2)

    assert time.monotonic() - started < 2
    assert emulator.created_query_run_count == 1


def test_a_fault_cannot_wait_negative_seconds():
    with pytest.raises(ValueError, match="seconds"):
        Fault(kind="delay", seconds=-1)


# --- malformed answers ----------------------------------------------------------------------


def test_malformed_json_answers_200_with_a_body_that_is_not_json(emulator, sigma_http):
    emulator.add_fault(Fault(kind="malformed_json", method="POST"))

    response = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"})

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_body_answers_200_with_the_given_json_instead_of_the_object(emulator, sigma_http):
    emulator.add_fault(Fault(kind="body", body={"object": "surprise"}, method="GET"))

    response = sigma_http.get(f"{emulator.url}{SCHEDULED}")

    assert response.status_code == 200
    assert response.json() == {"object": "surprise"}
    assert response.headers["Request-Id"] == emulator.requests[-1].request_id


# --- downloads ------------------------------------------------------------------------------


def test_truncate_sends_the_full_length_then_part_of_the_bytes(emulator, api_key, result_file):
    size = file_size(emulator, api_key, result_file)
    emulator.add_fault(Fault(kind="truncate", path="/contents", fraction=0.25))

    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    connection.request(
        "GET", f"/v1/files/{result_file}/contents", headers={"Authorization": f"Bearer {api_key}"}
    )
    response = connection.getresponse()
    with pytest.raises(http.client.IncompleteRead) as incomplete:
        response.read()
    connection.close()

    assert int(response.headers["Content-Length"]) == size
    assert len(incomplete.value.partial) == int(size * 0.25)


def test_a_truncated_download_fails_in_requests(emulator, sigma_http, result_file):
    emulator.add_fault(Fault(kind="truncate", path="/contents"))

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        sigma_http.get(f"{emulator.url}/v1/files/{result_file}/contents")

    complete = sigma_http.get(f"{emulator.url}/v1/files/{result_file}/contents")
    assert len(complete.content) == int(complete.headers["Content-Length"])


def test_slow_throttles_a_download_to_bytes_per_second(emulator, sigma_http, result_file):
    size = int(sigma_http.get(f"{emulator.url}/v1/files/{result_file}").json()["size"])
    rate = size * 4  # about a quarter of a second
    emulator.add_fault(Fault(kind="slow", path="/contents", bytes_per_second=rate))

    started = time.monotonic()
    response = sigma_http.get(f"{emulator.url}/v1/files/{result_file}/contents")
    elapsed = time.monotonic() - started

    assert len(response.content) == size
    assert elapsed >= 0.2


def test_stall_pauses_a_download_part_way_then_sends_the_rest(emulator, api_key, result_file):
    size = file_size(emulator, api_key, result_file)
    emulator.add_fault(Fault(kind="stall", path="/contents", fraction=0.5, seconds=0.5))
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    connection.request(
        "GET", f"/v1/files/{result_file}/contents", headers={"Authorization": f"Bearer {api_key}"}
    )
    response = connection.getresponse()

    first = response.read(int(size * 0.5))
    started = time.monotonic()
    rest = response.read()
    connection.close()

    assert time.monotonic() - started >= 0.45
    assert len(first) + len(rest) == size


def test_a_client_with_a_shorter_timeout_gives_up_on_a_stalled_download(
    emulator, sigma_http, result_file
):
    emulator.add_fault(Fault(kind="stall", path="/contents", fraction=0.5, seconds=5))

    with pytest.raises(requests.exceptions.ConnectionError, match="timed out"):
        sigma_http.get(f"{emulator.url}/v1/files/{result_file}/contents", timeout=0.2)


def test_expire_file_answers_404_for_the_file_and_its_contents(emulator, sigma_http, result_file):
    emulator.add_fault(Fault(kind="expire_file", path=result_file, times=None))

    file = sigma_http.get(f"{emulator.url}/v1/files/{result_file}")
    contents = sigma_http.get(f"{emulator.url}/v1/files/{result_file}/contents")

    assert (file.status_code, contents.status_code) == (404, 404)
    assert contents.json()["error"]["code"] == "resource_missing"
    assert "expired" in contents.json()["error"]["message"]


def test_file_faults_do_not_touch_api_requests(emulator, sigma_http, result_file):
    emulator.add_fault(Fault(kind="truncate"))

    assert sigma_http.get(f"{emulator.url}{SCHEDULED}").status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        sigma_http.get(f"{emulator.url}/v1/files/{result_file}/contents")


# --- how runs end ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "canceled", "timed_out"])
def test_run_status_ends_the_next_run_as_told(emulator, run_query, status):
    emulator.add_fault(Fault(kind="run_status", run_status=status, message="told so"))

    run = run_query("select 1")

    assert run["status"] == status
    assert run["error"] == {"message": "told so"}
    assert run["result"]["file"] is None
    assert run["finalized_at"] is not None


def test_run_status_no_file_succeeds_without_a_file(emulator, run_query):
    emulator.add_fault(Fault(kind="run_status", run_status="no_file"))

    run = run_query("select 1")

    assert (run["status"], run["result"]["file"]) == ("succeeded", None)


def test_run_status_completed_succeeds_with_its_file_under_the_older_name(
    emulator, run_query, sigma_http
):
    emulator.add_fault(Fault(kind="run_status", run_status="completed"))

    run = run_query("select 7 as n")

    assert (run["status"], run["error"]) == ("completed", None)
    contents = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
    assert contents.content == b"n\n7\n"


def test_run_status_can_be_a_status_stripe_never_documented(emulator, run_query):
    emulator.add_fault(Fault(kind="run_status", run_status="exploded"))

    assert run_query("select 1")["status"] == "exploded"


def test_run_status_keeps_the_run_running_for_run_seconds(emulator, sigma_http, wait_for_run):
    emulator.run_seconds = 0.3
    emulator.add_fault(Fault(kind="run_status", run_status="failed"))
    created = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}).json()

    first_look = sigma_http.get(f"{emulator.url}{RUNS}/{created['id']}").json()

    assert first_look["status"] == "running"
    assert wait_for_run(created["id"])["status"] == "failed"


def test_run_status_hits_only_runs_whose_sql_contains_the_text(emulator, run_query):
    emulator.add_fault(Fault(kind="run_status", run_status="failed", sql_contains="charges"))

    other = run_query("select count(*) from customers")
    hit = run_query("select count(*) from charges")
    after = run_query("select count(*) from charges")

    assert [other["status"], hit["status"], after["status"]] == ["succeeded", "failed", "succeeded"]


def file_size(emulator: Emulator, api_key: str, file_id: str) -> int:
    response = requests.get(f"{emulator.url}/v1/files/{file_id}", auth=(api_key, ""))
    return int(response.json()["size"])
