"""Stripe's v1 Sigma API, without the HTTP: routes, validation, objects, idempotency, and the
query runs executed in the background on the warehouse.

The HTTP server (server.py) turns requests into `ApiRequest`s and sends back `ApiResponse`s;
everything Stripe-specific about what to answer lives here.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sigma_source.emulator.faults import FILE_KINDS, RUN_KINDS, Fault, FaultBook
from sigma_source.emulator.objects import (
    QueryRun,
    SavedQuery,
    ScheduledRun,
    StoredFile,
    new_id,
    stable_id,
)
from sigma_source.emulator.warehouse import QuerySQLError, Warehouse

MAX_SQL_LENGTH = 100_000
MAX_IDEMPOTENCY_KEY_LENGTH = 255
QUERY_RUN_WORKERS = 4

# The scheduled runs every emulator starts with, newest first: (title, SQL).
SCHEDULED_QUERIES = (
    (
        "Daily net volume by currency",
        "select date_trunc('day', created) as day, currency, count(*) as transactions,"
        " sum(net) as net from balance_transactions group by 1, 2 order by 1, 2",
    ),
    (
        "Charges by status",
        "select status, count(*) as charges, sum(amount) as amount from charges"
        " group by status order by status",
    ),
    (
        "Customers by country",
        "select address_country, count(*) as customers, bool_or(delinquent) as any_delinquent"
        " from customers group by 1 order by 1",
    ),
    (
        "Open invoices",
        "select id, customer_id, amount_due, currency, date, description from invoices"
        " where status = 'open' order by date, id",
    ),
    (
        "Disputes needing a response",
        "select id, charge_id, amount, currency, reason, evidence_details_due_by from disputes"
        " where status = 'needs_response' order by created, id",
    ),
)


@dataclass
class ApiRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: Mapping[str, str]
    base_url: str
    request_id: str


@dataclass
class ApiResponse:
    """What to send: a JSON body, or a result file to stream (possibly under a file fault)."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    file: StoredFile | None = None
    stream_fault: Fault | None = None


def stripe_error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> ApiResponse:
    doc_url = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}" if code else None
    error = {
        "type": error_type,
        "code": code,
        "message": message,
        "param": param,
        "doc_url": doc_url,
    }
    return ApiResponse(status, {"error": error})


def missing(kind: str, object_id: str, param: str = "id") -> ApiResponse:
    return stripe_error(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


class _BadParams(Exception):
    """A request parameter is wrong; carries the 400 answer."""

    def __init__(self, response: ApiResponse) -> None:
        super().__init__(response.body)
        self.response = response


@dataclass
class _StoredAnswer:
    fingerprint: tuple
    response: ApiResponse
    request_id: str


class SigmaAPI:
    """The state of one emulated Stripe account's Sigma, and the routes that act on it."""

    def __init__(
        self,
        *,
        warehouse: Warehouse,
        faults: FaultBook,
        workdir: Path,
        run_seconds: Callable[[], float],
    ) -> None:
        self.warehouse = warehouse
        self.faults = faults
        self.workdir = workdir
        self._run_seconds = run_seconds
        self._lock = threading.RLock()
        self._runs: dict[str, QueryRun] = {}
        self._served_runs: dict[str, dict[str, Any]] = {}
        self._saved: dict[str, SavedQuery] = {}
        self._files: dict[str, StoredFile] = {}
        self._scheduled: list[ScheduledRun] = []
        self._idempotent: dict[tuple[str | None, str], _StoredAnswer] = {}
        self.created_query_run_count = 0
        # (SQL marker, file contents): results served as they are, for malformed-CSV tests.
        self._canned_results: list[tuple[str, bytes]] = []
        # (SQL marker, [{name, type}]): the typed result schema a canned result's run carries.
        self._canned_schemas: list[tuple[str, list[dict[str, str]]]] = []
        self._executor = ThreadPoolExecutor(QUERY_RUN_WORKERS, thread_name_prefix="sigma-run")
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., ApiResponse]]] = [
            ("POST", re.compile(r"/v1/sigma/query_runs"), self._create_run),
            ("GET", re.compile(r"/v1/sigma/query_runs/([^/]+)"), self._retrieve_run),
            ("POST", re.compile(r"/v1/sigma/saved_queries"), self._create_saved),
            ("GET", re.compile(r"/v1/sigma/saved_queries/([^/]+)"), self._retrieve_saved),
            ("POST", re.compile(r"/v1/sigma/saved_queries/([^/]+)"), self._update_saved),
            ("DELETE", re.compile(r"/v1/sigma/saved_queries/([^/]+)"), self._delete_saved),
            ("GET", re.compile(r"/v1/sigma/scheduled_query_runs"), self._list_scheduled),
            ("GET", re.compile(r"/v1/sigma/scheduled_query_runs/([^/]+)"), self._get_scheduled),
            ("GET", re.compile(r"/v1/files/([^/]+)"), self._retrieve_file),
            ("GET", re.compile(r"/v1/files/([^/]+)/contents"), self._file_contents),
        ]

    # --- lifecycle -------------------------------------------------------------------------

    def create_scheduled_runs(self, seed: int, now: int) -> None:
        """Run the scheduled queries once, so listings and their files exist from the start."""
        for age, (title, sql) in enumerate(SCHEDULED_QUERIES):
            created = now - 3600 - age * 24 * 3600
            file = self._write_file(stable_id("file_", seed, "scheduled", age), sql, created, title)
            run = ScheduledRun(stable_id("sqr_", seed, "scheduled", age), title, sql, created, file)
            self._scheduled.append(run)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- what the emulator exposes to tests ---------------------------------------------------

    def served_runs(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {run_id: dict(run) for run_id, run in self._served_runs.items()}

    def add_canned_result(
        self, sql_contains: str, content: bytes, schema: list[dict[str, str]] | None = None
    ) -> None:
        """Runs whose SQL contains `sql_contains` end with `content` as their result file,
        byte for byte, instead of running: a CSV no SQL could produce (ragged, not UTF-8).

        With `schema` ([{"name", "type"}]) the finished run also carries it as
        `result.schema`, as the newer, typed Sigma APIs describe a result.
        """
        if not sql_contains:
            raise ValueError("a canned result needs a non-empty sql_contains")
        with self._lock:
            self._canned_results.append((sql_contains, bytes(content)))
            if schema is not None:
                self._canned_schemas.append((sql_contains, [dict(c) for c in schema]))

    def clear_canned_results(self) -> None:
        with self._lock:
            self._canned_results.clear()
            self._canned_schemas.clear()

    def _canned_schema(self, sql: str) -> list[dict[str, str]] | None:
        with self._lock:
            matches = [schema for marker, schema in self._canned_schemas if marker in sql]
        return matches[-1] if matches else None

    def _canned_result(self, sql: str) -> bytes | None:
        with self._lock:
            matches = [content for marker, content in self._canned_results if marker in sql]
        return matches[-1] if matches else None

    def sql_of(self, params: Mapping[str, str]) -> str | None:
        """The SQL a query-run request would run (for faults filtered by `sql_contains`)."""
        if "sql" in params:
            return params["sql"]
        saved = self._saved.get(params.get("from_saved_query", ""))
        return saved.sql if saved else None

    # --- dispatch ----------------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> ApiResponse:
        handler, args = self._route(request.method, request.path)
        if handler is None:
            return stripe_error(
                404,
                f"Unrecognized request URL ({request.method}: {request.path}). "
                "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            )
        key = request.headers.get("Idempotency-Key")
        try:
            if request.method == "POST" and key:
                return self._idempotent_call(request, key, handler, args)
            return handler(request, *args)
        except _BadParams as bad:
            return bad.response

    def _route(self, method: str, path: str) -> tuple[Callable[..., ApiResponse] | None, tuple]:
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return handler, match.groups()
        return None, ()

    def _idempotent_call(
        self, request: ApiRequest, key: str, handler: Callable[..., ApiResponse], args: tuple
    ) -> ApiResponse:
        """Replay the first answer to a key; the same key with other parameters is an error.

        Only answers from requests that did their work (2xx) are kept, as on Stripe: a request
        refused for bad parameters can be retried with the same key once fixed."""
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            raise _BadParams(
                stripe_error(400, "Idempotency-Key must be at most 255 characters long.")
            )
        scope = (request.headers.get("Stripe-Account"), key)
        fingerprint = (request.method, request.path, tuple(sorted(request.params.items())))
        with self._lock:
            stored = self._idempotent.get(scope)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return stripe_error(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                        error_type="idempotency_error",
                    )
                headers = stored.response.headers | {
                    "Idempotent-Replayed": "true",
                    "Original-Request": stored.request_id,
                }
                return replace(stored.response, headers=headers)
            response = handler(request, *args)
            if 200 <= response.status < 300:
                self._idempotent[scope] = _StoredAnswer(fingerprint, response, request.request_id)
            return response

    # --- query runs --------------------------------------------------------------------------

    def _create_run(self, request: ApiRequest) -> ApiResponse:
        params = request.params
        _allow(params, "sql", "from_saved_query")
        sql = self._run_sql(params)
        now = time.time()
        run = QueryRun(new_id("qry_"), sql, now, self._run_seconds())
        run.forced = self.faults.take(RUN_KINDS, "POST", request.path, sql)
        # Stripe answers a new run as `running`, however quick its SQL: serve it before it runs.
        body = self._serve_run(run, now)
        with self._lock:
            self._runs[run.id] = run
            self.created_query_run_count += 1
        if run.forced is not None and not run.forced.runs_sql:
            run.finished_at = now
        else:
            self._executor.submit(self._execute, run)
        return ApiResponse(200, body)

    def _run_sql(self, params: Mapping[str, str]) -> str:
        has_sql, has_saved = "sql" in params, "from_saved_query" in params
        if has_sql == has_saved:
            param = "from_saved_query" if has_sql else "sql"
            raise _BadParams(
                stripe_error(
                    400, "You must provide exactly one of sql or from_saved_query.", param=param
                )
            )
        if has_sql:
            return _valid_sql(params["sql"])
        saved = self._saved.get(params["from_saved_query"])
        if saved is None:
            raise _BadParams(
                stripe_error(
                    400,
                    f"No such saved query: '{params['from_saved_query']}'",
                    code="resource_missing",
                    param="from_saved_query",
                )
            )
        return saved.sql

    def _execute(self, run: QueryRun) -> None:
        file_id = new_id("file_")
        try:
            file = self._write_file(file_id, run.sql, int(time.time()), f"Sigma query run {run.id}")
        except QuerySQLError as error:
            run.error = str(error)
        except Exception as error:  # the emulator is stopping, or a bug: the run fails
            run.error = f"internal emulator error: {type(error).__name__}: {error}"
        else:
            run.file_id = file.id
            run.result_schema = self._canned_schema(run.sql)
        finally:
            run.finished_at = time.time()

    def _write_file(self, file_id: str, sql: str, created: int, title: str) -> StoredFile:
        path = self.workdir / f"{file_id}.csv"
        canned = self._canned_result(sql)
        if canned is None:
            self.warehouse.write_csv(sql, path)
        else:
            path.write_bytes(canned)
        file = StoredFile(file_id, path, created, title)
        with self._lock:
            self._files[file_id] = file
        return file

    def _retrieve_run(self, request: ApiRequest, run_id: str) -> ApiResponse:
        run = self._runs.get(run_id)
        if run is None:
            return missing("query run", run_id)
        return ApiResponse(200, self._serve_run(run, time.time()))

    def _serve_run(self, run: QueryRun, now: float) -> dict[str, Any]:
        body = run.to_api(now)
        with self._lock:
            self._served_runs[run.id] = body
        return body

    # --- saved queries -----------------------------------------------------------------------

    def _create_saved(self, request: ApiRequest) -> ApiResponse:
        _allow(request.params, "sql", "name")
        if "sql" not in request.params:
            raise _BadParams(stripe_error(400, "Missing required param: sql.", param="sql"))
        saved = SavedQuery(
            new_id("qfl_"),
            _valid_sql(request.params["sql"]),
            request.params.get("name"),
            int(time.time()),
        )
        with self._lock:
            self._saved[saved.id] = saved
        return ApiResponse(200, saved.to_api())

    def _retrieve_saved(self, request: ApiRequest, saved_id: str) -> ApiResponse:
        saved = self._saved.get(saved_id)
        return ApiResponse(200, saved.to_api()) if saved else missing("saved query", saved_id)

    def _update_saved(self, request: ApiRequest, saved_id: str) -> ApiResponse:
        _allow(request.params, "sql", "name")
        saved = self._saved.get(saved_id)
        if saved is None:
            return missing("saved query", saved_id)
        if "sql" in request.params:
            saved.sql = _valid_sql(request.params["sql"])
        if "name" in request.params:
            saved.name = request.params["name"] or None
        return ApiResponse(200, saved.to_api())

    def _delete_saved(self, request: ApiRequest, saved_id: str) -> ApiResponse:
        with self._lock:
            saved = self._saved.pop(saved_id, None)
        if saved is None:
            return missing("saved query", saved_id)
        return ApiResponse(
            200, {"id": saved_id, "object": "sigma.sigma_api_query", "deleted": True}
        )

    # --- scheduled query runs ----------------------------------------------------------------

    def _list_scheduled(self, request: ApiRequest) -> ApiResponse:
        params = request.params
        _allow(params, "limit", "starting_after", "ending_before")
        limit = _limit(params.get("limit", "10"))
        if "starting_after" in params and "ending_before" in params:
            raise _BadParams(
                stripe_error(
                    400,
                    "You may only specify one of these parameters: ending_before, starting_after.",
                    param="ending_before",
                )
            )
        runs = self._scheduled
        if "starting_after" in params:
            after = self._scheduled_index(params["starting_after"], "starting_after") + 1
            page, has_more = runs[after : after + limit], len(runs) > after + limit
        elif "ending_before" in params:
            before = self._scheduled_index(params["ending_before"], "ending_before")
            start = max(0, before - limit)
            page, has_more = runs[start:before], start > 0
        else:
            page, has_more = runs[:limit], len(runs) > limit
        body = {
            "object": "list",
            "data": [run.to_api(request.base_url) for run in page],
            "has_more": has_more,
            "url": "/v1/sigma/scheduled_query_runs",
        }
        return ApiResponse(200, body)

    def _scheduled_index(self, run_id: str, param: str) -> int:
        for index, run in enumerate(self._scheduled):
            if run.id == run_id:
                return index
        raise _BadParams(
            stripe_error(
                400,
                f"No such scheduled query run: '{run_id}'",
                code="resource_missing",
                param=param,
            )
        )

    def _get_scheduled(self, request: ApiRequest, run_id: str) -> ApiResponse:
        for run in self._scheduled:
            if run.id == run_id:
                return ApiResponse(200, run.to_api(request.base_url))
        return missing("scheduled query run", run_id)

    # --- files -------------------------------------------------------------------------------

    def _retrieve_file(self, request: ApiRequest, file_id: str) -> ApiResponse:
        file = self._files.get(file_id)
        if file is None or self.faults.take(("expire_file",), "GET", request.path):
            return _file_gone(file_id, expired=file is not None)
        return ApiResponse(200, file.to_api(request.base_url))

    def _file_contents(self, request: ApiRequest, file_id: str) -> ApiResponse:
        file = self._files.get(file_id)
        if file is None:
            return _file_gone(file_id, expired=False)
        fault = self.faults.take(FILE_KINDS, "GET", request.path)
        if fault is not None and fault.kind == "expire_file":
            return _file_gone(file_id, expired=True)
        headers = {
            "Content-Type": "text/csv",
            "Content-Disposition": f'attachment; filename="{file_id}.csv"',
        }
        return ApiResponse(200, headers=headers, file=file, stream_fault=fault)


def _file_gone(file_id: str, *, expired: bool) -> ApiResponse:
    if expired:
        return stripe_error(
            404,
            f"The file '{file_id}' has expired and its contents are no longer available.",
            code="resource_missing",
            param="id",
        )
    return missing("file upload", file_id)


def _allow(params: Mapping[str, str], *names: str) -> None:
    """Stripe refuses parameters it does not know, naming the first one."""
    for name in params:
        if name not in names and not name.startswith("expand"):
            raise _BadParams(stripe_error(400, f"Received unknown parameter: {name}", param=name))


def _valid_sql(sql: str) -> str:
    if not sql.strip():
        raise _BadParams(stripe_error(400, "sql must not be empty.", param="sql"))
    if len(sql) > MAX_SQL_LENGTH:
        raise _BadParams(
            stripe_error(400, f"sql must be at most {MAX_SQL_LENGTH} characters long.", param="sql")
        )
    return sql


def _limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise _BadParams(stripe_error(400, f"Invalid integer: {value}", param="limit")) from None
    if not 1 <= limit <= 100:
        bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
        raise _BadParams(stripe_error(400, f"This value must be {bound}.", param="limit"))
    return limit
