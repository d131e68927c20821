"""One pass that infers as it reads (`InferringRead`): a first load reads its file once.

Its promise: the rows and types of `resolve_file_types` followed by `read_batches`, or
`TypesChanged` when a later block needs other types than the first block suggested.
"""

from __future__ import annotations

import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigma_source import arrow_csv
from sigma_source.arrow_csv import (
    InferringRead,
    TypesChanged,
    read_batches,
    resolve_file_types,
)
from sigma_source.errors import CSVTypeError
from tests.test_arrow_csv_roundtrip import (
    SigmaTable,
    file_styles,
    sigma_tables,
    sigma_text,
    write_sigma_csv,
)

SMALL_BLOCK = 4096


def write_csv(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def one_pass(path: Path, **rules: Any) -> tuple[pa.Table, arrow_csv.ResolvedTypes]:
    reading = InferringRead(path, query_name="q", **rules)
    table = pa.Table.from_batches(list(reading))
    return table, reading.types


def two_passes(path: Path, **rules: Any) -> tuple[pa.Table, arrow_csv.ResolvedTypes]:
    block_size = rules.get("block_size", arrow_csv.DEFAULT_BLOCK_SIZE)
    resolved = resolve_file_types(path, query_name="q", **rules)
    batches = read_batches(path, resolved, query_name="q", block_size=block_size)
    return pa.Table.from_batches(list(batches)), resolved


def comparable(result: tuple[pa.Table, arrow_csv.ResolvedTypes]) -> tuple[Any, ...]:
    """Rows (NaN made equal to itself), schema and types, evidence included."""
    table, types = result
    rows = [
        [value if value == value else "NaN" for value in row.values()] for row in table.to_pylist()
    ]
    return rows, table.schema, types, types.valueless, types.suggested


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, pa.DataType]]:
    """The column types of every reader opened on a result file."""
    seen: list[dict[str, pa.DataType]] = []
    open_csv = arrow_csv._open_csv

    def spy(path: Any, column_types: Any, options: Any) -> Any:
        seen.append(dict(column_types))
        return open_csv(path, column_types, options)

    monkeypatch.setattr(arrow_csv, "_open_csv", spy)
    return seen


def test_a_file_whose_first_block_guesses_right_is_read_once(tmp_path, opened):
    lines = [f"ch_{i},{i},{i}.5,2025-04-01 12:00:00" for i in range(5_000)]
    path = write_csv(tmp_path / "r.csv", "id,amount,rate,created", lines)

    table, types = one_pass(path, block_size=SMALL_BLOCK)

    assert len(opened) == 1
    assert types.types == {
        "id": "varchar",
        "amount": "bigint",
        "rate": "double",
        "created": "timestamp",
    }
    assert table.num_rows == 5_000
    assert table.column("amount").to_pylist() == list(range(5_000))


def test_the_columns_to_infer_are_parsed_as_text_and_the_others_as_their_rule_says(
    tmp_path, opened
):
    path = write_csv(tmp_path / "r.csv", "id,amount", ["ch_1,5"])

    one_pass(path, stored={"amount": "bigint"})

    assert opened == [{"id": pa.string(), "amount": pa.int64()}]


@pytest.mark.parametrize(
    "values",
    [
        [str(i) for i in range(3_000)],
        [f"{i}.25" for i in range(3_000)],
        [f"{i}.50" for i in range(3_000)],  # decimal(38,2): Trino keeps the trailing zero
        ["true", "false", "TRUE"] * 1_000,
        [f"2025-04-{1 + i % 28:02d} 12:34:56.{i % 1000:03d}" for i in range(3_000)],
        [f"2024-02-{1 + i % 29:02d}" for i in range(3_000)],
        ["NaN", "Infinity", "-Infinity", "1.0E-5"] * 750,
        [str(i) if i % 3 else "" for i in range(3_000)],
        ["007", "8", "9"] * 1_000,
    ],
    ids=["bigint", "double", "decimal", "boolean", "timestamp", "date", "doubles", "nulls", "ids"],
)
def test_the_rows_and_types_are_those_of_two_passes(tmp_path, values):
    path = write_csv(tmp_path / "r.csv", "c", values)

    one, two = one_pass(path, block_size=SMALL_BLOCK), two_passes(path, block_size=SMALL_BLOCK)

    assert comparable(one) == comparable(two)


@pytest.mark.parametrize(
    ("first", "later", "final"),
    [
        ("5", "12.5", "double"),
        ("5", "hello", "varchar"),
        ("12.5", "12.50", "decimal(38,2)"),
        ("12.50", "1.125", "decimal(38,3)"),
        ("", "5", "bigint"),
        ("true", "yes", "varchar"),
        ("2025-04-01", "2025-04-01 12:00:00", "varchar"),
    ],
)
def test_a_later_block_that_needs_another_type_raises_types_changed(tmp_path, first, later, final):
    lines = [first] * 5_000 + [later]  # several blocks
    path = write_csv(tmp_path / "r.csv", "c", lines)
    reading = InferringRead(path, query_name="q", block_size=SMALL_BLOCK)

    with pytest.raises(TypesChanged):
        list(reading)

    assert resolve_file_types(path, query_name="q").types == {"c": final}


def test_a_pass_that_stops_early_leaves_no_reader_thread_running(tmp_path):
    path = write_csv(tmp_path / "r.csv", "c", ["5"] * 5_000 + ["12.5"] + ["6"] * 5_000)
    reading = InferringRead(path, query_name="q", block_size=SMALL_BLOCK)

    with pytest.raises(TypesChanged), closing(iter(reading)) as batches:
        for _ in batches:
            pass

    assert not [t for t in threading.enumerate() if t.name == "sigma-csv-prefetch"]


def test_a_column_empty_in_the_first_block_that_later_holds_text_keeps_its_guess(tmp_path):
    path = write_csv(tmp_path / "r.csv", "id,note", [f"ch_{i}," for i in range(2_000)] + ["x,hi"])

    table, types = one_pass(path, block_size=SMALL_BLOCK)

    assert types.types == {"id": "varchar", "note": "varchar"}
    assert types.valueless == frozenset()
    assert table.column("note").to_pylist()[-1] == "hi"


def test_a_text_column_that_looks_numeric_for_a_while_is_decided_by_the_whole_file(
    tmp_path, opened
):
    lines = ["ch,"] * 2_000 + ["ch,5"] * 2_000 + ["ch,x"]
    path = write_csv(tmp_path / "r.csv", "id,note", lines)

    table, types = one_pass(path, block_size=SMALL_BLOCK)

    assert len(opened) == 1
    assert types.types == {"id": "varchar", "note": "varchar"}
    assert table.column("note").to_pylist()[-2:] == ["5", "x"]


def test_a_column_without_any_value_is_recorded_as_valueless(tmp_path):
    path = write_csv(tmp_path / "r.csv", "id,note", ["ch_1,", "ch_2,"])

    _, types = one_pass(path)

    assert types.valueless == frozenset({"note"})


def test_a_refresh_gives_a_column_without_values_the_tables_type(tmp_path):
    path = write_csv(tmp_path / "r.csv", "id,amount", ["ch_1,", "ch_2,"])

    table, types = one_pass(path, if_no_values={"amount": "bigint"})

    assert types.types["amount"] == "bigint" and types.rules["amount"] == "stored"
    assert table.schema.field("amount").type == pa.int64()


def test_watched_text_columns_get_the_type_their_values_suggest(tmp_path):
    path = write_csv(tmp_path / "r.csv", "id,amount,note", ["ch_1,100,", "ch_2,250,"])
    stored = {"amount": "varchar", "note": "varchar"}

    _, types = one_pass(path, stored=stored, watch={"amount", "note"})

    assert types.suggested == {"amount": "bigint", "note": None}
    assert types.suggested == two_passes(path, stored=stored, watch={"amount", "note"})[1].suggested


def test_a_value_against_a_stored_type_fails_naming_its_row(tmp_path):
    lines = [f"ch_{i},{i}" for i in range(3_000)] + ["ch_x,oops"]
    path = write_csv(tmp_path / "r.csv", "id,amount", lines)
    reading = InferringRead(path, query_name="q", stored={"amount": "bigint"}, block_size=4096)

    with pytest.raises(CSVTypeError, match=r"column 'amount' .*row 3001: value 'oops'"):
        list(reading)


def test_a_header_only_file_yields_one_empty_batch_with_the_schema(tmp_path):
    path = write_csv(tmp_path / "r.csv", "id,amount", [])

    batches = list(InferringRead(path, query_name="q", stored={"amount": "bigint"}))

    assert [batch.num_rows for batch in batches] == [0]
    assert batches[0].schema.field("amount").type == pa.int64()


def test_a_row_longer_than_a_block_is_read_once_without_repeating_rows(tmp_path):
    long_note = "x" * 10_000
    lines = [f"{i},short" for i in range(500)] + [f"500,{long_note}"]
    lines += [f"{i},short" for i in range(501, 1_000)]
    path = write_csv(tmp_path / "r.csv", "n,note", lines)

    table, _ = one_pass(path, block_size=SMALL_BLOCK)

    assert table.column("n").to_pylist() == list(range(1_000))


# --- Property: one pass is two passes, or says it is not ---------------------------------------

_MIXED_TYPES = st.sampled_from(["bigint", "double", "boolean", "timestamp", "date", "varchar"])


@st.composite
def mixed_tables(draw: st.DrawFn) -> SigmaTable:
    """A table whose columns may change type from row to row, written as text."""
    table = draw(sigma_tables())
    texts = []
    for row in table.rows:
        texts.append(
            [
                sigma_text(sigma_type, value)
                if draw(st.booleans())
                else draw(st.sampled_from(["5", "12.5", "12.50", "true", "2025-04-01", "x", ""]))
                for sigma_type, value in zip(table.types.values(), row, strict=True)
            ]
        )
    # The first row repeated: the file spans several blocks, and later rows may refute the
    # types its first block suggests.
    leading = texts[:1] * draw(st.integers(0, 80))
    return SigmaTable(dict.fromkeys(table.types, "varchar"), leading + texts)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=mixed_tables() | sigma_tables(), style=file_styles(), block=st.integers(256, 1024))
def test_one_pass_gives_two_passes_rows_and_types_or_raises_types_changed(
    table: SigmaTable, style: dict[str, Any], block: int, tmp_path: Path
) -> None:
    path = write_sigma_csv(table, tmp_path / "result.csv", **style)
    expected = two_passes(path, block_size=block)

    try:
        result = one_pass(path, block_size=block)
    except TypesChanged:
        first_block_guess = InferringRead(path, query_name="q", block_size=block).types
        assert first_block_guess != expected[1]
        return

    assert comparable(result) == comparable(expected)
