"""SigmaClient against the emulator on a real socket: every v1 endpoint, and what it sends."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from sigma_source.client import ClientConfig, SigmaClient
from sigma_source.emulator import Fault
from sigma_source.errors import InvalidRequestError

API_KEY = "rk_test_51ClientSuiteSecretKey000000000000000000000042"
FAST = {
    "backoff_factor": 0.01,
    "max_retry_delay": 0.05,
    "poll_interval": 0.01,
    "poll_max_interval": 0.05,
    "poll_timeout": 30.0,
    "request_timeout": 10.0,
}
SQL = "select id, amount, currency from balance_transactions order by id limit 5"


@pytest.fixture
def client(emulator):
    with SigmaClient(
        ClientConfig(api_key=API_KEY, api_base=emulator.url, files_base=emulator.url, **FAST)
    ) as sigma:
        yield sigma


def recorded(emulator, mark, method, path_fragment):
    return [r for r in emulator.requests[mark:] if r.method == method and path_fragment in r.path]


# ---- query runs


def test_create_query_run_posts_the_sql_form_encoded_and_answers_running(client, emulator):
    mark = len(emulator.requests)

    run = client.create_query_run(SQL)

    assert run.id.startswith("qry_")
    assert run.status in ("running", "pending", "succeeded")
    assert run.sql == SQL
    assert isinstance(run.created, datetime)
    [post] = recorded(emulator, mark, "POST", "/v1/sigma/query_runs")
    assert post.form == {"sql": SQL}
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_every_request_carries_the_bearer_key(client, emulator):
    mark = len(emulator.requests)

    client.create_query_run(SQL)

    [post] = recorded(emulator, mark, "POST", "/v1/sigma/query_runs")
    assert post.headers["Authorization"] == f"Bearer {API_KEY}"


def test_every_creating_post_gets_its_own_idempotency_key(client, emulator):
    mark = len(emulator.requests)

    client.create_query_run(SQL)
    client.create_query_run(SQL)
    client.create_saved_query(SQL)

    keys = [
        r.headers.get("Idempotency-Key") for r in emulator.requests[mark:] if r.method == "POST"
    ]
    assert len(keys) == 3
    assert all(keys) and len(set(keys)) == 3


def test_a_caller_chosen_idempotency_key_replays_the_same_run(client, emulator):
    before = emulator.created_query_run_count

    first = client.create_query_run(SQL, idempotency_key="load-2025-04-01-fees")
    again = client.create_query_run(SQL, idempotency_key="load-2025-04-01-fees")

    assert again.id == first.id
    assert emulator.created_query_run_count == before + 1


def test_stripe_version_and_account_headers_are_sent_when_configured(emulator):
    config = ClientConfig(
        api_key=API_KEY,
        api_base=emulator.url,
        files_base=emulator.url,
        stripe_version="2025-03-31.basil",
        stripe_account="acct_1Connected",
        **FAST,
    )
    mark = len(emulator.requests)

    with SigmaClient(config) as client:
        client.create_query_run(SQL)

    [post] = recorded(emulator, mark, "POST", "/v1/sigma/query_runs")
    assert post.headers["Stripe-Version"] == "2025-03-31.basil"
    assert post.headers["Stripe-Account"] == "acct_1Connected"


def test_no_stripe_version_or_account_header_unless_configured(client, emulator):
    mark = len(emulator.requests)

    client.create_query_run(SQL)

    [post] = recorded(emulator, mark, "POST", "/v1/sigma/query_runs")
    assert "Stripe-Version" not in post.headers
    assert "Stripe-Account" not in post.headers


def test_wait_returns_the_succeeded_run_with_its_file(client):
    run = client.create_query_run(SQL)

    waited = client.wait(run.id)

    assert waited.run.id == run.id
    assert waited.run.status in ("succeeded", "completed")
    assert waited.run.file_id.startswith("file_")
    assert waited.run.finalized_at is not None
    assert waited.polls >= 1
    assert waited.seconds >= 0


def test_wait_accepts_a_run_completed_with_a_file_as_older_api_versions_say(
    client, emulator, tmp_path
):
    emulator.add_fault(Fault(kind="run_status", run_status="completed"))
    run = client.create_query_run(SQL)

    waited = client.wait(run.id)

    assert waited.run.status == "completed"
    assert waited.run.file_id.startswith("file_")
    client.download_file(waited.run.file_id, tmp_path / "completed.csv")
    with (tmp_path / "completed.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "amount", "currency"]
    assert len(rows) == 1 + 5


def test_wait_counts_every_poll_and_shows_each_to_on_poll(client, emulator):
    emulator.run_seconds = 0.3
    run = client.create_query_run(SQL)
    seen = []
    mark = len(emulator.requests)

    waited = client.wait(run.id, on_poll=seen.append)

    polls = recorded(emulator, mark, "GET", f"/v1/sigma/query_runs/{run.id}")
    assert waited.polls == len(polls) == len(seen) > 1
    assert [s.status for s in seen[:-1]] == ["running"] * (len(seen) - 1)
    assert seen[-1] == waited.run


def test_retrieve_query_run_returns_the_run(client):
    run = client.create_query_run(SQL)

    again = client.retrieve_query_run(run.id)

    assert again.id == run.id
    assert again.sql == SQL


def test_retrieving_an_unknown_run_is_an_invalid_request(client):
    with pytest.raises(InvalidRequestError) as caught:
        client.retrieve_query_run("qry_doesnotexist")

    assert caught.value.http_status == 404
    assert caught.value.endpoint == "GET /v1/sigma/query_runs/qry_doesnotexist"


def test_a_run_from_a_saved_query_posts_from_saved_query(client, emulator):
    saved = client.create_saved_query(SQL, name="five transactions")
    mark = len(emulator.requests)

    run = client.create_query_run(saved_query=saved.id)
    waited = client.wait(run.id)

    [post] = recorded(emulator, mark, "POST", "/v1/sigma/query_runs")
    assert post.form == {"from_saved_query": saved.id}
    assert waited.run.file_id is not None


@pytest.mark.parametrize(
    "arguments",
    [{}, {"sql": SQL, "saved_query": "qfl_1"}, {"sql": "   "}],
    ids=["neither", "both", "blank sql"],
)
def test_create_query_run_needs_exactly_one_of_sql_or_saved_query(client, arguments):
    with pytest.raises(ValueError, match="sql"):
        client.create_query_run(**arguments)


# ---- saved queries


def test_create_and_retrieve_a_saved_query(client):
    created = client.create_saved_query(SQL, name="fees")

    fetched = client.retrieve_saved_query(created.id)

    assert created.id.startswith("qfl_")
    assert (fetched.id, fetched.name, fetched.sql) == (created.id, "fees", SQL)


def test_update_a_saved_query_changes_only_what_is_given(client, emulator):
    created = client.create_saved_query(SQL, name="fees")
    mark = len(emulator.requests)

    updated = client.update_saved_query(created.id, sql="select 1 as one")

    [post] = recorded(emulator, mark, "POST", f"/v1/sigma/saved_queries/{created.id}")
    assert post.form == {"sql": "select 1 as one"}
    assert (updated.sql, updated.name) == ("select 1 as one", "fees")


def test_update_a_saved_query_without_changes_is_refused(client):
    with pytest.raises(ValueError, match="sql or name"):
        client.update_saved_query("qfl_1")


def test_a_deleted_saved_query_is_gone(client):
    created = client.create_saved_query(SQL)

    assert client.delete_saved_query(created.id) is None

    with pytest.raises(InvalidRequestError, match="404"):
        client.retrieve_saved_query(created.id)


# ---- scheduled query runs


def test_list_scheduled_query_runs_pages_through_everything(client, emulator):
    everything = list(client.list_scheduled_query_runs())
    mark = len(emulator.requests)

    one_by_one = list(client.list_scheduled_query_runs(limit=1))

    pages = recorded(emulator, mark, "GET", "/v1/sigma/scheduled_query_runs")
    assert len(everything) >= 2, "the emulator should hold a few scheduled runs"
    assert [r.id for r in one_by_one] == [r.id for r in everything]
    assert len(pages) == len(everything)
    assert "starting_after" not in pages[0].query
    assert [p.query["starting_after"] for p in pages[1:]] == [r.id for r in everything[:-1]]


def test_scheduled_query_runs_carry_their_file(client):
    listed = next(client.list_scheduled_query_runs())

    fetched = client.retrieve_scheduled_query_run(listed.id)

    assert fetched == listed
    assert fetched.id.startswith("sqr_")
    assert fetched.status == "completed"
    assert fetched.file is not None and fetched.file.id.startswith("file_")
    assert fetched.data_load_time is not None and fetched.data_load_time <= fetched.created


@pytest.mark.parametrize("limit", [0, 101])
def test_list_limit_must_be_between_1_and_100(client, limit):
    with pytest.raises(ValueError, match="limit"):
        next(client.list_scheduled_query_runs(limit=limit))


# ---- files


def test_retrieve_file_describes_the_result(client):
    waited = client.wait(client.create_query_run(SQL).id)

    file = client.retrieve_file(waited.run.file_id)

    assert file.id == waited.run.file_id
    assert file.size > 0
    assert file.type == "csv"
    assert file.expires_at is not None and file.expires_at > file.created


def test_download_file_writes_the_whole_csv(client, tmp_path):
    waited = client.wait(client.create_query_run(SQL).id)
    file = client.retrieve_file(waited.run.file_id)
    dest = tmp_path / "result.csv"

    size = client.download_file(file.id, dest, expected_size=file.size)

    assert size == file.size == dest.stat().st_size
    with dest.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "amount", "currency"]
    assert len(rows) == 6


def test_download_file_comes_from_the_files_base(emulator, tmp_path):
    # A files host that differs from the API host: same emulator, other loopback name.
    files_base = emulator.url.replace("127.0.0.1", "localhost")
    config = ClientConfig(api_key=API_KEY, api_base=emulator.url, files_base=files_base, **FAST)
    with SigmaClient(config) as client:
        waited = client.wait(client.create_query_run(SQL).id)
        mark = len(emulator.requests)

        client.download_file(waited.run.file_id, tmp_path / "result.csv")

    [download] = recorded(emulator, mark, "GET", "/contents")
    assert download.path == f"/v1/files/{waited.run.file_id}/contents"
    assert download.headers["Host"].startswith("localhost:")
    assert download.headers["Authorization"] == f"Bearer {API_KEY}"


def test_download_reports_progress_up_to_the_full_size(client, tmp_path):
    waited = client.wait(client.create_query_run(SQL).id)
    progress = []

    size = client.download_file(waited.run.file_id, tmp_path / "r.csv", on_progress=progress.append)

    assert progress == sorted(progress)
    assert progress[-1] == size


def test_download_of_a_scheduled_run_file(client, tmp_path):
    scheduled = next(client.list_scheduled_query_runs())

    size = client.download_file(
        scheduled.file.id, tmp_path / "scheduled.csv", expected_size=scheduled.file.size
    )

    assert size == scheduled.file.size


def test_one_client_serves_many_threads(client, emulator, tmp_path):
    def run_and_download(n: int) -> tuple[str, int]:
        waited = client.wait(client.create_query_run(f"select {n} as n").id)
        size = client.download_file(waited.run.file_id, tmp_path / f"{n}.csv")
        return waited.run.id, size

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(run_and_download, range(12)))

    assert len({run_id for run_id, _ in results}) == 12
    assert all(size > 0 for _, size in results)
    assert (tmp_path / "7.csv").read_text(encoding="utf-8-sig").split() == ["n", "7"]
