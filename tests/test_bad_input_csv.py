"""Result files that are not the CSV Sigma writes: the query fails alone, loading nothing.

The emulator serves these files byte for byte (`add_canned_result`) for query runs whose SQL
holds a marker, so the loader meets them on a real download, as it would from Stripe.
"""

from __future__ import annotations

import base64

import pytest
import requests

from sigma_source.arrow_csv import read_batches
from tests.reliability_helpers import INCREMENTAL_SQL, CliProject

GOOD = "balance_transactions"
TEN_MB = 10 * 1024 * 1024


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url)
    project.write_query(GOOD, INCREMENTAL_SQL)
    return project


def _serve(emulator, project: CliProject, content: bytes, config: str = "") -> None:
    """Make query `bad_csv` download exactly `content`."""
    emulator.add_canned_result("canned_marker", content)
    project.write_query("bad_csv", f"{config}\nselect 1 as canned_marker")


CASES = {
    "a row with an extra field": (b"id,amount\n1,10\n2,20,30\n", "", ["Expected 2 columns"]),
    "a row missing a field": (b"id,amount\n1,10\n2\n", "", ["Expected 2 columns"]),
    "invalid UTF-8 in a value": (b"id,name\n1,caf\xe9\n", "", ["UTF8"]),
    "invalid UTF-8 in the header": (b"id,n\xffme\n1,x\n", "", ["UTF-8"]),
    "a value that violates its declared type": (
        b"id,amount\n1,10\n2,12abc\n",
        "{{ config(columns={'amount': 'bigint'}) }}",
        ["column 'amount'", "row 2", "'12abc'", "bigint"],
    ),
    "an empty primary key": (
        b"id,amount\n1,10\n,20\n",
        "{{ config(primary_key='id') }}",
        ["primary key column 'id'"],
    ),
    "an empty body": (b"", "", ["empty"]),
    "a duplicated column name": (b"id,id\n1,2\n", "", ["id"]),
    "an empty column name": (b"id,\n1,2\n", "", ["column 2", "no name"]),
    "a column name of spaces": (b"id,  \n1,2\n", "", ["column 2", "no name"]),
    "column names equal but for case": (b"id,ID\n1,2\n", "", ["'ID'"]),
}


@pytest.mark.parametrize(("content", "config", "named"), CASES.values(), ids=CASES.keys())
def test_a_malformed_result_fails_its_query_alone_and_loads_none_of_it(
    project, emulator, content, config, named
):
    _serve(emulator, project, content, config)

    result = project.run()

    assert list(result.failures) == ["bad_csv"]
    line = result.failures["bad_csv"]
    assert line.startswith("bad_csv: ") and "\n" not in line
    for word in named:
        assert word in line, line
    assert not project.table_exists("bad_csv")
    assert project.table_exists(GOOD)
    recorded = project.sql(
        "select status, row_count, query_run_id, error from sigma._sigma_query_runs "
        "where query_name = 'bad_csv'"
    )
    assert len(recorded) == 1
    status, rows, run_id, error = recorded[0]
    assert (status, rows) == ("failed", 0) and run_id.startswith("qry_")
    assert named[0] in error  # the run that was parsed failed, with the reason


def test_a_malformed_result_fails_the_cli_with_exit_1_and_one_line(project, emulator):
    _serve(emulator, project, b"id,amount\n1,10\n2,20,30\n")

    done = project.cli("run")

    assert done.returncode == 1
    failed = [line for line in done.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED bad_csv: query run qry_")
    assert "Traceback" not in done.stderr


def test_a_header_only_result_loads_an_empty_table_and_succeeds(project, emulator):
    _serve(emulator, project, b"id,amount\n", "{{ config(columns={'amount': 'bigint'}) }}")

    result = project.run()

    assert result.ok, result.failures
    assert project.sql("select count(*) from sigma.bad_csv") == [(0,)]
    columns = project.sql(
        "select column_name, data_type from information_schema.columns "
        "where table_name = 'bad_csv' and column_name = 'amount'"
    )
    assert columns == [("amount", "BIGINT")]


def test_a_ten_megabyte_value_loads_whole(project):
    project.write_query(
        "long_text", f"select 'id_1' as id, repeat('x', {TEN_MB}) || 'END' as description"
    )

    result = project.run()

    assert result.ok, result.failures
    assert project.sql(
        "select id, length(description), right(description, 3) from sigma.long_text"
    ) == [("id_1", TEN_MB + 3, "END")]


def test_a_ten_megabyte_value_among_ordinary_rows_keeps_every_row(project):
    project.write_query(
        "mixed",
        "select id, case when id = (select min(id) from balance_transactions) "
        f"then repeat('y', {TEN_MB}) else description end as description "
        "from balance_transactions",
    )

    result = project.run()

    assert result.ok, result.failures
    total = project.sql("select count(*), max(length(description)) from sigma.mixed")
    assert total == [(500, TEN_MB)]


def test_rows_longer_than_a_block_are_read_whole_in_order_without_repeats(tmp_path):
    lines = [f"{n},{'z' * (5000 if n in (3, 40) else 10)}" for n in range(60)]
    path = tmp_path / "long.csv"
    path.write_text("id,text\n" + "\n".join(lines) + "\n")

    batches = read_batches(
        path, {"id": "bigint", "text": "varchar"}, query_name="q", block_size=512
    )
    rows = [row for batch in batches for row in batch.to_pylist()]

    assert [row["id"] for row in rows] == list(range(60))
    assert [len(row["text"]) for row in rows if len(row["text"]) > 10] == [5000, 5000]


def test_canned_results_are_served_through_the_control_api_byte_for_byte(emulator, api_key):
    body = b"id,name\r\n1,caf\xe9\r\n"
    added = requests.post(
        f"{emulator.url}/_emulator/results",
        json={"sql_contains": "marker_42", "content_base64": base64.b64encode(body).decode()},
        timeout=5,
    )
    assert added.status_code == 200
    headers = {"Authorization": f"Bearer {api_key}"}
    run = requests.post(
        f"{emulator.url}/v1/sigma/query_runs",
        data={"sql": "select 1 as marker_42"},
        headers=headers,
        timeout=5,
    ).json()

    file_id = _wait_for_file(emulator, run["id"], headers)
    contents = requests.get(f"{emulator.url}/v1/files/{file_id}/contents", headers=headers)

    assert contents.content == body


def _wait_for_file(emulator, run_id: str, headers: dict[str, str]) -> str:
    for _ in range(200):
        run = requests.get(
            f"{emulator.url}/v1/sigma/query_runs/{run_id}", headers=headers, timeout=5
        ).json()
        if run["status"] != "running":
            return run["result"]["file"]
    raise AssertionError(f"query run {run_id} never finished")


BAD_INPUTS_TRIED = len(CASES) + 1 + 1 + 3  # + through the CLI, header only, long values
