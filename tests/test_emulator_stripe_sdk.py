"""Emulator: Stripe's own Python SDK understands it, an independent check of its shapes."""

from __future__ import annotations

import json

import pytest
import stripe

from sigma_source.emulator import Fault


def sdk(emulator, api_key: str, **options):
    return stripe.StripeClient(
        api_key, base_addresses={"api": emulator.url, "files": emulator.url}, **options
    )


def test_the_sdk_pages_through_scheduled_runs(emulator, api_key):
    client = sdk(emulator, api_key)

    first_page = client.v1.sigma.scheduled_query_runs.list({"limit": 2})
    everything = list(first_page.auto_paging_iter())

    assert first_page.has_more is True
    assert len(everything) == 5
    assert all(run.file.object == "file" and run.file.size > 0 for run in everything)


def test_the_sdk_retrieves_a_scheduled_run_and_its_file(emulator, api_key):
    client = sdk(emulator, api_key)
    listed = client.v1.sigma.scheduled_query_runs.list({"limit": 1}).data[0]

    run = client.v1.sigma.scheduled_query_runs.retrieve(listed.id)
    file = client.v1.files.retrieve(run.file.id)

    assert (run.title, run.status) == (listed.title, "completed")
    assert file.url == f"{emulator.url}/v1/files/{file.id}/contents"


def test_the_sdk_retry_after_a_lost_answer_replays_the_run_it_created(emulator, api_key):
    client = sdk(emulator, api_key, max_network_retries=2)
    emulator.add_fault(Fault(kind="drop_after", method="POST"))

    answer = client.raw_request("post", "/v1/sigma/query_runs", sql="select 1 as one")

    run = json.loads(answer.body)
    keys = {request.headers["Idempotency-Key"] for request in emulator.requests}
    assert run["status"] == "running"
    assert len(emulator.requests) == 2
    assert len(keys) == 1
    assert emulator.created_query_run_count == 1


def test_the_sdk_reports_a_refused_key_as_an_authentication_error(emulator):
    client = sdk(emulator, "sk_live_abcdefghijklmnop1234")

    with pytest.raises(stripe.AuthenticationError) as refused:
        client.v1.sigma.scheduled_query_runs.list()

    assert refused.value.http_status == 401
    assert refused.value.request_id.startswith("req_")
    assert "sk_live_****1234" in str(refused.value)
