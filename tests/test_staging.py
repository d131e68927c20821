"""Staging a result file: typed rows in one parquet file dlt imports as is, checked whole.

Real CSV and parquet files under tmp_path; no emulator is needed to stage a file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sigma_source import arrow_csv
from sigma_source.arrow_csv import DEFAULT_BLOCK_SIZE
from sigma_source.errors import ConfigError, CSVFormatError, CSVTypeError
from sigma_source.lineage import RUN_ID_COLUMN
from sigma_source.project import load_query
from sigma_source.source import rebuild_if_retyped
from sigma_source.staging import (
    ROW_GROUP_ROWS,
    ConstantColumn,
    StagingFile,
    StoredColumns,
    UntypedColumns,
    parquet_compression,
    retyped_columns,
    stage_result,
)

LOAD_ID = "1795600000.123456"
# Enough rows that the first CSV blocks (1 MiB each) hold only a part of them.
ROWS = 400_000


def write_query(tmp_path: Path, sql: str, name: str = "numbers") -> object:
    path = tmp_path / f"{name}.sql"
    path.write_text(sql)
    return load_query(path)


def write_csv(tmp_path: Path, header: str, lines: list[str]) -> Path:
    path = tmp_path / "result.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def stage(tmp_path: Path, query: object, csv_path: Path, **kwargs: object):
    staging = StagingFile(tmp_path / "rows.parquet", load_id=LOAD_ID)
    result = stage_result(query, csv_path, staging, query_run_id="qry_123", **kwargs)
    staging.close()
    return result, staging


def test_staged_rows_carry_the_run_id_and_dlts_load_id_in_the_tables_column_order(tmp_path):
    query = write_query(tmp_path, "select id, amount from charges")
    csv_path = write_csv(tmp_path, "id,amount", ["ch_1,100", "ch_2,250"])

    result, staging = stage(tmp_path, query, csv_path)

    table = pq.read_table(staging.path)
    assert table.column_names == ["id", "amount", RUN_ID_COLUMN, "_dlt_load_id"]
    assert table.column(RUN_ID_COLUMN).to_pylist() == ["qry_123", "qry_123"]
    assert table.column("_dlt_load_id").to_pylist() == [LOAD_ID, LOAD_ID]
    assert result.row_count == staging.row_count == 2


def test_without_a_load_id_the_file_has_no_load_id_column(tmp_path):
    query = write_query(tmp_path, "select id from charges")
    csv_path = write_csv(tmp_path, "id", ["ch_1"])
    staging = StagingFile(tmp_path / "rows.parquet", load_id=None)

    stage_result(query, csv_path, staging, query_run_id="qry_1")
    staging.close()

    assert pq.read_table(staging.path).column_names == ["id", RUN_ID_COLUMN]


def test_every_row_of_a_many_block_file_carries_the_run_id_and_load_id(tmp_path):
    query = write_query(tmp_path, "select n from numbers")
    csv_path = write_csv(tmp_path, "n", [str(i) for i in range(ROWS)])

    _, staging = stage(tmp_path, query, csv_path)

    table = pq.read_table(staging.path)
    assert table.num_rows == ROWS
    assert table.column(RUN_ID_COLUMN).unique().to_pylist() == ["qry_123"]
    assert table.column("_dlt_load_id").unique().to_pylist() == [LOAD_ID]
    assert table.column(RUN_ID_COLUMN).null_count == 0


@pytest.mark.parametrize("type_", [pa.string(), pa.dictionary(pa.int8(), pa.string())])
def test_a_constant_column_has_the_length_and_type_each_batch_asks_for(type_):
    column = ConstantColumn("qry_1", type_)

    arrays = [column.of_length(rows) for rows in (3, 5, 2, 0, 5)]

    assert [len(array) for array in arrays] == [3, 5, 2, 0, 5]
    assert all(array.type == type_ for array in arrays)
    assert all(array.to_pylist() == ["qry_1"] * len(array) for array in arrays)
    assert all(array.null_count == 0 for array in arrays)


def test_a_constant_column_is_built_once_for_batches_no_longer_than_the_first():
    column = ConstantColumn("qry_1", pa.string())

    first, shorter = column.of_length(100), column.of_length(40)

    # A slice of the same buffers, not a new array of 40 values.
    assert shorter.buffers()[2].address == first.buffers()[2].address


def test_rows_are_written_in_row_groups_not_batch_by_batch(tmp_path):
    query = write_query(tmp_path, "select n from numbers")
    csv_path = write_csv(tmp_path, "n", [str(i) for i in range(ROWS)])

    _, staging = stage(tmp_path, query, csv_path)

    metadata = pq.ParquetFile(staging.path).metadata
    sizes = [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]
    assert sum(sizes) == ROWS
    assert all(size >= ROW_GROUP_ROWS for size in sizes[:-1])
    assert len(sizes) <= -(-ROWS // ROW_GROUP_ROWS)


def test_the_staged_file_spends_no_time_on_column_statistics(tmp_path):
    query = write_query(tmp_path, "select id, amount from charges")
    csv_path = write_csv(tmp_path, "id,amount", ["ch_1,100", "ch_2,250"])

    _, staging = stage(tmp_path, query, csv_path)

    row_group = pq.ParquetFile(staging.path).metadata.row_group(0)
    columns = [row_group.column(index) for index in range(row_group.num_columns)]
    assert [column.is_stats_set for column in columns] == [False] * len(columns)


@pytest.mark.parametrize(
    ("destination", "compression"),
    [("duckdb", "none"), ("postgres", "none"), ("bigquery", "snappy"), (None, "snappy")],
)
def test_only_a_file_that_is_uploaded_is_compressed(destination, compression):
    assert parquet_compression(destination) == compression


def test_the_staged_file_is_written_with_the_compression_asked_for(tmp_path):
    query = write_query(tmp_path, "select id, amount from charges")
    csv_path = write_csv(tmp_path, "id,amount", ["ch_1,100", "ch_2,250"])
    staging = StagingFile(tmp_path / "rows.parquet", load_id=LOAD_ID, compression="none")

    stage_result(query, csv_path, staging, query_run_id="qry_1")
    staging.close()

    row_group = pq.ParquetFile(staging.path).metadata.row_group(0)
    codecs = {row_group.column(index).compression for index in range(row_group.num_columns)}
    assert codecs == {"UNCOMPRESSED"}


def test_a_type_the_first_block_suggests_wrongly_is_corrected_by_the_whole_file(tmp_path):
    # The first blocks hold only integers; the last value makes the column a double.
    query = write_query(tmp_path, "select n from numbers")
    lines = [str(i) for i in range(ROWS - 1)] + ["12.5"]
    csv_path = write_csv(tmp_path, "n", lines)
    assert csv_path.stat().st_size > 2 * DEFAULT_BLOCK_SIZE

    result, staging = stage(tmp_path, query, csv_path)

    table = pq.read_table(staging.path)
    assert result.types == {"n": "double"}
    assert table.schema.field("n").type == pa.float64()
    assert table.num_rows == ROWS
    assert table.column("n")[-1].as_py() == 12.5
    assert table.column("n")[ROWS - 2].as_py() == ROWS - 2


def test_a_type_the_first_block_suggests_rightly_is_kept(tmp_path):
    query = write_query(tmp_path, "select n from numbers")
    csv_path = write_csv(tmp_path, "n", [str(i) for i in range(ROWS)])

    result, staging = stage(tmp_path, query, csv_path)

    assert result.types == {"n": "bigint"}
    assert pq.read_table(staging.path).column("n").to_pylist() == list(range(ROWS))


def test_a_malformed_row_deep_in_the_file_fails_the_stage(tmp_path):
    query = write_query(tmp_path, "select a, b from pairs")
    lines = [f"{i},{i}" for i in range(ROWS)] + ["1,2,3"]
    csv_path = write_csv(tmp_path, "a,b", lines)

    with pytest.raises(CSVFormatError, match="not valid Sigma CSV"):
        stage(tmp_path, query, csv_path)


def test_a_value_against_a_declared_type_fails_the_stage_naming_the_row(tmp_path):
    query = write_query(tmp_path, "{{ config(columns={'n': 'bigint'}) }}\nselect n from numbers")
    lines = [str(i) for i in range(ROWS)] + ["twelve"]
    csv_path = write_csv(tmp_path, "n", lines)

    with pytest.raises(CSVTypeError, match=f"row {ROWS + 1}: value 'twelve'"):
        stage(tmp_path, query, csv_path)


def test_a_cursor_value_that_is_no_timestamp_fails_naming_the_cursor_rule_not_stored_types(
    tmp_path,
):
    sql = (
        "{{ config(cursor='day', primary_key='id') }}\nselect id, day from events"
        "{% if is_incremental() %} where day >= {{ cursor_start }}{% endif %}"
    )
    query = write_query(tmp_path, sql, name="events")
    csv_path = write_csv(tmp_path, "id,day", ["1,2025-04-01 12:00:00", "2,yesterday"])

    with pytest.raises(CSVTypeError) as failure:
        stage(tmp_path, query, csv_path)

    message = str(failure.value)
    assert "column 'day' (timestamp, the type a cursor column has" in message
    assert "row 2: value 'yesterday'" in message
    assert "declare the cursor's type in config(columns=…)" in message
    assert "stored" not in message and "--full-refresh" not in message


def test_a_header_only_result_stages_no_rows(tmp_path):
    query = write_query(tmp_path, "select id from charges")
    csv_path = write_csv(tmp_path, "id", [])

    result, staging = stage(tmp_path, query, csv_path)

    assert result.row_count == staging.row_count == 0
    assert not staging.path.exists()


def test_reset_forgets_every_row_written(tmp_path):
    staging = StagingFile(tmp_path / "rows.parquet", load_id=LOAD_ID)
    batch = pa.record_batch({"n": pa.array(range(ROW_GROUP_ROWS + 1))})
    staging.write(batch)

    staging.reset()

    assert staging.is_empty
    assert staging.row_count == 0
    assert not staging.path.exists()


# --- The table's stored types ----------------------------------------------------------------


def stored_columns(**types: str) -> StoredColumns:
    """A table as dlt's schema holds it, with columns of these dlt data types."""
    return StoredColumns({name: {"data_type": t} for name, t in types.items()}, lambda n: n)


def test_stored_types_bind_a_file_that_alone_would_infer_others(tmp_path):
    query = write_query(tmp_path, "select id, code from codes")
    csv_path = write_csv(tmp_path, "id,code", ["ch_1,7"])

    result, staging = stage(tmp_path, query, csv_path, stored=stored_columns(code="text"))

    assert result.types == {"id": "varchar", "code": "varchar"}
    assert pq.read_table(staging.path).column("code").to_pylist() == ["7"]


def test_a_declared_type_other_than_the_stored_one_fails_before_reading_a_row(tmp_path):
    query = write_query(
        tmp_path, "{{ config(columns={'code': 'varchar'}) }}\nselect id, code from codes", "codes"
    )
    csv_path = write_csv(tmp_path, "id,code", ["ch_1,x1"])

    with pytest.raises(ConfigError) as raised:
        stage(tmp_path, query, csv_path, stored=stored_columns(code="bigint"))

    assert str(raised.value) == (
        "query 'codes': column 'code' is declared varchar but table codes stores it as bigint; "
        "to change its type, rebuild the table: `sigma-load run --full-refresh --select codes`"
    )


def test_an_api_type_other_than_the_stored_one_fails_the_same_way(tmp_path):
    query = write_query(tmp_path, "select id, code from codes", "codes")
    csv_path = write_csv(tmp_path, "id,code", ["ch_1,1"])

    with pytest.raises(ConfigError, match="'code' has in Sigma's result schema varchar but"):
        stage(
            tmp_path,
            query,
            csv_path,
            stored=stored_columns(code="bigint"),
            api_schema={"code": "varchar"},
        )


@pytest.mark.parametrize(
    "flags", [{"refresh": True, "replaces_table": True}, {"replaces_table": True}]
)
def test_a_table_the_load_replaces_may_take_a_new_declared_type(tmp_path, flags):
    query = write_query(
        tmp_path, "{{ config(columns={'code': 'varchar'}) }}\nselect id, code from codes", "codes"
    )
    csv_path = write_csv(tmp_path, "id,code", ["ch_1,x1"])

    result, _ = stage(tmp_path, query, csv_path, stored=stored_columns(code="bigint"), **flags)

    assert result.types == {"id": "varchar", "code": "varchar"}


def test_a_refresh_infers_anew_but_an_empty_column_keeps_the_stored_type(tmp_path):
    query = write_query(tmp_path, "select id, code, amount from codes")
    csv_path = write_csv(tmp_path, "id,code,amount", ["ch_1,x1,"])
    stored = stored_columns(code="bigint", amount="bigint")

    result, _ = stage(tmp_path, query, csv_path, stored=stored, refresh=True, replaces_table=True)

    assert result.types == {"id": "varchar", "code": "varchar", "amount": "bigint"}


def test_the_block_size_is_the_one_the_file_is_parsed_with(tmp_path, monkeypatch):
    seen = []
    open_csv = arrow_csv._open_csv

    def spy(path, column_types, options):
        seen.append(options.block_size)
        return open_csv(path, column_types, options)

    monkeypatch.setattr(arrow_csv, "_open_csv", spy)
    query = write_query(tmp_path, "select n from numbers")
    csv_path = write_csv(tmp_path, "n", [str(i) for i in range(10_000)])

    result, _ = stage(tmp_path, query, csv_path, block_size=4096)

    assert result.row_count == 10_000 and set(seen) == {4096}


# --- Columns that are varchar for lack of values --------------------------------------------


def test_columns_without_values_are_recorded_and_forgotten_once_values_decide(tmp_path, caplog):
    query = write_query(tmp_path, "select id, amount, note from charges", "charges")
    untyped = UntypedColumns()
    stage(tmp_path, query, write_csv(tmp_path, "id,amount,note", []), untyped=untyped)
    assert untyped.names == {"id", "amount", "note"}

    # The table now stores the three as varchar. Values arrive: id and note are text.
    stored = stored_columns(id="text", amount="text", note="text")
    csv_path = write_csv(tmp_path, "id,amount,note", ["ch_1,100,hello", "ch_2,,"])
    with caplog.at_level(logging.WARNING, logger="sigma_source"):
        result, _ = stage(tmp_path, query, csv_path, stored=stored, untyped=untyped)

    assert result.types == {"id": "varchar", "amount": "varchar", "note": "varchar"}
    assert untyped.names == {"amount"}
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning == (
        "query 'charges': column 'amount' is varchar because the load that created it had no "
        "values for it, but its values now suggest bigint; to load it as bigint, declare "
        "config(columns={'amount': 'bigint'}) and run "
        "`sigma-load run --full-refresh --select charges`"
    )


def test_the_warning_comes_once_per_run_however_many_windows(tmp_path, caplog):
    query = write_query(tmp_path, "select id, amount from charges", "charges")
    untyped = UntypedColumns(["amount"])
    stored = stored_columns(id="text", amount="text")
    with caplog.at_level(logging.WARNING, logger="sigma_source"):
        for _ in range(3):
            stage(tmp_path, query, write_csv(tmp_path, "id,amount", ["ch_1,5"]), stored=stored,
                  untyped=untyped)  # fmt: skip
    assert len(caplog.records) == 1
    assert untyped.names == {"amount"}


def test_a_declared_type_ends_the_record(tmp_path):
    query = write_query(
        tmp_path, "{{ config(columns={'amount': 'varchar'}) }}\nselect id, amount from charges"
    )
    untyped = UntypedColumns(["amount", "gone"])

    stage(tmp_path, query, write_csv(tmp_path, "id,amount", ["ch_1,5"]), untyped=untyped)

    assert untyped.names == {"gone"}  # a column the result no longer has stays in the table


def test_the_record_lives_in_the_query_state_and_survives_a_state_edited_by_hand():
    state: dict = {}
    UntypedColumns({"b", "a"}).save_to(state)
    assert state == {"untyped_columns": ["a", "b"]}
    assert UntypedColumns.from_state(state).names == {"a", "b"}
    UntypedColumns().save_to(state)
    assert state == {}
    assert UntypedColumns.from_state({"untyped_columns": "amount"}).names == set()


# --- A replaced table rebuilt when its types change ----------------------------------------


def test_retyped_columns_compare_the_table_with_the_rows():
    rows = pa.schema(
        [
            ("id", pa.string()),
            ("code", pa.string()),
            ("fee", pa.decimal128(38, 18)),
            ("created", pa.timestamp("us", tz="UTC")),
            ("new", pa.int64()),
        ]
    )
    table = {
        "id": {"data_type": "text"},
        "code": {"data_type": "bigint"},
        "fee": {"data_type": "decimal", "precision": 38, "scale": 9},
        "created": {"data_type": "timestamp", "timezone": True},
        "old": {"data_type": "bool"},
    }
    assert retyped_columns(table, rows) == {
        "code": ("bigint", "varchar"),
        "fee": ("decimal(38,9)", "decimal(38,18)"),
    }


def test_the_rebuild_step_passes_other_items_through_untouched():
    record = {"query_run_id": "qry_1"}
    assert rebuild_if_retyped("codes", record) is record
