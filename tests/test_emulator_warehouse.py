"""Emulator: tables generated when first needed, and results reused when asked to."""

from __future__ import annotations

import pytest

from sigma_source.emulator import Emulator
from sigma_source.emulator.api import SCHEDULED_QUERIES
from sigma_source.emulator.data import row_counts

SEED = 7
SCALE = 300


@pytest.fixture
def emulator():
    with Emulator(seed=SEED, scale=SCALE) as emu:
        yield emu


def test_only_the_tables_the_scheduled_queries_read_are_generated_at_start(emulator):
    read_at_start = {
        table for _, sql in SCHEDULED_QUERIES for table in row_counts(SCALE) if table in sql
    }

    assert emulator.warehouse.generated_tables == read_at_start
    assert "refunds" not in read_at_start


def test_a_table_is_generated_the_first_time_sql_names_it(emulator):
    (count,) = emulator.execute("select count(*) from refunds")[0]

    assert count == row_counts(SCALE)["refunds"]
    assert "refunds" in emulator.warehouse.generated_tables


def test_row_counts_need_no_table_generated(emulator):
    assert emulator.warehouse.row_counts() == row_counts(SCALE)
    assert "refunds" not in emulator.warehouse.generated_tables


def test_a_lazily_generated_table_equals_one_generated_at_start(emulator):
    sql = "select id, amount, created from refunds order by id"
    lazily = emulator.execute(sql)
    with Emulator(seed=SEED, scale=SCALE) as other:
        other.execute("select 1 from refunds limit 1")  # generated before anything else
        assert other.execute(sql) == lazily


def test_rows_can_be_added_to_a_table_not_generated_yet(emulator):
    emulator.add_rows("refunds", 3)

    (count,) = emulator.execute("select count(*) from refunds")[0]
    assert count == row_counts(SCALE)["refunds"] + 3


def test_with_reuse_results_the_same_sql_gets_the_same_file_without_running_again(emulator):
    warehouse = emulator.warehouse
    warehouse.reuse_results = True
    sql = "select id, amount from balance_transactions order by id"
    warehouse.write_csv(sql, emulator_file(emulator, "first"))

    warehouse.write_csv(sql, emulator_file(emulator, "second"))

    first, second = emulator_file(emulator, "first"), emulator_file(emulator, "second")
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_ino == second.stat().st_ino  # a link, not a second run


def test_added_rows_end_the_reuse_of_earlier_results(emulator):
    warehouse = emulator.warehouse
    warehouse.reuse_results = True
    sql = "select count(*) as n from balance_transactions"
    warehouse.write_csv(sql, emulator_file(emulator, "before"))

    emulator.add_rows("balance_transactions", 5)
    warehouse.write_csv(sql, emulator_file(emulator, "after"))

    before = emulator_file(emulator, "before").read_text().split()
    after = emulator_file(emulator, "after").read_text().split()
    assert int(after[1]) == int(before[1]) + 5


def test_results_are_not_reused_unless_asked(emulator):
    sql = "select id from balance_transactions order by id limit 3"
    emulator.warehouse.write_csv(sql, emulator_file(emulator, "one"))

    emulator.warehouse.write_csv(sql, emulator_file(emulator, "two"))

    assert (
        emulator_file(emulator, "one").stat().st_ino != emulator_file(emulator, "two").stat().st_ino
    )


def emulator_file(emulator, name):
    # Result files must live in the emulator's own folder: DuckDB may write nowhere else.
    return emulator.warehouse.workdir / f"{name}.csv"
