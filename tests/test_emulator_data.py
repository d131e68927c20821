"""Emulator: the synthetic Sigma tables (schema, shape of values, determinism, new rows)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sigma_source.emulator import Emulator
from sigma_source.emulator.data import CURSOR_COLUMN, row_counts
from sigma_source.emulator.tables import TABLES

ID_PREFIXES = {
    "balance_transactions": "txn_",
    "charges": "ch_",
    "customers": "cus_",
    "invoices": "in_",
    "subscriptions": "sub_",
    "refunds": "re_",
    "disputes": "dp_",
    "payment_intents": "pi_",
}
DUCKDB_TYPE_OF = {
    "varchar": "VARCHAR",
    "bigint": "BIGINT",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
    "double": "DOUBLE",
    "decimal(38,18)": "DECIMAL(38,18)",
}


@pytest.fixture(scope="module")
def shared_emulator():
    """One emulator for the tests that only read its data (starting one per test adds up)."""
    with Emulator(seed=42, scale=500) as emu:
        yield emu


def utc_now() -> datetime:
    """Now in UTC, naive like the emulator's timestamps."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def test_the_core_sigma_tables_are_declared_with_a_primary_key():
    for table in ID_PREFIXES:
        assert TABLES[table].primary_key == ("id",)
        assert TABLES[table].type_of("id") == "varchar"


def test_declared_types_follow_sigma():
    assert TABLES["balance_transactions"].type_of("amount") == "bigint"
    assert TABLES["balance_transactions"].type_of("created") == "timestamp"
    assert TABLES["balance_transactions"].type_of("exchange_rate") == "double"
    assert TABLES["charges"].type_of("captured") == "boolean"
    assert TABLES["itemized_fees"].type_of("amount") == "decimal(38,18)"
    assert len(TABLES["charges"].columns) == 77


@pytest.mark.parametrize("table", sorted(TABLES))
def test_each_table_has_exactly_the_declared_columns_and_types(shared_emulator, table):
    described = shared_emulator.execute(f'DESCRIBE "{table}"')

    actual = [(name, column_type) for name, column_type, *_ in described]
    expected = [(c.name, DUCKDB_TYPE_OF[c.sigma_type]) for c in TABLES[table].columns]
    assert actual == expected


def test_row_counts_follow_the_scale(shared_emulator):
    counts = {
        table: shared_emulator.execute(f"select count(*) from {table}")[0][0] for table in TABLES
    }

    assert counts["balance_transactions"] == 500
    assert counts["charges"] == 250
    assert counts["customers"] == 50
    assert counts == row_counts(500)


def test_a_tiny_scale_still_gives_a_few_rows_in_every_table():
    assert min(row_counts(1).values()) >= 5


@pytest.mark.parametrize(("table", "prefix"), sorted(ID_PREFIXES.items()))
def test_ids_are_unique_and_carry_stripes_prefix(shared_emulator, table, prefix):
    [(rows, distinct, prefixed)] = shared_emulator.execute(
        f"select count(*), count(distinct id), count(*) filter (where id like '{prefix}%')"
        f" from {table}"
    )

    assert rows == distinct == prefixed


def test_created_spreads_over_the_default_year(shared_emulator):
    [(first, last, months)] = shared_emulator.execute(
        "select min(created), max(created), count(distinct date_trunc('month', created))"
        " from balance_transactions"
    )

    assert first >= datetime(2024, 1, 1)
    assert last < datetime(2025, 1, 1)
    assert months == 12


def test_timestamps_have_whole_milliseconds(shared_emulator):
    [(odd,)] = shared_emulator.execute(
        "select count(*) from balance_transactions where microsecond(created) % 1000 <> 0"
    )

    assert odd == 0


def test_the_data_window_is_configurable():
    with Emulator(scale=50, data_start="2023-03-01", data_end="2023-04-01") as emu:
        [(first, last)] = emu.execute("select min(created), max(created) from charges")

    assert datetime(2023, 3, 1) <= first <= last < datetime(2023, 4, 1)


def test_balance_transactions_have_fees_refunds_and_net(shared_emulator):
    [(negative, positive, wrong_net)] = shared_emulator.execute(
        "select count(*) filter (where amount < 0), count(*) filter (where amount > 0),"
        " count(*) filter (where net <> amount - fee) from balance_transactions"
    )
    types = {
        row[0] for row in shared_emulator.execute("select distinct type from balance_transactions")
    }

    assert negative > 0
    assert positive > 0
    assert wrong_net == 0
    assert {"charge", "refund", "stripe_fee", "payout"} <= types


def test_values_include_nulls_and_text_that_needs_csv_quoting(shared_emulator):
    descriptions = [
        row[0] for row in shared_emulator.execute("select description from balance_transactions")
    ]

    assert None in descriptions
    assert any("," in d for d in descriptions if d)
    assert any('"' in d for d in descriptions if d)
    assert any("\n" in d for d in descriptions if d)


def test_customer_countries_include_namibia_as_na(shared_emulator):
    [(namibians,)] = shared_emulator.execute(
        "select count(*) from customers where address_country = 'NA'"
    )

    assert namibians > 0


def test_charges_point_at_existing_customers(shared_emulator):
    [(orphans, linked)] = shared_emulator.execute(
        "select count(*) filter (where c.customer_id is not null and cu.id is null),"
        " count(cu.id) from charges c left join customers cu on cu.id = c.customer_id"
    )

    assert orphans == 0
    assert linked > 0


def test_the_same_seed_gives_the_same_data(shared_emulator):
    with Emulator(seed=42, scale=500) as twin:
        theirs = twin.execute("select * from charges")

    assert shared_emulator.execute("select * from charges") == theirs


def test_another_seed_gives_other_data(shared_emulator):
    with Emulator(seed=7, scale=500) as other:
        theirs = other.execute("select id, amount from charges")

    assert shared_emulator.execute("select id, amount from charges") != theirs


def test_add_rows_appends_rows_newer_than_all_others_and_not_in_the_future(emulator):
    [(count_before, latest_before)] = emulator.execute(
        "select count(*), max(created) from balance_transactions"
    )

    emulator.add_rows("balance_transactions", 20)

    [(count_after, newer, newest)] = emulator.execute(
        f"select count(*), count(*) filter (where created > timestamp '{latest_before}'),"
        " max(created) from balance_transactions"
    )
    assert count_after == count_before + 20
    assert newer == 20
    assert newest <= utc_now()


def test_added_rows_keep_ids_unique(emulator):
    emulator.add_rows("charges", 30)
    emulator.add_rows("charges", 30)

    [(rows, distinct)] = emulator.execute("select count(*), count(distinct id) from charges")

    assert rows == distinct == 250 + 60


@pytest.mark.parametrize("table", sorted(CURSOR_COLUMN))
def test_add_rows_works_for_every_table_by_its_time_column(emulator, table):
    column = CURSOR_COLUMN[table]
    [(latest,)] = emulator.execute(f"select max({column}) from {table}")

    emulator.add_rows(table, 3)

    [(newer,)] = emulator.execute(f"select count(*) from {table} where {column} > '{latest}'")
    assert newer == 3


def test_added_rows_are_visible_to_new_query_runs(emulator, run_query, sigma_http):
    emulator.add_rows("refunds", 5)

    run = run_query("select count(*) as n from refunds")

    contents = sigma_http.get(f"{emulator.url}/v1/files/{run['result']['file']}/contents")
    assert contents.text == f"n\n{row_counts(500)['refunds'] + 5}\n"


def test_add_rows_to_an_unknown_table_names_the_valid_ones(emulator):
    with pytest.raises(ValueError, match="balance_transactions"):
        emulator.add_rows("transactions", 1)


def test_rows_added_just_after_a_window_ending_now_stay_in_the_past():
    end = utc_now() - timedelta(seconds=2)
    with Emulator(scale=20, data_start=end - timedelta(days=1), data_end=end) as emu:
        emu.add_rows("customers", 10)
        [(newest,)] = emu.execute("select max(created) from customers")

    assert newest <= utc_now()
