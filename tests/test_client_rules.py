"""The client's pure rules: when to retry, how long to wait, which error, which run outcome.

Table-driven; the same rules meet a real socket in test_client_faults.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
import requests

from sigma_source.api_objects import FileObject, QueryRun, SavedQuery, ScheduledQueryRun
from sigma_source.client import (
    MAX_RETRY_AFTER_SECONDS,
    check_run_succeeded,
    error_class,
    parse_retry_after,
    retry_delay,
    should_retry,
)
from sigma_source.errors import (
    APIServerError,
    AuthenticationError,
    DownloadError,
    IdempotencyError,
    InvalidRequestError,
    PollTimeoutError,
    QueryRunError,
    RateLimitError,
    SigmaAPIError,
    SigmaPermissionError,
)


def response(status: int, **headers: str) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.headers.update({name.replace("_", "-"): value for name, value in headers.items()})
    return answer


@pytest.mark.parametrize(
    ("status", "headers", "retry"),
    [
        (200, {}, False),
        (400, {}, False),
        (401, {}, False),
        (403, {}, False),
        (404, {}, False),
        (409, {}, True),
        (429, {}, True),
        (500, {}, True),
        (502, {}, True),
        (503, {}, True),
        (504, {}, True),
        (503, {"Stripe_Should_Retry": "false"}, False),
        (429, {"Stripe_Should_Retry": "false"}, False),
        (400, {"Stripe_Should_Retry": "true"}, True),
        (200, {"Stripe_Should_Retry": "TRUE"}, True),
        (500, {"Stripe_Should_Retry": "maybe"}, True),
    ],
)
def test_should_retry_by_status_and_stripe_header(status, headers, retry):
    assert should_retry(response(status, **headers), None) is retry


@pytest.mark.parametrize(
    ("exception", "retry"),
    [
        (requests.ConnectionError("reset"), True),
        (requests.ConnectTimeout("slow connect"), True),
        (requests.ReadTimeout("slow answer"), True),
        (requests.exceptions.ChunkedEncodingError("broke off"), True),
        (requests.exceptions.SSLError("bad certificate"), False),
        (requests.exceptions.InvalidURL("nonsense"), False),
        (ValueError("a bug"), False),
    ],
)
def test_should_retry_transient_connection_errors_only(exception, retry):
    assert should_retry(None, exception) is retry


@pytest.mark.parametrize(
    ("attempt", "full"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (9, 5.0)],
)
def test_retry_delay_doubles_up_to_the_cap(attempt, full):
    most = retry_delay(attempt, backoff_factor=0.5, max_delay=5.0, rand=lambda: 1.0)
    least = retry_delay(attempt, backoff_factor=0.5, max_delay=5.0, rand=lambda: 0.0)

    assert most == pytest.approx(full)
    assert least == pytest.approx(full / 2)


def test_retry_delay_is_jittered():
    delays = {retry_delay(3, backoff_factor=0.5, max_delay=5.0) for _ in range(50)}

    assert len(delays) > 1
    assert all(1.0 <= delay <= 2.0 for delay in delays)


def test_retry_after_wins_when_longer_than_the_backoff():
    delay = retry_delay(1, backoff_factor=0.01, max_delay=0.05, retry_after="2")

    assert delay == 2.0


def test_retry_after_does_not_shorten_the_backoff():
    delay = retry_delay(4, backoff_factor=1.0, max_delay=10.0, retry_after="1", rand=lambda: 1.0)

    assert delay == 8.0


def test_retry_after_is_capped_at_a_minute():
    delay = retry_delay(1, backoff_factor=0.01, max_delay=0.05, retry_after="3600")

    assert delay == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        (None, None),
        ("", None),
        ("soon", None),
        ("-4", None),
    ],
)
def test_parse_retry_after_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_http_date():
    in_ten_seconds = datetime.fromtimestamp(
        datetime.now(timezone.utc).timestamp() + 10, timezone.utc
    )

    seconds = parse_retry_after(format_datetime(in_ten_seconds, usegmt=True))

    assert seconds == pytest.approx(10, abs=1.5)


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (400, "invalid_request_error", InvalidRequestError),
        (404, "invalid_request_error", InvalidRequestError),
        (409, "invalid_request_error", InvalidRequestError),
        (400, "idempotency_error", IdempotencyError),
        (409, "idempotency_error", IdempotencyError),
        (401, "invalid_request_error", AuthenticationError),
        (403, "invalid_request_error", SigmaPermissionError),
        (429, "invalid_request_error", RateLimitError),
        (500, "api_error", APIServerError),
        (503, None, APIServerError),
    ],
)
def test_error_class_by_type_then_status(status, error_type, expected):
    assert error_class(status, error_type) is expected


def run(status: str, *, file: str | None = None, finalized: int | None = None, error=None):
    return QueryRun.from_api(
        {
            "id": "qry_1",
            "object": "sigma.sigma_query_run",
            "status": status,
            "created": 1_700_000_000,
            "finalized_at": finalized,
            "result": {"file": file},
            "error": error,
            "sql": "select 1",
        }
    )


@pytest.mark.parametrize("status", ["succeeded", "completed"])
def test_a_finished_run_with_a_file_succeeded(status):
    check_run_succeeded(run(status, file="file_1", finalized=1_700_000_100))


@pytest.mark.parametrize(
    ("finished", "status", "message"),
    [
        (run("failed", error={"message": "Syntax error at line 1"}), "failed", "Syntax error"),
        (run("canceled", error={"message": "Canceled by user"}), "canceled", "Canceled by user"),
        (run("timed_out"), "timed_out", "Stripe gave no error message"),
        (run("succeeded", finalized=1_700_000_100), "succeeded", "without a result file"),
        (run("running", finalized=1_700_000_100), "running", "finalized while still 'running'"),
        (run("exploded", error={"message": "boom"}), "exploded", "unknown status 'exploded'"),
    ],
)
def test_a_finished_run_without_a_usable_result_is_a_query_run_error(finished, status, message):
    with pytest.raises(QueryRunError, match=message) as caught:
        check_run_succeeded(finished)

    assert caught.value.run_id == "qry_1"
    assert caught.value.status == status
    assert str(caught.value).startswith(f"query run qry_1 {status}: ")


@pytest.mark.parametrize(
    ("status", "finalized", "finished"),
    [
        ("running", None, False),
        ("pending", None, False),
        ("running", 1_700_000_100, True),
        ("succeeded", 1_700_000_100, True),
        ("failed", None, True),
        ("something_new", None, True),
    ],
)
def test_a_run_is_finished_unless_running_or_pending_and_not_finalized(status, finalized, finished):
    assert run(status, finalized=finalized).is_finished is finished


def test_query_run_fields_are_parsed_with_utc_datetimes():
    parsed = run("succeeded", file="file_9", finalized=1_700_000_100)

    assert parsed.id == "qry_1"
    assert parsed.file_id == "file_9"
    assert parsed.sql == "select 1"
    assert parsed.created == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert parsed.finalized_at == datetime(2023, 11, 14, 22, 15, 0, tzinfo=timezone.utc)
    assert parsed.raw["object"] == "sigma.sigma_query_run"


def test_query_run_accepts_an_expanded_result_file():
    parsed = QueryRun.from_api(
        {"id": "qry_2", "status": "succeeded", "result": {"file": {"id": "file_3"}}}
    )

    assert parsed.file_id == "file_3"


def test_saved_query_fields():
    parsed = SavedQuery.from_api(
        {"id": "qfl_1", "name": "fees", "sql": "select 2", "created": 0, "livemode": False}
    )

    assert (parsed.id, parsed.name, parsed.sql) == ("qfl_1", "fees", "select 2")
    assert parsed.created == datetime(1970, 1, 1, tzinfo=timezone.utc)


def test_scheduled_query_run_carries_its_file_inline():
    parsed = ScheduledQueryRun.from_api(
        {
            "id": "sqr_1",
            "object": "scheduled_query_run",
            "status": "completed",
            "title": "Daily fees",
            "sql": "select 3",
            "created": 1_700_000_000,
            "data_load_time": 1_699_990_000,
            "result_available_until": 1_702_592_000,
            "error": None,
            "file": {"id": "file_7", "object": "file", "size": 1234, "type": "csv"},
        }
    )

    assert parsed.file == FileObject.from_api({"id": "file_7", "size": 1234, "type": "csv"})
    assert parsed.data_load_time == datetime.fromtimestamp(1_699_990_000, timezone.utc)
    assert parsed.error_message is None


def test_scheduled_query_run_with_an_unexpanded_file_keeps_the_file_id():
    parsed = ScheduledQueryRun.from_api({"id": "sqr_2", "status": "completed", "file": "file_8"})

    assert parsed.file is not None
    assert parsed.file.id == "file_8"


def test_file_object_fields():
    parsed = FileObject.from_api(
        {
            "id": "file_1",
            "object": "file",
            "created": 1_700_000_000,
            "expires_at": 1_700_086_400,
            "filename": "result.csv",
            "purpose": "sigma_scheduled_query",
            "size": "99",
            "type": "csv",
            "url": "https://files.stripe.com/v1/files/file_1/contents",
        }
    )

    assert parsed.size == 99
    assert parsed.expires_at == datetime.fromtimestamp(1_700_086_400, timezone.utc)
    assert (parsed.filename, parsed.purpose, parsed.type) == (
        "result.csv",
        "sigma_scheduled_query",
        "csv",
    )


@pytest.mark.parametrize(
    "error",
    [
        SigmaAPIError("a\nb\r\n\tc ", endpoint="GET /v1/x", http_status=500, request_id="req_1"),
        QueryRunError("a\nb\r\n\tc ", run_id="qry_1", status="failed", request_id="req_1"),
        PollTimeoutError("a\nb\r\n\tc ", run_id="qry_1", endpoint="GET /v1/x"),
        DownloadError("a\nb\r\n\tc ", endpoint="GET /v1/files/f/contents", run_id="qry_1"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_client_error_prints_one_line_keeping_the_whole_message(error):
    line = str(error)

    assert "\n" not in line and "\r" not in line and "\t" not in line
    assert "a b c" in line
    assert error.message == "a b c"
