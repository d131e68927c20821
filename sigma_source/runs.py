"""One query run, start to file: create it, wait for it, download its result.

The download runs on a thread of its own (`ResultDownload`), so that the result is read
while it arrives.

Everything learnt on the way is written into a `QueryRunRecord` as soon as it is known, so
that a run which fails half-way is still recorded with its run id and what went wrong.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sigma_source.arriving_file import ArrivingFile, DownloadCancelled
from sigma_source.events import EventCallback, ProgressEvent
from sigma_source.lineage import SUCCEEDED, QueryRunRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sigma_source.api_objects import QueryRun
    from sigma_source.client import SigmaClient


def run_on_sigma(
    client: SigmaClient,
    record: QueryRunRecord,
    *,
    poll_timeout: float | None = None,
    expected_seconds: float | None = None,
    on_event: EventCallback | None = None,
) -> QueryRun:
    """Run `record.sql` (or `record.saved_query_id`) on Sigma and wait for it to succeed.

    `expected_seconds`, how long the query took on Sigma before, lets the wait poll sparsely
    until near the expected finish. Returns the finished run (its result file, and the result
    schema when the API gives one). Raises a `SigmaLoadError` on any failure, after recording
    the run id and timings known by then. `on_event` hears of each poll (`running`, seconds
    so far).
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
    return waited.run


def download_result(
    client: SigmaClient,
    record: QueryRunRecord,
    destination: Path,
    *,
    on_event: EventCallback | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Download the result file of the finished run `record` names into `destination`.

    `on_event` hears of each chunk (`downloading`, bytes so far); `on_progress` gets the
    bytes on disk (see `SigmaClient.download_file`). The record gets the file's size, the
    download's duration and, once the file is whole, the status `succeeded`.
    """
    emit = on_event or _ignore

    def downloaded(received: int) -> None:
        if on_progress is not None:
            on_progress(received)
        emit(
            ProgressEvent(
                record.query_name, "downloading", query_run_id=record.query_run_id, bytes=received
            )
        )

    started = time.monotonic()
    try:
        record.file_size_bytes = client.download_file(
            record.file_id, destination, on_progress=downloaded, query_run_id=record.query_run_id
        )
    finally:
        record.download_seconds = round(time.monotonic() - started, 3)
    record.status = SUCCEEDED
    return destination


class ResultDownload:
    """`download_result` on a thread of its own, the file readable as it arrives (`file`).

    `on_end`, called on that thread when the download ends (True: the whole file is there),
    lets the caller free what the download held, such as its slot of concurrent runs.
    """

    def __init__(
        self,
        client: SigmaClient,
        record: QueryRunRecord,
        destination: Path,
        *,
        on_event: EventCallback | None = None,
        on_end: Callable[[bool], None] | None = None,
    ) -> None:
        self.file = ArrivingFile(destination)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._download,
            args=(client, record, on_event, on_end),
            name=f"sigma-download-{record.query_name}",
            daemon=True,
        )
        self._thread.start()

    def _download(
        self,
        client: SigmaClient,
        record: QueryRunRecord,
        on_event: EventCallback | None,
        on_end: Callable[[bool], None] | None,
    ) -> None:
        try:
            download_result(
                client, record, self.file.path, on_event=on_event, on_progress=self.file.arrived
            )
        except BaseException as error:  # raised again on the caller's side, by finish()
            self._error = error
        # Before the readers learn that the download ended: what on_end reports comes first.
        if on_end is not None:
            on_end(self._error is None)
        if self._error is None:
            self.file.complete(record.file_size_bytes or 0)
        else:
            self.file.stopped(self._error)

    @contextlib.contextmanager
    def reading(self, follow_after: float | None = 0.0) -> Iterator[Path | ArrivingFile]:
        """The file to read: its path if the download ends within `follow_after` seconds,
        else the `ArrivingFile`, read as it arrives. The download is waited for when reading
        ends.

        Reading that fails cancels the download; a download that failed on its own is what
        went wrong first, so its error is raised instead of the reader's.
        """
        try:
            yield self.file.wait_until_complete(timeout=follow_after) or self.file
        except BaseException:
            self.cancel()
            self.finish()
            raise
        self.finish()

    def cancel(self) -> None:
        """Stop the download: its file is not wanted any more."""
        self.file.cancel()

    def finish(self) -> None:
        """Wait for the download to end; raise its error, unless `cancel` stopped it."""
        self._thread.join()
        if self._error is not None and not isinstance(self._error, DownloadCancelled):
            raise self._error


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
