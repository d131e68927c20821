"""Stripe's own Python SDK, an independent client, talks to the emulator: proof that the
emulator speaks Stripe's wire format (objects, list envelopes, errors, the files host), so
what SigmaClient learns against it holds against Stripe."""

from __future__ import annotations

import pytest

stripe = pytest.importorskip("stripe", reason="the compatibility check needs the stripe SDK")

from sigma_source.emulator import Fault  # noqa: E402

API_KEY = "sk_test_sdk_compat_0123456789abcdef"


@pytest.fixture
def sdk(emulator):
    """A StripeClient whose API and files hosts are the emulator."""
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": emulator.url, "files": emulator.url},
        max_network_retries=2,
    )


def test_sdk_lists_scheduled_query_runs_as_typed_objects(sdk):
    page = sdk.v1.sigma.scheduled_query_runs.list({"limit": 100})

    assert page.object == "list"
    assert len(page.data) >= 2
    for run in page.data:
        assert isinstance(run, stripe.sigma.ScheduledQueryRun)
        assert run.id.startswith("sqr_")
        assert run.status == "completed"
        assert isinstance(run.file, stripe.File)
        assert run.data_load_time <= run.created


def test_sdk_auto_pagination_walks_every_page(sdk, emulator):
    everything = sdk.v1.sigma.scheduled_query_runs.list({"limit": 100}).data
    mark = len(emulator.requests)

    one_by_one = list(sdk.v1.sigma.scheduled_query_runs.list({"limit": 1}).auto_paging_iter())

    assert [run.id for run in one_by_one] == [run.id for run in everything]
    pages = [r for r in emulator.requests[mark:] if r.path == "/v1/sigma/scheduled_query_runs"]
    assert [p.query.get("starting_after") for p in pages[1:]] == [r.id for r in everything[:-1]]


def test_sdk_retrieves_a_scheduled_query_run(sdk):
    listed = sdk.v1.sigma.scheduled_query_runs.list({"limit": 1}).data[0]

    fetched = sdk.v1.sigma.scheduled_query_runs.retrieve(listed.id)

    assert fetched.id == listed.id
    assert fetched.sql == listed.sql
    assert fetched.file.id == listed.file.id


def test_sdk_retrieves_the_file_object(sdk, emulator):
    scheduled = sdk.v1.sigma.scheduled_query_runs.list({"limit": 1}).data[0]

    file = sdk.v1.files.retrieve(scheduled.file.id)

    assert isinstance(file, stripe.File)
    assert file.id == scheduled.file.id
    assert file.purpose == "sigma_scheduled_query"
    assert file.type == "csv"
    assert file.size > 0
    assert file.url == f"{emulator.url}/v1/files/{file.id}/contents"


def test_sdk_streams_file_contents_from_the_files_host(sdk, emulator):
    # The SDK has no public "file contents" call; its streaming requestor against the
    # "files" base address is what its public `quotes.pdf` download uses.
    scheduled = sdk.v1.sigma.scheduled_query_runs.list({"limit": 1}).data[0]
    mark = len(emulator.requests)

    response = sdk._requestor.request_stream(
        "get", f"/v1/files/{scheduled.file.id}/contents", base_address="files"
    )
    contents = response.io.read()

    assert response.code == 200
    assert len(contents) == scheduled.file.size
    assert contents.splitlines()[0].decode("utf-8-sig").count(",") >= 1
    [download] = [r for r in emulator.requests[mark:] if r.path.endswith("/contents")]
    assert download.headers["Authorization"] == f"Bearer {API_KEY}"


def test_sdk_starts_and_polls_a_query_run(sdk, emulator):
    # Sigma query runs have no typed service in the SDK: its raw_request does the wire work.
    created = sdk.deserialize(
        sdk.raw_request("post", "/v1/sigma/query_runs", sql="select 1 as one"), api_mode="V1"
    )

    polled = sdk.deserialize(
        sdk.raw_request("get", f"/v1/sigma/query_runs/{created.id}"), api_mode="V1"
    )

    assert created.object == "sigma.sigma_query_run"
    assert polled.id == created.id
    [post] = [r for r in emulator.requests if r.method == "POST"]
    assert post.form == {"sql": "select 1 as one"}
    assert post.headers["Idempotency-Key"]


def test_sdk_reads_the_emulators_errors_as_typed_stripe_errors(sdk):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.sigma.scheduled_query_runs.retrieve("sqr_doesnotexist")

    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.request_id


def test_sdk_retries_what_the_emulator_marks_retryable(sdk, emulator):
    emulator.add_fault(Fault(kind="status", status=503, method="GET"))

    page = sdk.v1.sigma.scheduled_query_runs.list({"limit": 1})

    assert len(page.data) == 1
    assert [r.status for r in emulator.requests[-2:]] == [503, 200]


def test_sdk_sees_a_rejected_key_as_an_authentication_error(emulator):
    sdk = stripe.StripeClient(
        "sk_live_not_a_test_key_000000000000",
        base_addresses={"api": emulator.url, "files": emulator.url},
    )

    with pytest.raises(stripe.AuthenticationError) as caught:
        sdk.v1.sigma.scheduled_query_runs.list()

    assert caught.value.http_status == 401
