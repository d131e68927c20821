"""`Emulator`: a local Stripe Sigma API on a real socket, for tests, the demo and users' CI.

One emulator = one fake Stripe account: its own synthetic data (from seed and scale), query
runs, saved queries, scheduled runs, result files in a temp folder, request log and faults.
Nothing is shared between instances, so tests never see each other's faults or runs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import tempfile
import threading
import time
import weakref
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from sigma_source.emulator.api import SigmaAPI
from sigma_source.emulator.data import DEFAULT_DATA_END, DEFAULT_DATA_START, DataWindow
from sigma_source.emulator.faults import Fault, FaultBook
from sigma_source.emulator.server import EmulatorHTTPServer, RecordedRequest, RequestLog
from sigma_source.emulator.warehouse import Warehouse
from sigma_source.errors import ConfigError


class Emulator:
    """A Sigma API server on loopback. Use as a context manager, or `start()` / `stop()`.

    >>> with Emulator(seed=42, scale=1000) as emu:
    ...     requests.post(f"{emu.url}/v1/sigma/query_runs", data={"sql": "select 1"},
    ...                   headers={"Authorization": "Bearer sk_test_123"})

    `scale` is the row count of balance_transactions; the other tables are proportional.
    `run_seconds` is how long every query run reports `running` (settable at any time; it
    applies to runs created afterwards). `data_start` / `data_end` bound the `created`
    timestamps of the initial rows.
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        scale: int = 1000,
        run_seconds: float = 0.0,
        port: int = 0,
        host: str = "127.0.0.1",
        data_start: datetime | date | str = DEFAULT_DATA_START,
        data_end: datetime | date | str = DEFAULT_DATA_END,
        log_requests: bool = False,
    ) -> None:
        if scale < 1:
            raise ConfigError(f"emulator --scale must be at least 1, not {scale}")
        if run_seconds < 0:
            raise ConfigError(f"emulator --run-seconds must not be negative, not {run_seconds}")
        self.seed = seed
        self.scale = scale
        self.run_seconds = run_seconds
        self.host = host
        self.port = port
        try:
            self.window = DataWindow(_utc(data_start), _utc(data_end))
        except ValueError as error:
            raise ConfigError(f"emulator data window: {error}") from error
        self.log_requests = log_requests
        self.faults = FaultBook()
        self.request_log = RequestLog()
        self._workdir: Path | None = None
        self._remove_workdir: weakref.finalize | None = None
        self._warehouse: Warehouse | None = None
        self._api: SigmaAPI | None = None
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Generate the data, run the scheduled queries, and start serving in a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"the emulator at {self.url} is already running")
        self._workdir = Path(tempfile.mkdtemp(prefix="sigma-emulator-"))
        # Result files can be large: delete them even if stop() is never called.
        self._remove_workdir = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        try:
            self._warehouse = Warehouse(
                seed=self.seed, scale=self.scale, window=self.window, workdir=self._workdir
            )
            self._api = SigmaAPI(
                warehouse=self._warehouse,
                faults=self.faults,
                workdir=self._workdir,
                run_seconds=lambda: self.run_seconds,
            )
            self._api.create_scheduled_runs(self.seed, int(time.time()))
            self._server = self._listen()
        except BaseException:
            self.stop()
            raise
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"sigma-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def _listen(self) -> EmulatorHTTPServer:
        try:
            return EmulatorHTTPServer((self.host, self.port), self)
        except OSError as error:
            raise ConfigError(
                f"emulator: cannot listen on {self.host}:{self.port}: {error.strerror or error}"
            ) from error

    def stop(self) -> None:
        """Stop serving, close open connections, stop running queries, delete result files."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_open_connections()
            self._server.server_close()
            self._server = None
        if self._api is not None:
            self._api.close()
        if self._warehouse is not None:
            self._warehouse.interrupt()
            self._warehouse.close()
            self._warehouse = None
        if self._remove_workdir is not None:
            self._remove_workdir()
            self._remove_workdir = None
            self._workdir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server else "stopped"
        return f"Emulator({where}, seed={self.seed}, scale={self.scale})"

    # --- what tests use ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL for both the API and files (e.g. "http://127.0.0.1:51234")."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def api(self) -> SigmaAPI:
        if self._api is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return self._api

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return self._warehouse

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def add_canned_result(
        self,
        sql_contains: str,
        content: bytes | str,
        schema: list[dict[str, str]] | None = None,
    ) -> None:
        """Query runs whose SQL contains `sql_contains` get `content` as their result file,
        exactly (str is written as UTF-8): malformed CSVs for testing a client's errors.
        With `schema` ([{"name", "type"}]) the run carries it as `result.schema`, the way
        the newer Sigma APIs give a result's column types."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        self.api.add_canned_result(sql_contains, data, schema)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API request received so far (a snapshot; control requests excluded)."""
        return self.request_log.snapshot()

    @property
    def query_runs(self) -> dict[str, dict[str, Any]]:
        """Query run id -> the run object as last served to a client."""
        return self.api.served_runs()

    @property
    def created_query_run_count(self) -> int:
        """Query runs really created (idempotent replays do not count)."""
        return self.api.created_query_run_count

    def add_rows(self, table: str, n: int) -> None:
        """Append `n` rows to `table`, later than all its rows (and not in the future)."""
        self.warehouse.add_rows(table, n)

    def execute(self, sql: str) -> list[tuple]:
        """Run SQL on the emulator's data directly (to compute expected results)."""
        return self.warehouse.execute(sql)

    # --- the control API (for an emulator started in another process) ------------------------

    def control(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer a request under /_emulator: faults, request log, new rows, settings."""
        try:
            payload = json.loads(body) if body else {}
            if not isinstance(payload, dict):
                raise ValueError("the request body must be a JSON object")
            return self._control(method, path.rstrip("/"), payload)
        except (ValueError, TypeError, KeyError) as error:  # binascii.Error is a ValueError
            return 400, {"error": {"type": "invalid_request_error", "message": str(error)}}

    def _control(self, method: str, path: str, payload: dict[str, Any]) -> tuple[int, dict]:
        route = (method, path.removeprefix("/_emulator"))
        if route == ("GET", ""):
            return 200, self._describe()
        if route == ("POST", "/faults"):
            fault = Fault.from_dict(payload)
            self.add_fault(fault)
            return 200, {"fault": fault.to_dict()}
        if route == ("GET", "/faults"):
            return 200, {"data": [fault.to_dict() for fault in self.faults.pending()]}
        if route == ("DELETE", "/faults"):
            self.clear_faults()
            return 200, {"deleted": True}
        if route == ("POST", "/results"):
            content = payload.get("content")
            if "content_base64" in payload:
                content = base64.b64decode(payload["content_base64"], validate=True)
            if content is None:
                raise ValueError("a canned result needs content (text) or content_base64")
            self.add_canned_result(payload["sql_contains"], content)
            return 200, {"sql_contains": payload["sql_contains"]}
        if route == ("DELETE", "/results"):
            self.api.clear_canned_results()
            return 200, {"deleted": True}
        if route == ("GET", "/requests"):
            return 200, {"data": [record.to_json() for record in self.requests]}
        if route == ("DELETE", "/requests"):
            self.request_log.clear()
            return 200, {"deleted": True}
        if route == ("POST", "/rows"):
            table, n = payload["table"], int(payload["n"])
            self.add_rows(table, n)
            return 200, {"table": table, "n": n, "row_counts": self.warehouse.row_counts()}
        if route == ("POST", "/settings"):
            if "run_seconds" in payload:
                self.run_seconds = float(payload["run_seconds"])
            return 200, self._describe()
        if route == ("GET", "/query_runs"):
            return 200, {
                "data": self.query_runs,
                "created_query_run_count": self.created_query_run_count,
            }
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "message": f"no control route {method} {path}",
            }
        }

    def _describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "seed": self.seed,
            "scale": self.scale,
            "run_seconds": self.run_seconds,
            "data_start": self.window.start.isoformat(),
            "data_end": self.window.end.isoformat(),
            "row_counts": self.warehouse.row_counts(),
        }


def _utc(moment: datetime | date | str) -> datetime:
    """A timezone-aware UTC datetime from a datetime, a date or an ISO string."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 12111,
    seed: int = 42,
    scale: int = 1000,
    run_seconds: float = 0.0,
) -> None:
    """Run an emulator in the foreground until Ctrl-C or SIGTERM (`sigma-load emulator`).

    Prints one line with its URL once it serves; then one access-log line per request on
    stderr. Stopping deletes its temp folder of result files."""
    emulator = Emulator(
        seed=seed, scale=scale, run_seconds=run_seconds, port=port, host=host, log_requests=True
    )
    with contextlib.suppress(ValueError):  # signals can only be set in the main thread
        # SIGINT too: a process started in the background by a shell without job control
        # inherits SIGINT ignored, and Python then raises no KeyboardInterrupt for Ctrl-C.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, _interrupt)
    emulator.start()
    try:
        print(f"Sigma emulator on {emulator.url} (seed={seed}, scale={scale})", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
