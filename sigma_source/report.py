"""Human-readable summaries of a run, for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from sigma_source.lineage import QueryRunRecord


def run_table(records: Sequence[QueryRunRecord]) -> Table:
    """One line per query run: what loaded, from which run, how long it took."""
    table = Table(title="sigma-load run", title_justify="left")
    for heading in ("query", "status", "rows", "query run", "window", "seconds"):
        justify = "right" if heading in ("rows", "seconds") else "left"
        table.add_column(heading, justify=justify)
    for record in sorted(records, key=lambda r: (r.query_name, r.cursor_start or 0)):
        table.add_row(
            record.query_name,
            record.status,
            f"{record.row_count:,}",
            record.query_run_id or "-",
            _window(record),
            f"{_seconds(record):.1f}",
        )
    return table


def output_console() -> Console:
    """A console for stdout; logs and pipes get wide, unwrapped lines instead of 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=240)


def print_run_table(records: Sequence[QueryRunRecord], console: Console | None = None) -> None:
    (console or output_console()).print(run_table(records))


def _window(record: QueryRunRecord) -> str:
    if record.cursor_end is None:
        return "full"
    start = record.cursor_start.strftime("%Y-%m-%d %H:%M") if record.cursor_start else "…"
    return f"{start} → {record.cursor_end:%Y-%m-%d %H:%M}"


def _seconds(record: QueryRunRecord) -> float:
    return (record.wait_seconds or 0.0) + (record.download_seconds or 0.0)
