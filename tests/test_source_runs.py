"""How queries become Sigma query runs: concurrency, saved queries, pending loads."""

from __future__ import annotations

from sigma_source.client import ClientConfig, SigmaClient
from sigma_source.loader import loader_file_format, prepare
from tests.loader_helpers import BALANCE_TRANSACTIONS_SQL, TEST_KEY, LoaderHarness, posted_sql

FOUR_QUERIES = {
    f"q{i}": f"select id, amount from balance_transactions where amount > {i} limit 50"
    for i in range(4)
}


def _create_times(emulator) -> list[float]:
    return sorted(
        request.received_at
        for request in emulator.requests
        if request.method == "POST" and request.path == "/v1/sigma/query_runs"
    )


def _harness_with_four_slow_queries(tmp_path, emulator) -> LoaderHarness:
    harness = LoaderHarness(tmp_path, emulator.url)
    for name, sql in FOUR_QUERIES.items():
        harness.write_query(name, sql)
    emulator.run_seconds = 1.5
    return harness


def test_queries_run_concurrently_up_to_max_concurrent_runs(tmp_path, emulator):
    harness = _harness_with_four_slow_queries(tmp_path, emulator)

    result = harness.run(source_settings={"max_concurrent_runs": 4})

    assert result.ok, result.failures
    created = _create_times(emulator)
    assert len(created) == 4
    # All four were started while the first was still running (each runs 1.5 s).
    assert created[-1] - created[0] < 1.0


def test_max_concurrent_runs_of_one_runs_queries_one_after_another(tmp_path, emulator):
    harness = _harness_with_four_slow_queries(tmp_path, emulator)

    result = harness.run(source_settings={"max_concurrent_runs": 1})

    assert result.ok, result.failures
    created = _create_times(emulator)
    gaps = [later - earlier for earlier, later in zip(created, created[1:], strict=False)]
    assert len(gaps) == 3 and min(gaps) >= 1.4


def test_saved_query_runs_from_saved_query_and_records_its_id(tmp_path, emulator):
    sql = "select id, amount, currency from charges"
    config = ClientConfig(api_key=TEST_KEY, api_base=emulator.url, files_base=emulator.url)
    with SigmaClient(config) as client:
        saved = client.create_saved_query(sql, name="All charges")
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("all_charges", f"{{{{ config(saved_query='{saved.id}') }}}}\n{sql}\n")

    result = harness.run()

    assert result.ok, result.failures
    creates = [
        r.form for r in emulator.requests if r.method == "POST" and r.path == "/v1/sigma/query_runs"
    ]
    assert creates == [{"from_saved_query": saved.id}]
    expected = emulator.execute("select count(*) from charges")[0][0]
    assert harness.sql("select count(*) from sigma.all_charges")[0][0] == expected
    rows = harness.sql("select saved_query_id, sql from sigma._sigma_query_runs")
    assert rows == [(saved.id, sql)]


def test_a_load_left_pending_is_finished_before_new_data_is_extracted(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    # A run that died after extract and normalize, before its load.
    pipeline, source, _ = prepare(harness.options())
    pipeline.extract(source, loader_file_format=loader_file_format("duckdb"))
    pipeline.normalize()
    assert pipeline.has_pending_data
    emulator.add_rows("balance_transactions", 30)

    result = harness.run()

    assert result.ok, result.failures
    assert len(posted_sql(emulator)) == 2, "the next run must still extract anew"
    total = emulator.execute("select count(*) from balance_transactions")[0][0]
    assert harness.sql("select count(*), count(distinct id) from sigma.balance_transactions")[
        0
    ] == (total, total)
    loads = harness.sql("select count(*) from sigma._dlt_loads where status = 0")[0][0]
    assert loads == 2


def test_a_query_is_polled_sparsely_once_its_usual_duration_is_known(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("slow", "select id, amount from balance_transactions limit 5")
    emulator.run_seconds = 2.0
    polling = {"poll_interval": 0.1, "poll_max_interval": 0.8}

    first = harness.run(source_settings=polling)
    second = harness.run(source_settings=polling)

    assert first.ok and second.ok, (first.failures, second.failures)
    (first_polls, first_wait), (second_polls, second_wait) = harness.sql(
        "select poll_count, wait_seconds from sigma._sigma_query_runs order by created_at"
    )
    assert second_polls < first_polls / 2
    assert second_wait < 2.0 + 0.1 + 0.3  # still noticed within an interval of finishing
    state = second.pipeline.state["sources"]["sigma"]["queries"]["slow"]
    assert state["run_seconds"] == [first_wait, second_wait]
