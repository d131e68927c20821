"""Properties: random typed tables written as Sigma writes them read back equal, types included.

The writer below follows Sigma's output: RFC 4180 quoting, the empty field for NULL, bigints
as integers, doubles as Java prints them (`1.0E-5`, `100.0`, `Infinity`), decimals with
their full scale (`12.500000000000000000`), timestamps `YYYY-MM-DD HH:MM:SS.fff` in UTC,
booleans `true`/`false`; optionally a UTF-8 BOM and CRLF line ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigma_source.arrow_csv import infer_column_types, read_batches
from sigma_source.sigma_types import arrow_schema, parse_decimal

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def java_double(value: float) -> str:
    """A double as Trino (Java's Double.toString) writes it."""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)  # shortest digits, plain notation, "100.0" for whole numbers
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    mantissa = f"{digits[0]}.{''.join(map(str, digits[1:])) or '0'}"
    return f"{'-' if sign else ''}{mantissa}E{len(digits) - 1 + exponent}"


def sigma_text(sigma_type: str, value: Any) -> str:
    """One value as it appears in a Sigma result file (None is the empty field)."""
    if value is None:
        return ""
    if sigma_type == "double":
        return java_double(value)
    if sigma_type == "boolean":
        return "true" if value else "false"
    if sigma_type == "timestamp":
        return value.isoformat(sep=" ", timespec="milliseconds")
    if sigma_type.startswith("decimal"):
        _, scale = parse_decimal(sigma_type)
        return f"{value:.{scale}f}"
    return str(value)


@dataclass
class SigmaTable:
    types: dict[str, str]
    rows: list[list[Any]]


def _values(sigma_type: str) -> st.SearchStrategy[Any]:
    if sigma_type == "bigint":
        edges = st.sampled_from([INT64_MIN, INT64_MAX, 0, -1, 2**53 + 1])
        return edges | st.integers(INT64_MIN, INT64_MAX)
    if sigma_type == "double":
        return st.floats(allow_nan=False, width=64)
    if sigma_type == "boolean":
        return st.booleans()
    if sigma_type == "timestamp":
        return st.datetimes(min_value=datetime(1, 1, 1)).map(
            lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        )
    if sigma_type == "date":
        return st.dates()
    if sigma_type.startswith("decimal"):
        precision, scale = parse_decimal(sigma_type)
        # Built from integer digits: Decimal arithmetic would round to 28 digits.
        digits = st.integers(-(10**precision) + 1, 10**precision - 1)
        return digits.map(lambda n: Decimal(f"{n}e-{scale}"))
    tricky = st.sampled_from(["NA", "NULL", "nan", "None", "", " ", '"', ",", "a,b", "x\ny", "007"])
    return tricky | st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


_TYPES = st.sampled_from(
    ["varchar", "bigint", "double", "boolean", "timestamp", "date", "decimal(38,18)"]
) | st.integers(0, 18).map(lambda scale: f"decimal(38,{scale})")
_TEXT = st.characters(blacklist_categories=("Cs",))
# A BOM inside a name would be indistinguishable from a file BOM.
_NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff"),
    min_size=1,
    max_size=8,
)


@st.composite
def sigma_tables(draw: st.DrawFn, types: st.SearchStrategy[str] = _TYPES) -> SigmaTable:
    names = draw(st.lists(_NAMES, min_size=1, max_size=5, unique=True))
    column_types = {name: draw(types) for name in names}
    row_count = draw(st.integers(0, 12))
    rows = [
        [draw(st.none() | _values(sigma_type)) for sigma_type in column_types.values()]
        for _ in range(row_count)
    ]
    return SigmaTable(column_types, rows)


@st.composite
def file_styles(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "bom": draw(st.booleans()),
        "line_end": draw(st.sampled_from(["\n", "\r\n"])),
        "quote_all": draw(st.booleans()),
    }


def csv_field(text: str, *, quote_all: bool) -> str:
    """RFC 4180: a field holding a comma, quote, CR or LF is quoted, its quotes doubled."""
    if quote_all or any(special in text for special in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_sigma_csv(
    table: SigmaTable,
    path: Path,
    *,
    bom: bool = False,
    line_end: str = "\n",
    quote_all: bool = False,
) -> Path:
    lines = [list(table.types)] + [
        [sigma_text(t, value) for t, value in zip(table.types.values(), row, strict=True)]
        for row in table.rows
    ]
    text = "".join(
        ",".join(csv_field(field, quote_all=quote_all) for field in line) + line_end
        for line in lines
    )
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8", newline="")
    return path


def expected_value(sigma_type: str, value: Any) -> Any:
    """What reading should give back: Sigma cannot tell '' from NULL; timestamps are UTC."""
    if value == "" and sigma_type == "varchar":
        return None
    if sigma_type == "timestamp" and value is not None:
        return value.replace(tzinfo=timezone.utc)
    return value


def read_rows(path: Path, types: dict[str, str]) -> pa.Table:
    return pa.Table.from_batches(list(read_batches(path, types, query_name="property")))


_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_SETTINGS
@given(table=sigma_tables(), style=file_styles())
def test_typed_tables_read_back_equal_types_included(
    table: SigmaTable, style: dict[str, Any], tmp_path: Path
) -> None:
    path = write_sigma_csv(table, tmp_path / "result.csv", **style)

    loaded = read_rows(path, table.types)

    assert loaded.schema == arrow_schema(table.types)
    expected = [
        [expected_value(t, value) for t, value in zip(table.types.values(), row, strict=True)]
        for row in table.rows
    ]
    assert [list(row.values()) for row in loaded.to_pylist()] == expected


def _reads_as_written(sigma_type: str, text: str, value: Any) -> bool:
    """Whether `value`, read under `sigma_type`, is the value `text` was written for."""
    if text == "":
        return value is None
    if sigma_type == "varchar":
        return value == text
    if sigma_type == "bigint":
        return value == int(text)
    if sigma_type == "double":
        return math.isnan(value) if math.isnan(float(text)) else value == float(text)
    if sigma_type == "boolean":
        return value == (text.lower() == "true")
    if sigma_type == "timestamp":
        return value == datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    if sigma_type == "date":
        return value == date.fromisoformat(text)
    return value == Decimal(text)


@_SETTINGS
@given(table=sigma_tables(), style=file_styles())
def test_inferred_types_never_change_a_value(
    table: SigmaTable, style: dict[str, Any], tmp_path: Path
) -> None:
    path = write_sigma_csv(table, tmp_path / "result.csv", **style)

    inferred = infer_column_types(path)
    loaded = read_rows(path, inferred)

    for column, (name, written_type) in enumerate(table.types.items()):
        for row, read_value in zip(table.rows, loaded[name].to_pylist(), strict=True):
            text = sigma_text(written_type, row[column])
            assert _reads_as_written(inferred[name], text, read_value), (name, text, read_value)


_DISTINCT_TYPES = st.sampled_from(["bigint", "double", "boolean", "timestamp", "date"])


@_SETTINGS
@given(table=sigma_tables(types=_DISTINCT_TYPES), style=file_styles())
def test_inference_recovers_each_column_type_from_its_values(
    table: SigmaTable, style: dict[str, Any], tmp_path: Path
) -> None:
    path = write_sigma_csv(table, tmp_path / "result.csv", **style)

    inferred = infer_column_types(path)

    for column, (name, written_type) in enumerate(table.types.items()):
        has_values = any(row[column] is not None for row in table.rows)
        assert inferred[name] == (written_type if has_values else "varchar"), name


@_SETTINGS
@given(
    scale=st.integers(2, 18),
    values=st.lists(st.decimals(-(10**15), 10**15, places=0), min_size=1, max_size=8),
)
def test_decimals_written_at_full_scale_infer_as_decimals(
    scale: int, values: list[Decimal], tmp_path: Path
) -> None:
    # A whole amount written as decimal(38,s) ends in zeros, which no double prints.
    table = SigmaTable({"amount": f"decimal(38,{scale})"}, [[value] for value in values])
    path = write_sigma_csv(table, tmp_path / "result.csv")

    assert infer_column_types(path) == {"amount": f"decimal(38,{scale})"}
