"""What a run leaves in dlt's working folder: bookkeeping, never a copy of the data."""

from __future__ import annotations

from tests.reliability_helpers import THREE_QUERIES, CliProject

DATA_FILE_SUFFIXES = (".parquet", ".csv", ".insert_values", ".jsonl", ".typed-jsonl")


def _data_files(project: CliProject) -> list[str]:
    return sorted(
        str(path.relative_to(project.working_dir))
        for path in project.working_dir.rglob("*")
        if path.is_file() and path.name.endswith(DATA_FILE_SUFFIXES)
    )


def test_loaded_packages_keep_no_data_files(tmp_path, emulator):
    project = CliProject(tmp_path, emulator.url)
    for name, sql in THREE_QUERIES.items():
        project.write_query(name, sql)

    for _ in range(2):
        emulator.add_rows("charges", 5)
        assert project.run().ok

    assert _data_files(project) == []
    assert len(list((project.working_dir / "load" / "loaded").iterdir())) == 2
