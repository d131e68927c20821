"""Column types end to end: the loader `sigma-load run` calls (in process, or as a process
where exit codes and stderr matter), the emulator on a socket, and real DuckDB files.

The emulator serves canned result files (`add_canned_result`) to query runs whose SQL holds
a marker, so each load meets exactly the values a test needs, on a real download.
"""

from __future__ import annotations

import logging

import pytest

from sigma_source import arrow_csv
from sigma_source.api_objects import QueryRun
from sigma_source.errors import ConfigError
from tests.reliability_helpers import INCREMENTAL_SQL, CliProject

MARK = "types_marker"
TABLE = "codes"
SQL = f"select 1 as {MARK}"
OTHER = "balance_transactions"


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    return CliProject(tmp_path, emulator.url)


def _serve(emulator, content: str, schema: list[dict[str, str]] | None = None) -> None:
    """The next runs of query `codes` download `content`."""
    emulator.add_canned_result(MARK, content.encode("utf-8"), schema=schema)


def _query(project: CliProject, config: str = "") -> None:
    project.write_query(TABLE, f"{config}\n{SQL}" if config else SQL)


def _types(project: CliProject, table: str = TABLE) -> dict[str, str]:
    """The table's columns and DuckDB types, without dlt's and the lineage columns."""
    rows = project.sql(
        "select column_name, data_type from information_schema.columns "
        f"where table_schema = 'sigma' and table_name = '{table}' "
        "and column_name not like '\\_%' escape '\\'"
    )
    return dict(rows)


def _rows(project: CliProject, columns: str, table: str = TABLE) -> list[tuple]:
    return sorted(project.sql(f"select {columns} from sigma.{table}"))


def _runs(project: CliProject) -> list[tuple]:
    return project.sql(
        "select status, row_count from sigma._sigma_query_runs "
        f"where query_name = '{TABLE}' order by created_at, load_id"
    )


# --- A column keeps its type from run to run (rule 3) -------------------------------------------


def test_a_second_file_that_alone_would_infer_other_types_loads_with_the_stored_ones(
    project, emulator
):
    _query(project)
    _serve(emulator, "id,code,rate\nch_1,NA,1.5\nch_2,US,2.25\n")
    assert project.run().ok
    assert _types(project) == {"id": "VARCHAR", "code": "VARCHAR", "rate": "DOUBLE"}
    # Alone, this file infers code and rate as bigint.
    _serve(emulator, "id,code,rate\nch_3,7,2\n")

    result = project.run()

    assert result.ok, result.failures
    assert _types(project) == {"id": "VARCHAR", "code": "VARCHAR", "rate": "DOUBLE"}
    assert _rows(project, "id, code, rate") == [
        ("ch_1", "NA", 1.5),
        ("ch_2", "US", 2.25),
        ("ch_3", "7", 2.0),
    ]


def test_a_second_file_that_breaks_a_stored_type_fails_and_changes_nothing(project, emulator):
    _query(project)
    _serve(emulator, "id,amount\nch_1,100\nch_2,250\n")
    assert project.run().ok
    # Alone, this file infers amount as double: against the stored bigint, row 2 is wrong.
    _serve(emulator, "id,amount\nch_3,300\nch_4,12.5\n")

    result = project.run()

    assert list(result.failures) == [TABLE]
    line = result.failures[TABLE]
    assert "\n" not in line
    assert "column 'amount' (bigint, as stored by earlier loads), row 2: value '12.5'" in line
    assert "--full-refresh" in line
    assert _types(project) == {"id": "VARCHAR", "amount": "BIGINT"}
    assert _rows(project, "id, amount") == [("ch_1", 100), ("ch_2", 250)]


# --- A full refresh rebuilds a table whose types change -----------------------------------------

DISPOSITIONS = {
    "append": "",
    "merge": "{{ config(primary_key='id') }}",
    "replace": "{{ config(write_disposition='replace') }}",
}


@pytest.mark.parametrize("config", DISPOSITIONS.values(), ids=DISPOSITIONS.keys())
def test_a_full_refresh_rebuilds_the_table_with_the_new_types(project, emulator, config):
    _query(project, config)
    _serve(emulator, "id,code\nch_1,1\nch_2,2\n")
    assert project.run().ok
    assert _types(project) == {"id": "VARCHAR", "code": "BIGINT"}
    _serve(emulator, "id,code\nch_3,x1\nch_4,x2\n")
    assert "value 'x1' is not a valid bigint" in project.run().failures[TABLE]

    refreshed = project.run(full_refresh=True)

    assert refreshed.ok, refreshed.failures
    assert _types(project) == {"id": "VARCHAR", "code": "VARCHAR"}
    assert _rows(project, "id, code") == [("ch_3", "x1"), ("ch_4", "x2")]
    # The run history is not part of the rebuilt table: every run is still recorded.
    assert _runs(project) == [("succeeded", 2), ("failed", 0), ("succeeded", 2)]
    # And the next ordinary run keeps the new types.
    assert project.run().ok
    assert _types(project) == {"id": "VARCHAR", "code": "VARCHAR"}


def test_a_full_refresh_through_the_cli_rebuilds_the_table(project, emulator):
    _query(project)
    _serve(emulator, "id,code\nch_1,1\nch_2,2\n")
    assert project.cli("run").returncode == 0
    _serve(emulator, "id,code\nch_3,x1\n")

    done = project.cli("run", "--full-refresh", "--select", TABLE)

    assert done.returncode == 0, done.stderr
    assert _types(project) == {"id": "VARCHAR", "code": "VARCHAR"}
    assert _rows(project, "id, code") == [("ch_3", "x1")]


def test_a_full_refresh_that_fails_leaves_the_table_and_its_types_as_they_were(project, emulator):
    _query(project)
    _serve(emulator, "id,code\nch_1,1\nch_2,2\n")
    project.write_query(OTHER, INCREMENTAL_SQL)
    assert project.run().ok
    # The refreshed result breaks a declared type: the query fails before anything loads.
    _query(project, "{{ config(columns={'code': 'bigint', 'note': 'date'}) }}")
    _serve(emulator, "id,code,note\nch_3,3,2025-01-01\nch_4,4,soon\n")

    result = project.run(full_refresh=True)

    assert list(result.failures) == [TABLE]
    assert "column 'note' (date, declared in config(columns=…)), row 2" in result.failures[TABLE]
    assert _types(project) == {"id": "VARCHAR", "code": "BIGINT"}
    assert _rows(project, "id, code") == [("ch_1", 1), ("ch_2", 2)]
    assert project.sql(f"select count(*) from sigma.{OTHER}") == [(500,)]


def test_a_full_refresh_of_an_empty_result_keeps_the_types_of_the_table(project, emulator):
    _query(project)
    _serve(emulator, "id,amount,created\nch_1,100,2025-04-01 12:00:00.000\n")
    assert project.run().ok
    types = _types(project)
    assert types == {"id": "VARCHAR", "amount": "BIGINT", "created": "TIMESTAMP WITH TIME ZONE"}
    _serve(emulator, "id,amount,created\n")

    result = project.run(full_refresh=True)

    assert result.ok, result.failures
    assert _types(project) == types
    assert project.sql(f"select count(*) from sigma.{TABLE}") == [(0,)]


def test_a_replace_query_takes_a_newly_declared_type_by_rebuilding_its_table(project, emulator):
    _query(project, "{{ config(write_disposition='replace') }}")
    _serve(emulator, "id,code\nch_1,1\nch_2,2\n")
    assert project.run().ok
    assert _types(project)["code"] == "BIGINT"
    _query(project, "{{ config(write_disposition='replace', columns={'code': 'varchar'}) }}")

    result = project.run()

    assert result.ok, result.failures
    assert _types(project) == {"id": "VARCHAR", "code": "VARCHAR"}
    assert _rows(project, "id, code") == [("ch_1", "1"), ("ch_2", "2")]


# --- A declared type that differs from the stored one ---------------------------------------------


def test_a_declared_type_other_than_the_stored_one_fails_that_query_alone(project, emulator):
    _query(project)
    _serve(emulator, "id,code\nch_1,1\nch_2,2\n")
    project.write_query(OTHER, INCREMENTAL_SQL)
    assert project.cli("run").returncode == 0
    emulator.add_rows(OTHER, 7)
    _query(project, "{{ config(columns={'code': 'varchar'}) }}")
    _serve(emulator, "id,code\nch_3,x1\n")

    done = project.cli("run")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1
    assert failed[0].startswith(f"FAILED {TABLE}: ")
    for words in (
        f"query '{TABLE}'",
        "column 'code' is declared varchar",
        "stores it as bigint",
        f"sigma-load run --full-refresh --select {TABLE}",
    ):
        assert words in failed[0], failed[0]
    # The other query loaded its new rows; this one's table is as it was.
    assert project.sql(f"select count(*) from sigma.{OTHER}") == [(507,)]
    assert _types(project) == {"id": "VARCHAR", "code": "BIGINT"}
    assert _rows(project, "id, code") == [("ch_1", 1), ("ch_2", 2)]

    # The remedy the line names works.
    assert project.cli("run", "--full-refresh", "--select", TABLE).returncode == 0
    assert _types(project) == {"id": "VARCHAR", "code": "VARCHAR"}
    assert _rows(project, "id, code") == [("ch_3", "x1")]


# --- A result schema from the API (rule 2) ----------------------------------------------------

TYPED_RESULT = "id,code,fee\nch_1,1,1.5\nch_2,2,2.25\n"


def test_a_result_schema_from_the_api_types_the_columns(project, emulator):
    _query(project)
    schema = [
        {"name": "id", "type": "varchar"},
        {"name": "code", "type": "varchar(4)"},
        {"name": "fee", "type": "decimal(38,18)"},
    ]
    _serve(emulator, TYPED_RESULT, schema=schema)

    result = project.run()

    assert result.ok, result.failures
    # Without the schema, code would infer as bigint and fee as double.
    assert _types(project) == {"id": "VARCHAR", "code": "VARCHAR", "fee": "DECIMAL(38,18)"}
    assert _rows(project, "code") == [("1",), ("2",)]
    served = emulator.api.served_runs().values()
    assert any(run["result"].get("schema") == schema for run in served)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"file": "file_1"}, None),  # the v1 API today
        ({"file": "file_1", "schema": [{"name": "a", "type": "bigint"}]}, {"a": "bigint"}),
        (  # the reporting API: the schema on the result's File object
            {"file": {"id": "file_1", "schema": [{"name": "a", "type": "double"}]}},
            {"a": "double"},
        ),
        ({"file": "file_1", "schema": [{"name": "a"}, "b", {"name": 3, "type": "x"}]}, None),
        ({"file": "file_1", "schema": "a:bigint"}, None),
    ],
)
def test_the_result_schema_is_read_from_the_run_object(result, expected):
    run = QueryRun.from_api({"id": "qry_1", "status": "succeeded", "result": result})
    assert run.result_schema == expected


def test_a_declared_type_beats_the_api_schema(project, emulator):
    _query(project, "{{ config(columns={'code': 'bigint'}) }}")
    schema = [{"name": "code", "type": "varchar"}, {"name": "fee", "type": "real"}]
    _serve(emulator, TYPED_RESULT, schema=schema)

    result = project.run()

    assert result.ok, result.failures
    assert _types(project) == {"id": "VARCHAR", "code": "BIGINT", "fee": "DOUBLE"}


# --- Columns that are varchar only for lack of values -------------------------------------------


def _warnings(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name.startswith("sigma_source")
    ]


def test_columns_created_without_values_warn_once_values_suggest_a_type(project, emulator, caplog):
    caplog.set_level(logging.WARNING, logger="sigma_source")
    _query(project)
    _serve(emulator, "id,amount,created,captured\n")
    assert project.run().ok
    untyped = {"id": "VARCHAR", "amount": "VARCHAR", "created": "VARCHAR", "captured": "VARCHAR"}
    assert _types(project) == untyped
    assert _warnings(caplog) == []
    _serve(emulator, "id,amount,created,captured\nch_1,100,2025-04-01 12:00:00.000,true\n")

    result = project.run()

    assert result.ok, result.failures
    assert _types(project) == untyped  # the stored types still bind: no surprise change
    warnings = _warnings(caplog)
    assert len(warnings) == 3, warnings
    for column, suggested in (
        ("amount", "bigint"),
        ("created", "timestamp"),
        ("captured", "boolean"),
    ):
        line = next(w for w in warnings if f"column {column!r}" in w)
        assert "\n" not in line
        assert f"query '{TABLE}'" in line and f"suggest {suggested}" in line
        assert f"config(columns={{{column!r}: {suggested!r}}})" in line
        assert f"sigma-load run --full-refresh --select {TABLE}" in line

    # The remedy: declare the types and rebuild; the warnings stop.
    caplog.clear()
    _query(
        project,
        "{{ config(columns={'amount': 'bigint', 'created': 'timestamp', 'captured': 'boolean'}) }}",
    )
    assert project.run(full_refresh=True).ok
    assert project.run().ok
    assert _types(project) == {
        "id": "VARCHAR",
        "amount": "BIGINT",
        "created": "TIMESTAMP WITH TIME ZONE",
        "captured": "BOOLEAN",
    }
    assert _warnings(caplog) == []


def test_a_column_null_everywhere_warns_until_a_value_shows_it_is_text(project, emulator, caplog):
    caplog.set_level(logging.WARNING, logger="sigma_source")
    _query(project)
    # Like the emulator's charges.card_default_for_currency: a boolean NULL in every row.
    _serve(emulator, "id,card_default_for_currency\nch_1,\nch_2,\n")
    assert project.run().ok
    _serve(emulator, "id,card_default_for_currency\nch_3,\n")
    assert project.run().ok
    assert _warnings(caplog) == []  # still no value: nothing to say
    _serve(emulator, "id,card_default_for_currency\nch_4,true\n")

    assert project.run().ok

    (warning,) = _warnings(caplog)
    assert "column 'card_default_for_currency'" in warning and "suggest boolean" in warning
    # A value that is text after all: the varchar column was right, and stays quiet.
    caplog.clear()
    _serve(emulator, "id,card_default_for_currency\nch_5,maybe\n")
    assert project.run().ok
    _serve(emulator, "id,card_default_for_currency\nch_6,false\n")
    assert project.run().ok
    assert _warnings(caplog) == []
    assert _types(project)["card_default_for_currency"] == "VARCHAR"


def test_the_cli_prints_the_warning_as_one_line_on_stderr(project, emulator):
    _query(project)
    _serve(emulator, "id,amount\nch_1,\n")
    assert project.cli("run").returncode == 0
    _serve(emulator, "id,amount\nch_2,250\n")

    done = project.cli("run")

    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "column 'amount'" in line]
    assert len(lines) == 1, done.stderr
    assert "suggest bigint" in lines[0] and "--full-refresh" in lines[0]


# --- The CSV block size -------------------------------------------------------------------------


def test_the_csv_block_size_setting_reaches_the_parser(project, monkeypatch):
    seen: list[int] = []
    open_csv = arrow_csv._open_csv

    def spy(path, column_types, options):
        seen.append(options.block_size)
        return open_csv(path, column_types, options)

    monkeypatch.setattr(arrow_csv, "_open_csv", spy)
    project.write_query(OTHER, INCREMENTAL_SQL)

    result = project.run(source_settings={"csv_block_size": 4096})

    assert result.ok, result.failures
    assert seen and set(seen) == {4096}
    assert project.sql(f"select count(*) from sigma.{OTHER}") == [(500,)]


def test_a_csv_block_size_below_the_minimum_is_refused(project):
    project.write_query(OTHER, INCREMENTAL_SQL)
    with pytest.raises(ConfigError, match=r"csv_block_size=100: must be at least 4096"):
        project.run(source_settings={"csv_block_size": 100})
