"""Rule 4: the narrowest Sigma type every value in the whole file fits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from sigma_source.arrow_csv import infer_column_types
from sigma_source.emulator import Emulator
from sigma_source.emulator.tables import TABLES
from sigma_source.errors import CSVFormatError

WriteColumn = Callable[..., Path]


@pytest.fixture
def column_file(tmp_path: Path) -> WriteColumn:
    """Writes `values` as the one column `c` of a Sigma CSV (None is an empty field)."""

    def write(*values: str | None) -> Path:
        path = tmp_path / "result.csv"
        lines = ["c", *("" if value is None else value for value in values)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-20", "0", "300"], "bigint"),
        (["9223372036854775807", "-9223372036854775808"], "bigint"),
        (["1.5", "-2.25", "3"], "double"),
        (["100.0", "0.1", "0.30000000000000004"], "double"),
        (["-2.5E10", "1.0E-5", "4.0"], "double"),
        (["NaN", "Infinity", "-Infinity", "1.5"], "double"),
        (["12.500000000000000001", "1.5"], "decimal(38,18)"),
        (["12.50", "3.10"], "decimal(38,2)"),
        (["9223372036854775808"], "decimal(38,0)"),
        (["true", "false", "TRUE", "False"], "boolean"),
        (["2025-04-01 12:34:56.789", "2024-02-29 00:00:00"], "timestamp"),
        (["2025-04-01T12:34:56.789123"], "timestamp"),
        (["2025-04-01", "2024-02-29"], "date"),
    ],
)
def test_a_column_gets_the_narrowest_type_all_its_values_fit(
    column_file: WriteColumn, values: list[str], expected: str
) -> None:
    assert infer_column_types(column_file(*values)) == {"c": expected}


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (["007", "1"], "leading zeros make identifiers, not integers"),
        (["NA", "US"], "NA is Namibia"),
        (["nan", "1.5"], "only Trino's NaN spelling is a double"),
        (["1", "two"], "one word among numbers"),
        (["2024-02-30 00:00:00"], "not a calendar date"),
        (["2024-01-01", "2024-01-01 00:00:00"], "dates mixed with timestamps"),
        (["2024-01-01 00:00"], "a timestamp without seconds"),
        (["2024-01-01 00:00:00.123456789"], "nanoseconds do not fit microseconds"),
        (["yes", "no"], "not Trino's booleans"),
        (["1" * 39], "more digits than decimal(38) holds"),
        (["1.5E3", "12.500000000000000001"], "E-notation with a value float64 cannot hold"),
        (["+5"], "Trino never writes a plus sign"),
    ],
)
def test_values_no_narrower_type_holds_stay_varchar(
    column_file: WriteColumn, values: list[str], why: str
) -> None:
    assert infer_column_types(column_file(*values)) == {"c": "varchar"}, why


def test_a_column_null_everywhere_is_varchar(column_file: WriteColumn) -> None:
    assert infer_column_types(column_file(None, None, None)) == {"c": "varchar"}


def test_nulls_do_not_affect_the_type_of_the_other_values(column_file: WriteColumn) -> None:
    assert infer_column_types(column_file(None, "5", None, "7")) == {"c": "bigint"}


def test_a_decimal_takes_the_largest_scale_seen(column_file: WriteColumn) -> None:
    path = column_file("1.5", "2.123456789012345678901", "3.25")
    assert infer_column_types(path) == {"c": "decimal(38,21)"}


def test_integers_among_decimals_keep_the_decimal(column_file: WriteColumn) -> None:
    assert infer_column_types(column_file("100", "0.12345678901234567891")) == {
        "c": "decimal(38,20)"
    }


def test_an_integer_beyond_float64_precision_among_doubles_makes_a_decimal(
    column_file: WriteColumn,
) -> None:
    # 2^53 + 1 reads back from float64 as 9007199254740992.
    assert infer_column_types(column_file("2.5", "9007199254740993")) == {"c": "decimal(38,1)"}


def test_the_last_value_of_a_long_file_can_change_the_type(column_file: WriteColumn) -> None:
    values = [str(n) for n in range(50_000)]
    path = column_file(*values, "12.5")
    assert infer_column_types(path, block_size=4096) == {"c": "double"}


def test_a_word_at_the_end_of_a_long_file_makes_varchar(column_file: WriteColumn) -> None:
    path = column_file(*[str(n) for n in range(50_000)], "n/a")
    assert infer_column_types(path, block_size=4096) == {"c": "varchar"}


def test_only_the_requested_columns_are_inferred(tmp_path: Path) -> None:
    path = tmp_path / "result.csv"
    path.write_text("id,amount,created\nch_1,100,2025-01-01 00:00:00.000\n", encoding="utf-8")
    assert infer_column_types(path, columns=["amount", "created"]) == {
        "amount": "bigint",
        "created": "timestamp",
    }


def test_each_column_of_a_wide_file_is_inferred_alone(tmp_path: Path) -> None:
    path = tmp_path / "result.csv"
    path.write_text(
        "id,amount,captured,country,created\n"
        'ch_1,100,true,NA,2025-01-01 00:00:00.000\n"ch_2",-5,false,US,2025-01-02 10:00:00.5\n',
        encoding="utf-8",
    )
    assert infer_column_types(path) == {
        "id": "varchar",
        "amount": "bigint",
        "captured": "boolean",
        "country": "varchar",
        "created": "timestamp",
    }


def test_a_malformed_row_deep_in_the_file_fails_inference(tmp_path: Path) -> None:
    path = tmp_path / "result.csv"
    rows = [f"ch_{n},{n}" for n in range(20_000)]
    path.write_text("id,amount\n" + "\n".join(rows) + "\nch_x\n", encoding="utf-8")
    with pytest.raises(CSVFormatError, match=r"^query 'charges': .*Expected 2 columns, got 1"):
        infer_column_types(path, block_size=4096, query_name="charges")


def test_inference_leaves_no_helper_thread_behind(tmp_path: Path) -> None:
    path = tmp_path / "result.csv"
    # Text settles in the first block, so the pass stops long before the end of the file.
    path.write_text("id\n" + "\n".join(f"ch_{n}" for n in range(20_000)) + "\n")
    assert infer_column_types(path, block_size=4096) == {"id": "varchar"}
    assert "sigma-csv-prefetch" not in {thread.name for thread in threading.enumerate()}


@pytest.mark.parametrize("table", ["balance_transactions", "charges", "itemized_fees"])
def test_inference_finds_sigmas_own_types_in_emulator_results(
    table: str,
    emulator: Emulator,
    sigma_http: requests.Session,
    run_query: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    run = run_query(f"select * from {table}")
    response = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
    path = tmp_path / f"{table}.csv"
    path.write_bytes(response.content)
    columns = TABLES[table].column_names
    counts = emulator.warehouse.execute(
        "select " + ", ".join(f'count("{name}")' for name in columns) + f" from {table}"
    )[0]

    inferred = infer_column_types(path)

    with_values = [name for name, count in zip(columns, counts, strict=True) if count]
    assert len(with_values) > 10
    assert {name: inferred[name] for name in with_values} == {
        name: TABLES[table].type_of(name) for name in with_values
    }
