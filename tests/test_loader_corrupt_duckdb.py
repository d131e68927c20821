"""A DuckDB file that fails its checksum: one line saying which file and how to recover.

DuckDB rewrites its metadata blocks in place when it checkpoints, so a kill (or an OOM kill,
or a power cut) in the middle of that write can leave the file unreadable. The loader cannot
prevent that; it can say so plainly, and the recovery it names must work.
"""

from __future__ import annotations

import pytest

from sigma_source.errors import SigmaLoadError
from tests.reliability_helpers import EXPECTED_ROWS, THREE_QUERIES, CliProject

METADATA_BLOCK = 12288  # where a small DuckDB file keeps its first metadata block


def _loaded_project(tmp_path, emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url)
    for name, sql in THREE_QUERIES.items():
        project.write_query(name, sql)
    assert project.run().ok
    return project


def _tear_metadata_block(project: CliProject) -> None:
    with project.duckdb_path.open("r+b") as file:
        file.seek(METADATA_BLOCK + 100)
        file.write(b"\xff" * 4096)


def test_a_corrupt_duckdb_file_fails_the_run_in_one_line_naming_file_and_remedy(tmp_path, emulator):
    project = _loaded_project(tmp_path, emulator)
    _tear_metadata_block(project)

    done = project.cli("run")

    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert f"the DuckDB file {project.duckdb_path} is corrupt (Corrupt database file" in errors[0]
    assert "--full-refresh" in errors[0] and "credentials" not in errors[0]


def test_moving_a_corrupt_file_aside_and_a_full_refresh_reload_everything(tmp_path, emulator):
    project = _loaded_project(tmp_path, emulator)
    _tear_metadata_block(project)
    with pytest.raises(SigmaLoadError, match="is corrupt"):
        project.run()
    emulator.add_rows("charges", 3)

    project.duckdb_path.rename(tmp_path / "corrupt.duckdb")
    rerun = project.run(full_refresh=True)

    assert rerun.ok, rerun.failures
    for table, (columns, source_sql) in EXPECTED_ROWS.items():
        assert project.rows(table, columns) == sorted(emulator.execute(source_sql)), table
