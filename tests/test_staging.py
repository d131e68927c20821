"""Staging a result file: typed rows in one parquet file dlt imports as is, checked whole.

Real CSV and parquet files under tmp_path; no emulator is needed to stage a file.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sigma_source.arrow_csv import DEFAULT_BLOCK_SIZE
from sigma_source.errors import CSVFormatError, CSVTypeError
from sigma_source.lineage import RUN_ID_COLUMN
from sigma_source.project import load_query
from sigma_source.staging import ROW_GROUP_ROWS, StagingFile, stage_result

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
