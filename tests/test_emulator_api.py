"""Emulator: Stripe's conventions (auth, errors, headers, idempotency) and the saved query,
scheduled run and file endpoints."""

from __future__ import annotations

import http.client

import requests

RUNS = "/v1/sigma/query_runs"
SAVED = "/v1/sigma/saved_queries"
SCHEDULED = "/v1/sigma/scheduled_query_runs"


# --- authentication -------------------------------------------------------------------------


def test_a_request_without_a_key_is_refused_with_401(emulator):
    response = requests.get(f"{emulator.url}{SCHEDULED}")

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "You did not provide an API key" in response.json()["error"]["message"]


def test_a_live_key_is_refused_and_shown_masked(emulator):
    key = "sk_live_51H8supersecretvalue9abcd"

    response = requests.get(
        f"{emulator.url}{SCHEDULED}", headers={"Authorization": f"Bearer {key}"}
    )

    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert message == "Invalid API Key provided: sk_live_****abcd"
    assert "supersecret" not in response.text


def test_a_short_bad_key_is_masked_entirely(emulator):
    response = requests.get(f"{emulator.url}{SCHEDULED}", headers={"Authorization": "Bearer oops"})

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid API Key provided: ****"


def test_restricted_test_keys_are_accepted(emulator):
    response = requests.get(
        f"{emulator.url}{SCHEDULED}", headers={"Authorization": "Bearer rk_test_restricted123"}
    )

    assert response.status_code == 200


def test_basic_auth_with_the_key_as_user_name_is_accepted(emulator, api_key):
    response = requests.get(f"{emulator.url}{SCHEDULED}", auth=(api_key, ""))

    assert response.status_code == 200


# --- conventions ----------------------------------------------------------------------------


def test_every_answer_carries_a_request_id(emulator, sigma_http):
    ok = sigma_http.get(f"{emulator.url}{SCHEDULED}")
    error = sigma_http.get(f"{emulator.url}{RUNS}/qry_missing")
    unauthorized = requests.get(f"{emulator.url}{SCHEDULED}")

    ids = [r.headers["Request-Id"] for r in (ok, error, unauthorized)]
    assert all(request_id.startswith("req_") for request_id in ids)
    assert len(set(ids)) == 3


def test_an_unknown_route_is_a_stripe_404(emulator, sigma_http):
    response = sigma_http.get(f"{emulator.url}/v1/sigma/nothing_here")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "Unrecognized request URL (GET: /v1/sigma/nothing_here)" in response.text


def test_a_known_path_with_the_wrong_method_is_a_404(emulator, sigma_http):
    assert sigma_http.delete(f"{emulator.url}{RUNS}").status_code == 404


def test_stripe_version_and_account_headers_are_accepted_and_recorded(emulator, sigma_http):
    headers = {"Stripe-Version": "2025-07-30.preview", "Stripe-Account": "acct_123"}

    response = sigma_http.get(f"{emulator.url}{SCHEDULED}", headers=headers)

    assert response.status_code == 200
    assert response.headers["Stripe-Version"] == "2025-07-30.preview"
    [recorded] = emulator.requests
    assert recorded.headers["stripe-version"] == "2025-07-30.preview"
    assert recorded.headers["Stripe-Account"] == "acct_123"


def test_requests_are_recorded_with_form_query_and_status(emulator, sigma_http):
    sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"})
    sigma_http.get(f"{emulator.url}{SCHEDULED}", params={"limit": "2"})
    sigma_http.get(f"{emulator.url}{RUNS}/qry_missing")

    post, listing, missing = emulator.requests
    assert (post.method, post.path, post.form, post.status) == (
        "POST",
        RUNS,
        {"sql": "select 1"},
        200,
    )
    assert (listing.method, listing.query, listing.status) == ("GET", {"limit": "2"}, 200)
    assert missing.status == 404


def test_the_requests_snapshot_cannot_change_the_log(emulator, sigma_http):
    sigma_http.get(f"{emulator.url}{SCHEDULED}")

    emulator.requests.clear()
    emulator.requests[0].form["x"] = "y"

    assert len(emulator.requests) == 1
    assert emulator.requests[0].form == {}


def test_connections_are_kept_alive_between_requests(emulator, api_key):
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        connection.request("GET", SCHEDULED, headers=headers)
        first = connection.getresponse()
        first.read()
        socket_used = connection.sock
        connection.request("GET", f"{RUNS}/qry_missing", headers=headers)
        second = connection.getresponse()
        second.read()
        reused = connection.sock is socket_used
    finally:
        connection.close()

    assert (first.status, second.status) == (200, 404)
    assert not first.will_close
    assert reused
    assert int(first.headers["Content-Length"]) > 0


# --- idempotency ----------------------------------------------------------------------------


def test_a_repeated_idempotency_key_replays_the_first_run(emulator, sigma_http):
    headers = {"Idempotency-Key": "key-1"}
    first = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}, headers=headers)

    replay = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}, headers=headers)

    assert replay.status_code == 200
    assert replay.content == first.content
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert emulator.created_query_run_count == 1


def test_an_idempotency_key_reused_with_other_parameters_is_an_idempotency_error(
    emulator, sigma_http
):
    headers = {"Idempotency-Key": "key-2"}
    sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}, headers=headers)

    other = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 2"}, headers=headers)

    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    assert emulator.created_query_run_count == 1


def test_a_refused_request_does_not_use_up_its_idempotency_key(emulator, sigma_http):
    headers = {"Idempotency-Key": "key-3"}
    refused = sigma_http.post(f"{emulator.url}{RUNS}", data={}, headers=headers)

    fixed = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}, headers=headers)

    assert refused.status_code == 400
    assert fixed.status_code == 200
    assert "Idempotent-Replayed" not in fixed.headers


def test_different_idempotency_keys_create_different_runs(emulator, sigma_http):
    for key in ("a", "b"):
        sigma_http.post(
            f"{emulator.url}{RUNS}", data={"sql": "select 1"}, headers={"Idempotency-Key": key}
        )

    assert emulator.created_query_run_count == 2
    assert len(emulator.query_runs) == 2


# --- saved queries --------------------------------------------------------------------------


def test_a_saved_query_is_created_with_stripes_shape(emulator, sigma_http):
    response = sigma_http.post(
        f"{emulator.url}{SAVED}", data={"sql": "select id from charges", "name": "Charge ids"}
    )

    assert response.status_code == 200
    saved = response.json()
    assert saved["id"].startswith("qfl_")
    assert saved["object"] == "sigma.sigma_api_query"
    assert (saved["sql"], saved["name"], saved["livemode"]) == (
        "select id from charges",
        "Charge ids",
        False,
    )
    assert isinstance(saved["created"], int)


def test_a_saved_query_is_retrieved_updated_and_deleted(emulator, sigma_http):
    saved = sigma_http.post(f"{emulator.url}{SAVED}", data={"sql": "select 1"}).json()
    url = f"{emulator.url}{SAVED}/{saved['id']}"

    updated = sigma_http.post(url, data={"name": "Renamed"}).json()
    retrieved = sigma_http.get(url).json()
    deleted = sigma_http.delete(url)
    gone = sigma_http.get(url)

    assert (updated["name"], updated["sql"]) == ("Renamed", "select 1")
    assert retrieved == updated
    assert deleted.json() == {"id": saved["id"], "object": "sigma.sigma_api_query", "deleted": True}
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "resource_missing"


def test_updating_a_saved_querys_sql_keeps_its_name(emulator, sigma_http):
    saved = sigma_http.post(f"{emulator.url}{SAVED}", data={"sql": "select 1", "name": "n"}).json()

    updated = sigma_http.post(f"{emulator.url}{SAVED}/{saved['id']}", data={"sql": "select 2"})

    assert (updated.json()["sql"], updated.json()["name"]) == ("select 2", "n")


def test_a_saved_query_needs_sql(emulator, sigma_http):
    response = sigma_http.post(f"{emulator.url}{SAVED}", data={"name": "no sql"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "sql"


def test_unknown_saved_queries_are_404(emulator, sigma_http):
    for method in ("get", "post", "delete"):
        response = getattr(sigma_http, method)(f"{emulator.url}{SAVED}/qfl_missing")
        assert response.status_code == 404, method


# --- scheduled query runs -------------------------------------------------------------------


def test_scheduled_runs_are_listed_newest_first_in_a_list_envelope(emulator, sigma_http):
    listing = sigma_http.get(f"{emulator.url}{SCHEDULED}").json()

    assert listing["object"] == "list"
    assert listing["url"] == SCHEDULED
    assert listing["has_more"] is False
    created = [run["created"] for run in listing["data"]]
    assert len(created) == 5
    assert created == sorted(created, reverse=True)


def test_a_scheduled_run_carries_its_file_inline(emulator, sigma_http):
    run = sigma_http.get(f"{emulator.url}{SCHEDULED}").json()["data"][0]

    assert run["id"].startswith("sqr_")
    assert run["object"] == "scheduled_query_run"
    assert run["status"] == "completed"
    assert run["error"] is None
    assert run["title"]
    assert run["sql"].startswith("select")
    assert run["data_load_time"] < run["created"] < run["result_available_until"]
    assert run["file"]["object"] == "file"
    contents = sigma_http.get(run["file"]["url"])
    assert contents.status_code == 200
    assert len(contents.content) == run["file"]["size"]


def test_scheduled_runs_page_forward_with_starting_after(emulator, sigma_http):
    everything = sigma_http.get(f"{emulator.url}{SCHEDULED}").json()["data"]

    first = sigma_http.get(f"{emulator.url}{SCHEDULED}", params={"limit": 2}).json()
    second = sigma_http.get(
        f"{emulator.url}{SCHEDULED}",
        params={"limit": 2, "starting_after": first["data"][-1]["id"]},
    ).json()
    last = sigma_http.get(
        f"{emulator.url}{SCHEDULED}",
        params={"limit": 2, "starting_after": second["data"][-1]["id"]},
    ).json()

    pages = [first, second, last]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert [run["id"] for page in pages for run in page["data"]] == [r["id"] for r in everything]


def test_scheduled_runs_page_backward_with_ending_before(emulator, sigma_http):
    everything = sigma_http.get(f"{emulator.url}{SCHEDULED}").json()["data"]

    page = sigma_http.get(
        f"{emulator.url}{SCHEDULED}", params={"limit": 2, "ending_before": everything[3]["id"]}
    ).json()

    assert [run["id"] for run in page["data"]] == [everything[1]["id"], everything[2]["id"]]
    assert page["has_more"] is True


def test_a_scheduled_run_is_retrieved_by_id(emulator, sigma_http):
    listed = sigma_http.get(f"{emulator.url}{SCHEDULED}").json()["data"][2]

    retrieved = sigma_http.get(f"{emulator.url}{SCHEDULED}/{listed['id']}")

    assert retrieved.json() == listed
    assert sigma_http.get(f"{emulator.url}{SCHEDULED}/sqr_missing").status_code == 404


def test_scheduled_runs_are_the_same_for_the_same_seed(emulator, sigma_http, api_key):
    from sigma_source.emulator import Emulator

    mine = sigma_http.get(f"{emulator.url}{SCHEDULED}").json()["data"]
    with Emulator(seed=42, scale=500) as twin:
        theirs = requests.get(f"{twin.url}{SCHEDULED}", auth=(api_key, "")).json()["data"]

    assert [(r["id"], r["sql"], r["file"]["size"]) for r in mine] == [
        (r["id"], r["sql"], r["file"]["size"]) for r in theirs
    ]


def test_list_limit_must_be_between_1_and_100(emulator, sigma_http):
    for limit in ("0", "101", "ten"):
        response = sigma_http.get(f"{emulator.url}{SCHEDULED}", params={"limit": limit})
        assert response.status_code == 400, limit
        assert response.json()["error"]["param"] == "limit"


def test_paging_with_an_unknown_cursor_is_refused(emulator, sigma_http):
    response = sigma_http.get(f"{emulator.url}{SCHEDULED}", params={"starting_after": "sqr_nope"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "starting_after"


# --- files ----------------------------------------------------------------------------------


def test_a_result_file_is_a_stripe_file_object(emulator, sigma_http, run_query):
    run = run_query("select 1 as one")

    file = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}").json()

    assert file["id"] == run["result"]["file"]
    assert file["object"] == "file"
    assert file["purpose"] == "sigma_scheduled_query"
    assert file["type"] == "csv"
    assert file["size"] == len(b"one\n1\n")
    assert file["filename"].endswith(".csv")
    assert file["url"] == f"{emulator.url}/v1/files/{file['id']}/contents"
    assert file["expires_at"] > file["created"]
    assert file["title"]


def test_file_contents_are_csv_with_a_content_length(emulator, sigma_http, run_query):
    run = run_query("select id from customers")

    response = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")

    assert response.headers["Content-Type"] == "text/csv"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.content.count(b"\n") == 51


def test_a_large_file_streams_completely(emulator, sigma_http, run_query):
    emulator.add_rows("balance_transactions", 20_000)
    run = run_query("select * from balance_transactions")

    with sigma_http.get(
        f"{emulator.url}/v1/files/{run['result']['file']}/contents", stream=True
    ) as response:
        size = sum(len(chunk) for chunk in response.iter_content(256 * 1024))

    assert size == int(response.headers["Content-Length"]) > 1_000_000


def test_an_unknown_file_is_404(emulator, sigma_http):
    assert sigma_http.get(f"{emulator.url}/v1/files/file_missing").status_code == 404
    assert sigma_http.get(f"{emulator.url}/v1/files/file_missing/contents").status_code == 404
