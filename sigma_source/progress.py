"""Progress of a run as it happens: a live table on a terminal, log lines elsewhere, JSON lines
for machines, nothing with `--quiet`.

`RunTracker` is the `on_event` callback a `RunReport` carries. It keeps each query's latest
state and the time spent in each phase (for `run_results.json`), and hands what is worth
showing to a display. Events come from dlt's worker threads, so everything here is locked.
The source reports a query as `waiting` once its rows are staged; the loader reports it
`loading` and `loaded` as dlt's load step starts and ends (`loader.reporting_dlt_steps`).
Displays throttle repeats of a phase (a download reports every MiB) to one line per
`interval` seconds; a new phase or window is always shown.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, Any, Protocol

from sigma_source.events import ProgressEvent, utc_stamp

ENDED = ("loaded", "failed")
TIMED_PHASES = ("rendering", "running", "downloading", "staging", "waiting", "loading")
JSON_KEYS = (
    "ts",
    "event",
    "query",
    "phase",
    "window",
    "windows",
    "query_run_id",
    "seconds",
    "bytes",
    "rows",
    "message",
)
"""Every progress object carries exactly these keys (null when unknown), in this order."""


@dataclass
class QueryProgress:
    """Where one query is now, and how long it spent in each phase so far."""

    query: str
    latest: ProgressEvent
    started: float
    phase_started: float
    run_started: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.latest.phase in ENDED

    def advance(self, event: ProgressEvent) -> bool:
        """Take in the next event; True when it starts a new phase or window."""
        previous = self.latest
        changed = (event.phase, event.window) != (previous.phase, previous.window)
        if changed:
            self._close_phase(event.at)
            self.phase_started = event.at
            if event.phase == "running":
                self.run_started = event.at - (event.seconds or 0.0)
        self.latest = event
        return changed

    def _close_phase(self, at: float) -> None:
        phase = self.latest.phase
        if phase in TIMED_PHASES:
            spent = max(at - self.phase_started, 0.0)
            self.timings[phase] = round(self.timings.get(phase, 0.0) + spent, 3)


class Display(Protocol):
    def start(self) -> None: ...

    def show(self, progress: QueryProgress, changed: bool) -> None: ...

    def stop(self) -> None: ...


class RunTracker:
    """The event callback of a run: state per query, timings per phase, and a display."""

    def __init__(self, display: Display | None = None) -> None:
        self.display = display
        self.queries: dict[str, QueryProgress] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            progress = self.queries.get(event.query)
            if progress is None:
                progress = QueryProgress(event.query, event, event.at, event.at)
                self.queries[event.query] = progress
                changed = True
            else:
                changed = progress.advance(event)
            if self.display is not None:
                self.display.show(progress, changed)

    def finish(
        self, rows: Mapping[str, int], failures: Mapping[str, str], error: str | None = None
    ) -> None:
        """End every query still under way: failed with its message (or the load's `error`,
        when the load itself failed), else loaded."""
        for name in sorted(set(self.queries) | set(rows) | set(failures)):
            progress = self.queries.get(name)
            if progress is not None and progress.ended:
                continue
            if name in failures or error is not None:
                message = failures.get(name) or f"not loaded: {error}"
                self(ProgressEvent(name, "failed", message=message))
            else:
                self(ProgressEvent(name, "loaded", rows=rows.get(name, 0)))

    def timings(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {name: dict(progress.timings) for name, progress in self.queries.items()}


# --- what a line says ------------------------------------------------------------------------


def describe(progress: QueryProgress, now: float | None = None) -> str:
    """`running qry_123 12 s`: the query's phase in words; `now` makes times tick live."""
    event = progress.latest
    text = _phase_text(event, progress, now)
    if event.windows > 1 and event.phase not in ENDED:
        text = f"[{event.window}/{event.windows}] {text}"
    return text


def _phase_text(event: ProgressEvent, progress: QueryProgress, now: float | None) -> str:
    if event.phase == "running":
        seconds = event.seconds or 0.0
        if now is not None and progress.run_started is not None:
            seconds = now - progress.run_started
        return " ".join(filter(None, ("running", event.query_run_id, f"{seconds:.0f} s")))
    if event.phase == "downloading":
        return f"downloading {_size(event.bytes)}" if event.bytes else "downloading"
    if event.phase == "staging":
        return f"reading {_size(event.bytes)} of CSV into typed columns"
    if event.phase == "waiting":
        return f"staged {_rows(event.rows)}, {event.message or 'waiting for other queries'}"
    if event.phase == "loading":
        return f"loading {_rows(event.rows)}"
    if event.phase == "loaded":
        return f"loaded {_rows(event.rows)}"
    if event.phase == "failed":
        return f"failed: {event.message}"
    return "rendering SQL"


def _size(count: int | None) -> str:
    count = count or 0
    if count < 1000:
        return f"{count} B"
    if count < 1_000_000:
        return f"{count / 1000:.0f} kB"
    return f"{count / 1_000_000:.1f} MB"


def _rows(count: int | None) -> str:
    count = count or 0
    return f"{count:,} row" + ("" if count == 1 else "s")


def _throttled(
    shown: dict[str, float], progress: QueryProgress, changed: bool, interval: float
) -> bool:
    """True when this update should be skipped: same phase, shown less than `interval` ago."""
    now = progress.latest.at
    if changed or progress.ended or now - shown.get(progress.query, -interval) >= interval:
        shown[progress.query] = now
        return False
    return True


# --- displays --------------------------------------------------------------------------------


class LineDisplay:
    """`12:01:02 charges running qry_123 4 s`, one line per step, for logs and pipes."""

    def __init__(self, stream: IO[str], interval: float = 10.0) -> None:
        self.stream = stream
        self.interval = interval
        self._shown: dict[str, float] = {}

    def start(self) -> None:
        pass

    def show(self, progress: QueryProgress, changed: bool) -> None:
        if _throttled(self._shown, progress, changed, self.interval):
            return
        clock = datetime.now().strftime("%H:%M:%S")
        self.stream.write(f"{clock} {progress.query} {describe(progress)}\n")
        self.stream.flush()

    def stop(self) -> None:
        pass


class JsonDisplay:
    """One JSON object per line, for log collectors: progress objects have the keys of
    `JSON_KEYS`; without `progress`, only log records and the summary are written."""

    def __init__(self, stream: IO[str], interval: float = 10.0, progress: bool = True) -> None:
        self.stream = stream
        self.interval = interval
        self.progress = progress
        self._shown: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        pass

    def show(self, progress: QueryProgress, changed: bool) -> None:
        if not self.progress or _throttled(self._shown, progress, changed, self.interval):
            return
        event = progress.latest
        self.write(
            "progress",
            query=event.query,
            phase=event.phase,
            window=event.window,
            windows=event.windows,
            query_run_id=event.query_run_id,
            seconds=event.seconds,
            bytes=event.bytes,
            rows=event.rows,
            message=event.message,
        )

    def write(self, kind: str, **values: Any) -> None:
        """Any line this display prints: progress, logs, and the run's summary."""
        keys = JSON_KEYS if kind == "progress" else ("ts", "event", *values)
        line = {key: None for key in keys}
        line.update(values, ts=utc_stamp(), event=kind)
        with self._lock:
            self.stream.write(json.dumps(line, default=str) + "\n")
            self.stream.flush()

    def summary(self, run_results: Mapping[str, Any], path: object) -> None:
        """The last line of a run: its status, load id, counts and where the details are."""
        results = run_results["results"]
        self.write(
            "run",
            status=run_results["status"],
            load_id=run_results["load_id"],
            queries=len(results),
            failed=sum(1 for result in results if result["status"] != "loaded"),
            rows=sum(result["rows"] for result in results),
            elapsed_seconds=run_results["elapsed_seconds"],
            run_results=str(path),
            error=run_results["error"],
        )

    def stop(self) -> None:
        pass


class LiveDisplay:
    """A table redrawn in place on a terminal: one row per query, times ticking."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self._queries: dict[str, QueryProgress] = {}
        self._lock = threading.Lock()
        self._live = Live(
            console=console,
            get_renderable=self._table,
            transient=True,
            refresh_per_second=4,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def start(self) -> None:
        self._live.start()

    def show(self, progress: QueryProgress, changed: bool) -> None:
        with self._lock:
            self._queries[progress.query] = replace(progress, timings={})

    def stop(self) -> None:
        self._live.stop()

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_column(justify="right", style="dim")
        now = time.monotonic()
        with self._lock:
            queries = sorted(self._queries.values(), key=lambda progress: progress.query)
        for progress in queries:
            style = {"failed": "red", "loaded": "green"}.get(progress.latest.phase, "")
            elapsed = (progress.latest.at if progress.ended else now) - progress.started
            status = Text(describe(progress, now), style=style)
            table.add_row(progress.query, status, f"{elapsed:.0f} s")
        return table


def pick_display(log_format: str, quiet: bool, console: Any, stream: IO[str]) -> Display | None:
    """Live on a terminal, lines elsewhere, JSON when asked for, nothing when quiet."""
    if log_format == "json":
        return JsonDisplay(stream, progress=not quiet)
    if quiet:
        return None
    if console.is_terminal:
        return LiveDisplay(console)
    return LineDisplay(console.file)


@contextmanager
def showing_logs(display: Display | None) -> Iterator[None]:
    """Run the display for the duration; with JSON, the package's log records go there too."""
    handler = JsonLogHandler(display) if isinstance(display, JsonDisplay) else None
    package_log = logging.getLogger("sigma_source")
    if handler:
        package_log.addHandler(handler)
    if display:
        display.start()
    try:
        yield
    finally:
        if display:
            display.stop()
        if handler:
            package_log.removeHandler(handler)


class JsonLogHandler(logging.Handler):
    """The package's log records (retries, warnings) as JSON lines next to the progress."""

    def __init__(self, display: JsonDisplay) -> None:
        super().__init__(level=logging.INFO)
        self.display = display

    def emit(self, record: logging.LogRecord) -> None:
        self.display.write(
            "log", level=record.levelname.lower(), logger=record.name, message=record.getMessage()
        )


def rows_per_query(records: Iterable[Any]) -> dict[str, int]:
    """Rows loaded per query from its run records (discarded and failed runs count 0)."""
    rows: dict[str, int] = {}
    for record in records:
        rows[record.query_name] = rows.get(record.query_name, 0) + (
            record.row_count if record.status == "succeeded" else 0
        )
    return rows
