"""The Stripe objects the emulator serves, and their JSON shapes (as Stripe's v1 API shows them)."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigma_source.emulator.faults import Fault

FILE_LIFETIME_SECONDS = 30 * 24 * 3600
_ID_ALPHABET = string.digits + string.ascii_letters


def new_id(prefix: str) -> str:
    """A fresh Stripe-style id (random: runs of a restarted emulator never reuse an id)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def stable_id(prefix: str, *parts: object) -> str:
    """A Stripe-style id derived from `parts`: the same parts always give the same id."""
    digest = int.from_bytes(hashlib.sha256(repr((prefix, parts)).encode()).digest()[:18], "big")
    chars = []
    for _ in range(24):
        digest, remainder = divmod(digest, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[remainder])
    return prefix + "".join(chars)


@dataclass
class StoredFile:
    """A result CSV on disk, served as a Stripe File."""

    id: str
    path: Path
    created: int
    title: str

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def to_api(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "created": self.created,
            "expires_at": self.created + FILE_LIFETIME_SECONDS,
            "filename": f"{self.id}.csv",
            "links": None,
            "purpose": "sigma_scheduled_query",
            "size": self.size,
            "title": self.title,
            "type": "csv",
            "url": f"{base_url}/v1/files/{self.id}/contents",
        }


# Error messages of runs ended by a `run_status` fault that names none.
_FORCED_MESSAGES = {
    "failed": "Query failed (injected fault).",
    "canceled": "The query run was canceled.",
    "timed_out": "The query run exceeded the maximum run time.",
}


@dataclass
class QueryRun:
    """A query run: `running` until its SQL finished and `run_seconds` passed since creation."""

    id: str
    sql: str
    created: float
    run_seconds: float
    forced: Fault | None = None
    finished_at: float | None = None
    file_id: str | None = None
    error: str | None = None
    # The result's typed columns, [{name, type}], as the newer Sigma APIs give them; the v1
    # API gives none, so only a canned result with a schema has one (see add_canned_result).
    result_schema: list[dict[str, str]] | None = None

    def to_api(self, now: float) -> dict[str, Any]:
        run = {
            "id": self.id,
            "object": "sigma.sigma_query_run",
            "created": int(self.created),
            "error": None,
            "finalized_at": None,
            "livemode": False,
            "result": {"file": None},
            "sql": self.sql,
            "status": "running",
        }
        if self.finished_at is None or now < self.created + self.run_seconds:
            return run
        run["finalized_at"] = int(max(self.finished_at, self.created + self.run_seconds))
        if self.forced is not None and not self.forced.runs_sql:
            return run | self._forced_outcome(self.forced)
        if self.error is not None:
            return run | {"status": "failed", "error": {"message": self.error}}
        status = self.forced.run_status if self.forced is not None else "succeeded"
        result: dict[str, Any] = {"file": self.file_id}
        if self.result_schema is not None:
            result["schema"] = [dict(column) for column in self.result_schema]
        return run | {"status": status, "result": result}

    @staticmethod
    def _forced_outcome(fault: Fault) -> dict[str, Any]:
        if fault.run_status == "no_file":
            return {"status": "succeeded"}
        message = fault.message or _FORCED_MESSAGES.get(fault.run_status)
        return {"status": fault.run_status, "error": {"message": message} if message else None}


@dataclass
class SavedQuery:
    id: str
    sql: str
    name: str | None
    created: int

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "sigma.sigma_api_query",
            "created": self.created,
            "livemode": False,
            "name": self.name,
            "sql": self.sql,
        }


@dataclass
class ScheduledRun:
    """A completed run of a query scheduled in the Dashboard, with its result file inline."""

    id: str
    title: str
    sql: str
    created: int
    file: StoredFile

    def to_api(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "scheduled_query_run",
            "created": self.created,
            # Sigma's data lags real time by a few hours: the snapshot predates the run.
            "data_load_time": self.created - 3 * 3600,
            "error": None,
            "file": self.file.to_api(base_url),
            "livemode": False,
            "result_available_until": self.created + FILE_LIFETIME_SECONDS,
            "sql": self.sql,
            "status": "completed",
            "title": self.title,
        }
