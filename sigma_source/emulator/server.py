"""The HTTP side of the emulator: parse requests, check the API key, inject transport faults,
record every request, and send JSON or stream result files.

A stdlib `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive, as Stripe's API does: every
answer carries a Content-Length, so a client's connection pool reuses connections.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from requests.structures import CaseInsensitiveDict

from sigma_source.emulator.api import ApiRequest, ApiResponse, stripe_error
from sigma_source.emulator.faults import REQUEST_KINDS, Fault

if TYPE_CHECKING:
    from sigma_source.emulator.app import Emulator

DEFAULT_STRIPE_VERSION = "2025-03-31.basil"
CONTROL_PREFIX = "/_emulator"
_CHUNK_BYTES = 64 * 1024
_TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")


@dataclass
class RecordedRequest:
    """One request the emulator received, as tests inspect it (headers as sent; the JSON form
    that leaves the process through the control API masks the API key)."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: CaseInsensitiveDict
    request_id: str
    received_at: float
    status: int | None = None

    def copy(self) -> RecordedRequest:
        return replace(
            self, query=dict(self.query), form=dict(self.form), headers=self.headers.copy()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "form": self.form,
            "headers": _masked_headers(self.headers),
            "request_id": self.request_id,
            "received_at": self.received_at,
            "status": self.status,
        }


@dataclass
class RequestLog:
    """Every API request an emulator received, in order (thread-safe)."""

    _records: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: RecordedRequest) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return [record.copy() for record in self._records]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def mask_key(key: str) -> str:
    """An API key as Stripe shows it in errors: its kind prefix and last four characters."""
    prefix_match = re.match(r"[a-z]{2,4}_(?:test|live)_", key)
    prefix = prefix_match.group(0) if prefix_match else ""
    rest = key[len(prefix) :]
    tail = rest[-4:] if len(rest) >= 12 else ""
    return f"{prefix}****{tail}"


def api_key_of(authorization: str | None) -> str | None:
    """The key from `Bearer <key>`, or from Basic auth with the key as user name (`curl -u`)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[0]
    return ""


def check_api_key(authorization: str | None) -> ApiResponse | None:
    """None when the key may use the API; else Stripe's 401 answer (the key masked)."""
    key = api_key_of(authorization)
    if key is None:
        response = stripe_error(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or "
            "we can help at https://support.stripe.com/.",
        )
    elif key.startswith(_TEST_KEY_PREFIXES):
        return None
    else:
        response = stripe_error(401, f"Invalid API Key provided: {mask_key(key)}")
    response.headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
    return response


def _masked_headers(headers: CaseInsensitiveDict) -> dict[str, str]:
    masked = dict(headers)
    for name, value in headers.items():
        if name.lower() == "authorization":
            scheme = value.strip().partition(" ")[0]
            masked[name] = f"{scheme} {mask_key(api_key_of(value) or '')}"
    return masked


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Threaded server that can close its open keep-alive connections when stopped."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._stopping = threading.Event()
        super().__init__(address, _Handler)

    def pause(self, seconds: float) -> None:
        """Wait `seconds` (a `delay` or `stall` fault), or less if the server stops."""
        self._stopping.wait(seconds)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 (stdlib API)
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # noqa: ANN001
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        # A client that goes away mid-request (killed, timed out) is routine, not a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def close_open_connections(self) -> None:
        self._stopping.set()
        with self._open_lock:
            open_sockets = list(self._open)
        for connection in open_sockets:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def version_string(self) -> str:
        return "sigma-emulator"

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    # Stripe has no PUT or PATCH routes; answer them with its JSON 404, not an HTML 501.
    do_PUT = do_DELETE
    do_PATCH = do_DELETE

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.emulator.log_requests:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # --- one request ---------------------------------------------------------------------------

    def _handle(self) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if url.path == CONTROL_PREFIX or url.path.startswith(CONTROL_PREFIX + "/"):
            status, payload = self.server.emulator.control(self.command, url.path, body)
            self._send_json(status, payload, {})
            return
        request = self._api_request(url.path, url.query, body)
        record = self._record(request, url.query, body)
        emulator = self.server.emulator
        sql = emulator.api.sql_of(request.params) if self.command == "POST" else None
        fault = emulator.faults.take(REQUEST_KINDS, self.command, url.path, sql)
        if fault is not None and fault.kind == "drop":
            self._drop()
            return
        if fault is not None and fault.kind == "malformed_json":
            record.status = 200
            self._send_malformed(request.request_id)
            return
        if fault is not None and fault.kind == "body":
            record.status = 200
            self._send_json(200, fault.body, {"Request-Id": request.request_id})
            return
        response = self._answer(request, fault)
        if fault is not None and fault.kind == "drop_after":
            self._drop()
            return
        if fault is not None and fault.kind == "delay":
            self.server.pause(fault.seconds)
        # Recorded before sending: a client may inspect the log as soon as it has the answer.
        record.status = response.status
        self._send(response, request)

    def _answer(self, request: ApiRequest, fault: Fault | None) -> ApiResponse:
        if fault is not None and fault.kind == "status":
            return _fault_response(fault)
        refusal = check_api_key(request.headers.get("Authorization"))
        if refusal is not None:
            return refusal
        try:
            return self.server.emulator.api.handle(request)
        except Exception as error:  # a bug in the emulator: answer like Stripe's 500
            sys.stderr.write(f"sigma emulator: {request.method} {request.path}: {error!r}\n")
            return stripe_error(
                500, f"internal emulator error: {type(error).__name__}", error_type="api_error"
            )

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _api_request(self, path: str, query: str, body: bytes) -> ApiRequest:
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(_form(body))
        host = self.headers.get("Host")
        base_url = f"http://{host}" if host else self.server.emulator.url
        return ApiRequest(
            method=self.command,
            path=path,
            params=params,
            headers=CaseInsensitiveDict(self.headers.items()),
            base_url=base_url,
            request_id="req_" + secrets.token_hex(7),
        )

    def _record(self, request: ApiRequest, query: str, body: bytes) -> RecordedRequest:
        record = RecordedRequest(
            method=self.command,
            path=request.path,
            query=dict(parse_qsl(query, keep_blank_values=True)),
            form=_form(body),
            headers=CaseInsensitiveDict(self.headers.items()),
            request_id=request.request_id,
            received_at=time.time(),
        )
        self.server.emulator.request_log.add(record)
        return record

    # --- answers -------------------------------------------------------------------------------

    def _send(self, response: ApiResponse, request: ApiRequest) -> None:
        headers = {
            "Request-Id": request.request_id,
            "Stripe-Version": request.headers.get("Stripe-Version") or DEFAULT_STRIPE_VERSION,
        } | response.headers
        if response.file is not None:
            self._stream_file(response, headers)
        else:
            self._send_json(response.status, response.body or {}, headers)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = (json.dumps(payload, indent=2) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_malformed(self, request_id: str) -> None:
        data = b'{"object": "sigma.sigma_query_run", "id": "qry_'  # cut short: not JSON
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", request_id)
        self.end_headers()
        self.wfile.write(data)

    def _stream_file(self, response: ApiResponse, headers: dict[str, str]) -> None:
        """Send the file in chunks (result files can be hundreds of MB), honouring a
        `truncate` fault (stop early, then close), a `stall` one (pause part-way) or a
        `slow` one (throttle)."""
        assert response.file is not None
        size = response.file.size
        fault = response.stream_fault
        limit = int(size * fault.fraction) if fault and fault.kind == "truncate" else size
        stall_at = int(size * fault.fraction) if fault and fault.kind == "stall" else None
        rate = fault.bytes_per_second if fault and fault.kind == "slow" else None
        chunk_size = max(1, min(_CHUNK_BYTES, rate // 10)) if rate else _CHUNK_BYTES
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        sent = 0
        try:
            with response.file.path.open("rb") as source:
                while sent < limit:
                    if stall_at is not None and sent >= stall_at:
                        assert fault is not None
                        self.wfile.flush()
                        self.server.pause(fault.seconds)
                        stall_at = None
                    until = limit if stall_at is None else stall_at
                    chunk = source.read(min(chunk_size, until - sent))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if rate:
                        time.sleep(len(chunk) / rate)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if sent < size:
            self._drop()

    def _drop(self) -> None:
        """Close the connection without (the rest of) an answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _form(body: bytes) -> dict[str, str]:
    if not body:
        return {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def _fault_response(fault: Fault) -> ApiResponse:
    response = ApiResponse(fault.status, {"error": fault.error_body()})
    if fault.retry_after is not None:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    if fault.should_retry is not None:
        response.headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
    return response
