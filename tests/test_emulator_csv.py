"""Emulator: result files are CSV exactly as Sigma writes them."""

from __future__ import annotations

import csv
import io
import re

import pytest

from sigma_source.emulator import Emulator
from sigma_source.emulator.tables import TABLES

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")


@pytest.fixture
def result_csv(emulator, sigma_http, run_query):
    """Run SQL on the emulator and return the result file's bytes."""

    def fetch(sql: str) -> bytes:
        run = run_query(sql)
        assert run["status"] == "succeeded", run["error"]
        response = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
        assert response.status_code == 200
        return response.content

    return fetch


def parse(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


def test_the_header_row_names_the_columns_in_table_order(result_csv):
    header = parse(result_csv("select * from balance_transactions"))[0]

    assert tuple(header) == TABLES["balance_transactions"].column_names


def test_there_is_no_byte_order_mark(result_csv):
    assert result_csv("select id from charges limit 1").startswith(b"id\n")


def test_timestamps_are_utc_to_the_millisecond_without_a_zone(result_csv, emulator):
    rows = parse(result_csv("select id, created from charges order by id"))[1:]

    expected = emulator.execute("select id, created from charges order by id")
    assert all(TIMESTAMP.fullmatch(created) for _, created in rows)
    assert [created for _, created in rows] == [
        moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for _, moment in expected
    ]


def test_booleans_are_true_and_false(result_csv):
    values = {row[0] for row in parse(result_csv("select captured from charges"))[1:]}

    assert values == {"true", "false"}


def test_null_is_an_empty_field(result_csv):
    content = result_csv("select cast(null as varchar) as a, 1 as b, cast(null as bigint) as c")

    assert content == b"a,b,c\n,1,\n"


def test_an_empty_string_is_an_empty_field_as_null_is(result_csv):
    # Sigma's CSV cannot tell an empty string from NULL: both are an empty field, never `""`.
    content = result_csv(
        "select '' as a, cast(null as varchar) as b, 'x' as c, '' as a, 1 as n order by n"
    )

    assert content == b"a,b,c,a_1,n\n,,x,,1\n"


def test_text_that_only_looks_empty_keeps_its_quotes(result_csv):
    content = result_csv("select ' ' as space, '\"\"' as quotes, 'a,b' as comma")

    assert content == b'space,quotes,comma\n ,"""""","a,b"\n'


def test_a_row_whose_only_column_is_null_is_an_empty_line(result_csv):
    # Readers that skip blank lines (pyarrow's default) would lose this row.
    content = result_csv("select * from (values ('a'), (null), ('b')) as t(letter)")

    assert content == b"letter\na\n\nb\n"


def test_commas_quotes_and_newlines_are_quoted_rfc4180_style(result_csv, emulator):
    content = result_csv("select id, description from balance_transactions order by id")

    parsed = {row[0]: row[1] for row in parse(content)[1:]}
    expected = dict(emulator.execute("select id, description from balance_transactions"))
    assert parsed == {key: value or "" for key, value in expected.items()}
    assert b'""damaged""' in content
    assert b'"Consulting, March\nsecond line of notes"' in content


def test_namibia_is_written_as_the_plain_data_na(result_csv):
    rows = parse(result_csv("select id, address_country from customers"))[1:]

    assert ["NA"] in [[country] for _, country in rows]
    assert b",NA\n" in result_csv("select id, address_country from customers")


def test_decimals_are_exact_with_eighteen_places(result_csv):
    rows = parse(result_csv("select amount from itemized_fees limit 50"))[1:]

    # Generated to 4 places: the other 14 are zeros, not binary floating-point noise.
    assert all(re.fullmatch(r"\d+\.\d{4}0{14}", amount) for [amount] in rows)


def test_doubles_parse_as_numbers(result_csv):
    rows = parse(result_csv("select id, exchange_rate from balance_transactions"))[1:]

    rates = [float(rate) for _, rate in rows if rate]
    assert rates
    assert all(0.5 <= rate <= 1.5 for rate in rates)


def test_an_empty_result_is_just_the_header(result_csv):
    assert result_csv("select id, amount from charges where false") == b"id,amount\n"


def test_the_same_seed_gives_byte_identical_files(result_csv, api_key):
    sql = "select * from charges"
    mine = result_csv(sql)

    with Emulator(seed=42, scale=500) as twin:
        theirs = file_bytes(twin, api_key, sql)

    assert mine == theirs


def test_another_seed_gives_different_files(result_csv, api_key):
    sql = "select * from charges"
    mine = result_csv(sql)

    with Emulator(seed=43, scale=500) as other:
        theirs = file_bytes(other, api_key, sql)

    assert mine != theirs


def file_bytes(emu: Emulator, api_key: str, sql: str) -> bytes:
    """Run SQL on another emulator through its API and return the result file."""
    import requests

    headers = {"Authorization": f"Bearer {api_key}"}
    run = requests.post(f"{emu.url}/v1/sigma/query_runs", data={"sql": sql}, headers=headers)
    run_id = run.json()["id"]
    for _ in range(500):
        state = requests.get(f"{emu.url}/v1/sigma/query_runs/{run_id}", headers=headers).json()
        if state["status"] != "running":
            break
    file_id = state["result"]["file"]
    return requests.get(f"{emu.url}/v1/files/{file_id}/contents", headers=headers).content
