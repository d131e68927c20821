"""Rendering a query's SQL for one run: windows, literals, vars, the sandbox, errors."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from sigma_source.errors import ConfigError
from sigma_source.project import Window, check_renders, load_query, render_sql, trino_literal

UTC = timezone.utc
INCREMENTAL = """{{ config(primary_key='id', cursor='created', lag='3h') }}
select id, created
from charges
{% if is_incremental() %}
where created >= {{ cursor_start }} and created < {{ cursor_end }}
{% endif %}
"""
JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2024, 2, 1, 12, 30, 15, 250000, tzinfo=UTC)


@pytest.fixture
def query_from(tmp_path):
    """Load `charges.sql` written with the given text."""

    def load(text: str):
        path = tmp_path / "charges.sql"
        path.write_text(text, encoding="utf-8")
        return load_query(path)

    return load


def test_a_window_with_a_start_renders_the_incremental_branch_with_literals(query_from):
    sql = render_sql(query_from(INCREMENTAL), window=Window(JAN_1, FEB_1))

    assert sql == (
        "select id, created\nfrom charges\n"
        "where created >= timestamp '2024-01-01 00:00:00.000' "
        "and created < timestamp '2024-02-01 12:30:15.250'"
    )


def test_a_window_without_a_start_leaves_the_incremental_branch_out(query_from):
    sql = render_sql(query_from(INCREMENTAL), window=Window(None, FEB_1))

    assert sql == "select id, created\nfrom charges"


def test_no_window_renders_as_not_incremental(query_from):
    assert render_sql(query_from(INCREMENTAL), window=None) == "select id, created\nfrom charges"


def test_the_rendered_sql_starts_with_the_sql_not_the_config_lines(query_from):
    query = query_from("\n{{ config(\n  primary_key='id',\n) }}\n\nselect 1 as id\n\n")

    assert render_sql(query, window=None) == "select 1 as id"


def test_cursor_end_is_defined_on_a_run_without_a_start(query_from):
    query = query_from("select 1 where now() < {{ cursor_end }}")

    sql = render_sql(query, window=Window(None, FEB_1))

    assert sql == "select 1 where now() < timestamp '2024-02-01 12:30:15.250'"


def test_cursor_start_outside_is_incremental_fails_on_a_first_run_naming_file_and_line(
    query_from,
):
    query = query_from(
        "{{ config(cursor='created') }}\nselect *\nwhere created >= {{ cursor_start }}\n"
    )

    with pytest.raises(ConfigError) as error:
        render_sql(query, window=Window(None, FEB_1))

    message = str(error.value)
    assert message.startswith(f"{query.path}:3: cursor_start is undefined")  # line in the file
    assert "{% if is_incremental() %}" in message


def test_cursor_start_can_be_tested_with_is_defined(query_from):
    query = query_from(
        "{{ config(cursor='created') }}"
        "select 1{% if cursor_start is defined %} -- since {{ cursor_start }}{% endif %}"
    )

    assert render_sql(query, window=Window(None, FEB_1)) == "select 1"
    assert render_sql(query, window=Window(JAN_1, FEB_1)).endswith("2024-01-01 00:00:00.000'")


def test_is_incremental_without_parentheses_is_an_error_not_always_true(query_from):
    query = query_from(
        "{{ config(cursor='created') }}select 1\n"
        "{% if is_incremental %}where created >= {{ cursor_start }}{% endif %}"
    )

    with pytest.raises(ConfigError, match="with parentheses") as error:
        render_sql(query, window=Window(None, FEB_1))

    assert str(error.value).startswith(f"{query.path}:2: ")


def test_an_undefined_name_fails_naming_file_line_and_the_names_a_template_knows(query_from):
    query = query_from("select 1\nfrom {{ table_name }}")

    with pytest.raises(ConfigError) as error:
        render_sql(query, window=None)

    assert str(error.value).startswith(f"{query.path}:2: 'table_name' is undefined")
    assert "is_incremental(), cursor_start, cursor_end, var(), config()" in str(error.value)


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ var.__globals__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
    ],
)
def test_a_sandbox_escape_is_refused_naming_the_file(query_from, escape):
    query = query_from(f"select 1\n{escape}")

    with pytest.raises(ConfigError) as error:
        render_sql(query, window=None)

    assert str(error.value).startswith(f"{query.path}:2: ")
    assert "refused by the template sandbox: access to attribute" in str(error.value)


def test_lists_cannot_be_changed_in_a_template(query_from):
    query = query_from("{% set ids = [1] %}{{ ids.append(2) }}select {{ ids | literal }}")

    with pytest.raises(ConfigError, match="sandbox: access to attribute 'append'"):
        render_sql(query, window=None)


def test_a_value_without_a_literal_is_an_error_naming_its_type(query_from):
    query = query_from("select {{ {'a': 1} }}")

    with pytest.raises(ConfigError, match="a dict value has no SQL literal"):
        render_sql(query, window=None)


def test_a_python_error_in_a_template_names_the_file_and_line(query_from):
    query = query_from("select\n{{ 1 // 0 }}")

    with pytest.raises(ConfigError) as error:
        render_sql(query, window=None)

    assert (
        str(error.value) == f"{query.path}:2: ZeroDivisionError: integer division or modulo by zero"
    )


def test_a_template_that_renders_nothing_is_an_error(query_from):
    query = query_from(
        "{{ config(cursor='created') }}"
        "{% if is_incremental() %}select 1 where created >= {{ cursor_start }}{% endif %}"
    )

    with pytest.raises(ConfigError, match="renders to empty SQL"):
        render_sql(query, window=Window(None, FEB_1))


def test_rendering_is_deterministic_and_random_text_is_unavailable(query_from):
    query = query_from(INCREMENTAL)
    window = Window(JAN_1, FEB_1)

    assert render_sql(query, window=window) == render_sql(query, window=window)
    with pytest.raises(ConfigError, match="'lipsum' is undefined"):
        render_sql(query_from("select '{{ lipsum() }}'"), window=None)


def test_strings_print_as_written_so_loops_over_column_names_work(query_from):
    query = query_from(
        "{% set columns = ['id', 'amount'] %}"
        "select {% for column in columns %}{{ column }}{% if not loop.last %}, {% endif %}"
        "{% endfor %} from charges"
    )

    assert render_sql(query, window=None) == "select id, amount from charges"


@pytest.mark.parametrize(
    ("expression", "printed"),
    [
        ("1 + 1", "2"),
        ("true", "true"),
        ("none", "null"),
        ("2.5", "2.5"),
        ("cursor_end.date()", "date '2024-02-01'"),
        ('"it\'s" | literal', "'it''s'"),
        ("['usd', 'eur'] | literal", "('usd', 'eur')"),
    ],
)
def test_values_other_than_strings_print_as_trino_literals(query_from, expression, printed):
    query = query_from(f"select {{{{ {expression} }}}}")

    assert render_sql(query, window=Window(None, FEB_1)) == f"select {printed}"


def test_a_list_printed_without_literal_is_an_error(query_from):
    query = query_from("select 1 where currency in {{ ['usd'] }}")

    with pytest.raises(ConfigError, match="cannot print a list in SQL; use \\| literal"):
        render_sql(query, window=None)


# --- var() ------------------------------------------------------------------------------------


def test_var_returns_the_value_passed_in_vars(query_from):
    query = query_from("select * from charges limit {{ var('limit') }}")

    assert render_sql(query, window=None, vars={"limit": 10}) == "select * from charges limit 10"


def test_var_falls_back_to_its_default(query_from):
    query = query_from("select * from charges limit {{ var('limit', 5) }}")

    assert render_sql(query, window=None) == "select * from charges limit 5"
    assert render_sql(query, window=None, vars={"limit": 7}).endswith("limit 7")


def test_var_default_may_be_given_by_keyword(query_from):
    query = query_from("select * from charges limit {{ var('limit', default=3) }}")

    assert render_sql(query, window=None).endswith("limit 3")


def test_a_missing_var_without_default_names_the_file_line_and_var(query_from):
    query = query_from("select *\nfrom charges\nwhere currency = {{ var('currency') }}")

    with pytest.raises(ConfigError) as error:
        render_sql(query, window=None, vars={"other": 1})

    assert str(error.value).startswith(f"{query.path}:3: var('currency') is not set")


def test_a_string_var_prints_as_written_inside_the_quotes_the_author_wrote(query_from):
    query = query_from("select * from charges where currency = '{{ var('currency') }}'")

    sql = render_sql(query, window=None, vars={"currency": "usd"})

    assert sql == "select * from charges where currency = 'usd'"


@pytest.mark.parametrize(
    "value", ["x' or '1'='1", 'a"b', "usd; drop table x", "usd -- rest", "a\nb", "a/*b", "a\\b"]
)
def test_a_string_var_that_could_break_out_of_quotes_is_refused(query_from, value):
    query = query_from("select * from charges where currency = '{{ var('currency') }}'")

    with pytest.raises(ConfigError) as error:
        render_sql(query, window=None, vars={"currency": value})

    assert str(error.value).startswith(f"{query.path}:1: var('currency') holds a quote")
    assert "{{ var('currency') | literal }}" in str(error.value)


def test_literal_prints_any_string_var_as_a_quoted_escaped_literal(query_from):
    query = query_from("select * from customers where name = {{ var('name') | literal }}")

    sql = render_sql(query, window=None, vars={"name": "O'Brien; --"})

    assert sql == "select * from customers where name = 'O''Brien; --'"


def test_a_var_can_drive_control_flow(query_from):
    query = query_from(
        "select id from charges{% if var('only_paid', false) %} where paid{% endif %}"
    )

    assert render_sql(query, window=None) == "select id from charges"
    assert render_sql(query, window=None, vars={"only_paid": True}).endswith(" where paid")


def test_a_list_var_prints_as_an_in_list_with_literal(query_from):
    query = query_from("select id from charges where currency in {{ var('currencies') | literal }}")

    sql = render_sql(query, window=None, vars={"currencies": ["usd", "eur"]})

    assert sql.endswith("where currency in ('usd', 'eur')")


def test_vars_passed_in_are_not_changed(query_from):
    values = {"limit": 10}

    render_sql(query_from("select 1 limit {{ var('limit') }}"), window=None, vars=values)

    assert values == {"limit": 10}


# --- trino_literal ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (datetime(2024, 1, 1, tzinfo=UTC), "timestamp '2024-01-01 00:00:00.000'"),
        (datetime(2024, 1, 1, 2, 3, 4, 5678), "timestamp '2024-01-01 02:03:04.005'"),
        (
            datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            "timestamp '2023-12-31 23:00:00.000'",
        ),
        (datetime(2024, 1, 1, 0, 0, 0, 999999, tzinfo=UTC), "timestamp '2024-01-01 00:00:00.999'"),
        (date(2024, 2, 29), "date '2024-02-29'"),
        ("usd", "'usd'"),
        ("it's", "'it''s'"),
        ("", "''"),
        (42, "42"),
        (-7, "-7"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (0.25, "0.25"),
        (Decimal("12.50"), "12.50"),
        (Decimal("1E+3"), "1000"),
        (["a", 1, None], "('a', 1, null)"),
        (("usd",), "('usd')"),
    ],
)
def test_trino_literal_builds_literals_from_typed_values(value, literal):
    assert trino_literal(value) == literal


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"a": 1}, TypeError),
        (object(), TypeError),
        (timedelta(hours=1), TypeError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ([], ValueError),
        ([[1]], ValueError),
    ],
)
def test_trino_literal_refuses_values_without_a_literal(value, error):
    with pytest.raises(error):
        trino_literal(value)


# --- every branch a run can take, checked before the first run -------------------------------

TYPO_IN_INCREMENTAL_BRANCH = """{{ config(primary_key='id', cursor='created') }}
select id, created
from charges
{% if is_incremental() %}
where created >= {{ cursor_start }} and created < {{ cursor_edn }}
{% endif %}
"""


def test_a_mistake_in_the_branch_the_next_run_skips_is_found_before_it(query_from):
    query = query_from(TYPO_IN_INCREMENTAL_BRANCH)
    render_sql(query, window=Window(None, FEB_1))  # the first run alone would not notice

    with pytest.raises(ConfigError, match=r"charges\.sql:5: .*'cursor_edn' is undefined"):
        check_renders(query, now=FEB_1)


def test_the_whole_table_branch_of_a_query_with_an_initial_value_is_not_checked(query_from):
    # Every run of it is incremental, so the other branch never renders.
    query = query_from(
        "{{ config(cursor='created', initial_value='2024-01-01') }}\n"
        "select id, created from charges\n"
        "{% if is_incremental() %}where created >= {{ cursor_start }}"
        "{% else %}{{ never_rendered }}{% endif %}\n"
    )

    check_renders(query, now=FEB_1)


def test_a_query_without_a_cursor_is_checked_as_it_runs(query_from):
    query = query_from("select id from charges where amount > {{ var('min_amount') }}\n")

    check_renders(query, now=FEB_1, vars={"min_amount": 5})
    with pytest.raises(ConfigError, match="var\\('min_amount'\\) is not set"):
        check_renders(query, now=FEB_1)
