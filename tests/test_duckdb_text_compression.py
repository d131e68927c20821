"""Text in a DuckDB load: ids are stored uncompressed (no FSST) unless the caller asks for
FSST; text with few distinct values is dictionary-compressed either way."""

from __future__ import annotations

from tests.loader_helpers import LoaderHarness

# 20,000 distinct ids, too many for a dictionary, each long and much like the others: FSST
# compresses them far better than plain storage, whatever rows DuckDB samples.
IDS_SQL = """
select 'payout of balance transaction ' || b.id || ' to account ' || b.source_id
       || ' (copy ' || r.range || ')' as id,
       b.currency
from balance_transactions b cross join range(40) r
"""


def _compressions(harness: LoaderHarness, column: str) -> set[str]:
    rows = harness.sql(
        "select distinct compression from pragma_storage_info('sigma.ids') "
        f"where column_name = '{column}' and segment_type = 'VARCHAR'"
    )
    return {compression for (compression,) in rows}


def test_ids_are_stored_without_fsst_by_default(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("ids", IDS_SQL)

    result = harness.run()

    assert result.ok, result.failures
    assert harness.sql("select count(*) from sigma.ids") == [(20_000,)]
    assert "FSST" not in _compressions(harness, "id")
    assert _compressions(harness, "currency") == {"Dictionary"}


def test_fsst_compression_can_be_asked_for(tmp_path, emulator):
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("ids", IDS_SQL)

    result = harness.run(duckdb_fsst_compression=True)

    assert result.ok, result.failures
    assert "FSST" in _compressions(harness, "id")
    assert _compressions(harness, "currency") == {"Dictionary"}
