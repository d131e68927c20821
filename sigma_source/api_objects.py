"""The Stripe Sigma v1 objects the client returns, as frozen dataclasses.

Each object keeps the decoded JSON it came from in `raw`, so a field Stripe adds later is
still reachable without a release of this package. Unix timestamps become timezone-aware
UTC datetimes. Parsing is lenient about optional fields (Stripe omits or nulls them across
API versions) and strict only about `id`, without which an object is useless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

RUN_IN_PROGRESS = frozenset({"running", "pending"})
# Older API versions report success as "completed", newer ones as "succeeded".
RUN_SUCCEEDED = frozenset({"succeeded", "completed"})
RUN_FAILED = frozenset({"failed", "canceled", "timed_out"})


def utc_from_unix(value: Any) -> datetime | None:
    """A Stripe unix timestamp (seconds) as an aware UTC datetime; None stays None."""
    if value is None:
        return None
    return datetime.fromtimestamp(int(value), tz=timezone.utc)


def _error_message(obj: Mapping[str, Any]) -> str | None:
    error = obj.get("error")
    if isinstance(error, Mapping):
        message = error.get("message")
        return str(message) if message is not None else None
    return str(error) if error else None


def _result_file_id(run: Mapping[str, Any]) -> str | None:
    # `result.file` is an id today; accept an expanded File object too.
    result = run.get("result")
    if not isinstance(result, Mapping):
        return None
    file = result.get("file")
    if isinstance(file, Mapping):
        return file.get("id")
    return file or None


@dataclass(frozen=True)
class QueryRun:
    """A Sigma query run (`qry_...`): started by POST, polled by GET until it is finished."""

    id: str
    status: str
    sql: str | None
    created: datetime | None
    finalized_at: datetime | None
    file_id: str | None
    error_message: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    # The Request-Id of the answer this state came from, so an error about it can be traced.
    request_id: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any], *, request_id: str | None = None) -> QueryRun:
        return cls(
            id=obj["id"],
            status=str(obj.get("status") or ""),
            sql=obj.get("sql"),
            created=utc_from_unix(obj.get("created")),
            finalized_at=utc_from_unix(obj.get("finalized_at")),
            file_id=_result_file_id(obj),
            error_message=_error_message(obj),
            raw=obj,
            request_id=request_id,
        )

    @property
    def result_schema(self) -> dict[str, str] | None:
        """The result's column types, {name: type}, when the API says; None when it does not.

        The v1 API returns none. The newer Sigma APIs describe the result file with a typed
        `schema` of `[{name, type}]` (`result.file.schema` in the reporting API); it is read
        from `result.schema` or from an expanded `result.file` object. A column whose type
        is not a string is left out.
        """
        result = self.raw.get("result")
        if not isinstance(result, Mapping):
            return None
        schema = result.get("schema")
        file = result.get("file")
        if schema is None and isinstance(file, Mapping):
            schema = file.get("schema")
        if not isinstance(schema, list):
            return None
        types = {
            column["name"]: column["type"]
            for column in schema
            if isinstance(column, Mapping)
            and isinstance(column.get("name"), str)
            and isinstance(column.get("type"), str)
        }
        return types or None

    @property
    def is_finished(self) -> bool:
        """True once polling can stop: any status but running/pending, or finalized."""
        return self.status not in RUN_IN_PROGRESS or self.finalized_at is not None

    @property
    def is_success(self) -> bool:
        """True when the run succeeded and has a result file to download."""
        return self.status in RUN_SUCCEEDED and self.file_id is not None


@dataclass(frozen=True)
class SavedQuery:
    """A saved Sigma query (`qfl_...`) that runs can start from (`from_saved_query`)."""

    id: str
    name: str | None
    sql: str | None
    created: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> SavedQuery:
        return cls(
            id=obj["id"],
            name=obj.get("name"),
            sql=obj.get("sql"),
            created=utc_from_unix(obj.get("created")),
            raw=obj,
        )


@dataclass(frozen=True)
class FileObject:
    """A Stripe File (`file_...`); its contents live on the files host, not the API host."""

    id: str
    size: int | None
    filename: str | None
    url: str | None
    created: datetime | None
    expires_at: datetime | None
    purpose: str | None
    type: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> FileObject:
        size = obj.get("size")
        return cls(
            id=obj["id"],
            size=int(size) if size is not None else None,
            filename=obj.get("filename"),
            url=obj.get("url"),
            created=utc_from_unix(obj.get("created")),
            expires_at=utc_from_unix(obj.get("expires_at")),
            purpose=obj.get("purpose"),
            type=obj.get("type"),
            raw=obj,
        )


@dataclass(frozen=True)
class ScheduledQueryRun:
    """A run of a query scheduled in the Stripe Dashboard (`sqr_...`), with its file inline.

    `data_load_time` says how fresh the result is: Sigma's snapshot of the data as of then.
    """

    id: str
    status: str
    title: str | None
    sql: str | None
    created: datetime | None
    data_load_time: datetime | None
    result_available_until: datetime | None
    file: FileObject | None
    error_message: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> ScheduledQueryRun:
        file = obj.get("file")
        if isinstance(file, str):  # an unexpanded File: keep its id
            file = {"id": file}
        return cls(
            id=obj["id"],
            status=str(obj.get("status") or ""),
            title=obj.get("title"),
            sql=obj.get("sql"),
            created=utc_from_unix(obj.get("created")),
            data_load_time=utc_from_unix(obj.get("data_load_time")),
            result_available_until=utc_from_unix(obj.get("result_available_until")),
            file=FileObject.from_api(file) if isinstance(file, Mapping) else None,
            error_message=_error_message(obj),
            raw=obj,
        )
