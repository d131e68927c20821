"""Type resolution: declared, then the API's schema, then stored types, then inference."""

from __future__ import annotations

from pathlib import Path

import dlt
import duckdb
import pyarrow as pa
import pytest

from sigma_source.arrow_csv import (
    read_batches,
    resolve_column_types,
    resolve_file_types,
    stored_sigma_types,
)
from sigma_source.errors import ConfigError

HEADER = ["id", "amount", "created"]


class RecordingInference:
    """An `infer` callable that answers varchar and remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, columns: list[str]) -> dict[str, str]:
        self.calls.append(list(columns))
        return dict.fromkeys(columns, "varchar")


def test_a_declared_type_beats_every_other_rule() -> None:
    resolved = resolve_column_types(
        HEADER,
        declared={"amount": "double"},
        api_schema={"amount": "varchar"},
        stored={"amount": "bigint"},
        infer=RecordingInference(),
    )
    assert resolved.types["amount"] == "double"
    assert resolved.rules["amount"] == "declared"


def test_the_api_schema_beats_stored_types_and_inference() -> None:
    resolved = resolve_column_types(
        HEADER, api_schema={"amount": "BIGINT"}, stored={"amount": "double"}
    )
    assert (resolved.types["amount"], resolved.rules["amount"]) == ("bigint", "api")


def test_stored_types_beat_inference() -> None:
    infer = RecordingInference()
    resolved = resolve_column_types(HEADER, stored={"amount": "bigint"}, infer=infer)
    assert (resolved.types["amount"], resolved.rules["amount"]) == ("bigint", "stored")
    assert infer.calls == [["id", "created"]]


def test_inference_is_asked_only_about_unresolved_columns() -> None:
    infer = RecordingInference()
    resolve_column_types(HEADER, declared={"id": "varchar"}, stored={"created": "timestamp"},
                         infer=infer)  # fmt: skip
    assert infer.calls == [["amount"]]


def test_inference_is_not_run_when_every_column_is_known() -> None:
    infer = RecordingInference()
    resolved = resolve_column_types(
        HEADER, declared={"id": "varchar"}, stored={"amount": "bigint", "created": "timestamp"},
        infer=infer,
    )  # fmt: skip
    assert infer.calls == []
    assert resolved.types == {"id": "varchar", "amount": "bigint", "created": "timestamp"}


def test_without_inference_unresolved_columns_are_varchar() -> None:
    resolved = resolve_column_types(HEADER, declared={"amount": "bigint"})
    assert resolved.types == {"id": "varchar", "amount": "bigint", "created": "varchar"}
    assert resolved.rules["id"] == "inferred"


def test_resolved_types_follow_the_header_order() -> None:
    resolved = resolve_column_types(HEADER, declared={"created": "timestamp", "id": "varchar"})
    assert list(resolved.types) == HEADER
    assert resolved.schema.names == HEADER


def test_an_unknown_declared_type_names_the_query_and_column() -> None:
    with pytest.raises(ConfigError, match=r"^query 'charges': column 'amount': unknown type"):
        resolve_column_types(HEADER, declared={"amount": "money"}, query_name="charges")


def test_a_type_declared_for_a_column_the_result_lacks_is_an_error() -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_column_types(HEADER, declared={"amout": "bigint"}, query_name="charges")
    assert "'amout'" in str(raised.value)
    assert "columns: id, amount, created" in str(raised.value)


def test_a_result_with_two_columns_of_one_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"two columns named 'id'.*alias"):
        resolve_column_types(["id", "amount", "id"], query_name="charges")


def test_resolving_a_file_infers_only_what_no_other_rule_knows(tmp_path: Path) -> None:
    path = tmp_path / "charges.csv"
    path.write_text("id,amount,captured\nch_1,100,true\n", encoding="utf-8")
    resolved = resolve_file_types(path, query_name="charges", declared={"amount": "double"})
    assert resolved.types == {"id": "varchar", "amount": "double", "captured": "boolean"}
    assert resolved.rules == {"id": "inferred", "amount": "declared", "captured": "inferred"}


def test_columns_without_any_value_are_varchar_and_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "charges.csv"
    path.write_text("id,amount,note,flag\nch_1,,,\nch_2,5,,\n", encoding="utf-8")
    resolved = resolve_file_types(path, query_name="charges", declared={"flag": "boolean"})
    assert resolved.types == {
        "id": "varchar",
        "amount": "bigint",
        "note": "varchar",
        "flag": "boolean",
    }
    assert resolved.valueless == {"note"}  # a declared column is typed by decision


def test_a_header_only_result_has_every_inferred_column_valueless(tmp_path: Path) -> None:
    path = tmp_path / "charges.csv"
    path.write_text("id,amount\n", encoding="utf-8")
    resolved = resolve_file_types(path, query_name="charges")
    assert resolved.types == {"id": "varchar", "amount": "varchar"}
    assert resolved.valueless == {"id", "amount"}


def test_a_column_without_values_takes_its_type_from_if_no_values(tmp_path: Path) -> None:
    """What a full refresh does: stored types do not bind, but an empty column keeps its type."""
    path = tmp_path / "charges.csv"
    path.write_text("id,amount,fee\nch_1,,1.5\n", encoding="utf-8")
    table = {"id": "varchar", "amount": "bigint", "fee": "bigint"}
    resolved = resolve_file_types(path, query_name="charges", if_no_values=table)
    assert resolved.types == {"id": "varchar", "amount": "bigint", "fee": "double"}
    assert resolved.rules == {"id": "inferred", "amount": "stored", "fee": "inferred"}
    assert resolved.valueless == set()


def test_watched_columns_report_what_their_values_suggest(tmp_path: Path) -> None:
    path = tmp_path / "charges.csv"
    path.write_text("id,amount,note,empty\nch_1,5,x,\n", encoding="utf-8")
    stored = dict.fromkeys(["id", "amount", "note", "empty"], "varchar")
    resolved = resolve_file_types(
        path, query_name="charges", stored=stored, watch=["amount", "note", "empty", "gone"]
    )
    assert resolved.types == stored  # watching never changes a type
    assert resolved.suggested == {"amount": "bigint", "note": "varchar", "empty": None}


def test_watched_columns_share_the_inference_pass_of_unresolved_ones(tmp_path: Path) -> None:
    path = tmp_path / "charges.csv"
    path.write_text("id,amount,created\nch_1,5,2025-04-01 12:00:00\n", encoding="utf-8")
    resolved = resolve_file_types(
        path, query_name="charges", stored={"amount": "varchar"}, watch=["amount"]
    )
    assert resolved.types == {"id": "varchar", "amount": "varchar", "created": "timestamp"}
    assert resolved.suggested == {"amount": "bigint"}


# --- Stability over two loads, through a real dlt pipeline into DuckDB -------------------


def _load(pipeline: dlt.Pipeline, path: Path, table: str) -> pa.Schema:
    """Load one result file as the loader does; returns the Arrow schema it was read with."""
    stored: dict[str, str] = {}
    if pipeline.default_schema_name:  # None until the first load
        schema = pipeline.default_schema
        columns = schema.tables.get(table, {}).get("columns", {})
        stored = stored_sigma_types(
            columns, _header(path), normalize_name=schema.naming.normalize_identifier
        )
    resolved = resolve_file_types(path, query_name=table, stored=stored)
    batches = list(read_batches(path, resolved, query_name=table))
    pipeline.run(dlt.resource(batches, name=table, write_disposition="append"))
    return batches[0].schema


def _header(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[0].split(",")


def _duckdb_types(database: Path, table: str) -> dict[str, str]:
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'sigma' and table_name = ? and column_name not like '_dlt%'",
            [table],
        ).fetchall()
    return dict(rows)


def test_a_second_load_keeps_the_types_of_the_first(tmp_path: Path) -> None:
    database = tmp_path / "sigma_load.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="arrow_csv_stability",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="sigma",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    first = tmp_path / "first.csv"
    first.write_text("id,code,amount\nch_1,NA,100\nch_2,US,250\n", encoding="utf-8")
    # On its own this file would infer code as bigint and amount (NULL everywhere) as varchar.
    second = tmp_path / "second.csv"
    second.write_text("id,code,amount\nch_3,1,\nch_4,2,\n", encoding="utf-8")

    first_schema = _load(pipeline, first, "charges")
    types_after_first = _duckdb_types(database, "charges")
    second_schema = _load(pipeline, second, "charges")

    assert second_schema == first_schema
    assert types_after_first == {"id": "VARCHAR", "code": "VARCHAR", "amount": "BIGINT"}
    assert _duckdb_types(database, "charges") == types_after_first
    with duckdb.connect(str(database), read_only=True) as con:
        codes = con.execute("select code from sigma.charges order by id").fetchall()
    assert codes == [("NA",), ("US",), ("1",), ("2",)]


def test_stored_types_come_from_a_real_dlt_schema(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        pipeline_name="arrow_csv_stored",
        destination=dlt.destinations.duckdb(str(tmp_path / "sigma_load.duckdb")),
        dataset_name="sigma",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    table = pa.table(
        {
            "amount": pa.array([1], pa.int64()),
            "rate": pa.array([1.5], pa.float64()),
            "fee": pa.array([None], pa.decimal128(38, 18)),
            "captured": pa.array([True]),
            "created": pa.array([0], pa.timestamp("us", tz="UTC")),
            "day": pa.array([0], pa.date32()),
            "note": pa.array(["x"]),
        }
    )
    pipeline.run(table, table_name="payments")
    columns = pipeline.default_schema.get_table("payments")["columns"]
    assert stored_sigma_types(columns, table.column_names) == {
        "amount": "bigint",
        "rate": "double",
        "fee": "decimal(38,18)",
        "captured": "boolean",
        "created": "timestamp",
        "day": "date",
        "note": "varchar",
    }
