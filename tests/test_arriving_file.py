"""A file read while its download writes it (`ArrivingFile`): reads wait for their bytes.

A real file under tmp_path, written by a thread of the test standing in for the download
(the end-to-end tests in test_staging_while_downloading.py use the real one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from sigma_source.arriving_file import (
    ArrivingFile,
    DownloadCancelled,
    DownloadRestarted,
    DownloadStopped,
)

CONTENT = bytes(range(256)) * 64  # 16 KiB


class Writer:
    """What the download does to an `ArrivingFile`: create the file, append, report."""

    def __init__(self, arriving: ArrivingFile) -> None:
        self.arriving = arriving
        self.out = None
        self.size = 0

    def start_attempt(self) -> None:
        if self.out is not None:
            self.out.close()
        self.out = self.arriving.path.open("wb")
        self.size = 0
        self.arriving.arrived(0)

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()
        self.size += len(data)
        self.arriving.arrived(self.size)

    def complete(self) -> None:
        self.out.close()
        self.arriving.complete(self.size)


@pytest.fixture
def arriving(tmp_path: Path) -> ArrivingFile:
    return ArrivingFile(tmp_path / "result.csv")


@pytest.fixture
def writer(arriving: ArrivingFile) -> Writer:
    return Writer(arriving)


def in_thread(function: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run `function` on a thread; the list gets its result, or the exception it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def still_waiting(thread: threading.Thread) -> bool:
    thread.join(timeout=0.2)
    return thread.is_alive()


def test_a_read_returns_the_bytes_asked_for_once_they_have_arrived(arriving, writer):
    writer.start_attempt()
    writer.write(CONTENT[:1000])
    stream = arriving.open()
    thread, outcome = in_thread(lambda: stream.read(1500))

    assert still_waiting(thread)
    writer.write(CONTENT[1000:2000])
    thread.join(timeout=5)

    assert outcome == [CONTENT[:1500]]


def test_a_read_returns_fewer_bytes_only_at_the_end_of_the_whole_file(arriving, writer):
    writer.start_attempt()
    writer.write(CONTENT[:100])
    writer.complete()
    stream = arriving.open()

    assert stream.read(60) == CONTENT[:60]
    assert stream.read(60) == CONTENT[60:100]
    assert stream.read(60) == b""


def test_a_reader_opened_before_the_file_exists_reads_it_from_its_first_byte(arriving, writer):
    stream = arriving.open()
    thread, outcome = in_thread(lambda: stream.read(10))

    assert still_waiting(thread)
    writer.start_attempt()
    writer.write(CONTENT[:10])
    thread.join(timeout=5)

    assert outcome == [CONTENT[:10]]


def test_a_download_that_stops_fails_the_waiting_reader_with_its_error(arriving, writer):
    writer.start_attempt()
    writer.write(CONTENT[:10])
    stream = arriving.open()
    thread, outcome = in_thread(lambda: stream.read(100))

    assert still_waiting(thread)
    arriving.stopped(ConnectionError("received 10 of 16384 bytes"))
    thread.join(timeout=5)

    [error] = outcome
    assert isinstance(error, DownloadStopped)
    assert isinstance(error.__cause__, ConnectionError)


def test_a_download_that_starts_over_fails_a_reader_that_has_read_part_of_it(arriving, writer):
    writer.start_attempt()
    writer.write(CONTENT[:100])
    stream = arriving.open()
    assert stream.read(50) == CONTENT[:50]

    writer.start_attempt()
    writer.write(CONTENT[:100])

    with pytest.raises(DownloadRestarted):
        stream.read(50)


def test_a_reader_that_has_read_nothing_follows_the_new_attempt(arriving, writer):
    writer.start_attempt()
    writer.write(CONTENT[:30])
    stream = arriving.open()

    writer.start_attempt()
    writer.write(CONTENT[:100])
    writer.complete()

    assert stream.read() == CONTENT[:100]


def test_a_file_truncated_under_a_waiting_reader_is_read_again_from_the_new_attempt(
    arriving, writer
):
    writer.start_attempt()
    writer.write(CONTENT[:100])
    writer.out.truncate(0)  # the next attempt has opened the file, not yet reported it
    stream = arriving.open()
    thread, outcome = in_thread(lambda: stream.read(100))

    assert still_waiting(thread)
    writer.start_attempt()
    writer.write(CONTENT[:100])
    thread.join(timeout=5)

    assert outcome == [CONTENT[:100]]


def test_cancelling_stops_the_download_at_its_next_chunk(arriving, writer):
    writer.start_attempt()
    writer.write(CONTENT[:10])

    arriving.cancel()

    with pytest.raises(DownloadCancelled):
        writer.write(CONTENT[10:20])


def test_waiting_for_the_whole_file_gives_its_path(arriving, writer):
    thread, outcome = in_thread(arriving.wait_until_complete)
    writer.start_attempt()
    writer.write(CONTENT)

    assert still_waiting(thread)
    writer.complete()
    thread.join(timeout=5)

    assert outcome == [arriving.path]


def test_waiting_gives_up_after_the_timeout_without_the_file(arriving, writer):
    writer.start_attempt()
    writer.write(CONTENT[:10])

    assert arriving.wait_until_complete(timeout=0.05) is None


def test_waiting_for_a_file_that_never_completes_raises_the_download_stopped(arriving):
    arriving.stopped(ConnectionError("gone"))

    with pytest.raises(DownloadStopped):
        arriving.wait_until_complete()


def test_pyarrow_parses_the_first_rows_before_the_file_is_whole(arriving, writer):
    rows = "".join(f"{n},name {n}\n" for n in range(20_000)).encode()
    half = len(rows) // 2
    writer.start_attempt()
    writer.write(b"id,name\n" + rows[:half])
    reader = pa_csv.open_csv(
        arriving.open(),
        read_options=pa_csv.ReadOptions(block_size=4096),
        convert_options=pa_csv.ConvertOptions(column_types={"id": pa.int64()}),
    )

    first = reader.read_next_batch()
    assert first.column("id")[0].as_py() == 0

    writer.write(rows[half:])
    writer.complete()
    rest = pa.Table.from_batches(list(reader))
    assert first.num_rows + rest.num_rows == 20_000
    assert rest.column("id")[-1].as_py() == 19_999


def test_an_error_raised_while_pyarrow_reads_reaches_its_caller_as_it_is(arriving, writer):
    writer.start_attempt()
    writer.write(b"id\n" + b"1\n" * 10_000)
    reader = pa_csv.open_csv(arriving.open(), read_options=pa_csv.ReadOptions(block_size=4096))
    reader.read_next_batch()

    writer.start_attempt()
    writer.write(b"id\n1\n")

    with pytest.raises(DownloadRestarted):
        for _ in reader:
            pass
