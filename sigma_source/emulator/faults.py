"""Faults the emulator injects on request, so every error path of a client meets a real socket.

A test adds a `Fault`; the next matching requests (or query runs) suffer it, `times` times, and
then it is spent. Faults belong to one emulator, so they never leak between tests.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

# Faults that act on a request before (or instead of) its normal answer.
REQUEST_KINDS = ("status", "drop", "drop_after", "delay", "malformed_json", "body")
# Faults that act on file downloads (and, for expire_file, on the File object too).
FILE_KINDS = ("truncate", "stall", "slow", "expire_file")
# A fault that decides how the next query runs end.
RUN_KINDS = ("run_status",)
KINDS = REQUEST_KINDS + FILE_KINDS + RUN_KINDS
# `run_status` values that are a success with a result file: older API versions say
# "completed" where newer ones say "succeeded".
SUCCESS_STATUSES = ("succeeded", "completed")

# What Stripe answers for each status when a test names none (error type, code, message).
_DEFAULT_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (injected fault)."),
    401: ("invalid_request_error", None, "Invalid API Key provided (injected fault)."),
    403: ("invalid_request_error", "secret_key_required", "Permission denied (injected fault)."),
    404: ("invalid_request_error", "resource_missing", "No such resource (injected fault)."),
    409: ("invalid_request_error", "lock_timeout", "Request conflicted (injected fault)."),
    429: ("invalid_request_error", "rate_limit", "Too many requests hit the API too quickly."),
}
_SERVER_ERROR = ("api_error", None, "An error occurred with our API (injected fault).")


@dataclass
class Fault:
    """One injected fault.

    Matching: `method` (None = any), `path` (a regex searched in the request path; "" = any),
    `sql_contains` (only requests or runs whose SQL contains it). `times` is how many
    matching requests (or runs, for `run_status`) it hits; None = every one, forever.

    Kinds: `status` (answer `status` with a Stripe error body, optional `retry_after` and
    `should_retry` headers), `drop` (close without answering, before any work),
    `drop_after` (do the work, then close without answering), `delay` (do the work, then
    answer `seconds` late: a client whose timeout is shorter gives up first), `malformed_json`
    (200 with a body that is not JSON), `body` (200 with `body`, any JSON, instead of the
    real object), `truncate` (a file download stops after `fraction` of its bytes), `stall`
    (a file download pauses `seconds` after `fraction` of its bytes, then sends the rest),
    `slow` (a file download at `bytes_per_second`), `expire_file` (the file and its
    contents answer 404), `run_status` (the next query runs end with `run_status`:
    "failed", "canceled", "timed_out", "no_file" = succeeded without a file, "completed" =
    succeeded with its file under the status older API versions report, or any other
    string for a status the client does not know; `message` is the run's error message).
    """

    kind: str
    method: str | None = None
    path: str = ""
    times: int | None = 1
    status: int = 500
    error_type: str | None = None
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    should_retry: bool | None = None
    sql_contains: str | None = None
    fraction: float = 0.5
    bytes_per_second: int = 65_536
    run_status: str = "failed"
    seconds: float = 1.0
    body: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.times is not None and self.times < 1:
            raise ValueError(
                f"fault times must be at least 1 (or None for always), not {self.times}"
            )
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"fault fraction must be between 0 and 1, not {self.fraction}")
        if self.seconds < 0:
            raise ValueError(f"fault seconds must not be negative, not {self.seconds}")
        if self.bytes_per_second < 1:
            raise ValueError(
                f"fault bytes_per_second must be positive, not {self.bytes_per_second}"
            )
        re.compile(self.path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from JSON (the control API); unknown fields fail with the valid ones."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown fault field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        if "kind" not in data:
            raise ValueError(f"a fault needs a kind; choose one of {', '.join(KINDS)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def runs_sql(self) -> bool:
        """Whether a run this fault ends still runs its SQL (to have a result file)."""
        return self.kind == "run_status" and self.run_status in SUCCESS_STATUSES

    def error_body(self) -> dict[str, Any]:
        """The Stripe error a `status` fault answers with."""
        if self.status in _DEFAULT_ERRORS:
            error_type, code, message = _DEFAULT_ERRORS[self.status]
        elif self.status >= 500:
            error_type, code, message = _SERVER_ERROR
        else:
            error_type, code, message = _DEFAULT_ERRORS[400]
        return {
            "type": self.error_type or error_type,
            "code": self.code if self.code is not None else code,
            "message": self.message or message,
            "param": None,
            "doc_url": None,
        }

    def matches(self, method: str, path: str, sql: str | None) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path and not re.search(self.path, path):
            return False
        return self.sql_contains is None or (sql is not None and self.sql_contains in sql)


class FaultBook:
    """The faults of one emulator: added by tests, spent by matching requests."""

    def __init__(self) -> None:
        # Each entry is [fault, uses left (None = unlimited)], in the order added.
        self._entries: list[list[Any]] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._entries.append([fault, fault.times])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [fault for fault, _ in self._entries]

    def take(
        self, kinds: tuple[str, ...], method: str, path: str, sql: str | None = None
    ) -> Fault | None:
        """The first unspent fault of one of `kinds` matching the request, spending one use."""
        with self._lock:
            for entry in self._entries:
                fault, uses_left = entry
                if fault.kind in kinds and fault.matches(method, path, sql):
                    if uses_left is not None:
                        entry[1] = uses_left - 1
                        if entry[1] == 0:
                            self._entries.remove(entry)
                    return fault
        return None
