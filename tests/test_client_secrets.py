"""The API key never shows: not in any exception's str, repr or traceback, nor in log lines."""

from __future__ import annotations

import logging
import traceback

import pytest

from sigma_source.client import ClientConfig, SigmaClient, mask_key
from sigma_source.emulator import Fault
from sigma_source.errors import AuthenticationError, SigmaLoadError

API_KEY = "rk_test_51ClientSuiteSecretKey000000000000000000000042"
FAST = {
    "max_attempts": 2,
    "download_attempts": 2,
    "backoff_factor": 0.01,
    "max_retry_delay": 0.02,
    "poll_interval": 0.01,
    "poll_max_interval": 0.02,
    "request_timeout": 10.0,
}


@pytest.fixture
def client(emulator):
    with SigmaClient(
        ClientConfig(api_key=API_KEY, api_base=emulator.url, files_base=emulator.url, **FAST)
    ) as sigma:
        yield sigma


def everything_printed_about(error: BaseException) -> str:
    """str, repr and the full traceback (causes included) of an exception."""
    return "\n".join(
        [str(error), repr(error), "".join(traceback.format_exception(error)), repr(vars(error))]
    )


FAILURES = {
    "401 echoing the key": (
        Fault(kind="status", status=401, message=f"Invalid API Key provided: {API_KEY}"),
        lambda client, tmp_path: client.create_query_run("select 1"),
    ),
    "500 echoing the key, retried": (
        Fault(kind="status", status=500, times=None, message=f"key {API_KEY} broke us"),
        lambda client, tmp_path: client.retrieve_query_run("qry_x"),
    ),
    "dropped connection": (
        Fault(kind="drop", times=None),
        lambda client, tmp_path: client.retrieve_saved_query("qfl_x"),
    ),
    "malformed json": (
        Fault(kind="malformed_json"),
        lambda client, tmp_path: client.create_saved_query("select 1"),
    ),
    "failed run": (
        Fault(kind="run_status", run_status="failed", message=f"denied for {API_KEY}"),
        lambda client, tmp_path: client.wait(client.create_query_run("select 1").id),
    ),
    "truncated download": (
        Fault(kind="truncate", path="/contents", times=None),
        lambda client, tmp_path: client.download_file(
            next(client.list_scheduled_query_runs()).file.id, tmp_path / "f.csv"
        ),
    ),
    "expired file": (
        Fault(kind="expire_file", times=None),
        lambda client, tmp_path: client.download_file("file_missing", tmp_path / "f.csv"),
    ),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_no_failure_shows_the_key(client, emulator, tmp_path, caplog, name):
    fault, action = FAILURES[name]
    emulator.add_fault(fault)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SigmaLoadError) as caught:
        action(client, tmp_path)

    emulator.clear_faults()
    assert API_KEY not in everything_printed_about(caught.value)
    assert API_KEY not in caplog.text


def test_a_401_shows_the_key_masked_as_stripe_does(client, emulator):
    emulator.add_fault(Fault(kind="status", status=401, message=f"Invalid API Key: {API_KEY}"))

    with pytest.raises(AuthenticationError) as caught:
        client.create_query_run("select 1")

    assert str(caught.value).endswith(
        f"Invalid API Key: {mask_key(API_KEY)} [Request-Id {caught.value.request_id}]"
    )
