"""Finding the query files of a project: names, folders, encodings, syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigma_source.errors import ConfigError
from sigma_source.project import load_project, load_query

SQL = "select 1 as one\n"


def write(path: Path, text: str = SQL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_each_sql_file_is_a_query_named_after_the_file_sorted_by_name(tmp_path):
    write(tmp_path / "charges.sql")
    write(tmp_path / "balance_transactions.sql")

    queries = load_project(tmp_path)

    assert [query.name for query in queries] == ["balance_transactions", "charges"]
    assert queries[1].path == tmp_path / "charges.sql"
    assert queries[1].text == SQL


def test_files_in_subfolders_are_queries_named_after_the_file_alone(tmp_path):
    write(tmp_path / "finance" / "daily" / "revenue.sql")
    write(tmp_path / "charges.sql")

    assert [query.name for query in load_project(tmp_path)] == ["charges", "revenue"]


def test_two_files_with_one_name_in_different_folders_are_refused_naming_both(tmp_path):
    first = write(tmp_path / "a" / "charges.sql")
    second = write(tmp_path / "b" / "charges.sql")

    with pytest.raises(ConfigError) as error:
        load_project(tmp_path)

    assert str(first) in str(error.value)
    assert str(second) in str(error.value)
    assert "'charges'" in str(error.value)


def test_hidden_files_and_folders_and_other_extensions_are_ignored(tmp_path):
    write(tmp_path / "charges.sql")
    write(tmp_path / ".#charges.sql", "not sql {{")
    write(tmp_path / ".ipynb_checkpoints" / "charges.sql")
    write(tmp_path / "notes.md", "# notes")
    write(tmp_path / "charges.sql.bak")

    assert [query.name for query in load_project(tmp_path)] == ["charges"]


@pytest.mark.parametrize(
    "file_name",
    [
        "Charges.sql",
        "1charges.sql",
        "my-charges.sql",
        "charges.v2.sql",
        "charges table.sql",
        "x" * 64 + ".sql",
        "_dlt_loads.sql",
        "_sigma_query_runs.sql",
    ],
)
def test_a_file_name_that_is_no_safe_table_name_is_refused_naming_the_file(tmp_path, file_name):
    path = write(tmp_path / file_name)

    with pytest.raises(ConfigError, match="table name|reserved") as error:
        load_project(tmp_path)

    assert str(error.value).startswith(f"{path}: ")


def test_a_table_name_of_63_characters_is_accepted(tmp_path):
    write(tmp_path / ("x" * 63 + ".sql"))

    assert load_project(tmp_path)[0].name == "x" * 63


def test_a_missing_project_folder_names_the_folder_and_the_setting(tmp_path):
    missing = tmp_path / "nowhere"

    with pytest.raises(ConfigError, match="no such folder") as error:
        load_project(missing)

    assert str(missing) in str(error.value)
    assert "project_dir" in str(error.value)


def test_a_folder_without_sql_files_names_the_folder_and_the_setting(tmp_path):
    write(tmp_path / "readme.md", "nothing here")

    with pytest.raises(ConfigError, match="no \\*.sql files") as error:
        load_project(tmp_path)

    assert str(tmp_path) in str(error.value)
    assert "project_dir" in str(error.value)


def test_a_file_that_is_not_utf8_is_refused_naming_the_file_and_the_byte(tmp_path):
    path = tmp_path / "charges.sql"
    path.write_bytes(b"select 'caf\xe9'\n")

    with pytest.raises(ConfigError, match="not UTF-8") as error:
        load_project(tmp_path)

    assert str(error.value).startswith(f"{path}: ")
    assert "0xe9" in str(error.value)


def test_a_utf8_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "charges.sql"
    path.write_bytes("\ufeffselect 1".encode())

    assert load_query(path).text == "select 1"


def test_a_template_syntax_error_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "charges.sql", "select *\nfrom charges\n{% if is_incremental() %}\n")

    with pytest.raises(ConfigError, match="template error") as error:
        load_project(tmp_path)

    assert str(error.value).startswith(f"{path}:3: ")


def test_an_unknown_filter_is_found_at_load_time_with_its_line(tmp_path):
    path = write(tmp_path / "charges.sql", "select\n{{ 'id' | no_such_filter }}\n")

    with pytest.raises(ConfigError, match="no_such_filter") as error:
        load_query(path)

    assert str(error.value).startswith(f"{path}:2: ")


def test_errors_are_one_line(tmp_path):
    write(tmp_path / "charges.sql", "select\n{% for %}\n")

    with pytest.raises(ConfigError) as error:
        load_project(tmp_path)

    assert "\n" not in str(error.value)
