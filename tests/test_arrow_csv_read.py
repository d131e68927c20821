"""Reading a Sigma result file into typed Arrow batches: dialect, types, errors, batching."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests

from sigma_source.arrow_csv import (
    read_batches,
    read_header,
    resolve_column_types,
    resolve_file_types,
)
from sigma_source.emulator import Emulator
from sigma_source.emulator.tables import TABLES
from sigma_source.errors import CSVFormatError, CSVTypeError

WriteFile = Callable[..., Path]


@pytest.fixture
def result_file(tmp_path: Path) -> WriteFile:
    """Writes a result file from text (str) or raw bytes, as Sigma would serve it."""

    def write(content: str | bytes, name: str = "result.csv") -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


def read_table(path: Path, types: Any, **options: Any) -> pa.Table:
    batches = list(read_batches(path, types, query_name="charges", **options))
    return pa.Table.from_batches(batches)


# --- Sigma's dialect ------------------------------------------------------------------


def test_a_utf8_bom_is_stripped_from_the_first_column_name(result_file: WriteFile) -> None:
    path = result_file("\ufeffid,amount\nch_1,5\n")
    assert read_header(path) == ["id", "amount"]
    assert read_table(path, {"id": "varchar", "amount": "bigint"}).column_names == ["id", "amount"]


def test_only_the_empty_field_is_null(result_file: WriteFile) -> None:
    path = result_file("country\nNA\nNULL\nnan\nNone\n\n")
    assert read_table(path, {"country": "varchar"})["country"].to_pylist() == [
        "NA",
        "NULL",
        "nan",
        "None",
        None,
    ]


def test_an_empty_string_reads_back_as_null(result_file: WriteFile) -> None:
    # Sigma writes '' and NULL alike; quoted or not, an empty field is NULL.
    path = result_file('id,note\nch_1,""\nch_2,\n')
    assert read_table(path, {"id": "varchar", "note": "varchar"})["note"].to_pylist() == [
        None,
        None,
    ]


def test_quoted_values_keep_commas_quotes_and_newlines(result_file: WriteFile) -> None:
    path = result_file('id,description\nch_1,"Order #1042, 3 items"\nch_2,"a ""b""\nc"\n')
    assert read_table(path, {"id": "varchar", "description": "varchar"})[
        "description"
    ].to_pylist() == ["Order #1042, 3 items", 'a "b"\nc']


def test_values_with_newlines_may_straddle_parse_blocks(result_file: WriteFile) -> None:
    rows = [f'{n},"line one\nline two, {n}"' for n in range(5_000)]
    path = result_file("n,note\n" + "\n".join(rows) + "\n")
    table = read_table(path, {"n": "bigint", "note": "varchar"}, block_size=4096)
    assert table["n"].to_pylist() == list(range(5_000))
    assert table["note"][4_999].as_py() == "line one\nline two, 4999"


def test_crlf_line_endings_are_read_like_lf(result_file: WriteFile) -> None:
    path = result_file("id,amount\r\nch_1,5\r\nch_2,\r\n")
    assert read_table(path, {"id": "varchar", "amount": "bigint"}).to_pylist() == [
        {"id": "ch_1", "amount": 5},
        {"id": "ch_2", "amount": None},
    ]


def test_an_empty_line_in_a_one_column_result_is_a_null_row(result_file: WriteFile) -> None:
    path = result_file("amount\n5\n\n7\n")
    assert read_table(path, {"amount": "bigint"})["amount"].to_pylist() == [5, None, 7]


# --- Types ------------------------------------------------------------------------------


def test_timestamps_load_as_utc_with_millisecond_precision(result_file: WriteFile) -> None:
    path = result_file("created\n2025-04-01 12:34:56.789\n2025-04-01 00:00:00\n")
    column = read_table(path, {"created": "timestamp"})["created"]
    assert column.type == pa.timestamp("us", tz="UTC")
    assert column.to_pylist() == [
        datetime(2025, 4, 1, 12, 34, 56, 789_000, tzinfo=timezone.utc),
        datetime(2025, 4, 1, tzinfo=timezone.utc),
    ]


def test_amounts_stay_exact_int64_beyond_float_precision(result_file: WriteFile) -> None:
    path = result_file("amount\n9007199254740993\n-9223372036854775808\n")
    column = read_table(path, {"amount": "bigint"})["amount"]
    assert column.type == pa.int64()
    assert column.to_pylist() == [9007199254740993, -9223372036854775808]


def test_decimal_38_18_stays_an_exact_decimal(result_file: WriteFile) -> None:
    path = result_file("amount\n12.500000000000000001\n-0.000000000000000001\n")
    column = read_table(path, {"amount": "decimal(38,18)"})["amount"]
    assert column.type == pa.decimal128(38, 18)
    assert column.to_pylist() == [Decimal("12.500000000000000001"), Decimal("-1E-18")]


def test_booleans_dates_and_doubles_load_natively(result_file: WriteFile) -> None:
    path = result_file("captured,day,rate\ntrue,2025-04-01,-2.5E10\nfalse,2024-02-29,NaN\n")
    table = read_table(path, {"captured": "boolean", "day": "date", "rate": "double"})
    assert table["captured"].to_pylist() == [True, False]
    assert table["day"].to_pylist() == [date(2025, 4, 1), date(2024, 2, 29)]
    rates = table["rate"].to_pylist()
    assert rates[0] == -2.5e10 and rates[1] != rates[1]  # NaN


def test_batches_have_the_resolved_schema_in_file_order(result_file: WriteFile) -> None:
    path = result_file("id,amount,created\nch_1,5,2025-04-01 00:00:00.000\n")
    resolved = resolve_file_types(path, query_name="charges")
    (batch,) = read_batches(path, resolved, query_name="charges")
    assert batch.schema == resolved.schema
    assert batch.schema.names == ["id", "amount", "created"]


# --- Empty results and batching -------------------------------------------------------


def test_a_header_only_result_yields_one_empty_typed_batch(result_file: WriteFile) -> None:
    path = result_file("id,amount,created\n")
    resolved = resolve_file_types(path, query_name="charges", declared={"amount": "bigint"})
    batches = list(read_batches(path, resolved, query_name="charges"))
    assert [batch.num_rows for batch in batches] == [0]
    assert batches[0].schema == pa.schema(
        [("id", pa.string()), ("amount", pa.int64()), ("created", pa.string())]
    )


def test_batches_hold_at_most_batch_rows_rows_in_file_order(result_file: WriteFile) -> None:
    path = result_file("n\n" + "\n".join(str(n) for n in range(10_000)) + "\n")
    batches = list(
        read_batches(path, {"n": "bigint"}, query_name="q", batch_rows=3_000, block_size=4096)
    )
    assert [batch.num_rows for batch in batches] == [3_000, 3_000, 3_000, 1_000]
    assert pa.Table.from_batches(batches)["n"].to_pylist() == list(range(10_000))


def test_without_batch_rows_each_parse_block_is_one_batch(result_file: WriteFile) -> None:
    path = result_file("n\n" + "\n".join(str(n) for n in range(10_000)) + "\n")
    batches = list(read_batches(path, {"n": "bigint"}, query_name="q", block_size=4096))
    assert len(batches) > 1
    assert sum(batch.num_rows for batch in batches) == 10_000


def test_types_must_cover_exactly_the_header(result_file: WriteFile) -> None:
    path = result_file("id,amount\nch_1,5\n")
    with pytest.raises(ValueError, match="header"):
        list(read_batches(path, {"id": "varchar"}, query_name="charges"))


# --- Values that break their type -------------------------------------------------------


def test_a_value_breaking_a_declared_type_names_query_column_row_and_value(
    result_file: WriteFile,
) -> None:
    path = result_file("id,amount\nch_1,100\nch_2,12.5\n")
    resolved = resolve_column_types(["id", "amount"], declared={"amount": "bigint"})
    with pytest.raises(CSVTypeError) as raised:
        list(read_batches(path, resolved, query_name="charges"))
    assert str(raised.value) == (
        "query 'charges': column 'amount' (bigint, declared in config(columns=…)), row 2: "
        "value '12.5' is not a valid bigint; fix the type declared in config(columns=…)"
    )


def test_a_value_breaking_a_stored_type_suggests_declaring_or_a_full_refresh(
    result_file: WriteFile,
) -> None:
    path = result_file("id,amount\nch_1,100\nch_2,unknown\n")
    resolved = resolve_column_types(["id", "amount"], stored={"amount": "bigint"})
    with pytest.raises(CSVTypeError) as raised:
        list(read_batches(path, resolved, query_name="charges"))
    message = str(raised.value)
    assert "column 'amount' (bigint, as stored by earlier loads), row 2" in message
    assert "declare the column's type in config(columns=…)" in message
    assert "--full-refresh" in message


def test_the_row_number_counts_rows_not_lines_deep_in_a_file(result_file: WriteFile) -> None:
    rows = [f'{n},"two\nlines"' for n in range(20_000)]
    rows[15_000] = '2025-01-01,"two\nlines"'
    path = result_file("amount,note\n" + "\n".join(rows) + "\n")
    with pytest.raises(CSVTypeError, match=r"row 15001: value '2025-01-01' is not a valid bigint"):
        list(read_batches(path, {"amount": "bigint", "note": "varchar"}, query_name="q",
                          block_size=4096))  # fmt: skip


def test_a_type_error_message_is_one_line_even_for_a_multiline_value(
    result_file: WriteFile,
) -> None:
    path = result_file('id,amount\nch_1,"12\n34"\n')
    with pytest.raises(CSVTypeError) as raised:
        list(read_batches(path, {"id": "varchar", "amount": "bigint"}, query_name="charges"))
    assert "\n" not in str(raised.value)
    assert "value '12\\n34'" in str(raised.value)


@pytest.mark.parametrize(
    ("sigma_type", "value"),
    [
        ("timestamp", "2025-04-01 12:00:00+02:00"),
        ("date", "2025-02-30"),
        ("boolean", "yes"),
        ("double", "1,5"),
        ("decimal(10,2)", "1.555"),
    ],
)
def test_each_type_rejects_what_does_not_fit_it(
    result_file: WriteFile, sigma_type: str, value: str
) -> None:
    path = result_file(f'id,v\nch_1,\nch_2,"{value}"\n')
    with pytest.raises(CSVTypeError, match=re.escape(f"column 'v' ({sigma_type}), row 2")):
        list(read_batches(path, {"id": "varchar", "v": sigma_type}, query_name="q"))


@pytest.mark.parametrize(
    ("sigma_type", "accepted", "refused"),
    [
        # The CSV reader takes numbers with surrounding spaces; Arrow's casts do not.
        ("bigint", " 5", "x"),
        ("double", " 1.5", "1,5"),
        # The reader takes 123456789.5 as a decimal(10,2) (the precision check comes later)
        # but refuses 1.234, which would lose a digit.
        ("decimal(10,2)", "123.5", "1.234"),
        ("boolean", "TRUE", " true"),
    ],
)
def test_the_value_named_is_the_one_the_reader_refused(
    result_file: WriteFile, sigma_type: str, accepted: str, refused: str
) -> None:
    path = result_file(f'v\n"{accepted}"\n\n"{refused}"\n"{accepted}"\n')
    with pytest.raises(CSVTypeError) as raised:
        list(read_batches(path, {"v": sigma_type}, query_name="q"))
    assert f"row 3: value {refused!r} is not a valid {sigma_type}" in str(raised.value)


def test_a_bad_value_is_found_by_the_reader_deep_in_a_file(result_file: WriteFile) -> None:
    rows = [f" {n}" for n in range(20_000)]
    rows[12_345] = "12 345"
    path = result_file("amount\n" + "\n".join(rows) + "\n")
    with pytest.raises(CSVTypeError, match=r"row 12346: value '12 345' is not a valid bigint"):
        list(read_batches(path, {"amount": "bigint"}, query_name="q", block_size=4096))


@pytest.mark.parametrize(
    ("sigma_type", "fits", "too_large", "digits"),
    [
        ("decimal(10,2)", "-99999999.99", "123456789.5", 8),
        ("decimal(10,2)", "99999999.99", "-100000000", 8),
        ("decimal(38,18)", "99999999999999999999.999999999999999999", "1" * 21 + ".5", 20),
        ("decimal(3,3)", "0.999", "1.5", 0),
    ],
)
def test_a_decimal_beyond_its_precision_is_a_type_violation(
    result_file: WriteFile, sigma_type: str, fits: str, too_large: str, digits: int
) -> None:
    """The reader rescales a value to the column's scale without checking the precision."""
    rows = [fits, "", fits] * 3000 + [too_large, fits]
    path = result_file("id,amount\n" + "".join(f"r{n},{v}\n" for n, v in enumerate(rows)))
    resolved = resolve_column_types(["id", "amount"], stored={"amount": sigma_type})
    with pytest.raises(CSVTypeError) as raised:
        list(read_batches(path, resolved, query_name="fees", block_size=4096))
    message = str(raised.value)
    assert message == (
        f"query 'fees': column 'amount' ({sigma_type}, as stored by earlier loads), "
        f"row {len(rows) - 1}: value {too_large!r} is not a valid {sigma_type}: more than "
        f"{digits} digit{'s' if digits != 1 else ''} before the decimal point; reload the "
        "table with --full-refresh (declare the column's type in config(columns=…) if "
        "inference would not give the type you want)"
    )


def test_decimals_within_their_precision_read_back_exactly(result_file: WriteFile) -> None:
    path = result_file("amount\n99999999.99\n-99999999.99\n0.01\n\n")
    table = read_table(path, {"amount": "decimal(10,2)"})
    assert table["amount"].to_pylist() == [
        Decimal("99999999.99"),
        Decimal("-99999999.99"),
        Decimal("0.01"),
        None,
    ]


# --- Files that are not Sigma CSV ---------------------------------------------------------


def test_an_empty_file_is_a_format_error(result_file: WriteFile) -> None:
    with pytest.raises(CSVFormatError, match="empty"):
        read_header(result_file(b""))


def test_a_ragged_row_is_a_format_error_naming_the_query(result_file: WriteFile) -> None:
    path = result_file("id,amount\nch_1,5\nch_2\n")
    with pytest.raises(CSVFormatError, match=r"^query 'charges': .*Expected 2 columns, got 1"):
        list(read_batches(path, {"id": "varchar", "amount": "bigint"}, query_name="charges"))


def test_bytes_that_are_not_utf8_are_a_format_error(result_file: WriteFile) -> None:
    path = result_file(b"id,note\nch_1,caf\xe9\n")
    with pytest.raises(CSVFormatError, match=r"^query 'charges': .*invalid UTF8"):
        list(read_batches(path, {"id": "varchar", "note": "varchar"}, query_name="charges"))


# --- A real result file from the emulator -------------------------------------------------


@pytest.mark.parametrize("table", ["balance_transactions", "itemized_fees"])
def test_emulator_results_read_back_as_duckdb_holds_them(
    table: str,
    emulator: Emulator,
    sigma_http: requests.Session,
    run_query: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    sigma_types = {column.name: column.sigma_type for column in TABLES[table].columns}
    sql = f"select * from {table} order by 1, 2"
    run = run_query(sql)
    response = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
    assert response.status_code == 200
    path = tmp_path / f"{table}.csv"
    path.write_bytes(response.content)

    loaded = read_table(path, resolve_file_types(path, query_name=table, declared=sigma_types))

    expected = emulator.warehouse.execute(sql)
    assert loaded.num_rows == len(expected) > 0
    for index, name in enumerate(loaded.column_names):
        values = loaded[name].to_pylist()
        if sigma_types[name] == "timestamp":  # DuckDB hands back naive UTC datetimes
            values = [value.replace(tzinfo=None) if value else None for value in values]
        assert values == [row[index] for row in expected], name
