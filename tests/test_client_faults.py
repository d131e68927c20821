"""SigmaClient under injected faults on a real socket: retries, typed errors, failed runs,
broken downloads."""

from __future__ import annotations

import time

import pytest

from sigma_source.client import ClientConfig, SigmaClient
from sigma_source.emulator import Fault
from sigma_source.errors import (
    APIServerError,
    AuthenticationError,
    DownloadError,
    IdempotencyError,
    InvalidRequestError,
    NetworkError,
    PollTimeoutError,
    QueryRunError,
    RateLimitError,
    SigmaPermissionError,
)

API_KEY = "rk_test_51ClientSuiteSecretKey000000000000000000000042"
MAX_ATTEMPTS = 4
DOWNLOAD_ATTEMPTS = 3
FAST = {
    "max_attempts": MAX_ATTEMPTS,
    "download_attempts": DOWNLOAD_ATTEMPTS,
    "backoff_factor": 0.01,
    "max_retry_delay": 0.05,
    "poll_interval": 0.01,
    "poll_max_interval": 0.05,
    "poll_timeout": 30.0,
    "request_timeout": 10.0,
}
SQL = "select id, amount from balance_transactions order by id limit 20"
RUNS = "/v1/sigma/query_runs"
TIMEOUT = 0.3  # request_timeout of the impatient client; the faults outlast it


@pytest.fixture
def client(emulator):
    with SigmaClient(
        ClientConfig(api_key=API_KEY, api_base=emulator.url, files_base=emulator.url, **FAST)
    ) as sigma:
        yield sigma


@pytest.fixture
def result_file(client):
    """A finished run's file id, made before any fault is added."""
    return client.wait(client.create_query_run(SQL).id).run.file_id


@pytest.fixture
def impatient_client(emulator):
    """A client that gives up on an answer (or a stalled download) after 0.3 s."""
    settings = FAST | {"request_timeout": TIMEOUT}
    with SigmaClient(
        ClientConfig(api_key=API_KEY, api_base=emulator.url, files_base=emulator.url, **settings)
    ) as sigma:
        yield sigma


def sent(emulator, mark, method, path_fragment):
    return [r for r in emulator.requests[mark:] if r.method == method and path_fragment in r.path]


def last_request_id(emulator, method, path_fragment):
    """The Request-Id of the last answer the emulator gave to such a request."""
    return sent(emulator, 0, method, path_fragment)[-1].request_id


# ---- retried, then success


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 502},
        {"kind": "status", "status": 503, "times": 2},
        {"kind": "status", "status": 409},
        {"kind": "status", "status": 429},
        {"kind": "status", "status": 400, "should_retry": True},
        {"kind": "drop"},
    ],
    ids=["500", "502", "503 twice", "409", "429", "400 with Should-Retry true", "drop"],
)
def test_transient_failures_are_retried_until_success(client, emulator, fault):
    saved = client.create_saved_query(SQL, name="retry me")
    emulator.add_fault(Fault(method="GET", path="/v1/sigma/saved_queries/", **fault))
    mark = len(emulator.requests)

    fetched = client.retrieve_saved_query(saved.id)

    assert fetched.id == saved.id
    failures = fault.get("times", 1)
    assert len(sent(emulator, mark, "GET", "/v1/sigma/saved_queries/")) == failures + 1


def test_retry_after_is_honoured(client, emulator):
    saved = client.create_saved_query(SQL)
    emulator.add_fault(Fault(kind="status", status=429, method="GET", retry_after=1))
    started = time.monotonic()

    client.retrieve_saved_query(saved.id)

    # Without the header the backoff would be at most 0.05 s.
    assert time.monotonic() - started >= 0.9


def test_stripe_should_retry_false_stops_at_once(client, emulator):
    saved = client.create_saved_query(SQL)
    emulator.add_fault(Fault(kind="status", status=503, method="GET", should_retry=False))
    mark = len(emulator.requests)

    with pytest.raises(APIServerError) as caught:
        client.retrieve_saved_query(saved.id)

    assert len(sent(emulator, mark, "GET", "/v1/sigma/saved_queries/")) == 1
    assert caught.value.http_status == 503


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, APIServerError), (503, APIServerError), (429, RateLimitError)],
)
def test_a_failure_that_never_clears_gives_up_after_max_attempts(client, emulator, status, error):
    emulator.add_fault(Fault(kind="status", status=status, method="GET", times=MAX_ATTEMPTS))
    mark = len(emulator.requests)

    with pytest.raises(error) as caught:
        client.retrieve_query_run("qry_whatever")

    assert len(sent(emulator, mark, "GET", RUNS)) == MAX_ATTEMPTS
    assert caught.value.http_status == status
    assert caught.value.request_id
    assert f"gave up after {MAX_ATTEMPTS} attempts" in str(caught.value)
    assert str(caught.value).startswith("GET /v1/sigma/query_runs/qry_whatever: ")


def test_a_connection_that_keeps_dropping_is_a_network_error(client, emulator):
    emulator.add_fault(Fault(kind="drop", method="GET", times=MAX_ATTEMPTS))

    with pytest.raises(NetworkError, match=f"after {MAX_ATTEMPTS} attempts") as caught:
        client.retrieve_query_run("qry_whatever")

    assert caught.value.endpoint == "GET /v1/sigma/query_runs/qry_whatever"
    assert "\n" not in str(caught.value)


def test_an_unreachable_host_is_a_network_error():
    config = ClientConfig(api_key=API_KEY, api_base="http://127.0.0.1:9", **FAST)

    with SigmaClient(config) as client, pytest.raises(NetworkError, match="ConnectionError"):
        client.retrieve_query_run("qry_whatever")


# ---- timeouts (an answer or a download slower than request_timeout)


def test_an_answer_later_than_the_timeout_is_retried_then_succeeds(impatient_client, emulator):
    saved = impatient_client.create_saved_query(SQL)
    emulator.add_fault(Fault(kind="delay", seconds=3, method="GET", path="/saved_queries/"))
    mark = len(emulator.requests)
    started = time.monotonic()

    fetched = impatient_client.retrieve_saved_query(saved.id)

    assert fetched.id == saved.id
    assert len(sent(emulator, mark, "GET", "/saved_queries/")) == 2
    assert TIMEOUT <= time.monotonic() - started < 3


def test_a_create_that_timed_out_is_retried_with_its_key_and_starts_one_run(
    impatient_client, emulator
):
    emulator.add_fault(Fault(kind="delay", seconds=3, method="POST", path=f"^{RUNS}$"))
    before = emulator.created_query_run_count
    mark = len(emulator.requests)

    run = impatient_client.create_query_run(SQL)

    posts = sent(emulator, mark, "POST", RUNS)
    assert len(posts) == 2
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    assert emulator.created_query_run_count == before + 1
    assert list(emulator.query_runs) == [run.id]
    assert impatient_client.wait(run.id).run.file_id


def test_an_answer_that_never_comes_in_time_is_a_network_error(impatient_client, emulator):
    emulator.add_fault(Fault(kind="delay", seconds=3, method="GET", times=MAX_ATTEMPTS))

    with pytest.raises(NetworkError, match=f"Timeout after {MAX_ATTEMPTS} attempts") as caught:
        impatient_client.retrieve_query_run("qry_whatever")

    assert caught.value.endpoint == "GET /v1/sigma/query_runs/qry_whatever"


def test_a_download_that_stalls_is_retried_and_completes(
    impatient_client, emulator, result_file, tmp_path
):
    clean = tmp_path / "clean.csv"
    size = impatient_client.download_file(result_file, clean)
    emulator.add_fault(Fault(kind="stall", path="/contents", fraction=0.5, seconds=3))
    mark = len(emulator.requests)
    dest = tmp_path / "stalled.csv"

    received = impatient_client.download_file(result_file, dest, expected_size=size)

    assert received == size
    assert dest.read_bytes() == clean.read_bytes()
    assert len(sent(emulator, mark, "GET", "/contents")) == 2


def test_a_download_that_stalls_every_time_is_a_download_error_counting_what_arrived(
    impatient_client, emulator, result_file, tmp_path
):
    size = impatient_client.retrieve_file(result_file).size
    emulator.add_fault(
        Fault(kind="stall", path="/contents", fraction=0.5, seconds=3, times=DOWNLOAD_ATTEMPTS)
    )

    with pytest.raises(DownloadError) as caught:
        impatient_client.download_file(result_file, tmp_path / "never.csv")

    assert f"received {int(size * 0.5)} of {size} bytes" in str(caught.value)
    assert f"no data for {TIMEOUT:g} s: request_timeout" in str(caught.value)


# ---- idempotency


def test_a_lost_answer_to_create_starts_exactly_one_run(client, emulator):
    emulator.add_fault(Fault(kind="drop_after", method="POST", path=f"^{RUNS}$"))
    before = emulator.created_query_run_count
    mark = len(emulator.requests)

    run = client.create_query_run(SQL)

    posts = sent(emulator, mark, "POST", RUNS)
    assert len(posts) == 2
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    assert emulator.created_query_run_count == before + 1
    assert client.wait(run.id).run.id == run.id


def test_a_reused_idempotency_key_with_other_sql_is_an_idempotency_error(client):
    client.create_query_run(SQL, idempotency_key="same-key-for-two-queries")

    with pytest.raises(IdempotencyError) as caught:
        client.create_query_run("select 1", idempotency_key="same-key-for-two-queries")

    assert caught.value.error_type == "idempotency_error"


# ---- typed errors, not retried


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (403, SigmaPermissionError),
        (404, InvalidRequestError),
    ],
)
def test_client_errors_are_typed_and_not_retried(client, emulator, status, error):
    emulator.add_fault(Fault(kind="status", status=status, method="POST", message="Nope."))
    mark = len(emulator.requests)

    with pytest.raises(error) as caught:
        client.create_query_run(SQL)

    assert len(sent(emulator, mark, "POST", RUNS)) == 1
    failure = caught.value
    assert failure.http_status == status
    assert failure.endpoint == "POST /v1/sigma/query_runs"
    assert failure.message == "Nope."
    assert failure.request_id and failure.request_id in str(failure)


def test_an_error_carries_stripes_type_and_code(client, emulator):
    emulator.add_fault(Fault(kind="status", status=403, code="secret_key_required"))

    with pytest.raises(SigmaPermissionError) as caught:
        client.create_query_run(SQL)

    assert caught.value.error_type == "invalid_request_error"
    assert caught.value.code == "secret_key_required"
    assert "(secret_key_required)" in str(caught.value)


def test_an_answer_of_the_wrong_shape_names_the_endpoint_and_request_id(client, emulator):
    run = client.create_query_run(SQL)
    emulator.add_fault(Fault(kind="body", body={"object": "surprise"}, method="GET", path=RUNS))

    with pytest.raises(APIServerError, match="unexpected QueryRun object") as caught:
        client.retrieve_query_run(run.id)

    request_id = last_request_id(emulator, "GET", f"{RUNS}/{run.id}")
    assert caught.value.endpoint == f"GET {RUNS}/{run.id}"
    assert caught.value.request_id == request_id
    assert str(caught.value).startswith(f"GET {RUNS}/{run.id}: HTTP 200: ")
    assert str(caught.value).endswith(f"[Request-Id {request_id}]")


def test_a_list_answer_of_the_wrong_shape_is_an_error_not_an_empty_list(client, emulator):
    scheduled = "/v1/sigma/scheduled_query_runs"
    wrong = Fault(kind="body", body={"object": "surprise"}, method="GET", path=scheduled)
    emulator.add_fault(wrong)

    with pytest.raises(APIServerError, match="other than a list object") as caught:
        list(client.list_scheduled_query_runs())

    assert caught.value.endpoint == f"GET {scheduled}"
    assert caught.value.request_id == last_request_id(emulator, "GET", scheduled)


def test_a_body_that_is_not_json_is_an_api_server_error_with_the_request_id(client, emulator):
    emulator.add_fault(Fault(kind="malformed_json", method="POST", path=RUNS))

    with pytest.raises(APIServerError, match="not JSON") as caught:
        client.create_query_run(SQL)

    assert caught.value.endpoint == "POST /v1/sigma/query_runs"
    assert caught.value.request_id and caught.value.request_id in str(caught.value)


# ---- query runs that end badly


@pytest.mark.parametrize(
    ("run_status", "message", "expected"),
    [
        ("failed", "Syntax error: line 1:8", "Syntax error: line 1:8"),
        ("canceled", None, "canceled"),
        ("timed_out", None, "exceeded"),
        ("exploded", "Something new", "unknown status 'exploded'"),
        ("no_file", None, "without a result file"),
    ],
)
def test_a_run_that_ends_without_a_result_is_a_query_run_error(
    client, emulator, run_status, message, expected
):
    emulator.add_fault(Fault(kind="run_status", run_status=run_status, message=message))
    run = client.create_query_run(SQL)

    with pytest.raises(QueryRunError, match=expected) as caught:
        client.wait(run.id)

    assert caught.value.run_id == run.id
    expected_status = "succeeded" if run_status == "no_file" else run_status
    assert caught.value.status == expected_status
    assert str(caught.value).startswith(f"query run {run.id} {expected_status}: ")


def test_a_multi_line_failure_message_from_stripe_is_one_line_and_whole(client, emulator):
    message = "line 3:8: Column 'nope' cannot be resolved\n  select nope\n         ^\n"
    emulator.add_fault(Fault(kind="run_status", run_status="failed", message=message))
    run = client.create_query_run(SQL)

    with pytest.raises(QueryRunError) as caught:
        client.wait(run.id)

    line = str(caught.value)
    assert "\n" not in line
    assert "line 3:8: Column 'nope' cannot be resolved select nope ^" in line


def test_a_multi_line_error_answer_is_one_line_and_whole(client, emulator):
    emulator.add_fault(
        Fault(kind="status", status=400, method="POST", message="Bad sql:\n\tline 1\r\n  ^")
    )

    with pytest.raises(InvalidRequestError) as caught:
        client.create_query_run(SQL)

    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)
    assert str(caught.value).startswith("POST /v1/sigma/query_runs: HTTP 400 ")
    assert "Bad sql: line 1 ^ [Request-Id req_" in str(caught.value)


def test_a_query_run_error_names_the_endpoint_run_and_last_request_id(client, emulator):
    emulator.add_fault(Fault(kind="run_status", run_status="failed", message="Boom"))
    run = client.create_query_run(SQL)

    with pytest.raises(QueryRunError) as caught:
        client.wait(run.id)

    request_id = last_request_id(emulator, "GET", f"{RUNS}/{run.id}")
    failure = caught.value
    assert (failure.run_id, failure.endpoint, failure.request_id) == (
        run.id,
        f"GET {RUNS}/{run.id}",
        request_id,
    )
    assert str(failure) == (
        f"query run {run.id} failed: Boom (GET {RUNS}/{run.id}) [Request-Id {request_id}]"
    )


def test_a_sql_error_fails_the_run_with_the_engines_message(client):
    run = client.create_query_run("select no_such_column from balance_transactions")

    with pytest.raises(QueryRunError) as caught:
        client.wait(run.id)

    assert caught.value.status == "failed"
    assert "no_such_column" in caught.value.message


def test_a_run_still_running_at_the_deadline_is_a_poll_timeout(client, emulator):
    emulator.run_seconds = 5.0
    run = client.create_query_run(SQL)
    started = time.monotonic()

    with pytest.raises(PollTimeoutError) as caught:
        client.wait(run.id, poll_timeout=0.3)

    assert 0.3 <= time.monotonic() - started < 2.0
    assert caught.value.run_id == run.id
    assert caught.value.status == "running"
    assert "poll_timeout" in str(caught.value)
    request_id = last_request_id(emulator, "GET", f"{RUNS}/{run.id}")
    assert caught.value.endpoint == f"GET {RUNS}/{run.id}"
    assert caught.value.request_id == request_id
    assert str(caught.value).endswith(f"(GET {RUNS}/{run.id}) [Request-Id {request_id}]")


# ---- downloads


def test_a_truncated_download_starts_again_and_completes(client, emulator, result_file, tmp_path):
    clean = tmp_path / "clean.csv"
    size = client.download_file(result_file, clean)
    emulator.add_fault(Fault(kind="truncate", path="/contents", fraction=0.5))
    mark = len(emulator.requests)
    dest = tmp_path / "retried.csv"

    received = client.download_file(result_file, dest, expected_size=size)

    assert received == size
    assert dest.read_bytes() == clean.read_bytes()
    assert len(sent(emulator, mark, "GET", "/contents")) == 2


def test_a_download_truncated_every_time_is_a_download_error(
    client, emulator, result_file, tmp_path
):
    size = client.retrieve_file(result_file).size
    emulator.add_fault(
        Fault(kind="truncate", path="/contents", fraction=0.5, times=DOWNLOAD_ATTEMPTS)
    )
    mark = len(emulator.requests)
    dest = tmp_path / "never.csv"

    with pytest.raises(DownloadError) as caught:
        client.download_file(result_file, dest)

    message = str(caught.value)
    assert result_file in message
    # What did arrive, half the file, not only the chunks the reader had finished (0).
    assert f"received {int(size * 0.5)} of {size} bytes" in message
    assert f"after {DOWNLOAD_ATTEMPTS} attempts" in message
    assert len(sent(emulator, mark, "GET", "/contents")) == DOWNLOAD_ATTEMPTS
    assert not dest.exists()


def test_a_download_error_names_the_endpoint_run_and_last_request_id(
    client, emulator, result_file, tmp_path
):
    [run_id] = list(emulator.query_runs)
    emulator.add_fault(Fault(kind="truncate", path="/contents", times=None))

    with pytest.raises(DownloadError) as caught:
        client.download_file(result_file, tmp_path / "never.csv", query_run_id=run_id)

    endpoint = f"GET /v1/files/{result_file}/contents"
    request_id = last_request_id(emulator, "GET", "/contents")
    failure = caught.value
    assert (failure.endpoint, failure.run_id, failure.request_id) == (endpoint, run_id, request_id)
    assert str(failure).startswith(f"{endpoint}: result of query run {run_id}: received ")
    assert str(failure).endswith(f"[Request-Id {request_id}]")


def test_a_file_that_cannot_be_written_is_a_download_error_naming_the_path(
    client, emulator, result_file, tmp_path
):
    [run_id] = list(emulator.query_runs)
    dest = tmp_path / "no such folder" / "result.csv"

    with pytest.raises(DownloadError) as caught:
        client.download_file(result_file, dest, query_run_id=run_id)

    assert str(caught.value) == (
        f"GET /v1/files/{result_file}/contents: result of query run {run_id}: "
        f"cannot write {dest}: No such file or directory"
    )


def test_an_api_error_of_a_download_names_the_run_it_was_the_result_of(
    client, emulator, result_file, tmp_path
):
    [run_id] = list(emulator.query_runs)
    emulator.add_fault(Fault(kind="status", status=503, path="/contents", times=None))

    with pytest.raises(APIServerError) as caught:
        client.download_file(result_file, tmp_path / "never.csv", query_run_id=run_id)

    assert caught.value.endpoint == f"GET /v1/files/{result_file}/contents"
    assert f"result of query run {run_id}: " in str(caught.value)
    assert caught.value.request_id == last_request_id(emulator, "GET", "/contents")


def test_a_download_of_the_wrong_size_is_a_download_error(client, result_file, tmp_path):
    size = client.retrieve_file(result_file).size

    with pytest.raises(DownloadError, match=f"file's size is {size + 1} bytes"):
        client.download_file(result_file, tmp_path / "r.csv", expected_size=size + 1)


def test_a_slow_download_completes(client, emulator, result_file, tmp_path):
    size = client.retrieve_file(result_file).size
    emulator.add_fault(Fault(kind="slow", path="/contents", bytes_per_second=max(size, 1) * 4))

    assert client.download_file(result_file, tmp_path / "slow.csv") == size


def test_a_dropped_download_request_is_retried(client, emulator, result_file, tmp_path):
    size = client.retrieve_file(result_file).size
    emulator.add_fault(Fault(kind="drop", path="/contents"))

    assert client.download_file(result_file, tmp_path / "r.csv") == size


def test_an_expired_file_is_an_invalid_request_and_not_retried(
    client, emulator, result_file, tmp_path
):
    emulator.add_fault(Fault(kind="expire_file", path=result_file, times=None))
    mark = len(emulator.requests)
    dest = tmp_path / "gone.csv"

    with pytest.raises(InvalidRequestError, match="expired or does not exist") as caught:
        client.download_file(result_file, dest)

    assert caught.value.http_status == 404
    assert result_file in str(caught.value)
    assert len(sent(emulator, mark, "GET", "/contents")) == 1
    assert not dest.exists()
