"""Sigma column types, and how they map to Arrow and to dlt's column schema.

A Sigma type is a short string: `varchar`, `bigint`, `double`, `boolean`, `timestamp`,
`date` or `decimal(p,s)`. Users write them in `config(columns={...})`; a typed API returns
them; earlier loads stored them in dlt's schema; inference produces them. Everything is
normalized here to one canonical spelling so the rest of the loader compares plain strings.

Kept free of pyarrow at import time: the query project validates declared types while
parsing `config()`, and that must not pay for pyarrow (see `arrow_type`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sigma_source.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

VARCHAR = "varchar"
BIGINT = "bigint"
DOUBLE = "double"
BOOLEAN = "boolean"
TIMESTAMP = "timestamp"
DATE = "date"

VALID_TYPES_TEXT = "varchar, bigint, double, boolean, timestamp, date, decimal(p,s)"

# Trino (Sigma's SQL engine) and common SQL spellings that mean one of our types. Narrow
# integers widen to bigint: amounts are bigint everywhere in Sigma and widening is lossless.
_ALIASES = {
    "varchar": VARCHAR,
    "char": VARCHAR,
    "text": VARCHAR,
    "string": VARCHAR,
    "bigint": BIGINT,
    "integer": BIGINT,
    "int": BIGINT,
    "smallint": BIGINT,
    "tinyint": BIGINT,
    "double": DOUBLE,
    "double precision": DOUBLE,
    "real": DOUBLE,
    "float": DOUBLE,
    "boolean": BOOLEAN,
    "bool": BOOLEAN,
    "timestamp": TIMESTAMP,
    "date": DATE,
}

# Trino's varchar(n), char(n) and timestamp(p) carry a length or precision that does not
# change how the value is loaded.
_SIZED = re.compile(r"^(varchar|char|timestamp)\s*\(\s*\d+\s*\)$")
_DECIMAL = re.compile(r"^(?:decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")

MAX_DECIMAL_PRECISION = 38  # Trino's and decimal128's limit


def decimal_type(precision: int, scale: int) -> str:
    """The canonical spelling of a decimal Sigma type."""
    return f"decimal({precision},{scale})"


def parse_decimal(sigma_type: str) -> tuple[int, int] | None:
    """(precision, scale) of a canonical `decimal(p,s)` type, None for any other type."""
    match = _DECIMAL.match(sigma_type)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def parse_sigma_type(text: str, *, column: str, where: str = "") -> str:
    """Normalize a type name a user (or an API) wrote to its canonical Sigma type.

    Case and spacing do not matter; Trino aliases are accepted (`integer` → `bigint`,
    `real` → `double`, `varchar(255)` → `varchar`, `timestamp(3)` → `timestamp`,
    `decimal(10)` → `decimal(10,0)`). Anything else raises ConfigError naming the column,
    `where` it was written (e.g. "query 'charges'") and the valid types.
    """
    normalized = " ".join(str(text).strip().lower().split())
    if normalized in _ALIASES:
        return _ALIASES[normalized]
    sized = _SIZED.match(normalized)
    if sized:
        return _ALIASES[sized.group(1)]
    decimal = _DECIMAL.match(normalized)
    if decimal:
        return _checked_decimal(decimal, text=text, column=column, where=where)
    hint = (
        "; give precision and scale, e.g. decimal(38,18)"
        if normalized in ("decimal", "numeric")
        else ""
    )
    raise ConfigError(
        f"{_prefix(where)}column {column!r}: unknown type {text!r}{hint}; "
        f"valid types: {VALID_TYPES_TEXT}"
    )


def _checked_decimal(match: re.Match[str], *, text: str, column: str, where: str) -> str:
    precision, scale = int(match.group(1)), int(match.group(2) or 0)
    if not 1 <= precision <= MAX_DECIMAL_PRECISION or scale > precision:
        raise ConfigError(
            f"{_prefix(where)}column {column!r}: invalid type {text!r}; decimal(p,s) needs "
            f"1 <= p <= {MAX_DECIMAL_PRECISION} and 0 <= s <= p"
        )
    return decimal_type(precision, scale)


def parse_api_type(text: str, *, column: str) -> str:
    """A type from an API's result schema; types we cannot load natively become varchar.

    Sigma serializes arrays, maps, rows, JSON and zoned timestamps as text, so varchar is
    always a faithful home for them, and a new API type must not break loads.
    """
    try:
        return parse_sigma_type(text, column=column)
    except ConfigError:
        return VARCHAR


def arrow_type(sigma_type: str) -> pa.DataType:
    """The Arrow type a Sigma type loads as.

    Timestamps are microsecond, timezone-aware UTC (Sigma writes UTC without an offset);
    varchar is `string` (32-bit offsets: batches stay far below 2 GiB).
    """
    import pyarrow as pa

    simple = {
        VARCHAR: pa.string(),
        BIGINT: pa.int64(),
        DOUBLE: pa.float64(),
        BOOLEAN: pa.bool_(),
        TIMESTAMP: pa.timestamp("us", tz="UTC"),
        DATE: pa.date32(),
    }
    if sigma_type in simple:
        return simple[sigma_type]
    decimal = parse_decimal(sigma_type)
    if decimal is None:
        raise ValueError(f"not a canonical Sigma type: {sigma_type!r}")
    return pa.decimal128(*decimal)


def sigma_type_from_arrow(arrow: pa.DataType) -> str | None:
    """The Sigma type whose `arrow_type` is `arrow` (any timestamp unit or zone counts as
    timestamp); None for an Arrow type no Sigma type loads as."""
    import pyarrow as pa

    if pa.types.is_timestamp(arrow):
        return TIMESTAMP
    if pa.types.is_decimal(arrow):
        return decimal_type(arrow.precision, arrow.scale)
    simple = {
        pa.string(): VARCHAR,
        pa.large_string(): VARCHAR,
        pa.int64(): BIGINT,
        pa.float64(): DOUBLE,
        pa.bool_(): BOOLEAN,
        pa.date32(): DATE,
    }
    return simple.get(arrow)


def arrow_schema(types: Mapping[str, str]) -> pa.Schema:
    """The Arrow schema for columns typed `{name: sigma_type}`, in the mapping's order."""
    import pyarrow as pa

    return pa.schema([pa.field(name, arrow_type(sigma_type)) for name, sigma_type in types.items()])


# dlt's data types that a Sigma result can hold, as the Sigma type that reloads them alike.
_FROM_DLT = {
    "text": VARCHAR,
    "bigint": BIGINT,
    "double": DOUBLE,
    "bool": BOOLEAN,
    "timestamp": TIMESTAMP,
    "date": DATE,
}
# What dlt assumes for a decimal column that carries no precision/scale.
_DLT_DEFAULT_DECIMAL = (38, 9)


def sigma_type_from_dlt_column(column: Mapping[str, Any]) -> str | None:
    """The Sigma type that loads values into a column dlt already holds, or None.

    `column` is one entry of `schema.get_table(name)["columns"]`. None means "no opinion":
    the column has no data type yet, or a type no Sigma CSV value maps to (json, binary,
    time, wei), so the next rule decides.
    """
    data_type = column.get("data_type")
    if data_type == "decimal":
        precision = column.get("precision") or _DLT_DEFAULT_DECIMAL[0]
        scale = column.get("scale")
        scale = _DLT_DEFAULT_DECIMAL[1] if scale is None else scale
        return decimal_type(precision, scale)
    return _FROM_DLT.get(data_type)


def stored_sigma_types(
    dlt_columns: Mapping[str, Mapping[str, Any]],
    header: list[str],
    *,
    normalize_name: Callable[[str], str] | None = None,
) -> dict[str, str]:
    """Types earlier loads stored, keyed by the result file's column names.

    dlt keys its columns by normalized identifiers (`Amount` is stored as `amount`): pass
    the destination schema's `naming.normalize_identifier` as `normalize_name` so header
    names find their stored column. Columns dlt added itself (`_dlt_*`) never match a header.
    """
    normalize = normalize_name or (lambda name: name)
    stored: dict[str, str] = {}
    for name in header:
        column = dlt_columns.get(normalize(name))
        sigma_type = sigma_type_from_dlt_column(column) if column else None
        if sigma_type is not None:
            stored[name] = sigma_type
    return stored


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""
