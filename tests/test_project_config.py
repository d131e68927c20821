"""The {{ config(...) }} block: read without running the template, every key validated."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sigma_source.errors import ConfigError
from sigma_source.project import CONFIG_KEYS, QueryConfig, load_query

UTC = timezone.utc
BODY = "select id, created from charges\n"
INCREMENTAL_BODY = (
    BODY + "{% if is_incremental() %}where created >= {{ cursor_start }}{% endif %}\n"
)


@pytest.fixture
def query_file(tmp_path):
    """Write `charges.sql` with the given text and return its path."""

    def write(text: str):
        path = tmp_path / "charges.sql"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def config_of(query_file, arguments: str) -> QueryConfig:
    body = INCREMENTAL_BODY if "cursor=" in arguments else BODY
    return load_query(query_file(f"{{{{ config({arguments}) }}}}\n{body}")).config


def test_a_file_without_config_gets_the_defaults(query_file):
    config = load_query(query_file(BODY)).config

    assert config == QueryConfig()
    assert config.write_disposition == "append"
    assert config.enabled is True


def test_primary_key_makes_merge_the_default_write_disposition(query_file):
    config = config_of(query_file, "primary_key='id'")

    assert config.primary_key == ("id",)
    assert config.write_disposition == "merge"


def test_an_explicit_write_disposition_wins_over_the_default(query_file):
    config = config_of(query_file, "primary_key=['day', 'currency'], write_disposition='replace'")

    assert config.primary_key == ("day", "currency")
    assert config.write_disposition == "replace"


def test_every_key_is_read_into_typed_values(query_file):
    config = config_of(
        query_file,
        """primary_key='id', cursor='created', initial_value='2024-01-01', lag='1h30m',
        backfill_chunk='30d', columns={'amount': 'BIGINT', 'rate': 'decimal(38, 18)'},
        tags=['finance', 'daily'], enabled=false, description='All charges.'""",
    )

    assert config == QueryConfig(
        primary_key=("id",),
        cursor="created",
        initial_value=datetime(2024, 1, 1, tzinfo=UTC),
        lag=timedelta(hours=1, minutes=30),
        backfill_chunk=timedelta(days=30),
        columns={"amount": "bigint", "rate": "decimal(38,18)"},
        tags=("finance", "daily"),
        enabled=False,
        saved_query=None,
        write_disposition="merge",
        description="All charges.",
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01 06:30:00", datetime(2024, 1, 1, 6, 30, tzinfo=UTC)),
        ("2024-01-01T06:30:00Z", datetime(2024, 1, 1, 6, 30, tzinfo=UTC)),
        ("2024-01-01T08:30:00+02:00", datetime(2024, 1, 1, 6, 30, tzinfo=UTC)),
        ("2024-01-01 06:30:00.123456", datetime(2024, 1, 1, 6, 30, 0, 123000, tzinfo=UTC)),
    ],
)
def test_initial_value_is_a_utc_timestamp_with_millisecond_precision(query_file, written, expected):
    config = config_of(query_file, f"cursor='created', initial_value='{written}'")

    assert config.initial_value == expected
    assert config.initial_value.tzinfo is UTC


def test_column_types_are_normalized_to_their_canonical_sigma_spelling(query_file):
    config = config_of(
        query_file, "columns={'a': 'INTEGER', 'b': 'varchar(255)', 'c': 'Decimal(10)'}"
    )

    assert dict(config.columns) == {"a": "bigint", "b": "varchar", "c": "decimal(10,0)"}


def test_a_single_tag_may_be_a_string_and_repeated_tags_count_once(query_file):
    assert config_of(query_file, "tags='finance'").tags == ("finance",)
    assert config_of(query_file, "tags=['a', 'b', 'a']").tags == ("a", "b")


def test_lag_zero_is_allowed_as_a_number_or_a_string(query_file):
    assert config_of(query_file, "cursor='created', lag=0").lag == timedelta(0)
    assert config_of(query_file, "cursor='created', lag='0'").lag == timedelta(0)


def test_a_saved_query_file_may_keep_a_plain_copy_of_its_sql(query_file):
    config = config_of(query_file, "saved_query='qfl_1Abc', primary_key='id'")

    assert config.saved_query == "qfl_1Abc"


def test_a_saved_query_file_may_have_no_body(query_file):
    query = load_query(query_file("{{ config(saved_query='qfl_1Abc') }}\n"))

    assert query.config.saved_query == "qfl_1Abc"


def test_config_keys_are_the_documented_ones():
    assert CONFIG_KEYS == (
        "backfill_chunk",
        "columns",
        "cursor",
        "description",
        "enabled",
        "freshness",
        "initial_value",
        "lag",
        "primary_key",
        "saved_query",
        "tags",
        "write_disposition",
    )


# One row per mistake: the config() arguments, then a fragment the one-line message must hold.
BAD_VALUES = [
    ("primary_key=1", "config(primary_key=1): expected a column name or a list of column names"),
    ("primary_key=[]", "config(primary_key=[]): expected a column name or a list"),
    ("primary_key=['id', 'id']", "config(primary_key=['id', 'id']): names a column twice"),
    ("primary_key=''", "config(primary_key=''): expected a column name"),
    ("cursor=''", "config(cursor=''): expected a non-empty string"),
    ("cursor=['created']", "config(cursor=['created']): expected a non-empty string"),
    (
        "cursor='created', initial_value='yesterday'",
        "config(initial_value='yesterday'): not an ISO",
    ),
    ("cursor='created', initial_value='2024-13-01'", "config(initial_value='2024-13-01'): not an"),
    ("cursor='created', initial_value=1704067200", "integer cursors are not supported"),
    ("cursor='created', initial_value=true", "config(initial_value=True): expected a date"),
    (
        "cursor='created', lag='3x'",
        "config(lag='3x'): not a duration; use e.g. '30m', '3h', '2d'",
    ),
    ("cursor='created', lag=3", "config(lag=3): a bare number has no unit"),
    ("cursor='created', lag='3 hours'", "config(lag='3 hours'): not a duration"),
    ("cursor='created', lag='1mo'", "config(lag='1mo'): not a duration"),
    ("cursor='created', lag='1h1h'", "config(lag='1h1h'): repeats a unit"),
    ("cursor='created', lag=true", "config(lag=True): not a duration"),
    (
        "cursor='created', backfill_chunk='0'",
        "config(backfill_chunk='0'): must be longer than zero",
    ),
    ("cursor='created', backfill_chunk='90'", "config(backfill_chunk='90'): not a duration"),
    ("columns=['amount']", "config(columns=['amount']): expected a dict of column name"),
    ("columns={}", "config(columns={}): expected a dict"),
    (
        "columns={'amount': 'money'}",
        "column 'amount': unknown type 'money'; valid types: varchar, bigint, double, boolean, "
        "timestamp, date, decimal(p,s)",
    ),
    ("columns={'amount': 5}", "column 'amount': unknown type '5'"),
    ("columns={'rate': 'decimal'}", "give precision and scale, e.g. decimal(38,18)"),
    ("columns={'rate': 'decimal(40,2)'}", "decimal(p,s) needs 1 <= p <= 38 and 0 <= s <= p"),
    ("columns={'rate': 'decimal(5,6)'}", "decimal(p,s) needs 1 <= p <= 38 and 0 <= s <= p"),
    ("columns={1: 'bigint'}", "column name 1 is not a non-empty string"),
    ("tags=[1]", "config(tags=[1]): expected a tag or a list of tags"),
    ("tags='a b'", "config(tags='a b'): tag 'a b' may hold only letters, digits, _ . and -"),
    ("tags='tag:x'", "tag 'tag:x' may hold only"),
    ("enabled='false'", "config(enabled='false'): expected true or false"),
    ("enabled=0", "config(enabled=0): expected true or false"),
    ("saved_query='123'", "config(saved_query='123'): expected a saved query id"),
    ("write_disposition='upsert'", "config(write_disposition='upsert'): expected one of append"),
    ("description=5", "config(description=5): expected a non-empty string"),
    (
        "primary_keys='id'",
        "config(primary_keys='id'): unknown key; did you mean 'primary_key'? valid keys: "
        "backfill_chunk, columns, cursor, description, enabled, freshness, initial_value, lag, "
        "primary_key, saved_query, tags, write_disposition",
    ),
    (
        "materialized='table'",
        "config(materialized='table'): unknown key; valid keys: backfill_chunk",
    ),
]

BAD_COMBINATIONS = [
    ("write_disposition='merge'", "config(write_disposition='merge'): needs primary_key"),
    ("lag='3h', primary_key='id'", "config(lag='3h'): needs cursor"),
    ("initial_value='2024-01-01'", "config(initial_value='2024-01-01'): needs cursor"),
    ("backfill_chunk='30d'", "config(backfill_chunk='30d'): needs cursor"),
    (
        "saved_query='qfl_1', cursor='created'",
        "config(saved_query='qfl_1'): runs stored SQL that cannot take a cursor window",
    ),
    (
        "cursor='created', primary_key='id', write_disposition='replace'",
        "config(write_disposition='replace'): with a cursor each run would keep only its own",
    ),
    ("cursor='created', lag='3h'", "config(lag='3h'): re-reads loaded rows"),
    (
        "cursor='created', columns={'created': 'varchar'}",
        "config(columns={'created': 'varchar'}): cursor 'created' must be a timestamp or date",
    ),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_VALUES + BAD_COMBINATIONS)
def test_a_bad_config_is_refused_in_one_line_naming_file_and_key(query_file, arguments, message):
    path = query_file(f"{{{{ config({arguments}) }}}}\n{BODY}")

    with pytest.raises(ConfigError) as error:
        load_query(path)

    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


BAD_BLOCKS = [
    ("{{ config(cursor=column_name) }}\n" + BODY, ":1: config(cursor=...): must be a literal"),
    ("{{ config(tags=['a' ~ 'b']) }}\n" + BODY, ":1: config(tags=...): must be a literal"),
    ("{{ config(lag='3h' | upper) }}\n" + BODY, ":1: config(lag=...): must be a literal"),
    ("{{ config(**settings) }}\n" + BODY, ":1: config() takes keyword arguments only"),
    ("{{ config('id') }}\n" + BODY, ":1: config() takes keyword arguments only"),
    ("{{ config(cursor='a', cursor='b') }}\n" + BODY, ":1: config(cursor=...) is given twice"),
    (
        "{{ config(primary_key='id') }}\n{{ config(cursor='created') }}\n" + BODY,
        ":2: a second config() block; put every setting in one",
    ),
    (
        "{% if true %}{{ config(primary_key='id') }}{% endif %}\n" + BODY,
        ":1: config() must stand alone as {{ config(...) }}",
    ),
    ("{{ config(primary_key='id') ~ '' }}\n" + BODY, ":1: config() must stand alone"),
    (
        "{{ config(saved_query='qfl_1') }}\nselect * from charges where x = {{ var('x') }}\n",
        ": config(saved_query='qfl_1'): runs stored SQL; this file's body must not use Jinja",
    ),
    (
        "{{ config(saved_query='qfl_1') }}\n{% if true %}select 1{% endif %}\n",
        ": config(saved_query='qfl_1'): runs stored SQL; this file's body must not use Jinja",
    ),
    ("{{ config(primary_key='id') }}\n  \n", ": no SQL after the config() block"),
    ("", ": no SQL after the config() block"),
]


@pytest.mark.parametrize(("text", "message"), BAD_BLOCKS)
def test_a_bad_config_block_is_refused_naming_the_file(query_file, text, message):
    path = query_file(text)

    with pytest.raises(ConfigError) as error:
        load_query(path)

    assert str(error.value).startswith(f"{path}")
    assert f"{path}{message}" in str(error.value)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (INCREMENTAL_BODY, "is_incremental() and cursor_start"),
        (BODY + "where created >= {{ cursor_start }}", "cursor_start"),
    ],
)
def test_a_window_filter_without_a_cursor_is_refused(query_file, body, names):
    path = query_file(body)

    with pytest.raises(ConfigError) as error:
        load_query(path)

    assert str(error.value).startswith(f"{path}: uses {names} but config() sets no cursor")


def test_cursor_end_alone_needs_no_cursor(query_file):
    query = load_query(query_file(BODY + "where created < {{ cursor_end }}"))

    assert query.config.cursor is None


def test_a_jinja_comment_does_not_count_as_templating_in_a_saved_query(query_file):
    text = "{{ config(saved_query='qfl_1') }}\n{# pushed by sigma-load #}\nselect 1\n"

    assert load_query(query_file(text)).config.saved_query == "qfl_1"


def test_config_values_are_never_executed(query_file, tmp_path):
    # A call inside config() is refused before anything runs, so no side effect can happen.
    path = query_file("{{ config(cursor=range(10**9) | list | length) }}\n" + BODY)

    with pytest.raises(ConfigError, match="must be a literal"):
        load_query(path)


def test_a_cursor_the_sql_never_filters_on_is_refused(query_file):
    path = query_file("{{ config(primary_key='id', cursor='created') }}\n" + BODY)

    with pytest.raises(ConfigError) as error:
        load_query(path)

    message = str(error.value)
    assert message.startswith(f"{path}: config(cursor='created')")
    assert "{{ cursor_start }}" in message and "re-read the whole table" in message
