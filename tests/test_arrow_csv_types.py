"""Sigma type names: parsing, aliases, the Arrow types they load as, and dlt's column types."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sigma_source.errors import ConfigError
from sigma_source.sigma_types import (
    arrow_schema,
    arrow_type,
    parse_api_type,
    parse_sigma_type,
    sigma_type_from_dlt_column,
    stored_sigma_types,
)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("varchar", "varchar"),
        ("VARCHAR", "varchar"),
        (" BigInt ", "bigint"),
        ("double", "double"),
        ("boolean", "boolean"),
        ("timestamp", "timestamp"),
        ("date", "date"),
        ("decimal(38,18)", "decimal(38,18)"),
        ("DECIMAL( 10 , 2 )", "decimal(10,2)"),
    ],
)
def test_sigma_type_names_are_case_and_space_insensitive(written: str, canonical: str) -> None:
    assert parse_sigma_type(written, column="c") == canonical


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("integer", "bigint"),
        ("int", "bigint"),
        ("smallint", "bigint"),
        ("tinyint", "bigint"),
        ("real", "double"),
        ("float", "double"),
        ("double precision", "double"),
        ("bool", "boolean"),
        ("text", "varchar"),
        ("string", "varchar"),
        ("varchar(255)", "varchar"),
        ("char(3)", "varchar"),
        ("timestamp(3)", "timestamp"),
        ("decimal(12)", "decimal(12,0)"),
        ("numeric(10,2)", "decimal(10,2)"),
    ],
)
def test_trino_aliases_map_to_sigma_types(alias: str, canonical: str) -> None:
    assert parse_sigma_type(alias, column="c") == canonical


def test_an_unknown_type_names_the_query_column_and_valid_types() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_sigma_type("money", column="amount", where="query 'charges'")
    message = str(raised.value)
    assert message.startswith("query 'charges': column 'amount': unknown type 'money'")
    assert "varchar, bigint, double, boolean, timestamp, date, decimal(p,s)" in message


def test_a_bare_decimal_asks_for_precision_and_scale() -> None:
    with pytest.raises(ConfigError, match=r"give precision and scale, e\.g\. decimal\(38,18\)"):
        parse_sigma_type("decimal", column="fee")


@pytest.mark.parametrize("written", ["decimal(39,2)", "decimal(0,0)", "decimal(5,6)"])
def test_a_decimal_beyond_38_digits_or_with_scale_above_precision_is_rejected(
    written: str,
) -> None:
    with pytest.raises(ConfigError, match=r"1 <= p <= 38 and 0 <= s <= p"):
        parse_sigma_type(written, column="fee")


@pytest.mark.parametrize("api_type", ["array(varchar)", "json", "timestamp(3) with time zone"])
def test_api_types_without_a_native_loader_become_varchar(api_type: str) -> None:
    assert parse_api_type(api_type, column="c") == "varchar"


def test_api_types_use_the_same_names_and_aliases() -> None:
    assert parse_api_type("BIGINT", column="c") == "bigint"
    assert parse_api_type("decimal(38,18)", column="c") == "decimal(38,18)"


@pytest.mark.parametrize(
    ("sigma_type", "arrow"),
    [
        ("varchar", pa.string()),
        ("bigint", pa.int64()),
        ("double", pa.float64()),
        ("boolean", pa.bool_()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("date", pa.date32()),
        ("decimal(38,18)", pa.decimal128(38, 18)),
    ],
)
def test_each_sigma_type_loads_as_one_arrow_type(sigma_type: str, arrow: pa.DataType) -> None:
    assert arrow_type(sigma_type) == arrow


def test_arrow_schema_keeps_column_order() -> None:
    schema = arrow_schema({"id": "varchar", "amount": "bigint", "created": "timestamp"})
    assert schema.names == ["id", "amount", "created"]
    assert schema.field("amount").type == pa.int64()


@pytest.mark.parametrize(
    ("column", "sigma_type"),
    [
        ({"data_type": "text"}, "varchar"),
        ({"data_type": "bigint"}, "bigint"),
        ({"data_type": "bigint", "precision": 32}, "bigint"),
        ({"data_type": "double"}, "double"),
        ({"data_type": "bool"}, "boolean"),
        ({"data_type": "timestamp", "timezone": True}, "timestamp"),
        ({"data_type": "date"}, "date"),
        ({"data_type": "decimal", "precision": 38, "scale": 18}, "decimal(38,18)"),
        ({"data_type": "decimal"}, "decimal(38,9)"),
    ],
)
def test_dlt_column_types_map_to_sigma_types(column: dict, sigma_type: str) -> None:
    assert sigma_type_from_dlt_column({"name": "c", **column}) == sigma_type


@pytest.mark.parametrize("data_type", ["json", "binary", "time", "wei", None])
def test_dlt_column_types_no_sigma_value_maps_to_have_no_opinion(data_type: str | None) -> None:
    assert sigma_type_from_dlt_column({"name": "c", "data_type": data_type}) is None


def test_stored_types_are_found_through_the_destination_naming() -> None:
    dlt_columns = {
        "total_amount": {"name": "total_amount", "data_type": "bigint"},
        "_dlt_load_id": {"name": "_dlt_load_id", "data_type": "text"},
    }
    stored = stored_sigma_types(
        dlt_columns, ["Total Amount", "note"], normalize_name=lambda n: n.lower().replace(" ", "_")
    )
    assert stored == {"Total Amount": "bigint"}
