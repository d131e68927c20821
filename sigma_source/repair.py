"""Repair what a killed run or a refused load left behind, before the next run loads.

In dlt's working folder: a schema write cut short, an extracted package that was already
normalized, a load package still pending (finished first, or dlt would ignore new data).

In the destination: dlt applies a load package table by table, each table in its own
transaction. Two ways leave a package half applied:

- a kill between the destination committing a table's rows and dlt recording that job as
  done: dlt runs the job again when it resumes the package;
- a table refused by the destination: dlt aborts the package (and with it the cursors),
  but the tables written before the refusal keep their rows, which the next run reads again.

`merge` and `replace` tables absorb both (a merge replaces rows by key, a replace truncates).
An `append` table, the lineage table among them, would hold those rows twice: so before a
package is resumed, and after one is aborted, the rows it wrote to `append` tables are
deleted by their `_dlt_load_id`. A roll back is marked done in the package's folder, so a
run killed half-way through one has it finished by the next.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dlt
from dlt.common.schema.utils import get_write_disposition
from dlt.common.storages.load_package import (
    LoadJobInfo,
    LoadPackageInfo,
    PackageStorage,
    TPackageJobState,
)
from dlt.common.versioned_state import decompress_state
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.pipeline.exceptions import PipelineStepFailed

from sigma_source.lineage import FAILED, LINEAGE_TABLE, SUCCEEDED

LOAD_ID_COLUMN = "_dlt_load_id"
# Left in an aborted package's folder once its rows are taken back.
ROLLED_BACK_MARKER = "sigma_rolled_back"


# --- local leftovers: dlt's working folder as a kill left it -------------------------------


def remove_interrupted_schema_writes(pipeline: dlt.Pipeline) -> None:
    """Delete the temporary files of schema writes that a kill cut short.

    dlt saves a schema by writing a randomly named file beside it and renaming it into
    place. A kill before the rename leaves that file behind, and dlt takes every file in the
    folder for a schema: restoring the schema from the destination then fails forever,
    trying to delete a schema named after the temporary file.
    """
    schemas = Path(pipeline.working_dir) / "schemas"
    if not schemas.is_dir():
        return
    for path in schemas.iterdir():
        if path.is_file() and ".schema." not in path.name:
            path.unlink(missing_ok=True)


def drop_normalized_leftovers(pipeline: dlt.Pipeline) -> None:
    """Delete extracted packages that dlt had already normalized when the run was killed.

    dlt normalizes a package by renaming its output into place, then deleting the extracted
    input; a kill between the two leaves that input behind (whole, or half deleted).
    Normalizing it again would fail on its missing files forever, or load its rows twice.
    """
    done = {*pipeline.list_normalized_load_packages(), *pipeline.list_completed_load_packages()}
    leftovers = [load_id for load_id in pipeline.list_extracted_load_packages() if load_id in done]
    if leftovers:
        extracted = pipeline._get_normalize_storage().extracted_packages  # no public API
        for load_id in leftovers:
            extracted.delete_package(load_id)


def finish_pending_load(pipeline: dlt.Pipeline) -> None:
    """Load what a crashed or killed run left behind before extracting anew.

    dlt would otherwise load the pending package and silently ignore the new data.
    """
    drop_normalized_leftovers(pipeline)
    if not pipeline.has_pending_data:
        return
    local_version = pipeline.state["_state_version"]
    newest = newest_pending_state(pipeline.working_dir)
    pipeline.normalize()
    for load_id in pipeline.list_normalized_load_packages():
        undo_interrupted_jobs(pipeline, load_id)
    pipeline.load()
    if newest is not None and newest["version"] > local_version:
        _adopt_state(pipeline, newest)


def newest_pending_state(working_dir: str | Path) -> dict[str, Any] | None:
    """The pipeline state carried by the newest pending package, if any carries one.

    As stored in the package: `version` and the compressed `state` (see `pending_state_adopted`).
    Reads files only, so `ls` and `compile` can plan from it without opening the pipeline.
    """
    working_dir = Path(working_dir)
    package_states = [
        *working_dir.glob("normalize/extracted/*/load_package_state.json"),
        *working_dir.glob("load/normalized/*/load_package_state.json"),
    ]
    states = [json.loads(path.read_text()).get("pipeline_state") for path in package_states]
    states = [state for state in states if state]
    return max(states, key=lambda state: state["version"]) if states else None


def pending_state_adopted(
    local_version: int | None, working_dir: str | Path
) -> dict[str, Any] | None:
    """The state the next run takes over from a pending package, or None if it keeps its own.

    As `finish_pending_load` decides: the newest pending package's state when it is newer
    than the local state (`local_version`; None when there is no local state).
    """
    newest = newest_pending_state(working_dir)
    if newest is None or (local_version is not None and newest["version"] <= local_version):
        return None
    return decompress_state(newest["state"])


def _adopt_state(pipeline: dlt.Pipeline, package_state: dict[str, Any]) -> None:
    """Make the state a finished package carried the local state.

    A kill can come after dlt put the new state (cursors) into a package and before it saved
    it on disk. Finishing the package loads that state into the destination, but finishing it
    also bumps the stale local state's version past it, so dlt would not restore it and the
    next extract would read the package's windows again.
    """
    adopted = decompress_state(package_state["state"])
    with pipeline.managed_state() as state:
        kept_local = state["_local"]
        state.clear()
        state.update(adopted)
        state["_local"] = kept_local


def roll_back_if_aborted(pipeline: dlt.Pipeline, error: PipelineStepFailed) -> None:
    """Take back what a load the destination refused had already added to append tables."""
    if error.step != "load" or not error.load_id:
        return
    if pipeline.get_load_package_info(error.load_id).state == "aborted":
        roll_back_aborted_load(pipeline, error.load_id)


# --- rows in the destination ----------------------------------------------------------------


def undo_interrupted_jobs(pipeline: dlt.Pipeline, load_id: str) -> list[str]:
    """Before a pending package is resumed: delete what its unrecorded jobs may have committed.

    A job sits in `started_jobs` from the moment dlt hands it to the destination until it
    records the outcome. dlt marks the outcome first (a pending transition) and does not run
    a marked job again; an unmarked one it runs again, and it may have committed already.
    Only tables whose every job in the package is such an unmarked one are cleaned: deleting
    by load id would also take the rows of a job of the table that did complete. Returns the
    tables cleaned.
    """
    package = pipeline.get_load_package_info(load_id)
    unrecorded, recorded = set(), set()
    for job in package.jobs.get("started_jobs", []):
        marked = _has_pending_transition(package, job)
        (recorded if marked else unrecorded).add(job.job_file_info.table_name)
    recorded |= _tables_of(package, ("completed_jobs",))
    tables = _append_tables(package, unrecorded - recorded)
    _delete_rows_of_load(pipeline, load_id, tables)
    return tables


def roll_back_aborted_load(pipeline: dlt.Pipeline, load_id: str) -> list[str]:
    """After dlt aborted a package: delete the rows it had already added to `append` tables.

    Its cursors were not saved, so the next run reads those rows again. The lineage of the
    queries whose rows are gone (or never landed) is marked failed rather than deleted: the
    history keeps the attempt, and no record claims rows the tables do not hold.
    """
    package = pipeline.get_load_package_info(load_id)
    tables = _append_tables(package, _tables_of(package, ("completed_jobs",)))
    _delete_rows_of_load(pipeline, load_id, [t for t in tables if t != LINEAGE_TABLE])
    refused = _tables_of(package, ("failed_jobs",))
    queries = {*tables, *refused} - {LINEAGE_TABLE, package.schema.state_table_name}
    _mark_runs_not_loaded(pipeline, load_id, sorted(queries))
    (Path(package.package_path) / ROLLED_BACK_MARKER).touch()
    return tables


def finish_interrupted_roll_back(pipeline: dlt.Pipeline) -> None:
    """Roll back the last load if dlt aborted it and the run was killed before rolling back.

    Only the newest package can be in that state: a run that gets past this point leaves
    every abort rolled back.
    """
    loaded = pipeline.list_completed_load_packages()
    if not loaded:
        return
    package = pipeline.get_load_package_info(max(loaded))
    if (
        package.state == "aborted"
        and not (Path(package.package_path) / ROLLED_BACK_MARKER).exists()
    ):
        roll_back_aborted_load(pipeline, package.load_id)


def _tables_of(package: LoadPackageInfo, states: Iterable[TPackageJobState]) -> set[str]:
    return {job.job_file_info.table_name for state in states for job in package.jobs.get(state, [])}


def _has_pending_transition(package: LoadPackageInfo, job: LoadJobInfo) -> bool:
    marker = Path(package.package_path, PackageStorage.PENDING_TRANSITIONS_FOLDER)
    return (marker / Path(job.file_path).name).exists()


def _append_tables(package: LoadPackageInfo, tables: Iterable[str]) -> list[str]:
    """The `append` tables among `tables`: the data tables, and of dlt's own, its state,
    appended per load like the data (its rows have a unique key in Postgres, so a state job
    applied twice fails the load)."""
    schema = package.schema
    return sorted(
        table
        for table in tables
        if (not table.startswith("_dlt") or table == schema.state_table_name)
        and table in schema.tables
        and get_write_disposition(schema.tables, table) == "append"
    )


def _delete_rows_of_load(pipeline: dlt.Pipeline, load_id: str, tables: list[str]) -> None:
    if not tables:
        return
    with pipeline.sql_client() as client:
        for table in tables:
            name = client.make_qualified_table_name(table)
            # The kill may have come before the table's first rows ever landed.
            with contextlib.suppress(DatabaseUndefinedRelation):
                client.execute_sql(f"DELETE FROM {name} WHERE {LOAD_ID_COLUMN} = %s", load_id)


def _mark_runs_not_loaded(pipeline: dlt.Pipeline, load_id: str, queries: list[str]) -> None:
    if not queries:
        return
    marks = ", ".join(["%s"] * len(queries))
    error = f"not loaded: the destination refused load {load_id}, which was rolled back"
    with pipeline.sql_client() as client:
        name = client.make_qualified_table_name(LINEAGE_TABLE)
        with contextlib.suppress(DatabaseUndefinedRelation):
            client.execute_sql(
                f"UPDATE {name} SET status = %s, error = %s, row_count = 0 "
                f"WHERE {LOAD_ID_COLUMN} = %s AND status = %s AND query_name IN ({marks})",
                FAILED,
                error,
                load_id,
                SUCCEEDED,
                *queries,
            )
