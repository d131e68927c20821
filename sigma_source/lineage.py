"""Run records: one row in `_sigma_query_runs` per query run the loader made or consumed.

The table ties every loaded row (through its `_sigma_query_run_id`) to the Stripe query run,
the SQL as rendered, the result file and the dlt load. Failed runs are recorded too, with
`status` and `error` and zero rows, so a scheduler's history shows what went wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

LINEAGE_TABLE = "_sigma_query_runs"
RUN_ID_COLUMN = "_sigma_query_run_id"

# Statuses a record can end with. `discarded`: the run itself succeeded, but another part of the
# same query failed (e.g. a later backfill chunk), so none of its rows were loaded.
SUCCEEDED = "succeeded"
FAILED = "failed"
DISCARDED = "discarded"

# Declared so the table has stable types even when a column is NULL in every row of a load.
LINEAGE_COLUMNS: dict[str, dict[str, Any]] = {
    "query_name": {"data_type": "text", "nullable": False},
    "query_run_id": {"data_type": "text"},
    "saved_query_id": {"data_type": "text"},
    "sql": {"data_type": "text"},
    "sql_sha256": {"data_type": "text"},
    "status": {"data_type": "text", "nullable": False},
    "error": {"data_type": "text"},
    "created_at": {"data_type": "timestamp", "timezone": True},
    "finalized_at": {"data_type": "timestamp", "timezone": True},
    "file_id": {"data_type": "text"},
    "file_size_bytes": {"data_type": "bigint"},
    "row_count": {"data_type": "bigint", "nullable": False},
    "cursor_start": {"data_type": "timestamp", "timezone": True},
    "cursor_end": {"data_type": "timestamp", "timezone": True},
    "data_load_time": {"data_type": "timestamp", "timezone": True},
    "poll_count": {"data_type": "bigint"},
    "wait_seconds": {"data_type": "double"},
    "download_seconds": {"data_type": "double"},
    "load_id": {"data_type": "text"},
}


@dataclass
class QueryRunRecord:
    """What is known about one query run; filled in as the run progresses."""

    query_name: str
    sql: str | None = None
    saved_query_id: str | None = None
    query_run_id: str | None = None
    status: str = FAILED
    error: str | None = None
    created_at: datetime | None = None
    finalized_at: datetime | None = None
    file_id: str | None = None
    file_size_bytes: int | None = None
    row_count: int = 0
    cursor_start: datetime | None = None
    cursor_end: datetime | None = None
    data_load_time: datetime | None = None
    poll_count: int | None = None
    wait_seconds: float | None = None
    download_seconds: float | None = None
    load_id: str | None = None

    @property
    def sql_sha256(self) -> str | None:
        if self.sql is None:
            return None
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    def discard(self, reason: str) -> None:
        """Mark a run whose rows will not be loaded because its query failed elsewhere."""
        if self.status == SUCCEEDED:
            self.status = DISCARDED
            self.error = reason
        self.row_count = 0

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["sql_sha256"] = self.sql_sha256
        return {name: row[name] for name in LINEAGE_COLUMNS}
