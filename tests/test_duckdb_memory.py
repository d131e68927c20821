"""DuckDB's memory limit is sized to each load: enough for every thread's row group, however
wide the rows and however many the cores, and no more than the floor for a small load."""

from __future__ import annotations

import dataclasses

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sigma_source import duckdb_memory, staging
from sigma_source.duckdb_memory import (
    FLOOR_BYTES,
    InsertShape,
    LoadMemory,
    insert_shape,
    load_memory,
)
from sigma_source.errors import ConfigError
from tests.loader_helpers import LoaderHarness

MIB = 1 << 20
# Enough threads, rows and row groups that inserting them needs more than the fixed 128 MB
# limit every load had before (DuckDB fails such an insert: it cannot spill).
MANY_THREADS = 8
ROWS = 300_000
SMALL_ROW_GROUP = 20_000
EXTRA_ID_COLUMNS = 10


def _balance_like_rows(rows: int, extra_id_columns: int = 0) -> pa.Table:
    """Rows shaped like balance transactions: ids, amounts, timestamps, short codes."""
    ids = pa.array([f"txn_{(i * 0x9E3779B97F4A7C15) % (1 << 64):016x}" for i in range(rows)])
    amounts = pa.array(range(rows), pa.int64())
    created = pa.array(range(rows), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "id": ids,
            "source_id": ids,
            "automatic_transfer_id": ids,
            **{f"other_id_{n}": ids for n in range(extra_id_columns)},
            "amount": amounts,
            "fee": amounts,
            "net": amounts,
            "created": created,
            "available_on": created,
            "currency": pa.array(["usd", "eur", "gbp"] * (rows // 3) + ["usd"] * (rows % 3)),
            "type": pa.array(["charge", "refund"] * (rows // 2) + ["charge"] * (rows % 2)),
        }
    )


@pytest.fixture(scope="module")
def many_row_groups(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("parquet") / "rows.parquet"
    rows = _balance_like_rows(ROWS, EXTRA_ID_COLUMNS)
    pq.write_table(rows, path, compression="none", row_group_size=SMALL_ROW_GROUP)
    return str(path)


def _insert(path: str, database: str, memory: LoadMemory) -> None:
    settings = {"preserve_insertion_order": False}
    with duckdb.connect(database, config=settings) as connection:
        for pragma in memory.pragmas():
            connection.execute(f"PRAGMA {pragma}")
        source = f"read_parquet('{path}')"
        connection.execute(f"create table rows as select * from {source} limit 0")
        connection.execute(f"insert into rows by name select * from {source}")


def test_the_fixed_128MB_limit_fails_an_insert_on_many_threads(many_row_groups, tmp_path):
    # Why the limit is sized: the same file, the same threads, the old fixed limit.
    with pytest.raises(duckdb.OutOfMemoryException):
        _insert(many_row_groups, str(tmp_path / "fixed.duckdb"), LoadMemory(128 * MIB, 8))


def test_the_sized_limit_inserts_every_row_on_many_threads(many_row_groups, tmp_path):
    memory = load_memory([insert_shape(many_row_groups)], threads=MANY_THREADS, machine_bytes=None)
    database = str(tmp_path / "sized.duckdb")

    _insert(many_row_groups, database, memory)

    assert memory.threads == MANY_THREADS
    with duckdb.connect(database, read_only=True) as connection:
        assert connection.sql("select count(*) from rows").fetchone() == (ROWS,)


def test_wider_rows_need_more_memory_per_thread(tmp_path):
    narrow, wide = tmp_path / "narrow.parquet", tmp_path / "wide.parquet"
    rows = _balance_like_rows(10_000)
    pq.write_table(rows.select(["id", "amount"]), narrow, compression="none")
    pq.write_table(rows, wide, compression="none")

    assert insert_shape(wide).need(threads=1) > 2 * insert_shape(narrow).need(threads=1)


def test_a_file_counts_one_thread_per_row_group(many_row_groups):
    shape = insert_shape(many_row_groups)

    assert shape.row_groups == -(-ROWS // SMALL_ROW_GROUP)
    assert shape.rows == ROWS


def _shape(*, rows: int = 10_000_000, row_groups: int = 64, row_mib: float = 1.0) -> InsertShape:
    """A file whose DuckDB row group (122,880 rows) takes `row_mib` MiB besides its column."""
    return InsertShape(
        columns=1,
        rows=rows,
        row_groups=row_groups,
        bytes_per_row=row_mib * MIB / duckdb_memory.DUCKDB_ROW_GROUP_ROWS,
    )


def _per_thread(shape: InsertShape) -> int:
    return shape.need(threads=1)


def test_a_small_load_gets_the_floor():
    small = _shape(rows=1000, row_groups=1)

    assert load_memory([small], threads=2, machine_bytes=None) == LoadMemory(FLOOR_BYTES, 2)


def test_the_limit_grows_with_the_threads_a_file_keeps_busy():
    shape = _shape(row_mib=100)

    on_four = load_memory([shape], threads=4, machine_bytes=None).limit_bytes
    on_eight = load_memory([shape], threads=8, machine_bytes=None).limit_bytes

    assert on_eight - on_four == pytest.approx(4 * _per_thread(shape), abs=8)


def test_threads_beyond_a_files_row_groups_add_nothing():
    shape = _shape(row_groups=2, row_mib=100)

    assert (
        load_memory([shape], threads=16, machine_bytes=None).limit_bytes
        == load_memory([shape], threads=2, machine_bytes=None).limit_bytes
    )


def test_threads_sharing_few_rows_need_only_those_rows():
    # 4 threads share 122,880 rows: each builds a quarter of a DuckDB row group.
    shape = _shape(rows=duckdb_memory.DUCKDB_ROW_GROUP_ROWS, row_mib=400)

    assert shape.need(threads=4) == pytest.approx(shape.need(threads=1) + 3 * MIB, abs=8)


def test_files_loaded_together_add_up():
    shape = _shape(row_mib=100)

    one = load_memory([shape], threads=4, machine_bytes=None).limit_bytes
    two = load_memory([shape, shape], threads=4, machine_bytes=None).limit_bytes

    assert two - one == pytest.approx(4 * _per_thread(shape), abs=8)


def test_threads_are_cut_to_fit_half_the_machines_memory():
    shape = _shape(row_mib=499)  # 500 MiB a thread, with its column

    memory = load_memory([shape], threads=32, machine_bytes=4096 * MIB)

    assert memory.threads == 4  # 32 MiB + 4 x 500 MiB fits in 2 GiB; 5 threads would not
    assert memory.limit_bytes <= 2048 * MIB


def test_one_thread_is_left_however_little_memory_the_machine_has():
    shape = _shape(row_mib=499)

    memory = load_memory([shape], threads=8, machine_bytes=1024 * MIB)

    assert memory.threads == 1
    assert memory.limit_bytes == duckdb_memory.BASE_BYTES + _per_thread(shape)


def test_a_merged_file_needs_room_for_all_its_rows():
    inserted = _shape(rows=10_000_000, row_mib=1)
    merged = dataclasses.replace(inserted, merged=True)

    extra = merged.need(threads=4) - inserted.need(threads=4)

    assert extra == pytest.approx(
        duckdb_memory.MERGE_BYTES_FACTOR * inserted.rows * inserted.bytes_per_row, rel=1e-9
    )


def test_the_limit_never_passes_duckdbs_own_default():
    huge = dataclasses.replace(_shape(rows=100_000_000, row_mib=10), merged=True)

    memory = load_memory([huge], threads=8, machine_bytes=4096 * MIB)

    assert memory.limit_bytes == int(4096 * MIB * duckdb_memory.DUCKDB_DEFAULT_SHARE)


def test_pragmas_set_duckdbs_limit_and_threads():
    assert LoadMemory(300 * MIB, 4).pragmas() == ["memory_limit='300MiB'", "threads=4"]


def test_a_memory_limit_duckdb_cannot_read_is_refused_naming_the_option(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("few", "select id, amount from balance_transactions limit 10")

    with pytest.raises(ConfigError) as refused:
        harness.run(duckdb_memory_limit="lots")

    assert str(refused.value).startswith("RunOptions.duckdb_memory_limit='lots': ")
    assert "\n" not in str(refused.value)
    assert not harness.duckdb_path.exists()  # refused before anything ran


def test_a_memory_limit_the_caller_sets_is_kept_for_the_load(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("few", "select id, amount from balance_transactions limit 10")

    result = harness.run(duckdb_memory_limit="2GB")

    assert result.ok, result.failures
    credentials = result.pipeline.destination.config_params["credentials"]
    assert credentials.global_config["memory_limit"] == "2GB"
    assert not credentials.pragmas


def _write_wide_query(harness: LoaderHarness, config: str = "") -> int:
    """A query of ROWS rows, each with many text columns; returns its row count."""
    copies = -(-ROWS // 500)
    other_ids = ", ".join(f"b.id || '_{n}_' || r.range as id_{n}" for n in range(EXTRA_ID_COLUMNS))
    harness.write_query(
        "wide",
        f"""
        {config}
        select b.id || '_' || r.range as id, {other_ids}, b.source_id, b.description,
               b.amount, b.fee, b.net, b.currency, b.type, b.created, b.available_on
        from balance_transactions b cross join range({copies}) r
        """,
    )
    return 500 * copies


def _load_settings(result) -> tuple[int, str]:
    memory_limit, threads = result.pipeline.destination.config_params["credentials"].pragmas
    return int(memory_limit.removeprefix("memory_limit='").removesuffix("MiB'")), threads


def test_a_wide_load_on_many_threads_loads_every_row(tmp_path, emulator, monkeypatch):
    # The staged file gets many small row groups and DuckDB eight threads, as on a laptop
    # with eight cores: under the fixed 128 MB limit this load failed.
    monkeypatch.setattr(staging, "ROW_GROUP_ROWS", SMALL_ROW_GROUP)
    monkeypatch.setattr(duckdb_memory, "duckdb_threads", lambda: MANY_THREADS)
    harness = LoaderHarness(tmp_path, emulator.url)
    rows = _write_wide_query(harness)

    result = harness.run()

    assert result.ok, result.failures
    assert harness.sql("select count(*) from sigma.wide") == [(rows,)]
    # The load ran on the eight threads, under a limit sized to the staged file's rows.
    limit_mib, threads = _load_settings(result)
    assert threads == f"threads={MANY_THREADS}"
    assert limit_mib > 128


def test_a_wide_merge_loads_again_without_running_out_of_memory(tmp_path, emulator, monkeypatch):
    # A merge deduplicates every staged row at once: 128 MB, or what the insert alone
    # needs, failed it on two threads as on eight.
    monkeypatch.setattr(duckdb_memory, "duckdb_threads", lambda: MANY_THREADS)
    harness = LoaderHarness(tmp_path, emulator.url)
    rows = _write_wide_query(harness, "{{ config(primary_key='id', write_disposition='merge') }}")

    first, second = harness.run(), harness.run()

    assert first.ok and second.ok, (first.failures, second.failures)
    assert harness.sql("select count(*), count(distinct id) from sigma.wide") == [(rows, rows)]
