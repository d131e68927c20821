"""Progress events: what a query is doing right now, for live lines, logs and timings.

The source and the run code emit them from dlt's worker threads; whoever passed the callback
(the CLI's progress display, a pipeline script) decides what to show. Kept free of heavy
imports so that the CLI can build its display before dlt is loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

Phase = Literal[
    "rendering", "running", "downloading", "staging", "waiting", "loading", "loaded", "failed"
]
PHASES: tuple[Phase, ...] = (
    "rendering",
    "running",
    "downloading",
    "staging",
    "waiting",
    "loading",
    "loaded",
    "failed",
)
"""In the order a query goes through them; `loaded` and `failed` end a query.

`waiting`: the query's rows are staged, and dlt's load step has not started yet (it waits for
the other queries, then normalizes); `loading`: dlt's load step, which loads every query's
rows in one package, is under way."""


@dataclass(frozen=True)
class ProgressEvent:
    """One step of one query: `phase` entered or advanced (more seconds, bytes or rows).

    `seconds` is the time the query run has been running on Sigma, `bytes` what has been
    downloaded of its result, `rows` the rows staged for dlt; `window` counts the query's
    cursor windows (backfill chunks) from 1. `at` is a monotonic clock reading.
    """

    query: str
    phase: Phase
    window: int = 1
    windows: int = 1
    query_run_id: str | None = None
    seconds: float | None = None
    bytes: int | None = None
    rows: int | None = None
    message: str | None = None
    at: float = field(default_factory=time.monotonic, compare=False)


EventCallback = Callable[[ProgressEvent], None]


def utc_stamp(moment: datetime | None = None) -> str:
    """`2025-04-01T12:00:00.123Z`: the timestamp format of every machine-readable output."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
