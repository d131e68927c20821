"""`sigma-load compile` prints exactly the SQL the next `run` sends, without calling Stripe."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sigma_source.project import trino_literal
from tests.cli_helpers import BALANCE_TRANSACTIONS_SQL, CliProject, one_line_error
from tests.loader_helpers import posted_sql

CHUNKED_CHARGES_SQL = """
{{ config(primary_key='id', cursor='created', initial_value='2024-06-01', backfill_chunk='300d') }}
select id, amount, created from charges
where created >= {{ cursor_start }} and created < {{ cursor_end }}
"""


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    return CliProject(tmp_path, emulator)


def _with_end_as_placeholder(sql: str, cursor_end: str) -> str:
    """The SQL with its `cursor_end` literal (the clock reading "now") made comparable."""
    end = datetime.fromisoformat(cursor_end.replace("Z", "+00:00"))
    literal = trino_literal(end)
    assert literal in sql, (literal, sql)
    return sql.replace(literal, "<cursor_end>")


def _sent_by_next_run(cli: CliProject) -> list[str]:
    """Run once and return the SQL the emulator received, with each run's end made comparable."""
    before = len(posted_sql(cli.emulator))
    assert cli.invoke("run").exit_code == 0
    runs = [run for result in cli.run_results()["results"] for run in result["runs"]]
    sent = posted_sql(cli.emulator)[before:]
    ends = {run["query_run_id"]: run["window"]["end"] for run in runs}
    ordered = [ends[run["query_run_id"]] for run in runs]
    return [_with_end_as_placeholder(sql, end) for sql, end in zip(sent, ordered, strict=True)]


def test_compile_prints_the_sql_the_first_run_then_sends(cli):
    cli.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    compiled = cli.json("compile")
    sent = _sent_by_next_run(cli)

    assert [_with_end_as_placeholder(r["sql"], r["cursor_end"]) for r in compiled] == sent
    assert compiled[0]["cursor_start"] == "2024-01-01T00:00:00.000Z"


def test_compile_after_a_run_starts_the_window_at_the_loaded_cursor_minus_lag(cli):
    cli.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    assert cli.invoke("run").exit_code == 0
    newest = cli.sql("select max(created) from sigma.balance_transactions")[0][0]

    compiled = cli.json("compile")
    sent = _sent_by_next_run(cli)

    assert [_with_end_as_placeholder(r["sql"], r["cursor_end"]) for r in compiled] == sent
    assert f"created >= {trino_literal(newest - timedelta(hours=3))}" in compiled[0]["sql"]


def test_compile_splits_a_backfill_into_the_windows_run_sends(cli):
    cli.write_query("charges", CHUNKED_CHARGES_SQL)

    compiled = cli.json("compile")
    sent = _sent_by_next_run(cli)

    assert len(compiled) > 1 and [r["window"] for r in compiled] == list(range(1, len(sent) + 1))
    assert [_with_end_as_placeholder(r["sql"], r["cursor_end"]) for r in compiled] == sent


def test_compile_never_calls_stripe(cli):
    cli.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    result = cli.invoke("compile")

    assert result.exit_code == 0
    assert cli.emulator.requests == []


def test_compile_full_refresh_ignores_the_loaded_cursor(cli):
    cli.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)
    assert cli.invoke("run").exit_code == 0

    compiled = cli.json("compile", "--full-refresh")

    assert compiled[0]["cursor_start"] == "2024-01-01T00:00:00.000Z"


def test_compile_text_puts_each_runs_sql_under_a_comment_naming_query_and_window(cli):
    cli.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    result = cli.invoke("compile")

    lines = result.stdout.splitlines()
    assert lines[0].startswith("-- balance_transactions: 2024-01-01 00:00:00.000 <= created < ")
    assert lines[1] == "select id, amount, fee, net, currency, type, created"
    assert "where created >= timestamp '2024-01-01 00:00:00.000' and created < timestamp" in (
        result.stdout
    )


def test_compile_shows_a_saved_query_file_by_its_id_instead_of_sql(cli):
    cli.write_query("monthly", "{{ config(saved_query='qfl_123abc') }}\n")

    compiled = cli.json("compile")

    assert compiled == [
        {
            "query": "monthly",
            "window": 1,
            "windows": 1,
            "cursor_start": None,
            "cursor_end": None,
            "saved_query": "qfl_123abc",
            "sql": None,
        }
    ]


def test_compile_fills_in_vars(cli):
    cli.write_query(
        "by_currency",
        "select count(*) as n from charges where currency = {{ var('currency') | literal }}",
    )

    compiled = cli.json("compile", "--var", "currency=eur")

    assert compiled[0]["sql"] == "select count(*) as n from charges where currency = 'eur'"


def test_compile_of_a_template_error_exits_2_naming_the_file(cli):
    cli.write_query("broken", "select {{ nope }} from charges")

    result = cli.invoke("compile")

    assert result.exit_code == 2
    assert "broken.sql" in one_line_error(result)
