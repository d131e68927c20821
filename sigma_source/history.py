"""What a pipeline has loaded, read without changing anything: cursors, load times, run history.

`ls`, `compile`, `runs` and `freshness` read from here. Nothing is written, neither the
pipeline's working folder nor the destination, so these commands are safe next to a load
that is running (a scheduler's freshness check) and on a machine that never ran one.

The cursor state is the one the next `run` starts from. `run` first finishes a load package
a killed run left pending, taking over the cursors it carries when they are newer than the
local state; then it restores dlt's state from the destination when the copy there is at
least as new. This view reads all three and keeps what `run` would, without installing
anything.

A DuckDB file that a load holds open cannot be read (DuckDB allows one writing process). The
view waits a few seconds for it, then reads the pipeline's local working folder instead: the
same cursors, and the load times of the packages it loaded (`note` says so). Only the run
history (`runs`) has no local copy.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sigma_source.errors import ConfigError, SigmaLoadError
from sigma_source.lineage import LINEAGE_TABLE, SUCCEEDED
from sigma_source.loader import DESTINATIONS, RunOptions
from sigma_source.runs import usual_run_seconds

LOADS_TABLE = "_dlt_loads"
SOURCE_NAME = "sigma"  # the dlt source's name: its state lives under state["sources"]["sigma"]
# How long to wait for a DuckDB file another process holds before reading the local state.
BUSY_WAIT_SECONDS = 5.0
BUSY_RETRY_SECONDS = 0.25
_LOCKED = ("Conflicting lock is held", "Could not set lock on file")
T = TypeVar("T")


class DestinationBusy(SigmaLoadError):
    """The DuckDB file is held by another process (a load) and could not be read."""


@dataclass(frozen=True)
class LastLoad:
    """The newest successful load of one query: when dlt committed it."""

    query_name: str
    loaded_at: datetime | None


@dataclass(frozen=True)
class HistoryRow:
    """One row of `_sigma_query_runs`, with the time its load was committed."""

    query_name: str
    query_run_id: str | None
    status: str
    error: str | None
    cursor_start: datetime | None
    cursor_end: datetime | None
    row_count: int
    seconds: float | None
    created_at: datetime | None
    load_id: str | None
    loaded_at: datetime | None


class PipelineView:
    """A read-only look at one pipeline (name, dataset, destination as `run` would use them).

    Use as a context manager: a connection to the destination, opened on first use, is
    closed at the end. `busy_wait`: seconds to wait for a DuckDB file another process holds;
    after that, what the local working folder holds is read instead, and `note` says so.
    """

    def __init__(self, options: RunOptions, *, busy_wait: float | None = None) -> None:
        if options.destination not in DESTINATIONS:
            raise ConfigError(
                f"--destination {options.destination!r}: choose one of {', '.join(DESTINATIONS)}"
            )
        self.options = options
        self.busy_wait = BUSY_WAIT_SECONDS if busy_wait is None else busy_wait
        self.note: str | None = None
        self._busy: DestinationBusy | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._pipeline: Any = None

    def __enter__(self) -> PipelineView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
            self._pipeline = None

    # --- state --------------------------------------------------------------------------------

    def last_cursors(self) -> dict[str, datetime]:
        """The highest cursor value loaded per query: where the next run's window starts."""
        return {
            name: datetime.fromisoformat(entry["last_cursor"])
            for name, entry in self._query_states().items()
            if entry.get("last_cursor")
        }

    def usual_run_seconds(self) -> dict[str, float]:
        """How long each query usually runs on Sigma, from the run times its state keeps."""
        usual = {
            name: usual_run_seconds(entry.get("run_seconds"))
            for name, entry in self._query_states().items()
        }
        return {name: seconds for name, seconds in usual.items() if seconds is not None}

    def _query_states(self) -> dict[str, dict[str, Any]]:
        sources = self.state().get("sources") or {}
        queries = (sources.get(SOURCE_NAME) or {}).get("queries") or {}
        return {name: entry for name, entry in queries.items() if isinstance(entry, dict)}

    def state(self) -> dict[str, Any]:
        """The dlt pipeline state the next run starts from; `{}` for a pipeline never run."""
        from sigma_source.repair import pending_state_adopted

        local = self._local_state()
        local_version = local["_state_version"] if local else None
        start = pending_state_adopted(local_version, self._working_dir()) or local
        remote = self._remote_state()
        if remote is not None and (
            start is None or remote["_state_version"] >= start["_state_version"]
        ):
            return remote
        return start or {}

    def _local_state(self) -> dict[str, Any] | None:
        from dlt.common.versioned_state import json_decode_state

        path = self._working_dir() / "state.json"
        if not path.is_file():
            return None
        return json_decode_state(path.read_text(encoding="utf-8"))

    def _remote_state(self) -> dict[str, Any] | None:
        """The state stored in the destination; None when the destination is busy and the
        local state stands in for it."""
        from dlt.common.destination.exceptions import DestinationUndefinedEntity
        from dlt.pipeline.state_sync import load_pipeline_state_from_destination

        if not self.destination_exists():
            return None

        def read() -> dict[str, Any] | None:
            with self._connected().destination_client() as client:
                return load_pipeline_state_from_destination(self.options.pipeline_name, client)

        try:
            return self._read_destination(read)
        except DestinationUndefinedEntity:
            return None
        except DestinationBusy as busy:
            self._use_local_instead(busy)
            return None

    def _working_dir(self) -> Path:
        from dlt.common.pipeline import get_dlt_pipelines_dir

        pipelines_dir = Path(self.options.pipelines_dir or get_dlt_pipelines_dir())
        return pipelines_dir / self.options.pipeline_name

    # --- the lineage table ----------------------------------------------------------------

    def last_loads(self) -> dict[str, LastLoad]:
        """Per query, the newest load that holds a succeeded run of it."""
        sql = (
            f"select r.query_name, max(l.inserted_at) "
            f"from {{runs}} r join {{loads}} l on l.load_id = r.load_id "
            f"where r.status = '{SUCCEEDED}' and l.status = 0 group by r.query_name"
        )
        try:
            rows = self._lineage_rows(sql)
        except DestinationBusy as busy:
            self._use_local_instead(busy)
            return self._local_last_loads()
        return {name: LastLoad(name, _utc(loaded_at)) for name, loaded_at in rows}

    def _local_last_loads(self) -> dict[str, LastLoad]:
        """Per query, the newest package this machine loaded with rows for its table.

        A query that failed contributes no job for its table, only run records, as in
        `last_loads`. The time is when dlt marked the package loaded.
        """
        loads: dict[str, LastLoad] = {}
        for package in sorted((self._working_dir() / "load" / "loaded").glob("*")):
            completed = package / "package_completed.json"
            state_file = package / "load_package_state.json"
            if not completed.is_file() or not state_file.is_file():
                continue
            if completed.read_text(encoding="utf-8").strip() != "loaded":  # aborted
                continue
            metrics = json.loads(state_file.read_text(encoding="utf-8")).get("load_metrics") or {}
            loaded_at = datetime.fromtimestamp(completed.stat().st_mtime, timezone.utc)
            for job in metrics.values():
                if isinstance(job, dict) and job.get("state") == "completed":
                    name = str(job.get("table_name"))
                    loads[name] = LastLoad(name, loaded_at)
        return loads

    def runs(self, query_names: Collection[str] | None = None, limit: int = 20) -> list[HistoryRow]:
        """The newest `limit` query runs, newest load first; only `query_names` when given."""
        names = sorted(query_names) if query_names is not None else None
        if names == []:
            return []
        where = f"where r.query_name in ({', '.join(['%s'] * len(names))}) " if names else ""
        sql = (
            "select r.query_name, r.query_run_id, r.status, r.error, r.cursor_start, "
            "r.cursor_end, r.row_count, r.wait_seconds, r.download_seconds, r.created_at, "
            "r.load_id, l.inserted_at "
            "from {runs} r left join {loads} l on l.load_id = r.load_id and l.status = 0 "
            f"{where}order by r.load_id desc, r.created_at desc nulls last, r.query_name "
            f"limit {int(limit)}"
        )
        return [_history_row(row) for row in self._lineage_rows(sql, *(names or []))]

    def _lineage_rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        from dlt.common.destination.exceptions import DestinationUndefinedEntity

        if not self.destination_exists():
            return []

        def read() -> list[tuple[Any, ...]]:
            with self._connected().sql_client() as client:
                tables = {
                    "runs": client.make_qualified_table_name(LINEAGE_TABLE),
                    "loads": client.make_qualified_table_name(LOADS_TABLE),
                }
                return list(client.execute_sql(sql.format(**tables), *args) or [])

        try:
            return self._read_destination(read)
        except DestinationUndefinedEntity:  # the dataset or the lineage table does not exist yet
            return []

    # --- a DuckDB file held by a load -------------------------------------------------------

    def _read_destination(self, read: Callable[[], T]) -> T:
        """`read()` from the destination, trying again for `busy_wait` seconds while another
        process holds the DuckDB file; then `DestinationBusy`."""
        if self._busy is not None:  # waited once already: do not wait again
            raise self._busy
        deadline = time.monotonic() + self.busy_wait
        while True:
            try:
                with self._guarded():
                    return read()
            except DestinationBusy as busy:
                if time.monotonic() >= deadline:
                    self._busy = busy
                    raise
            time.sleep(BUSY_RETRY_SECONDS)

    def _use_local_instead(self, busy: DestinationBusy) -> None:
        """Read the local working folder instead of the busy destination, or fail if there is
        nothing there to read."""
        working_dir = self._working_dir()
        if not (working_dir / "state.json").is_file():
            raise DestinationBusy(
                f"{busy} (there is no local state of pipeline {self.options.pipeline_name!r} "
                f"in {working_dir} to read instead)"
            ) from busy
        self.note = (
            f"the DuckDB file {self.duckdb_path} is held by another process (a load?): "
            f"showing the pipeline's local state in {working_dir} instead"
        )

    # --- the destination ----------------------------------------------------------------------

    def destination_exists(self) -> bool:
        """False for a DuckDB file not created yet (opening it would create it)."""
        if self.options.destination != "duckdb":
            return True
        return Path(self.duckdb_path).is_file()

    @property
    def duckdb_path(self) -> str:
        return self.options.duckdb_path or f"{self.options.pipeline_name}.duckdb"

    def _connected(self) -> Any:
        """A pipeline used only to reach the destination, kept in a scratch folder.

        The user's own pipeline folder is never opened: attaching to it could write its state
        while a load is running in another process.
        """
        import dlt

        if self._pipeline is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="sigma-load-view-")
            self._pipeline = dlt.pipeline(
                pipeline_name=self.options.pipeline_name,
                pipelines_dir=self._scratch.name,
                destination=self._destination(),
                dataset_name=self.options.dataset,
            )
        return self._pipeline

    def _destination(self) -> Any:
        import dlt

        if self.options.destination == "duckdb":
            from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

            credentials = DuckDbCredentials(self.duckdb_path, read_only=True)
            return dlt.destinations.duckdb(credentials=credentials)
        if self.options.destination == "postgres":
            return dlt.destinations.postgres()
        return dlt.destinations.bigquery()

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """dlt's connection and configuration errors as one line naming the destination."""
        from dlt.common.configuration.exceptions import ConfigurationException
        from dlt.common.destination.exceptions import DestinationUndefinedEntity

        where = f"{self.options.destination} dataset {self.options.dataset!r}"
        try:
            yield
        except DestinationUndefinedEntity:
            raise
        except ConfigurationException as error:
            name = self.options.destination
            hint = (
                f"set [destination.{name}] in .dlt/secrets.toml or "
                f"DESTINATION__{name.upper()}__CREDENTIALS"
            )
            raise ConfigError(f"{where}: {_first_line(error)}; {hint}") from error
        except Exception as error:  # the database driver's own errors too: refused, locked, ...
            if self.options.destination == "duckdb" and _locked(error):
                raise DestinationBusy(
                    f"{where}: cannot read: the DuckDB file {self.duckdb_path} is held by "
                    f"another process (a load?), still after {self.busy_wait:g} s; try again "
                    "when it is free"
                ) from error
            raise SigmaLoadError(f"{where}: cannot read: {_first_line(error)}") from error


def _locked(error: BaseException | None) -> bool:
    """Whether DuckDB refused the file because another process holds its lock."""
    while error is not None:
        if any(text in str(error) for text in _LOCKED):
            return True
        error = error.__cause__ or error.__context__
    return False


def _history_row(row: tuple[Any, ...]) -> HistoryRow:
    (name, run_id, status, error, start, end, rows, wait, download, created, load_id, loaded) = row
    seconds = None if wait is None and download is None else (wait or 0.0) + (download or 0.0)
    return HistoryRow(
        query_name=name,
        query_run_id=run_id,
        status=status,
        error=error,
        cursor_start=_utc(start),
        cursor_end=_utc(end),
        row_count=int(rows or 0),
        seconds=seconds,
        created_at=_utc(created),
        load_id=load_id,
        loaded_at=_utc(loaded),
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # destinations without time zones store UTC
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
