"""`sigma-load freshness`: how old each table's newest data is, against dbt-style thresholds.

Age is measured from the newest cursor value loaded, because that is what a stale table
shows: a loader that stopped running and Sigma data that stopped arriving both leave it
behind. A query without a cursor has no such value and is measured from its last successful
load. Thresholds come from `config(freshness={'warn_after': '6h', 'error_after': '1d'})`;
a table past `error_after`, or with thresholds and nothing loaded, is an error, so a
scheduler can alert on the exit code.

Sigma's own freshness stamp, `data_load_time`, comes only with the runs of queries scheduled
in the Dashboard, never with API query runs: `sigma_data_load_time` asks for the newest one.
It describes Sigma's data as a whole (the snapshot every query then ran on), not one table,
so it is shown beside the verdicts, never used for them: a table far behind it is behind
because of the loader, a table as old as it is behind because Sigma is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import TYPE_CHECKING, Literal

from sigma_source.project import Query

if TYPE_CHECKING:
    from sigma_source.client import SigmaClient
    from sigma_source.history import LastLoad

Status = Literal["pass", "warn", "error", "unchecked"]
SCHEDULED_RUNS_LOOKED_AT = 10  # the newest page: the freshest snapshot is among them


@dataclass(frozen=True)
class FreshnessResult:
    """One table's freshness: what was measured, how old it is, and the verdict."""

    query_name: str
    status: Status
    measured: Literal["cursor", "load"]
    newest_cursor: datetime | None
    loaded_at: datetime | None
    data_load_time: datetime | None
    age: timedelta | None
    warn_after: timedelta | None
    error_after: timedelta | None
    note: str | None = None


def check_freshness(
    query: Query,
    *,
    newest_cursor: datetime | None,
    loaded_at: datetime | None,
    data_load_time: datetime | None = None,
    now: datetime,
) -> FreshnessResult:
    """Judge one table. `unchecked` when its config sets no thresholds: never a failure."""
    thresholds = query.config.freshness
    warn_after = thresholds.warn_after if thresholds else None
    error_after = thresholds.error_after if thresholds else None
    measured = "cursor" if query.config.cursor else "load"
    newest = newest_cursor if measured == "cursor" else loaded_at
    age = now - newest if newest is not None else None
    status, note = _verdict(age, warn_after, error_after, loaded=loaded_at is not None)
    return FreshnessResult(
        query_name=query.name,
        status=status,
        measured=measured,
        newest_cursor=newest_cursor,
        loaded_at=loaded_at,
        data_load_time=data_load_time,
        age=age,
        warn_after=warn_after,
        error_after=error_after,
        note=note,
    )


def check_project(
    queries: Iterable[Query],
    last_cursors: Mapping[str, datetime],
    last_loads: Mapping[str, LastLoad],
    *,
    data_load_time: datetime | None = None,
    now: datetime | None = None,
) -> list[FreshnessResult]:
    """Every query judged at one `now`, from a pipeline's cursors and last loads.

    `data_load_time`, Sigma's (see `sigma_data_load_time`), is passed on to every result.
    """
    moment = now or datetime.now(timezone.utc)
    results = []
    for query in queries:
        load = last_loads.get(query.name)
        results.append(
            check_freshness(
                query,
                newest_cursor=last_cursors.get(query.name),
                loaded_at=load.loaded_at if load else None,
                data_load_time=data_load_time,
                now=moment,
            )
        )
    return results


@dataclass(frozen=True)
class SigmaSnapshot:
    """How fresh Sigma's data is: `data_load_time` of scheduled query run `scheduled_run_id`."""

    data_load_time: datetime
    scheduled_run_id: str


def sigma_data_load_time(client: SigmaClient) -> SigmaSnapshot | None:
    """The newest `data_load_time` among the account's latest scheduled query runs.

    One request (`GET /v1/sigma/scheduled_query_runs`); None when the account schedules no
    query in the Dashboard, as Sigma states the time nowhere else.
    """
    runs = client.list_scheduled_query_runs(limit=SCHEDULED_RUNS_LOOKED_AT)
    stamps = [
        (run.data_load_time, run.id)
        for run in islice(runs, SCHEDULED_RUNS_LOOKED_AT)
        if run.data_load_time is not None
    ]
    if not stamps:
        return None
    moment, run_id = max(stamps)
    return SigmaSnapshot(moment, run_id)


def _verdict(
    age: timedelta | None,
    warn_after: timedelta | None,
    error_after: timedelta | None,
    *,
    loaded: bool,
) -> tuple[Status, str | None]:
    if warn_after is None and error_after is None:
        return "unchecked", None if loaded else "never loaded"
    if age is None:
        return "error", "no rows loaded yet" if loaded else "never loaded"
    if error_after is not None and age > error_after:
        return "error", None
    if warn_after is not None and age > warn_after:
        return "warn", None
    return "pass", None
