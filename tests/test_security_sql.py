"""Values reach the SQL only as typed literals: no cursor or var can change a query's shape.

The cursor is a timestamp from the loaded rows, kept in dlt's state and printed as
`timestamp '…'`; a string can neither become a cursor nor pass through one. A `var()` string
prints as an escaped literal, or is refused where it could break out of its quotes.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.loader_helpers import posted_sql
from tests.reliability_helpers import INCREMENTAL_SQL, CliProject

TABLE = "balance_transactions"
INJECTION = "2024-01-01' or '1'='1"
TIMESTAMP_LITERAL = r"timestamp '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}'"


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url)
    project.write_query(TABLE, INCREMENTAL_SQL)
    return project


def test_cursor_bounds_reach_the_sql_only_as_timestamp_literals(project, emulator):
    project.run()
    emulator.add_rows(TABLE, 3)
    project.run()

    for sql in posted_sql(emulator):
        bounds = re.findall(r"created [<>]=? (\S+ '[^']*')", sql)
        assert len(bounds) == 2 and all(re.fullmatch(TIMESTAMP_LITERAL, b) for b in bounds), sql


def test_a_tampered_cursor_in_the_state_fails_the_query_without_reaching_sigma(project, emulator):
    project.run()
    state_file = project.working_dir / "state.json"
    state = json.loads(state_file.read_text())
    state["sources"]["sigma"]["queries"][TABLE]["last_cursor"] = INJECTION
    state_file.write_text(json.dumps(state))
    runs_before = len(posted_sql(emulator))

    result = project.run()

    assert list(result.failures) == [TABLE]
    assert "last_cursor" in result.failures[TABLE] and "--full-refresh" in result.failures[TABLE]
    assert len(posted_sql(emulator)) == runs_before
    assert not any("or '1'='1" in sql for sql in posted_sql(emulator))


def test_a_cursor_value_holding_sql_is_a_type_violation_and_loads_nothing(project, emulator):
    project.run()
    cursor = project.last_cursor(TABLE)
    emulator.add_canned_result(
        "from balance_transactions",
        f"id,amount,fee,net,currency,type,created\ntxn_x,1,0,1,usd,charge,{INJECTION}\n",
    )

    result = project.run()

    assert "column 'created'" in result.failures[TABLE]
    assert project.last_cursor(TABLE) == cursor


def test_a_text_column_cannot_be_a_cursor(project):
    project.write_query(
        "by_currency",
        "{{ config(primary_key='id', cursor='currency', initial_value='2024-01-01') }}\n"
        "select id, currency from balance_transactions where created >= {{ cursor_start }}",
    )

    result = project.run(select=["by_currency"])

    line = result.failures["by_currency"]
    assert "column 'currency'" in line and "is not a valid timestamp" in line
    assert not project.table_exists("by_currency")


def test_a_var_printed_as_a_literal_stays_one_string_value(project, emulator):
    project.write_query(
        "by_currency",
        "select id, currency from balance_transactions "
        "where currency = {{ var('currency') | literal }}",
    )

    result = project.run(select=["by_currency"], vars={"currency": "usd' or '1'='1"})

    assert result.ok, result.failures
    assert posted_sql(emulator)[-1].endswith("where currency = 'usd'' or ''1''=''1'")
    assert project.sql("select count(*) from sigma.by_currency") == [(0,)]


def test_a_var_that_would_break_out_of_its_quotes_is_refused(project, emulator):
    project.write_query(
        "by_currency",
        "select id from balance_transactions where currency = '{{ var('currency') }}'",
    )

    result = project.run(select=["by_currency"], vars={"currency": "usd' or '1'='1"})

    assert "holds a quote" in result.failures["by_currency"]
    assert posted_sql(emulator) == []
