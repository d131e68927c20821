"""Emulator: query runs, from creation to result file, over a real socket."""

from __future__ import annotations

import time

import pytest

RUNS = "/v1/sigma/query_runs"


def test_a_new_run_answers_running_at_once_with_stripes_shape(emulator, sigma_http):
    response = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1 as one"})

    assert response.status_code == 200
    run = response.json()
    assert run["id"].startswith("qry_")
    assert run["object"] == "sigma.sigma_query_run"
    assert run["status"] == "running"
    assert run["finalized_at"] is None
    assert run["result"] == {"file": None}
    assert run["error"] is None
    assert run["livemode"] is False
    assert run["sql"] == "select 1 as one"
    assert abs(run["created"] - time.time()) < 5


def test_a_run_succeeds_with_a_file_holding_the_result(emulator, sigma_http, run_query):
    run = run_query("select 2 as two")

    assert run["status"] == "succeeded"
    assert run["result"]["file"].startswith("file_")
    assert run["finalized_at"] >= run["created"]
    contents = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
    assert contents.text == "two\n2\n"


def test_a_run_stays_running_until_run_seconds_have_passed(emulator, sigma_http, wait_for_run):
    emulator.run_seconds = 0.6
    created = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}).json()

    time.sleep(0.2)
    early = sigma_http.get(f"{emulator.url}{RUNS}/{created['id']}").json()
    final = wait_for_run(created["id"])

    assert early["status"] == "running"
    assert early["result"]["file"] is None
    assert final["status"] == "succeeded"
    assert final["finalized_at"] - final["created"] >= 0


def test_run_seconds_applies_only_to_runs_created_afterwards(emulator, sigma_http, wait_for_run):
    quick = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}).json()
    emulator.run_seconds = 30
    slow = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": "select 1"}).json()

    assert wait_for_run(quick["id"])["status"] == "succeeded"
    assert sigma_http.get(f"{emulator.url}{RUNS}/{slow['id']}").json()["status"] == "running"


def test_bad_sql_fails_the_run_with_duckdbs_message_on_one_line(run_query):
    run = run_query("select * from no_such_table")

    assert run["status"] == "failed"
    assert run["result"]["file"] is None
    assert run["finalized_at"] is not None
    assert "no_such_table" in run["error"]["message"]
    assert "\n" not in run["error"]["message"]


@pytest.mark.parametrize(
    "sql", ["select 7 as n;", "select 7 as n -- a closing comment", "select 7 as n /* note */ ;"]
)
def test_a_closing_semicolon_or_comment_is_fine(emulator, run_query, sigma_http, sql):
    run = run_query(sql)

    assert run["status"] == "succeeded", run["error"]
    contents = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
    assert contents.content == b"n\n7\n"


def test_only_one_select_statement_may_run(run_query):
    run = run_query("create table sneaky as select 1")

    assert run["status"] == "failed"
    assert "SELECT" in run["error"]["message"]


def test_queries_cannot_read_files_on_the_machine(run_query):
    run = run_query("select * from read_csv('/etc/passwd')")

    assert run["status"] == "failed"
    assert "Permission" in run["error"]["message"]


def test_trino_timestamp_literals_work(emulator, run_query, sigma_http):
    run = run_query(
        "select count(*) as n from balance_transactions"
        " where created >= timestamp '2024-06-01 00:00:00.000'"
        " and created < timestamp '2024-07-01 00:00:00.000'"
    )

    expected = emulator.execute(
        "select count(*) from balance_transactions"
        " where created >= '2024-06-01' and created < '2024-07-01'"
    )[0][0]
    contents = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
    assert expected > 0
    assert contents.text == f"n\n{expected}\n"


def test_retrieving_an_unknown_run_is_a_404_resource_missing(emulator, sigma_http):
    response = sigma_http.get(f"{emulator.url}{RUNS}/qry_unknown")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "resource_missing"
    assert "qry_unknown" in error["message"]


@pytest.mark.parametrize(
    ("form", "param"),
    [
        ({}, "sql"),
        ({"sql": "select 1", "from_saved_query": "qfl_x"}, "from_saved_query"),
        ({"sql": "   "}, "sql"),
        ({"sql": "select 1", "limit": "3"}, "limit"),
    ],
    ids=["neither", "both", "blank sql", "unknown parameter"],
)
def test_a_run_needs_exactly_one_valid_source_of_sql(emulator, sigma_http, form, param):
    response = sigma_http.post(f"{emulator.url}{RUNS}", data=form)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == param
    assert emulator.created_query_run_count == 0


def test_sql_longer_than_100000_characters_is_refused(emulator, sigma_http):
    sql = "select 1" + " " * 100_000

    response = sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": sql})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "sql"


def test_a_run_from_a_saved_query_runs_its_sql(emulator, sigma_http, wait_for_run):
    saved = sigma_http.post(
        f"{emulator.url}/v1/sigma/saved_queries", data={"sql": "select 7 as seven"}
    ).json()

    created = sigma_http.post(f"{emulator.url}{RUNS}", data={"from_saved_query": saved["id"]})
    run = wait_for_run(created.json()["id"])

    assert run["sql"] == "select 7 as seven"
    contents = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
    assert contents.text == "seven\n7\n"


def test_a_run_from_an_unknown_saved_query_is_refused(emulator, sigma_http):
    response = sigma_http.post(f"{emulator.url}{RUNS}", data={"from_saved_query": "qfl_nope"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "resource_missing"
    assert response.json()["error"]["param"] == "from_saved_query"


def test_query_runs_holds_each_run_as_last_served(emulator, sigma_http, run_query):
    run = run_query("select 1")

    assert emulator.query_runs[run["id"]] == run
    assert emulator.created_query_run_count == 1


def test_runs_execute_concurrently(emulator, sigma_http, wait_for_run):
    ids = [
        sigma_http.post(f"{emulator.url}{RUNS}", data={"sql": f"select {n} as n"}).json()["id"]
        for n in range(6)
    ]

    runs = [wait_for_run(run_id) for run_id in ids]

    assert [run["status"] for run in runs] == ["succeeded"] * 6
    assert len({run["result"]["file"] for run in runs}) == 6
