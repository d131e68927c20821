"""What a pipeline has loaded, read without changing anything: cursors, load times, run history.

`ls`, `compile`, `runs` and `freshness` read from here. Nothing is written, neither the
pipeline's working folder nor the destination, so these commands are safe next to a load
that is running (a scheduler's freshness check) and on a machine that never ran one.

The cursor state is the one the next `run` starts from. `run` restores dlt's state from the
destination when the copy there is at least as new as the local one, so this view reads both
and keeps the newer, without installing anything.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sigma_source.errors import ConfigError, SigmaLoadError
from sigma_source.lineage import LINEAGE_TABLE, SUCCEEDED
from sigma_source.loader import DESTINATIONS, RunOptions
from sigma_source.runs import usual_run_seconds

LOADS_TABLE = "_dlt_loads"
SOURCE_NAME = "sigma"  # the dlt source's name: its state lives under state["sources"]["sigma"]


@dataclass(frozen=True)
class LastLoad:
    """The newest successful load of one query: when dlt committed it, and how fresh it was.

    `data_load_time` is Sigma's own freshness stamp, known only for some runs.
    """

    query_name: str
    loaded_at: datetime | None
    data_load_time: datetime | None


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
    closed at the end.
    """

    def __init__(self, options: RunOptions) -> None:
        if options.destination not in DESTINATIONS:
            raise ConfigError(
                f"--destination {options.destination!r}: choose one of {', '.join(DESTINATIONS)}"
            )
        self.options = options
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
        local = self._local_state()
        remote = self._remote_state()
        if remote is not None and (
            local is None or remote["_state_version"] >= local["_state_version"]
        ):
            return remote
        return local or {}

    def _local_state(self) -> dict[str, Any] | None:
        from dlt.common.versioned_state import json_decode_state

        path = self._pipelines_dir() / self.options.pipeline_name / "state.json"
        if not path.is_file():
            return None
        return json_decode_state(path.read_text(encoding="utf-8"))

    def _remote_state(self) -> dict[str, Any] | None:
        from dlt.common.destination.exceptions import DestinationUndefinedEntity
        from dlt.pipeline.state_sync import load_pipeline_state_from_destination

        if not self.destination_exists():
            return None
        try:
            with self._guarded(), self._connected().destination_client() as client:
                return load_pipeline_state_from_destination(self.options.pipeline_name, client)
        except DestinationUndefinedEntity:
            return None

    def _pipelines_dir(self) -> Path:
        from dlt.common.pipeline import get_dlt_pipelines_dir

        return Path(self.options.pipelines_dir or get_dlt_pipelines_dir())

    # --- the lineage table ----------------------------------------------------------------

    def last_loads(self) -> dict[str, LastLoad]:
        """Per query, the newest load that holds a succeeded run of it."""
        sql = (
            f"select r.query_name, max(l.inserted_at), max(r.data_load_time) "
            f"from {{runs}} r join {{loads}} l on l.load_id = r.load_id "
            f"where r.status = '{SUCCEEDED}' and l.status = 0 group by r.query_name"
        )
        return {
            name: LastLoad(name, _utc(loaded_at), _utc(data_load_time))
            for name, loaded_at, data_load_time in self._lineage_rows(sql)
        }

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
        try:
            with self._guarded(), self._connected().sql_client() as client:
                tables = {
                    "runs": client.make_qualified_table_name(LINEAGE_TABLE),
                    "loads": client.make_qualified_table_name(LOADS_TABLE),
                }
                return list(client.execute_sql(sql.format(**tables), *args) or [])
        except DestinationUndefinedEntity:  # the dataset or the lineage table does not exist yet
            return []

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
            raise SigmaLoadError(f"{where}: cannot read: {_first_line(error)}") from error


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
