"""`sigma-load saved-queries list|push|pull|delete` against the emulator's saved queries.

The lock file (`saved_queries.lock.json` in the project folder) is what lets a second push
update the saved query the first one created: Stripe's v1 API cannot list saved queries.
"""

from __future__ import annotations

import json

import requests

from tests.cli_helpers import (
    BALANCE_TRANSACTIONS_SQL,
    CUSTOMERS_BY_COUNTRY_SQL,
    TEST_KEY,
    CliProject,
    one_line_error,
)

SAVED_QUERIES = "/v1/sigma/saved_queries"
PLAIN_SQL = (
    "select address_country as country, count(*) as customers\n"
    "from customers\n"
    "group by address_country"
)


def _lock(cli: CliProject) -> dict:
    return json.loads((cli.project_dir / "saved_queries.lock.json").read_text())["saved_queries"]


def _stripe(cli: CliProject, method: str, path: str, **form: str) -> dict:
    """A request to the emulator as the Dashboard (or a teammate) would make it."""
    response = requests.request(
        method, f"{cli.emulator.url}{path}", data=form or None, auth=(TEST_KEY, "")
    )
    assert response.status_code == 200, response.text
    return response.json()


def _requests_to(cli: CliProject, method: str, path_prefix: str) -> list:
    return [r for r in cli.emulator.requests if r.method == method and r.path == path_prefix]


# --- push ------------------------------------------------------------------------------------


def test_push_creates_a_saved_query_and_records_its_id_in_the_lock_file(cli):
    result = cli.invoke("saved-queries", "push")

    assert result.exit_code == 0, result.output
    saved_id = _lock(cli)["customers_by_country"]["id"]
    assert saved_id.startswith("qfl_") and saved_id in result.stdout
    saved = _stripe(cli, "GET", f"{SAVED_QUERIES}/{saved_id}")
    assert saved["sql"] == PLAIN_SQL
    assert saved["name"] == "customers_by_country"


def test_push_twice_updates_the_saved_query_instead_of_creating_another(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    saved_id = _lock(cli)["customers_by_country"]["id"]
    cli.write_query(
        "customers_by_country", CUSTOMERS_BY_COUNTRY_SQL.replace("count(*)", "count(1)")
    )

    result = cli.invoke("saved-queries", "push")

    assert result.exit_code == 0 and "updated" in result.stdout
    assert len(_requests_to(cli, "POST", SAVED_QUERIES)) == 1
    assert len(_requests_to(cli, "POST", f"{SAVED_QUERIES}/{saved_id}")) == 1
    assert _lock(cli)["customers_by_country"]["id"] == saved_id
    assert "count(1)" in _stripe(cli, "GET", f"{SAVED_QUERIES}/{saved_id}")["sql"]


def test_push_leaves_the_sql_file_itself_untouched(cli):
    before = (cli.project_dir / "customers_by_country.sql").read_text()

    assert cli.invoke("saved-queries", "push").exit_code == 0

    assert (cli.project_dir / "customers_by_country.sql").read_text() == before


def test_push_skips_templated_files(cli):
    cli.write_query("balance_transactions", BALANCE_TRANSACTIONS_SQL)

    result = cli.invoke("saved-queries", "push")

    assert result.exit_code == 0
    assert "templated" in result.stdout
    assert set(_lock(cli)) == {"customers_by_country"}
    assert len(_requests_to(cli, "POST", SAVED_QUERIES)) == 1


def test_push_creates_the_saved_query_again_when_it_was_deleted_in_stripe(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    old_id = _lock(cli)["customers_by_country"]["id"]
    _stripe(cli, "DELETE", f"{SAVED_QUERIES}/{old_id}")

    result = cli.invoke("saved-queries", "push")

    assert result.exit_code == 0
    new_id = _lock(cli)["customers_by_country"]["id"]
    assert new_id != old_id and f"{old_id} was no longer in Stripe" in result.stdout


def test_push_keeps_a_name_given_in_the_dashboard(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    saved_id = _lock(cli)["customers_by_country"]["id"]
    _stripe(cli, "POST", f"{SAVED_QUERIES}/{saved_id}", name="Customers per country")

    assert cli.invoke("saved-queries", "push").exit_code == 0

    assert _stripe(cli, "GET", f"{SAVED_QUERIES}/{saved_id}")["name"] == "Customers per country"


def test_push_without_an_api_key_exits_2_naming_the_setting(cli):
    result = cli.invoke("saved-queries", "push", env={"SOURCES__SIGMA__API_KEY": None})

    assert result.exit_code == 2
    assert "sources.sigma.api_key is not set" in one_line_error(result)


def test_push_with_a_key_stripe_refuses_exits_1_without_showing_the_key(cli):
    bad_key = "sk_live_not_for_the_emulator_123"
    result = cli.invoke("saved-queries", "push", env={"SOURCES__SIGMA__API_KEY": bad_key})

    assert result.exit_code == 1
    assert result.stderr.startswith("FAILED customers_by_country: ")
    assert bad_key not in result.output


# --- list ------------------------------------------------------------------------------------


def test_list_compares_each_recorded_saved_query_with_its_file(cli):
    cli.write_query("second", "select 2 as two")
    cli.write_query("third", "select 3 as three")
    assert cli.invoke("saved-queries", "push").exit_code == 0
    lock = _lock(cli)
    cli.write_query("second", "select 22 as two")
    _stripe(cli, "POST", f"{SAVED_QUERIES}/{lock['third']['id']}", sql="select 33 as three")

    listed = {entry["query"]: entry["action"] for entry in cli.json("saved-queries", "list")}

    assert listed == {
        "customers_by_country": "in sync",
        "second": "edited locally",
        "third": "edited in Stripe",
    }


def test_list_says_when_a_recorded_saved_query_is_gone(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    _stripe(cli, "DELETE", f"{SAVED_QUERIES}/{_lock(cli)['customers_by_country']['id']}")

    result = cli.invoke("saved-queries", "list")

    assert result.exit_code == 0 and "missing in Stripe" in result.stdout


def test_list_without_a_lock_file_shows_none(cli):
    result = cli.invoke("saved-queries", "list")

    assert result.exit_code == 0
    assert "saved_queries.lock.json: none" in result.stdout
    assert cli.emulator.requests == []


# --- pull ------------------------------------------------------------------------------------


def test_pull_writes_the_sql_edited_in_stripe_and_keeps_the_config_block(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    saved_id = _lock(cli)["customers_by_country"]["id"]
    _stripe(cli, "POST", f"{SAVED_QUERIES}/{saved_id}", sql="select 1 as customers")

    result = cli.invoke("saved-queries", "pull")

    assert result.exit_code == 0 and "written" in result.stdout
    assert (cli.project_dir / "customers_by_country.sql").read_text() == (
        "{{ config(write_disposition='replace', tags=['customers']) }}\nselect 1 as customers\n"
    )
    assert cli.json("saved-queries", "list")[0]["action"] == "in sync"


def test_pull_refuses_to_overwrite_a_file_edited_since_the_last_push(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    saved_id = _lock(cli)["customers_by_country"]["id"]
    _stripe(cli, "POST", f"{SAVED_QUERIES}/{saved_id}", sql="select 1 as customers")
    edited = cli.write_query("customers_by_country", "select 2 as customers")

    refused = cli.invoke("saved-queries", "pull")
    forced = cli.invoke("saved-queries", "pull", "--force")

    assert refused.exit_code == 1
    assert (
        refused.stderr.startswith("FAILED customers_by_country: ") and "--force" in refused.stderr
    )
    assert forced.exit_code == 0
    assert edited.read_text() == "select 1 as customers\n"


def test_pull_by_id_adds_a_dashboard_saved_query_as_a_new_file(cli):
    saved = _stripe(
        cli, "POST", SAVED_QUERIES, sql="select currency from charges", name="Charges: currencies"
    )

    result = cli.invoke("saved-queries", "pull", saved["id"])

    assert result.exit_code == 0, result.output
    assert (cli.project_dir / "charges_currencies.sql").read_text() == (
        "select currency from charges\n"
    )
    assert _lock(cli)["charges_currencies"]["id"] == saved["id"]


def test_pull_by_id_with_name_picks_the_file_name(cli):
    saved = _stripe(cli, "POST", SAVED_QUERIES, sql="select currency from charges")

    assert cli.invoke("saved-queries", "pull", saved["id"], "--name", "currencies").exit_code == 0

    assert (cli.project_dir / "currencies.sql").is_file()


def test_pull_by_id_into_an_empty_project_folder_works(cli):
    (cli.project_dir / "customers_by_country.sql").unlink()
    saved = _stripe(cli, "POST", SAVED_QUERIES, sql="select 1 as one", name="one")

    assert cli.invoke("saved-queries", "pull", saved["id"]).exit_code == 0

    assert (cli.project_dir / "one.sql").read_text() == "select 1 as one\n"


def test_pull_of_an_unknown_id_exits_1(cli):
    result = cli.invoke("saved-queries", "pull", "qfl_doesnotexist")

    assert result.exit_code == 1
    assert "qfl_doesnotexist" in result.stderr


# --- delete ----------------------------------------------------------------------------------


def test_delete_asks_first_and_does_nothing_without_a_yes(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    saved_id = _lock(cli)["customers_by_country"]["id"]

    result = cli.invoke("saved-queries", "delete", "--select", "customers_by_country", input="n\n")

    assert result.exit_code == 1
    assert f"Delete 1 saved query from Stripe: customers_by_country ({saved_id})?" in (
        result.stdout
    )
    assert "nothing deleted" in result.stderr
    assert _requests_to(cli, "DELETE", f"{SAVED_QUERIES}/{saved_id}") == []
    assert "customers_by_country" in _lock(cli)


def test_delete_after_yes_deletes_in_stripe_and_forgets_the_id(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    saved_id = _lock(cli)["customers_by_country"]["id"]

    result = cli.invoke("saved-queries", "delete", "--select", "customers_by_country", input="y\n")

    assert result.exit_code == 0 and "deleted" in result.stdout
    assert len(_requests_to(cli, "DELETE", f"{SAVED_QUERIES}/{saved_id}")) == 1
    assert _lock(cli) == {}
    assert (cli.project_dir / "customers_by_country.sql").is_file()


def test_delete_with_yes_does_not_ask(cli):
    saved = _stripe(cli, "POST", SAVED_QUERIES, sql="select 1 as one")

    result = cli.invoke("saved-queries", "delete", saved["id"], "--yes")

    assert result.exit_code == 0
    assert "Delete" not in result.stdout.splitlines()[0]
    assert len(_requests_to(cli, "DELETE", f"{SAVED_QUERIES}/{saved['id']}")) == 1


def test_delete_without_a_target_is_a_usage_error(cli):
    result = cli.invoke("saved-queries", "delete", "--yes")

    assert result.exit_code == 2
    assert "say what to delete" in one_line_error(result)


# --- running from a saved query -------------------------------------------------------------


def test_a_file_with_config_saved_query_runs_from_the_saved_query(cli):
    assert cli.invoke("saved-queries", "push").exit_code == 0
    saved_id = _lock(cli)["customers_by_country"]["id"]
    cli.write_query("customers_saved", f"{{{{ config(saved_query='{saved_id}') }}}}\n")

    result = cli.invoke("run", "--select", "customers_saved")

    assert result.exit_code == 0, result.output
    created = _requests_to(cli, "POST", "/v1/sigma/query_runs")
    assert [request.form for request in created] == [{"from_saved_query": saved_id}]
    assert cli.sql("select count(*) from sigma.customers_saved")[0][0] > 0
