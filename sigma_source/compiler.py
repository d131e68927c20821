"""`sigma-load compile`: the SQL the next run would send, without calling Stripe.

It plans windows and renders templates with the very functions the source uses
(`plan_windows`, `render_sql`), from the same cursor state and the same clock reading, so
what it prints is what `run` sends, save for `cursor_end`: "now" moves on between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sigma_source.events import utc_stamp
from sigma_source.project import Query, Window, check_renders, plan_windows, render_sql


@dataclass(frozen=True)
class CompiledRun:
    """One query run of the next load: its window and its SQL (None when run from a saved query)."""

    query_name: str
    window: Window
    index: int
    count: int
    sql: str | None
    saved_query: str | None
    cursor: str | None


def compile_query(
    query: Query,
    *,
    last_cursor: datetime | None,
    now: datetime | None = None,
    vars: Mapping[str, object] | None = None,  # noqa: A002 - the template function is var()
    full_refresh: bool = False,
) -> list[CompiledRun]:
    """The runs `query` would make now: one per cursor window, [] when nothing new is due."""
    cursor = None if full_refresh or not query.config.cursor else last_cursor
    moment = now or datetime.now(timezone.utc)
    check_renders(query, now=moment, vars=vars)  # as `run` does, so both fail alike
    windows = plan_windows(query.config, last_cursor=cursor, now=moment)
    saved_query = query.config.saved_query
    return [
        CompiledRun(
            query_name=query.name,
            window=window,
            index=index + 1,
            count=len(windows),
            sql=None if saved_query else render_sql(query, window=window, vars=vars or {}),
            saved_query=saved_query,
            cursor=query.config.cursor,
        )
        for index, window in enumerate(windows)
    ]


def header(run: CompiledRun) -> str:
    """The `-- name ...` comment line `compile` prints above each run's SQL."""
    where = f" (window {run.index} of {run.count})" if run.count > 1 else ""
    if run.saved_query:
        span = f"runs saved query {run.saved_query} (its SQL is kept in Stripe)"
    elif not run.cursor:
        span = "whole result, no cursor"
    elif run.window.start is None:
        span = "whole result (first run and no initial_value)"
    else:
        start, end = _stamp(run.window.start), _stamp(run.window.end)
        span = f"{start} <= {run.cursor} < {end}"
    return f"-- {run.query_name}{where}: {span}"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def compile_project(
    queries: Sequence[Query],
    last_cursors: Mapping[str, datetime],
    *,
    now: datetime | None = None,
    vars: Mapping[str, object] | None = None,  # noqa: A002
    full_refresh: bool = False,
) -> dict[str, list[CompiledRun]]:
    """Every query's runs, planned at one `now`, as one run of the loader plans them."""
    moment = now or datetime.now(timezone.utc)
    return {
        query.name: compile_query(
            query,
            last_cursor=last_cursors.get(query.name),
            now=moment,
            vars=vars,
            full_refresh=full_refresh,
        )
        for query in queries
    }


def compiled_text(compiled: Mapping[str, Iterable[CompiledRun]]) -> str:
    """Each run's SQL under its `-- ` header line, runs separated by a blank line."""
    blocks = []
    for name, runs in compiled.items():
        planned = list(runs)
        if not planned:
            blocks.append(f"-- {name}: nothing to read yet (its window would be empty)")
        blocks += [header(run) + (f"\n{run.sql}" if run.sql else "") for run in planned]
    return "\n\n".join(blocks)


def compiled_records(compiled: Mapping[str, Iterable[CompiledRun]]) -> list[dict[str, Any]]:
    """One JSON-ready record per run: query, window number and bounds, saved query, SQL."""
    return [
        {
            "query": run.query_name,
            "window": run.index,
            "windows": run.count,
            "cursor_start": utc_stamp(run.window.start) if run.window.start else None,
            "cursor_end": utc_stamp(run.window.end) if run.cursor else None,
            "saved_query": run.saved_query,
            "sql": run.sql,
        }
        for runs in compiled.values()
        for run in runs
    ]
