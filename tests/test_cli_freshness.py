"""`sigma-load freshness`: dbt-style warn_after / error_after thresholds, and the exit code a
scheduler alerts on. The emulator's data ends on 2024-12-31, so its newest cursor value is
always well over a day old: thresholds below and above that age decide the outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sigma_source.errors import ConfigError
from sigma_source.project import Freshness, load_query
from tests.cli_helpers import BALANCE_TRANSACTIONS_SQL, CUSTOMERS_BY_COUNTRY_SQL, CliProject

NEVER = "36500d"  # a hundred years: a threshold the emulator's data never reaches


def _balance_transactions(freshness: str) -> str:
    return BALANCE_TRANSACTIONS_SQL.replace(
        "tags=['finance']", f"tags=['finance'], freshness={freshness}"
    )


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    return CliProject(tmp_path, emulator)


# --- the config key --------------------------------------------------------------------------


def test_freshness_config_reads_warn_after_and_error_after(tmp_path):
    path = tmp_path / "t.sql"
    path.write_text(
        "{{ config(freshness={'warn_after': '6h', 'error_after': '1d'}) }}\nselect 1 as x"
    )

    config = load_query(path).config

    assert config.freshness == Freshness(timedelta(hours=6), timedelta(days=1))


def test_freshness_config_may_set_one_threshold_only(tmp_path):
    path = tmp_path / "t.sql"
    path.write_text("{{ config(freshness={'error_after': '2d'}) }}\nselect 1 as x")

    assert load_query(path).config.freshness == Freshness(None, timedelta(days=2))


BAD_FRESHNESS = [
    ("'6h'", "expected a dict such as {'warn_after': '6h', 'error_after': '1d'}"),
    ("{}", "expected a dict such as"),
    ("{'warn': '6h'}", "unknown key 'warn'; use warn_after and error_after"),
    ("{'warn_after': '6x'}", "warn_after: not a duration"),
    ("{'error_after': 0}", "error_after: must be longer than zero"),
    ("{'warn_after': '2d', 'error_after': '1d'}", "warn_after must be shorter than error_after"),
]


@pytest.mark.parametrize(("value", "message"), BAD_FRESHNESS)
def test_freshness_config_refuses_a_bad_value_naming_it(tmp_path, value, message):
    path = tmp_path / "t.sql"
    path.write_text(f"{{{{ config(freshness={value}) }}}}\nselect 1 as x")

    with pytest.raises(ConfigError) as raised:
        load_query(path)

    assert f"t.sql: config(freshness={value}): " in str(raised.value)
    assert message in str(raised.value)


# --- the command -----------------------------------------------------------------------------


def test_freshness_within_thresholds_passes_and_exits_0(cli):
    cli.write_query("balance_transactions", _balance_transactions(f"{{'warn_after': '{NEVER}'}}"))
    assert cli.invoke("run").exit_code == 0

    result = cli.invoke("freshness")

    assert result.exit_code == 0, result.output
    assert cli.json("freshness")[0]["status"] == "pass"


def test_freshness_past_warn_after_warns_and_still_exits_0(cli):
    thresholds = f"{{'warn_after': '1d', 'error_after': '{NEVER}'}}"
    cli.write_query("balance_transactions", _balance_transactions(thresholds))
    assert cli.invoke("run").exit_code == 0

    result = cli.invoke("freshness")

    assert result.exit_code == 0
    assert cli.json("freshness")[0]["status"] == "warn"
    assert "warn" in result.stdout and result.stderr == ""


def test_freshness_past_error_after_exits_1_with_a_stale_line(cli):
    cli.write_query("balance_transactions", _balance_transactions("{'error_after': '1d'}"))
    assert cli.invoke("run").exit_code == 0
    newest = cli.sql("select max(created) from sigma.balance_transactions")[0][0]

    result = cli.invoke("freshness")

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"STALE balance_transactions: newest cursor value {newest:%Y-%m-%d %H:%M:%S} UTC is "
    )
    assert result.stderr.rstrip().endswith("old, over error_after 1d")
    assert len(result.stderr.strip().splitlines()) == 1


def test_freshness_measures_age_from_the_newest_cursor_value(cli):
    cli.write_query("balance_transactions", _balance_transactions("{'error_after': '1d'}"))
    assert cli.invoke("run").exit_code == 0
    newest = cli.sql("select max(created) from sigma.balance_transactions")[0][0]

    checked = cli.json("freshness", exit_code=1)[0]

    assert checked["measured"] == "cursor"
    assert checked["newest_cursor"].startswith(f"{newest:%Y-%m-%dT%H:%M:%S}")
    assert checked["age_seconds"] > timedelta(days=1).total_seconds()


def test_freshness_of_a_query_without_cursor_measures_its_last_load(cli):
    sql = CUSTOMERS_BY_COUNTRY_SQL.replace(
        "tags=['customers']", "tags=['customers'], freshness={'error_after': '1h'}"
    )
    cli.write_query("customers_by_country", sql)
    assert cli.invoke("run").exit_code == 0

    result = cli.invoke("freshness")

    assert result.exit_code == 0
    checked = cli.json("freshness")[0]
    assert (checked["measured"], checked["status"]) == ("load", "pass")
    assert checked["age_seconds"] < 3600


def test_freshness_of_a_table_never_loaded_with_thresholds_is_an_error(cli):
    cli.write_query("balance_transactions", _balance_transactions("{'warn_after': '6h'}"))

    result = cli.invoke("freshness")

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "STALE balance_transactions: never loaded, but freshness thresholds are set"
    )


def test_freshness_without_thresholds_reports_but_never_fails(cli):
    cli.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    result = cli.invoke("freshness")

    assert result.exit_code == 0
    assert cli.json("freshness")[0]["status"] == "unchecked"


def test_freshness_checks_only_the_selected_tables(cli):
    cli.write_query("balance_transactions", _balance_transactions("{'error_after': '1d'}"))
    cli.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    assert cli.invoke("run").exit_code == 0

    result = cli.invoke("freshness", "--select", "customers_by_country")

    assert result.exit_code == 0
    assert "balance_transactions" not in result.stdout
