"""What the commands print: JSON-ready records, and tables of them for the terminal.

Each command's data becomes a list of plain dicts first (`*_records`), which `--format json`
prints as they are and the `print_*` functions lay out as a table, so both outputs always
show the same facts. Times are UTC, as Sigma stores them: ISO 8601 in JSON, to the second in
tables. Ages are rounded to their two largest units (`3d 4h`), which is what a person reading
a freshness report acts on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sigma_source.durations import format_duration
from sigma_source.events import utc_stamp
from sigma_source.lineage import QueryRunRecord

if TYPE_CHECKING:
    from sigma_source.freshness import FreshnessResult, SigmaSnapshot
    from sigma_source.history import HistoryRow, LastLoad
    from sigma_source.project import Query
    from sigma_source.saved_queries import Outcome

NONE = "-"
KEPT_WHOLE = ("query", "query run", "saved query")


def output_console() -> Console:
    """A console for stdout; logs and pipes get wide, unwrapped lines instead of 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=240)


def print_table(
    title: str,
    headings: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    right: Sequence[str] = (),
    console: Console | None = None,
) -> None:
    """A plain table, or `title: none`; cells are shown as given, never read as markup.

    Query names and ids are never cut short: they are what a reader looks for, and what
    lineage and Stripe's logs are searched by.
    """
    console = console or output_console()
    if not rows:
        console.print(f"{title}: none", highlight=False)
        return
    table = Table(title=title, title_justify="left")
    for heading in headings:
        justify = "right" if heading in right else "left"
        table.add_column(heading, justify=justify, no_wrap=heading in KEPT_WHOLE)
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    console.print(table)


# --- run ---------------------------------------------------------------------------------------


def run_table(records: Sequence[QueryRunRecord]) -> Table:
    """One line per query run: what loaded, from which run, how long it took."""
    table = Table(title="sigma-load run", title_justify="left")
    for heading in ("query", "status", "rows", "query run", "window", "seconds"):
        justify = "right" if heading in ("rows", "seconds") else "left"
        table.add_column(heading, justify=justify, no_wrap=heading in KEPT_WHOLE)
    for record in sorted(records, key=lambda r: (r.query_name, r.cursor_start or 0)):
        table.add_row(
            record.query_name,
            record.status,
            f"{record.row_count:,}",
            record.query_run_id or NONE,
            window(record.cursor_start, record.cursor_end),
            f"{(record.wait_seconds or 0.0) + (record.download_seconds or 0.0):.1f}",
        )
    return table


def print_run_table(records: Sequence[QueryRunRecord], console: Console | None = None) -> None:
    (console or output_console()).print(run_table(records))


def print_run_summary(
    records: Sequence[QueryRunRecord], run_results: Mapping[str, Any], path: object
) -> None:
    """The run table, then one line: how many queries loaded, rows, time, where the details are."""
    console = output_console()
    print_run_table(records, console)
    results = run_results["results"]
    loaded = sum(1 for result in results if result["status"] == "loaded")
    rows = sum(result["rows"] for result in results)
    console.print(
        f"{loaded} of {counted(len(results), 'query', 'queries')} loaded, "
        f"{counted(rows, 'row')}, "
        f"in {run_results['elapsed_seconds']:.1f} s. Details: {path}",
        highlight=False,
    )


# --- ls ----------------------------------------------------------------------------------------


def query_records(
    queries: Iterable[Query],
    dataset: str,
    cursors: Mapping[str, datetime],
    loads: Mapping[str, LastLoad],
    usual_seconds: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """`ls`: each query's config with its current state."""
    usual_seconds = usual_seconds or {}
    records = []
    for query in queries:
        config, load = query.config, loads.get(query.name)
        records.append(
            {
                "query": query.name,
                "path": str(query.path),
                "table": f"{dataset}.{query.name}",
                "write_disposition": config.write_disposition,
                "primary_key": list(config.primary_key),
                "cursor": config.cursor,
                "tags": list(config.tags),
                "enabled": config.enabled,
                "saved_query": config.saved_query,
                "usual_run_seconds": usual_seconds.get(query.name),
                "last_cursor": iso(cursors.get(query.name)),
                "last_loaded_at": iso(load.loaded_at if load else None),
            }
        )
    return records


def print_queries(records: Sequence[Mapping[str, Any]]) -> None:
    """One row per query; its table (`dataset.query`) is named once, in the title."""
    dataset = records[0]["table"].rsplit(".", 1)[0] if records else ""
    print_table(
        f"{counted(len(records), 'query', 'queries')}, each loading table {dataset}.<query> "
        "(times in UTC)",
        (
            "query",
            "write",
            "primary key",
            "cursor",
            "tags",
            "usual run",
            "last cursor",
            "last load",
        ),
        [
            (
                record["query"],
                record["write_disposition"],
                ", ".join(record["primary_key"]) or NONE,
                record["cursor"] or NONE,
                ", ".join(record["tags"]) or NONE,
                _run_time(record["usual_run_seconds"]),
                shown(record["last_cursor"]),
                shown(record["last_loaded_at"]) if record["last_loaded_at"] else "never",
            )
            for record in records
        ],
    )


def _run_time(seconds: float | None) -> str:
    return NONE if seconds is None else f"{seconds:.1f} s"


# --- runs --------------------------------------------------------------------------------------


def history_records(rows: Iterable[HistoryRow]) -> list[dict[str, Any]]:
    """`runs`: one record per row of `_sigma_query_runs`."""
    return [
        {
            "query": row.query_name,
            "query_run_id": row.query_run_id,
            "status": row.status,
            "cursor_start": iso(row.cursor_start),
            "cursor_end": iso(row.cursor_end),
            "rows": row.row_count,
            "seconds": round(row.seconds, 3) if row.seconds is not None else None,
            "created_at": iso(row.created_at),
            "load_id": row.load_id,
            "loaded_at": iso(row.loaded_at),
            "error": row.error,
        }
        for row in rows
    ]


def print_history(records: Sequence[Mapping[str, Any]]) -> None:
    headings = ["started", "query", "query run", "window", "rows", "status", "seconds"]
    with_errors = any(record["error"] for record in records)
    if with_errors:
        headings.append("error")
    rows = []
    for record in records:
        row = [
            shown(record["created_at"]),
            record["query"],
            record["query_run_id"] or NONE,
            window(parse_iso(record["cursor_start"]), parse_iso(record["cursor_end"])),
            f"{record['rows']:,}",
            record["status"],
            f"{record['seconds']:.1f}" if record["seconds"] is not None else NONE,
        ]
        if with_errors:
            row.append(first_line(record["error"] or ""))
        rows.append(row)
    print_table(
        f"last {counted(len(records), 'query run')} (times in UTC)",
        headings,
        rows,
        right=("rows", "seconds"),
    )


# --- freshness -------------------------------------------------------------------------------


def freshness_records(results: Iterable[FreshnessResult]) -> list[dict[str, Any]]:
    """`freshness`: one record per table, ages in whole seconds, thresholds as written;
    `data_load_time` is Sigma's, the same in every record (see `freshness.sigma_data_load_time`)."""
    return [
        {
            "query": result.query_name,
            "status": result.status,
            "measured": result.measured,
            "newest_cursor": iso(result.newest_cursor),
            "loaded_at": iso(result.loaded_at),
            "data_load_time": iso(result.data_load_time),
            "age_seconds": int(result.age.total_seconds()) if result.age is not None else None,
            "warn_after": _duration(result.warn_after),
            "error_after": _duration(result.error_after),
            "note": result.note,
        }
        for result in results
    ]


def print_freshness(
    records: Sequence[Mapping[str, Any]],
    sigma: SigmaSnapshot | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """One row per table; then how fresh Sigma's own data is, when known: it is the same for
    every table, so it is one line under the table rather than a column."""
    headings = ["query", "status", "newest cursor", "last load", "age", "warn after", "error after"]
    rows = [
        [
            record["query"],
            record["status"] + (f" ({record['note']})" if record["note"] else ""),
            shown(record["newest_cursor"]),
            shown(record["loaded_at"]),
            age(_seconds(record["age_seconds"])),
            record["warn_after"] or NONE,
            record["error_after"] or NONE,
        ]
        for record in records
    ]
    console = output_console()
    print_table("freshness (times in UTC)", headings, rows, right=("age",), console=console)
    if sigma is not None:
        old = age((now or datetime.now(timezone.utc)) - sigma.data_load_time)
        console.print(
            f"Sigma's data is as of {shown(iso(sigma.data_load_time))} UTC ({old} ago): the "
            f"data_load_time of its newest scheduled query run, {sigma.scheduled_run_id}.",
            highlight=False,
        )


def stale_reason(record: Mapping[str, Any]) -> str:
    """Why a table failed its freshness check, in one line for a scheduler's alert."""
    if record["age_seconds"] is None:
        return f"{record['note']}, but freshness thresholds are set"
    if record["measured"] == "cursor":
        newest = f"newest cursor value {shown(record['newest_cursor'])} UTC"
    else:
        newest = f"last load {shown(record['loaded_at'])} UTC"
    old = age(_seconds(record["age_seconds"]))
    return f"{newest} is {old} old, over error_after {record['error_after']}"


# --- saved queries -----------------------------------------------------------------------------


def outcome_records(outcomes: Iterable[Outcome]) -> list[dict[str, Any]]:
    return [
        {
            "query": outcome.query_name,
            "action": outcome.action,
            "saved_query_id": outcome.saved_query_id,
            "detail": outcome.detail,
        }
        for outcome in outcomes
    ]


def print_outcomes(title: str, records: Sequence[Mapping[str, Any]], action: str) -> None:
    """`action` heads the column of what happened (or, for `list`, the status)."""
    detail = "name" if action == "status" else "detail"
    print_table(
        title,
        ("query", action, "saved query", detail),
        [
            (r["query"], r["action"], r["saved_query_id"] or NONE, r["detail"] or "")
            for r in records
        ],
    )


# --- formatting --------------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    return utc_stamp(moment) if moment is not None else None


def parse_iso(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def shown(stamp: str | None) -> str:
    """`2025-04-01T12:34:56.789Z` as `2025-04-01 12:34:56`, or `-`."""
    return stamp[:19].replace("T", " ") if stamp else NONE


def age(span: timedelta | None) -> str:
    """`3d 4h`, `5h 12m`, `7m 3s`: the two largest units, or `-`."""
    if span is None:
        return NONE
    seconds = int(span.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount or (unit == "s" and not parts):
            parts.append(f"{amount}{unit}")
    return sign + " ".join(parts[:2])


def window(start: datetime | None, end: datetime | None) -> str:
    """`2024-01-01 00:00 → 2025-04-01 12:00`; `full` for a run without a cursor window."""
    if end is None:
        return "full"
    low = start.strftime("%Y-%m-%d %H:%M") if start else "…"
    return f"{low} → {end:%Y-%m-%d %H:%M}"


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`1 query`, `2 queries`, `1,264 rows`."""
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"


def first_line(text: str, limit: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _duration(span: timedelta | None) -> str | None:
    return format_duration(span) if span is not None else None


def _seconds(count: int | None) -> timedelta | None:
    return timedelta(seconds=count) if count is not None else None
