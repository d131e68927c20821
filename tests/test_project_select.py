"""Choosing the queries of a run: names, globs, tags, exclusions, disabled queries."""

from __future__ import annotations

import pytest

from sigma_source.errors import ConfigError
from sigma_source.project import load_project, select_queries

PROJECT = {
    "balance_transactions": "tags=['finance']",
    "charges": "tags=['payments']",
    "charges_daily": "tags=['payments', 'daily']",
    "daily_revenue": "tags=['finance', 'daily']",
    "old_refunds": "tags=['finance'], enabled=false",
}


@pytest.fixture
def queries(tmp_path):
    for name, config in PROJECT.items():
        (tmp_path / f"{name}.sql").write_text(f"{{{{ config({config}) }}}}\nselect 1 as id\n")
    return load_project(tmp_path)


def names(selected) -> list[str]:
    return [query.name for query in selected]


def test_no_selector_selects_every_enabled_query(queries):
    assert names(select_queries(queries)) == [
        "balance_transactions",
        "charges",
        "charges_daily",
        "daily_revenue",
    ]


def test_none_means_no_selector(queries):
    assert names(select_queries(queries, None, None)) == names(select_queries(queries))


def test_a_name_selects_that_query(queries):
    assert names(select_queries(queries, ["charges"])) == ["charges"]


def test_several_selectors_add_up_whether_listed_or_comma_or_space_separated(queries):
    expected = ["balance_transactions", "charges"]

    assert names(select_queries(queries, ["charges", "balance_transactions"])) == expected
    assert names(select_queries(queries, ["charges,balance_transactions"])) == expected
    assert names(select_queries(queries, ["charges balance_transactions"])) == expected
    assert names(select_queries(queries, "charges, balance_transactions")) == expected


def test_selected_queries_keep_project_order(queries):
    assert names(select_queries(queries, ["daily_revenue,charges"])) == [
        "charges",
        "daily_revenue",
    ]


def test_a_glob_selects_matching_names(queries):
    assert names(select_queries(queries, ["charges*"])) == ["charges", "charges_daily"]


def test_a_tag_selects_the_queries_carrying_it(queries):
    assert names(select_queries(queries, ["tag:daily"])) == ["charges_daily", "daily_revenue"]


def test_a_tag_may_be_a_glob(queries):
    assert names(select_queries(queries, ["tag:pay*"])) == ["charges", "charges_daily"]


def test_exclude_removes_queries_by_name_or_tag(queries):
    assert names(select_queries(queries, exclude=["tag:finance"])) == ["charges", "charges_daily"]
    assert names(select_queries(queries, ["tag:payments"], ["charges_daily"])) == ["charges"]


def test_a_disabled_query_is_skipped_when_selected_by_tag_or_glob(queries):
    assert "old_refunds" not in names(select_queries(queries, ["tag:finance"]))
    assert "old_refunds" not in names(select_queries(queries, ["old_*"]))


def test_a_disabled_query_runs_when_selected_by_its_exact_name(queries):
    assert names(select_queries(queries, ["old_refunds"])) == ["old_refunds"]


def test_a_selector_that_matches_nothing_lists_names_and_tags_and_suggests_one(queries):
    with pytest.raises(ConfigError) as error:
        select_queries(queries, ["chrges"])

    message = str(error.value)
    assert message.startswith("select 'chrges' matches no query; did you mean 'charges'?")
    assert "queries: balance_transactions, charges, charges_daily, daily_revenue, old_refunds" in (
        message
    )
    assert "tags: tag:daily, tag:finance, tag:payments" in message


def test_an_unknown_tag_is_an_error(queries):
    with pytest.raises(ConfigError, match="select 'tag:marketing' matches no query"):
        select_queries(queries, ["tag:marketing"])


def test_an_exclude_that_matches_nothing_is_an_error_too(queries):
    with pytest.raises(ConfigError, match="exclude 'charge' matches no query; did you mean"):
        select_queries(queries, exclude=["charge"])


@pytest.mark.parametrize("selector", ["path:finance", "tag:", "source:x:y"])
def test_an_unknown_selector_method_is_an_error(queries, selector):
    with pytest.raises(ConfigError, match=f"select '{selector}': not a selector"):
        select_queries(queries, [selector])
