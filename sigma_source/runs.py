"""One query run, start to file: create it, wait for it, download its result.

Everything learnt on the way is written into a `QueryRunRecord` as soon as it is known, so
that a run which fails half-way is still recorded with its run id and what went wrong.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sigma_source.events import EventCallback, ProgressEvent
from sigma_source.lineage import SUCCEEDED, QueryRunRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from sigma_source.api_objects import QueryRun
    from sigma_source.client import SigmaClient


def execute_query_run(
    client: SigmaClient,
    record: QueryRunRecord,
    destination: Path,
    *,
    poll_timeout: float | None = None,
    expected_seconds: float | None = None,
    on_event: EventCallback | None = None,
    on_finished: Callable[[QueryRun], None] | None = None,
) -> Path:
    """Run `record.sql` (or `record.saved_query_id`) on Sigma and download the result CSV.

    `expected_seconds`, how long the query took on Sigma before, lets the wait poll sparsely
    until near the expected finish. Returns the path of the downloaded file. Raises a
    `SigmaLoadError` on any failure, after recording the run id and timings known by then.
    `on_event` hears of each poll (`running`, seconds so far) and each chunk downloaded
    (`downloading`, bytes so far). `on_finished` gets the finished run (its result schema,
    when the API gives one) before the download.
    """
    emit = on_event or _ignore
    if record.saved_query_id:
        run = client.create_query_run(saved_query=record.saved_query_id)
    else:
        run = client.create_query_run(record.sql)
    record.query_run_id = run.id
    record.created_at = run.created
    if run.sql and not record.sql:
        record.sql = run.sql

    created = time.monotonic()

    def polled(_run: object) -> None:
        seconds = round(time.monotonic() - created, 1)
        emit(ProgressEvent(record.query_name, "running", query_run_id=run.id, seconds=seconds))

    try:
        waited = client.wait(
            run.id, poll_timeout=poll_timeout, on_poll=polled, expected_seconds=expected_seconds
        )
    except Exception:
        # A run that failed on Sigma took time too: the history shows how long.
        record.wait_seconds = round(time.monotonic() - created, 3)
        raise
    record.poll_count = waited.polls
    record.wait_seconds = round(waited.seconds, 3)
    record.finalized_at = waited.run.finalized_at
    record.file_id = waited.run.file_id
    if on_finished is not None:
        on_finished(waited.run)

    def downloaded(received: int) -> None:
        emit(ProgressEvent(record.query_name, "downloading", query_run_id=run.id, bytes=received))

    started = time.monotonic()
    downloaded(0)
    try:
        record.file_size_bytes = client.download_file(
            waited.run.file_id, destination, on_progress=downloaded, query_run_id=run.id
        )
    finally:
        record.download_seconds = round(time.monotonic() - started, 3)
    record.status = SUCCEEDED
    return destination


def usual_run_seconds(run_seconds: object) -> float | None:
    """How long a query usually runs on Sigma: the median of its recent run times.

    `run_seconds` is what the pipeline state keeps for the query; anything but a list of
    numbers (a state edited by hand) counts as no history.
    """
    if not isinstance(run_seconds, list) or not run_seconds:
        return None
    try:
        return float(statistics.median(run_seconds))
    except (TypeError, ValueError):
        return None


def _ignore(event: ProgressEvent) -> None:
    pass
