"""Bad settings, query files, templates, selectors and names: refused in one line, end to end.

A mistake a run can see before it starts (a setting, a query file, a selector) stops the
whole run with exit code 2 before anything is loaded. A mistake that shows only when a
query's SQL is rendered for this run's window fails that query alone (exit code 1) while
the others load. Every message names the culprit: the setting, the file and line, the name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sigma_source.errors import ConfigError
from tests.reliability_helpers import INCREMENTAL_SQL, CliProject

GOOD = "balance_transactions"


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url)
    project.write_query(GOOD, INCREMENTAL_SQL)
    return project


def _refused_before_loading(project: CliProject, **overrides) -> str:
    """Run; assert it is refused with a one-line ConfigError and nothing was loaded."""
    with pytest.raises(ConfigError) as error:
        project.run(**overrides)
    message = str(error.value)
    assert "\n" not in message
    assert not project.duckdb_path.exists() or not project.table_exists(GOOD)
    return message


# --- [sources.sigma] ---------------------------------------------------------------------------

SETTING_CASES = {
    "unknown key": ("SOURCES__SIGMA__POLL_TIMOUT", "60", ["poll_timout", "'poll_timeout'"]),
    "int that is a word": ("SOURCES__SIGMA__MAX_CONCURRENT_RUNS", "four", ["max_concurrent_runs"]),
    "int that is a fraction": ("SOURCES__SIGMA__MAX_ATTEMPTS", "2.5", ["max_attempts"]),
    "seconds that are a duration": ("SOURCES__SIGMA__POLL_TIMEOUT", "30m", ["poll_timeout"]),
    "seconds that are a word": ("SOURCES__SIGMA__BACKOFF_FACTOR", "soon", ["backoff_factor"]),
    "zero concurrent runs": ("SOURCES__SIGMA__MAX_CONCURRENT_RUNS", "0", ["max_concurrent_runs"]),
    "zero attempts": ("SOURCES__SIGMA__DOWNLOAD_ATTEMPTS", "0", ["download_attempts"]),
    "negative timeout": ("SOURCES__SIGMA__REQUEST_TIMEOUT", "-1", ["request_timeout"]),
    "poll interval above its maximum": ("SOURCES__SIGMA__POLL_INTERVAL", "99", ["poll_interval"]),
}


@pytest.mark.parametrize(
    ("variable", "value", "named"), SETTING_CASES.values(), ids=SETTING_CASES.keys()
)
def test_a_bad_setting_stops_the_run_naming_it(project, monkeypatch, variable, value, named):
    project.settings = {}  # the setting under test comes from the environment alone
    monkeypatch.setenv(variable, value)

    message = _refused_before_loading(project)

    for word in named:
        assert word in message


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("api_key", "sk_test_with a space", "api_key"),
        ("api_key", "sk_test_line\nbreak", "api_key"),
        ("api_base", "http://api.example.com", "api_base"),
        ("files_base", "ftp://files.example.com", "files_base"),
        ("project_dir", "no/such/folder", "project_dir"),
    ],
)
def test_a_bad_connection_setting_stops_the_run_naming_it(project, setting, value, named):
    message = _refused_before_loading(project, source_settings={setting: value})

    assert named in message
    assert "with a space" not in message and "break" not in message


def test_an_unknown_key_in_config_toml_fails_the_cli_with_exit_2_naming_the_file(project):
    dlt_folder = project.tmp_path / ".dlt"
    dlt_folder.mkdir()
    (dlt_folder / "config.toml").write_text("[sources.sigma]\nmax_concurent_runs = 2\n")

    done = project.cli("run")

    assert done.returncode == 2
    assert done.stderr.startswith("error: sources.sigma.max_concurent_runs")
    assert "config.toml" in done.stderr and "'max_concurrent_runs'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not project.duckdb_path.exists()


def test_a_missing_api_key_fails_the_cli_with_exit_2_saying_where_to_put_it(project):
    env = project.env()
    del env["SOURCES__SIGMA__API_KEY"]

    done = project.cli("run", env=env)

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: sources.sigma.api_key is not set: put it under [sources.sigma] in "
        ".dlt/secrets.toml or set SOURCES__SIGMA__API_KEY"
    )


def test_bigquery_credentials_given_in_part_fail_the_cli_naming_what_they_lack(project):
    # Refused while dlt resolves the credentials, before any request to Google.
    env = project.env()
    env["DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID"] = "analytics-prod"

    done = project.cli("run", "--destination", "bigquery", env=env)

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: destination.bigquery.credentials is set but has no private_key or "
        "client_email: add them to the credentials, or set "
        "DESTINATION__BIGQUERY__CREDENTIALS__PRIVATE_KEY and "
        "DESTINATION__BIGQUERY__CREDENTIALS__CLIENT_EMAIL"
    )


def test_a_mistyped_setting_fails_the_cli_with_exit_2_in_one_line(project):
    done = project.cli("run", env=project.env(SOURCES__SIGMA__POLL_TIMEOUT="half an hour"))

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: sources.sigma.poll_timeout: the value set is not a number (of seconds)"
    )


# --- query files: config() and names ----------------------------------------------------------

QUERY_FILE_CASES = {
    "unknown config key": (
        "{{ config(primary_kee='id') }}\nselect id from charges",
        ["bad.sql", "primary_kee", "did you mean 'primary_key'"],
    ),
    "config value of the wrong type": (
        "{{ config(tags=5) }}\nselect id from charges",
        ["bad.sql", "tags=5"],
    ),
    "boolean written as text": (
        "{{ config(enabled='yes') }}\nselect id from charges",
        ["bad.sql", "enabled='yes'"],
    ),
    "lag that is no duration": (
        "{{ config(primary_key='id', cursor='created', lag='3 fortnights') }}\n"
        "select id, created from charges",
        ["bad.sql", "lag='3 fortnights'"],
    ),
    "backfill chunk of zero": (
        "{{ config(primary_key='id', cursor='created', initial_value='2024-01-01', "
        "backfill_chunk='0d') }}\nselect id, created from charges "
        "where created >= {{ cursor_start }}",
        ["bad.sql", "backfill_chunk='0d'"],
    ),
    "initial value that is no date": (
        "{{ config(primary_key='id', cursor='created', initial_value='yesterday') }}\n"
        "select id, created from charges",
        ["bad.sql", "initial_value='yesterday'"],
    ),
    "unknown column type": (
        "{{ config(columns={'amount': 'money'}) }}\nselect amount from charges",
        ["bad.sql", "money"],
    ),
    "merge without a primary key": (
        "{{ config(write_disposition='merge') }}\nselect id from charges",
        ["bad.sql", "primary_key"],
    ),
    "template syntax error": ("select {{ id from charges", ["bad.sql:1", "template error"]),
    "unclosed block": (
        "{{ config(cursor='created', primary_key='id') }}\nselect id, created from charges\n"
        "{% if is_incremental() %}where created >= {{ cursor_start }}",
        ["bad.sql", "template error", "endif"],
    ),
}


@pytest.mark.parametrize(("text", "named"), QUERY_FILE_CASES.values(), ids=QUERY_FILE_CASES.keys())
def test_a_bad_query_file_stops_the_run_naming_file_and_key(project, text, named):
    project.write_query("bad", text)

    message = _refused_before_loading(project)

    for word in named:
        assert word in message


UNSAFE_NAMES = [
    "Charges",
    "1charges",
    "charges-daily",
    "charges;drop table x",
    "charges daily",
    "_dlt_loads",
    "_sigma_query_runs",
    "x" * 64,
    "ümlaut",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_a_file_name_that_cannot_be_a_table_name_stops_the_run(project, name):
    (project.project_dir / f"{name}.sql").write_text("select 1 as one")

    message = _refused_before_loading(project)

    assert f"{name}.sql" in message


def test_two_files_for_one_table_stop_the_run_naming_both(project):
    for folder in ("finance", "ops"):
        (project.project_dir / folder).mkdir()
        (project.project_dir / folder / "charges.sql").write_text("select id from charges")

    message = _refused_before_loading(project)

    assert str(Path("finance") / "charges.sql") in message
    assert str(Path("ops") / "charges.sql") in message


def test_a_bad_query_file_fails_the_cli_with_exit_2_naming_the_line(project):
    project.write_query("bad", "select 1\nfrom {% if %}")

    done = project.cli("run")

    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {project.project_dir / 'bad.sql'}:2: template error")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not project.duckdb_path.exists()


# --- selectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"select": ["balance_transaction"]}, "did you mean 'balance_transactions'"),
        ({"select": ["tag:nope"]}, "tag:nope"),
        ({"exclude": ["charges"]}, "exclude 'charges'"),
        ({"select": ["name:x"]}, "not a selector"),
    ],
)
def test_a_selector_that_matches_nothing_stops_the_run(project, options, named):
    message = _refused_before_loading(project, **options)

    assert named in message


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--select", "nope"], "select 'nope' matches no query"),
        (["--var", "no_equals_sign"], "--var 'no_equals_sign'"),
        (["--destination", "snowflake"], "--destination 'snowflake'"),
    ],
)
def test_a_bad_option_fails_the_cli_with_exit_2(project, args, named):
    done = project.cli("run", *args)

    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and named in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- templates that fail when rendered: that query fails, the others load ---------------------

RENDER_CASES = {
    "undefined name": ("select {{ nope }} from charges", "'nope' is undefined"),
    "undefined var": ("select * from charges where currency = {{ var('currency') }}", "var("),
    "attribute of a string's class": (
        "select 1 as x {{ ''.__class__.__mro__[1].__subclasses__() }}",
        "refused by the template sandbox",
    ),
    "globals of a function": (
        "select 1 as x {{ cycler.__init__.__globals__.os.system('touch pwned') }}",
        "refused by the template sandbox",
    ),
    "closure of var()": ("select 1 as x {{ var.__closure__ }}", "refused by the template sandbox"),
    "changing a list": (
        "{% set ids = ['a'] %}{{ ids.append('b') }}select 1 as x",
        "refused by the template sandbox",
    ),
    "a huge range": ("select 1 as x {{ range(10 ** 9) | list | length }}", "range"),
    "a var breaking out of its quotes": (
        "select * from charges where currency = '{{ var('currency') }}'",
        "holds a quote",
    ),
    "include of a file on disk": ("{% include '/etc/passwd' %}select 1 as x", "bad.sql"),
    "a typo in the branch the first run skips": (
        "{{ config(cursor='created') }}\nselect id, created from charges\n"
        "{% if is_incremental() %}where created >= {{ cursor_start }} "
        "and created < {{ cursor_edn }}{% endif %}",
        "'cursor_edn' is undefined",
    ),
}


@pytest.mark.parametrize(("text", "says"), RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_a_template_that_fails_to_render_fails_its_query_alone(project, text, says):
    project.write_query("bad", text)

    result = project.run(vars={"currency": "usd' or '1'='1"} if "'{{" in text else {})

    assert list(result.failures) == ["bad"]
    line = result.failures["bad"]
    assert line.startswith("bad: ") and "bad.sql" in line and says in line
    assert "\n" not in line
    assert project.table_exists(GOOD) and not project.table_exists("bad")
    assert not (project.tmp_path / "pwned").exists()
    assert not Path("pwned").exists()


def test_a_template_that_fails_to_render_fails_the_cli_with_exit_1(project):
    project.write_query("bad", "select {{ nope }} from charges")

    done = project.cli("run")

    assert done.returncode == 1
    failed = [line for line in done.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED bad: ")
    assert project.table_exists(GOOD)


BAD_INPUTS_TRIED = (
    len(SETTING_CASES)
    + 5  # connection settings
    + 3  # through the CLI: config.toml key, missing api_key, mistyped value
    + len(QUERY_FILE_CASES)
    + len(UNSAFE_NAMES)
    + 1  # duplicate names
    + 1  # bad query file through the CLI
    + 4  # selectors
    + 3  # CLI options
    + len(RENDER_CASES)
    + 1  # render failure through the CLI
)
