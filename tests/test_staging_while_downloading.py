"""A result is parsed and staged while it downloads, with the guarantees of a whole file.

Staging-level tests drive an `ArrivingFile` by hand, so each moment (part of the file on
disk, the download starting over, stopping) is exact; the end-to-end tests download from
the emulator, whose faults slow, stall and break off the real transfer.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sigma_source import arrow_csv, source
from sigma_source.arriving_file import ArrivingFile, DownloadStopped
from sigma_source.emulator import Fault
from sigma_source.loader import run
from sigma_source.source import FOLLOW_AFTER_SECONDS, RunReport
from sigma_source.staging import StagingFile, stage_result
from tests.loader_helpers import LoaderHarness
from tests.test_arriving_file import Writer, in_thread
from tests.test_staging import write_query

BLOCK = 4096  # small blocks: a file of a few hundred rows spans many
DOWNLOAD = r"/contents$"
ROWS = 5_000
CSV = (
    "id,amount,created\n"
    + "".join(f"txn_{n},{n * 7},2024-01-01 00:00:{n % 60:02d}\n" for n in range(ROWS))
).encode()


class WatchedStaging(StagingFile):
    """A staging file that says when its first rows came, and counts its resets."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, load_id=None)
        self.first_rows = threading.Event()
        self.resets = 0

    def write(self, batch):
        super().write(batch)
        if batch.num_rows:
            self.first_rows.set()

    def reset(self) -> None:
        self.resets += 1
        super().reset()


@pytest.fixture
def staging_run(tmp_path):
    """Stage an arriving result on a thread: (writer, staging, thread, outcome)."""
    query = write_query(tmp_path, "select id, amount, created from balance_transactions")
    arriving = ArrivingFile(tmp_path / "result.csv")
    staging = WatchedStaging(tmp_path / "rows.parquet")
    thread, outcome = in_thread(
        lambda: stage_result(query, arriving, staging, query_run_id="qry_1", block_size=BLOCK)
    )
    return Writer(arriving), staging, thread, outcome


def test_rows_are_staged_before_the_file_is_whole(staging_run):
    writer, staging, thread, outcome = staging_run
    writer.start_attempt()
    writer.write(CSV[: len(CSV) // 2])

    assert staging.first_rows.wait(timeout=10)
    assert thread.is_alive()  # waiting for the rest of the file

    writer.write(CSV[len(CSV) // 2 :])
    writer.complete()
    thread.join(timeout=10)
    staging.close()

    [result] = outcome
    assert result.row_count == ROWS
    assert result.types == {"id": "varchar", "amount": "bigint", "created": "timestamp"}
    assert pq.read_table(staging.path).column("id").to_pylist()[-1] == f"txn_{ROWS - 1}"


def test_a_download_that_starts_over_is_staged_again_from_its_first_row(staging_run):
    writer, staging, thread, outcome = staging_run
    writer.start_attempt()
    writer.write(CSV[: len(CSV) // 2])
    assert staging.first_rows.wait(timeout=10)

    writer.start_attempt()
    writer.write(CSV)
    writer.complete()
    thread.join(timeout=10)
    staging.close()

    [result] = outcome
    assert staging.resets == 1
    assert result.row_count == staging.row_count == ROWS
    ids = pq.read_table(staging.path).column("id").to_pylist()
    assert ids == [f"txn_{n}" for n in range(ROWS)]


def test_a_download_that_stops_fails_the_stage(staging_run):
    writer, staging, thread, outcome = staging_run
    writer.start_attempt()
    writer.write(CSV[: len(CSV) // 2])
    assert staging.first_rows.wait(timeout=10)

    writer.arriving.stopped(ConnectionError("broke off"))
    thread.join(timeout=10)

    [error] = outcome
    assert isinstance(error, DownloadStopped)


# --- end to end, from the emulator ------------------------------------------------------


@pytest.fixture
def harness(tmp_path, emulator) -> LoaderHarness:
    harness = LoaderHarness(tmp_path, emulator.url)
    harness.write_query("transactions", "select * from balance_transactions")  # ~140 kB
    return harness


def run_watching(harness: LoaderHarness, **settings) -> tuple[object, list]:
    """One run with small CSV blocks; the run's result and every progress event."""
    events: list = []
    report = RunReport(on_event=events.append)
    source_settings = {"csv_block_size": BLOCK, **settings}
    result = run(harness.options(source_settings=source_settings), report)
    return result, events


def test_a_stalled_download_has_its_first_rows_staged_before_it_resumes(
    harness, emulator, monkeypatch
):
    downloaded: list[int] = []
    bytes_at_first_rows: list[int] = []
    write = StagingFile.write

    def watched_write(self, batch):
        if not bytes_at_first_rows:
            bytes_at_first_rows.append(downloaded[-1])
        write(self, batch)

    monkeypatch.setattr(StagingFile, "write", watched_write)
    emulator.add_fault(
        Fault(kind="stall", fraction=0.5, seconds=FOLLOW_AFTER_SECONDS + 1.5, path=DOWNLOAD)
    )
    report = RunReport(
        on_event=lambda event: (
            downloaded.append(event.bytes) if event.phase == "downloading" else None
        )
    )

    result = run(harness.options(source_settings={"csv_block_size": BLOCK}), report)

    assert result.ok, result.failures
    [record] = result.records
    assert bytes_at_first_rows[0] < record.file_size_bytes
    assert harness.sql("select count(*) from sigma.transactions") == [(record.row_count,)]
    assert record.row_count == emulator.execute("select count(*) from balance_transactions")[0][0]


def test_a_download_that_breaks_off_loads_every_row_once(harness, emulator, monkeypatch):
    monkeypatch.setattr(source, "FOLLOW_AFTER_SECONDS", 0.0)  # read it from its first chunk
    emulator.add_fault(Fault(kind="truncate", fraction=0.6, path=DOWNLOAD, times=1))

    result, _ = run_watching(harness)

    assert result.ok, result.failures
    expected = emulator.execute("select id from balance_transactions order by id")
    assert harness.sql("select id from sigma.transactions order by id") == expected


def test_a_bad_value_early_in_a_slow_download_fails_without_downloading_the_rest(harness, emulator):
    harness.write_query(
        "transactions",
        "{{ config(columns={'currency': 'bigint'}) }}\nselect * from balance_transactions",
    )
    harness.write_query("charges", "select id, amount from charges")
    emulator.add_fault(Fault(kind="slow", bytes_per_second=10_000, path=DOWNLOAD, times=None))

    result, events = run_watching(harness, max_concurrent_runs=1)

    assert list(result.failures) == ["transactions"]
    assert re.search(
        r"row 1: value '[a-z]{3}' is not a valid bigint", result.failures["transactions"]
    )
    # The download was stopped: it never reached the end of its file.
    phases = [event.phase for event in events if event.query == "transactions"]
    assert "downloading" in phases and "staging" not in phases
    # Its slot of max_concurrent_runs was freed: the other query ran and loaded.
    charges = emulator.execute("select count(*) from charges")[0][0]
    assert harness.sql("select count(*) from sigma.charges") == [(charges,)]


def test_a_download_that_ends_quickly_is_read_whole_from_its_file(harness, monkeypatch):
    opened = []
    open_csv = arrow_csv._open_csv

    def watched_open(path, *args):
        opened.append(path)
        return open_csv(path, *args)

    monkeypatch.setattr(arrow_csv, "_open_csv", watched_open)

    result, _ = run_watching(harness)

    assert result.ok, result.failures
    assert opened and all(isinstance(path, Path) for path in opened)


def test_pyarrow_gets_an_io_thread_for_every_result_that_can_be_read_as_it_arrives(monkeypatch):
    import pyarrow as pa

    before = pa.io_thread_count()
    monkeypatch.setattr(source, "STAGING_SLOTS", before)  # a machine with many cores
    try:
        source._reserve_io_threads()
        assert pa.io_thread_count() == 2 * before
    finally:
        pa.set_io_thread_count(before)
