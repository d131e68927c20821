"""DuckDB's memory limit for a load, sized to the rows the load inserts.

DuckDB holds its memory to `memory_limit` and fills that much with the blocks it writes, so
a fixed, small limit keeps a load's memory flat whatever the result's size. But an insert
cannot spill: each DuckDB thread builds a row group of its own (122,880 rows, with its
column buffers) before writing it, and an insert whose threads need more than the limit
fails ("Out of Memory Error"). What they need grows with the number of threads and with the
width of a row, not with the number of rows: 1M balance transactions loaded under 128 MB on
two threads and failed on eight (they needed ~150 MB there); 300K rows of 30 string columns
failed on two.

So the limit is set just before each load, from the footers of the parquet files it is
about to insert: per file, a row group's worth of its rows and columns for each DuckDB thread
it can keep busy, and for a table dlt merges into, room for all its rows; a floor that keeps
small loads as they were; fewer threads when that would take more than a share of the
machine's memory; and never more than DuckDB's own default limit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from sigma_source.dlt_steps import StepHooks, following_dlt_steps

DUCKDB_ROW_GROUP_ROWS = 122_880
# Measured need per thread (DuckDB 1.5, two and eight threads, six shapes of rows from 60
# booleans to 30 strings of 25 characters, some mostly null): about 0.55 MiB per column plus
# 0.55 to 0.7 times the parquet bytes of its rows. The estimate, 1 MiB per column plus those
# bytes whole, came to 1.6 to 2.6 times the limit each shape needed.
PER_COLUMN_BYTES = 1 << 20
# A merge of 300K rows of 20 text columns (132 MB as parquet) needed 260-340 MB in all on 2
# threads and 420-600 MB on 8. The estimate, the insert's need plus 3 times the file's bytes,
# came to 544 and 698 MB.
MERGE_BYTES_FACTOR = 3
# What DuckDB holds besides the threads' row groups (measured: a few MB).
BASE_BYTES = 32 << 20
# The limit a small load gets: what every load had before the limit was sized.
FLOOR_BYTES = 128 << 20
# Threads are cut back before the limit takes more than this share of the machine's memory.
MEMORY_SHARE = 0.5
DUCKDB_DEFAULT_SHARE = 0.8


@dataclass(frozen=True)
class InsertShape:
    """What DuckDB's memory for inserting one parquet file depends on, from its footer."""

    columns: int
    rows: int
    row_groups: int  # a file keeps at most one DuckDB thread per row group busy
    bytes_per_row: float  # of its widest row group, as parquet holds them before compression
    merged: bool = False  # rows dlt merges into their table, after inserting them

    def need(self, threads: int) -> int:
        """Bytes to insert the file on `threads` threads: each builds a row group of its own,
        of at most DUCKDB_ROW_GROUP_ROWS rows, and fewer when the rows are shared out first.

        A merge then deduplicates the rows by primary key (a window over all of them) and
        inserts them again: that holds every row at once, so it grows with the file.
        """
        busy = max(min(threads, self.row_groups), 1)
        rows_per_thread = min(DUCKDB_ROW_GROUP_ROWS, -(-self.rows // busy))
        per_thread = self.columns * PER_COLUMN_BYTES + rows_per_thread * self.bytes_per_row
        merge = MERGE_BYTES_FACTOR * self.rows * self.bytes_per_row if self.merged else 0
        return int(busy * per_thread + merge)


@dataclass(frozen=True)
class LoadMemory:
    """DuckDB's settings for a load: its memory limit and the threads that fit in it."""

    limit_bytes: int
    threads: int

    def pragmas(self) -> list[str]:
        return [f"memory_limit='{self.limit_bytes >> 20}MiB'", f"threads={self.threads}"]


def insert_shape(path: str | Path, *, merged: bool = False) -> InsertShape:
    """The shape of a parquet file, read from its footer (no rows are read)."""
    metadata = pq.read_metadata(path)
    row_groups = [metadata.row_group(index) for index in range(metadata.num_row_groups)]
    return InsertShape(
        columns=metadata.num_columns,
        rows=metadata.num_rows,
        row_groups=len(row_groups),
        bytes_per_row=max((_bytes_per_row(group) for group in row_groups), default=0.0),
        merged=merged,
    )


def _bytes_per_row(row_group: Any) -> float:
    return float(row_group.total_byte_size) / max(row_group.num_rows, 1)


def load_memory(
    shapes: Iterable[InsertShape], *, threads: int, machine_bytes: int | None
) -> LoadMemory:
    """The limit for inserting files of these shapes, and how many threads may share it.

    dlt inserts several files at once, so their needs add up.
    """
    shapes = list(shapes)
    budget = None if machine_bytes is None else int(machine_bytes * MEMORY_SHARE)
    chosen = max(threads, 1)
    while chosen > 1 and budget is not None and _need(shapes, chosen) > budget:
        chosen -= 1
    limit = max(FLOOR_BYTES, _need(shapes, chosen))
    if machine_bytes is not None:  # never past DuckDB's own default, 80% of the memory
        limit = min(limit, max(FLOOR_BYTES, int(machine_bytes * DUCKDB_DEFAULT_SHARE)))
    return LoadMemory(limit, chosen)


def _need(shapes: list[InsertShape], threads: int) -> int:
    return BASE_BYTES + sum(shape.need(threads) for shape in shapes)


def machine_memory_bytes() -> int | None:
    """The machine's physical memory, where the OS tells it."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


# --- applied to each load of a dlt pipeline ---------------------------------------------------


@contextlib.contextmanager
def duckdb_memory_sized_to_each_load(pipeline_name: str, enabled: bool = True) -> Iterator[None]:
    """Size DuckDB's memory limit to each load of the pipeline while the block runs.

    At the start of a load step the files are written and DuckDB is not yet connected to;
    the credentials' pragmas are applied to every connection the load then opens.
    """
    if not enabled:
        yield
        return
    with following_dlt_steps(_SizingEachLoad(pipeline_name)):
        yield


def duckdb_threads() -> int:
    """The threads DuckDB would use by default: one per core."""
    return os.cpu_count() or 1


class _SizingEachLoad(StepHooks):
    def step_started(self, step: str, pipeline: Any) -> None:
        if step != "load":
            return
        credentials = pipeline.destination.config_params.get("credentials")
        if credentials is None:
            return
        shapes = [
            insert_shape(path, merged=_is_merged(pipeline, path))
            for path in _parquet_files_to_load(pipeline)
        ]
        memory = load_memory(shapes, threads=duckdb_threads(), machine_bytes=machine_memory_bytes())
        credentials.pragmas = memory.pragmas()


def _is_merged(pipeline: Any, path: str) -> bool:
    """Whether dlt merges the rows of this load file into their table."""
    from dlt.common.storages.load_package import ParsedLoadJobFileName

    table_name = ParsedLoadJobFileName.parse(path).table_name
    table = pipeline.default_schema.tables.get(table_name) or {}
    return table.get("write_disposition") == "merge"


def _parquet_files_to_load(pipeline: Any) -> list[str]:
    """The parquet files of the pipeline's normalized packages, which its load inserts."""
    files = []
    for load_id in pipeline.list_normalized_load_packages():
        jobs = pipeline.get_load_package_info(load_id).jobs
        for state in ("new_jobs", "started_jobs"):
            files += [job.file_path for job in jobs.get(state, [])]
    return [path for path in files if path.endswith(".parquet")]
