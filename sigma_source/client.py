"""`SigmaClient`: the Stripe Sigma v1 API over HTTP, with Stripe's retry and error rules.

Two layers, so a second API (the `/v2/data/...` endpoints) can become another adapter over
the same transport instead of a rewrite:

- `StripeTransport` knows Stripe's conventions and nothing of Sigma: Bearer auth, the
  `Stripe-Version` / `Stripe-Account` headers, form-encoded POSTs, an `Idempotency-Key` on
  every POST (kept across its retries), the retry rule (`Stripe-Should-Retry` first, then
  connection errors, timeouts, 409, 429 and 5xx, honouring `Retry-After`), and the mapping
  of error answers to the typed exceptions in `sigma_source.errors`.
- `SigmaClient` is the v1 Sigma endpoints: query runs (start, poll until finished), saved
  queries, scheduled query runs, files (metadata and a download that restarts from scratch
  when the body arrives short).

Retries run on tenacity (the library dlt's own HTTP helper uses) around `requests`, with one
session per thread over a shared connection pool, so one client serves many threads.
dlt's `Client` is not used directly: it caps `Retry-After` at the backoff ceiling, adds no
jitter, and importing it costs more than half a second.

The API key never appears in a message, log line or repr: it lives in an auth hook, and
every text taken from a response or an exception is scrubbed of it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

from sigma_source import __version__
from sigma_source.api_objects import (
    RUN_FAILED,
    RUN_IN_PROGRESS,
    RUN_SUCCEEDED,
    FileObject,
    QueryRun,
    SavedQuery,
    ScheduledQueryRun,
)
from sigma_source.errors import (
    APIServerError,
    AuthenticationError,
    ConfigError,
    DownloadError,
    IdempotencyError,
    InvalidRequestError,
    NetworkError,
    PollTimeoutError,
    QueryRunError,
    RateLimitError,
    SigmaAPIError,
    SigmaPermissionError,
)

__all__ = [
    "ClientConfig",
    "FileObject",
    "PollSchedule",
    "QueryRun",
    "SavedQuery",
    "ScheduledQueryRun",
    "SigmaClient",
    "StripeTransport",
    "WaitResult",
    "retry_delay",
    "should_retry",
]

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_FILES_BASE = "https://files.stripe.com"
DOWNLOAD_CHUNK_BYTES = 1 << 20
# Stripe's SDK ignores a Retry-After above a minute; we wait at most that long.
MAX_RETRY_AFTER_SECONDS = 60.0
_LOOPBACK_NAMES = frozenset({"localhost"})


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ClientConfig:
    """Everything a `SigmaClient` needs, validated once at construction.

    Durations are seconds. `api_key` is excluded from the repr so a logged config never
    shows it.
    """

    api_key: str = field(repr=False)
    api_base: str = DEFAULT_API_BASE
    files_base: str = DEFAULT_FILES_BASE
    stripe_version: str | None = None
    stripe_account: str | None = None
    request_timeout: float = 60.0
    max_attempts: int = 5
    backoff_factor: float = 0.5
    max_retry_delay: float = 5.0
    download_attempts: int = 3
    # Polling (see PollSchedule): a run is polled at least every `poll_interval` seconds
    # during its first `poll_fast_seconds`, so it is noticed within that long of finishing;
    # after that the waits double up to `poll_max_interval`.
    poll_interval: float = 2.0
    poll_fast_seconds: float = 60.0
    poll_max_interval: float = 15.0
    poll_timeout: float = 1800.0
    max_connections: int = 10

    def __post_init__(self) -> None:
        _check_api_key(self.api_key)
        object.__setattr__(self, "api_base", _checked_base_url("api_base", self.api_base))
        object.__setattr__(self, "files_base", _checked_base_url("files_base", self.files_base))
        for name in ("max_attempts", "download_attempts", "max_connections"):
            _check_number(name, getattr(self, name), minimum=1, integer=True)
        for name in ("request_timeout", "poll_interval", "poll_max_interval"):
            _check_number(name, getattr(self, name), minimum=0, exclusive=True)
        for name in ("backoff_factor", "max_retry_delay", "poll_timeout", "poll_fast_seconds"):
            _check_number(name, getattr(self, name), minimum=0)
        if self.poll_max_interval < self.poll_interval:
            raise ConfigError(
                f"poll_max_interval ({self.poll_max_interval}) must not be below "
                f"poll_interval ({self.poll_interval})"
            )


def _check_api_key(key: object) -> None:
    # Never echo the key: a message only says what is wrong with it.
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(
            "api_key is empty: set sources.sigma.api_key in .dlt/secrets.toml "
            "or the SOURCES__SIGMA__API_KEY environment variable"
        )
    if not (key.isascii() and key.isprintable()) or any(c.isspace() for c in key):
        raise ConfigError(
            "api_key contains whitespace or non-ASCII characters "
            "(a stray newline or quote from copying it?)"
        )


def _checked_base_url(setting: str, url: object) -> str:
    """The URL without a trailing slash; https, or http to a loopback host only."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{setting} is empty: give a URL such as {DEFAULT_API_BASE}")
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    shown = f"{parts.scheme}://{host}" if parts.scheme else repr(url)
    if parts.scheme == "https" and host:
        return url.strip().rstrip("/")
    if parts.scheme == "http" and _is_loopback(host):
        return url.strip().rstrip("/")
    if parts.scheme == "http":
        raise ConfigError(
            f"{setting}: plain http:// is allowed only for loopback hosts "
            f"(127.0.0.0/8, localhost, ::1), got {shown}; use https://"
        )
    raise ConfigError(f"{setting} must be an https:// URL with a host, got {shown}")


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_number(
    name: str, value: object, *, minimum: float, exclusive: bool = False, integer: bool = False
) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number of seconds"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    if value < minimum or (exclusive and value == minimum):
        bound = f"above {minimum}" if exclusive else f"at least {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")


def mask_key(key: str) -> str:
    """The key as Stripe itself shows it in messages: its prefix and last four characters."""
    if len(key) < 20:
        return "****"
    prefix = key[:8] if key[2:3] == "_" and key[7:8] == "_" else key[:3]
    return f"{prefix}****{key[-4:]}"


# --------------------------------------------------------------------------- retry rule


def should_retry(response: requests.Response | None, exception: BaseException | None) -> bool:
    """Stripe's retry rule: whether a request that ended this way is worth sending again.

    `Stripe-Should-Retry` decides when present. Otherwise retry what is transient: connection
    errors and timeouts (not TLS failures, which repeat), 409 conflicts, 429 and 5xx.
    A POST is safe to resend because it carries an Idempotency-Key.
    """
    if exception is not None:
        transient = (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,  # an answer that broke off mid-body
        )
        return isinstance(exception, transient) and not isinstance(
            exception, requests.exceptions.SSLError
        )
    if response is None:
        return False
    verdict = response.headers.get("Stripe-Should-Retry", "").strip().lower()
    if verdict in ("true", "false"):
        return verdict == "true"
    return response.status_code in (409, 429) or response.status_code >= 500


def retry_delay(
    attempt: int,
    *,
    backoff_factor: float,
    max_delay: float,
    retry_after: str | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Exponential backoff `min(backoff_factor * 2**(attempt-1), max_delay)`, jittered down to
    between half and all of it so parallel clients spread out; never shorter than the
    server's `Retry-After` (capped at a minute).
    """
    backoff = min(backoff_factor * 2 ** (attempt - 1), max_delay)
    delay = backoff * (0.5 + rand() / 2)
    asked = parse_retry_after(retry_after)
    if asked is not None:
        delay = max(delay, min(asked, MAX_RETRY_AFTER_SECONDS))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return seconds if seconds >= 0 else None


# --------------------------------------------------------------------------- polling


class PollSchedule:
    """How long to wait before each next poll of a running query run.

    A run is polled at once. The waits then start short and double (1/16, 1/8, 1/4, 1/2 of
    `interval`) so that a quick query is noticed within a fraction of a second, and stay at
    `interval` until the run has been running `fast_seconds`: a run that finishes within its
    first minute is noticed within `interval` (2 s by default). After that they keep doubling
    up to `max_interval`, so an hour-long run costs a poll every 15 s, not every 2 s. Each
    wait is jittered down by up to `jitter` (10%), never up, so parallel loaders spread out
    and the bound holds.

    Without more to go on, a run that takes 60 s costs about 36 polls: noticing any finish
    within 2 s needs a poll every 2 s. With `expected_seconds` (how long the same query took
    before) the schedule polls sparsely, every `max_interval`, until shortly before the
    expected finish, and every `interval` from there: a 60 s run then costs about 10 polls
    and is still noticed within `interval`. A run that finishes much earlier than expected
    is noticed within `max_interval`.
    """

    RAMP_STEPS = 4  # waits before the first full interval: 1/16, 1/8, 1/4, 1/2 of it
    # Watch closely from this share of the expected duration on: runs of one query vary.
    WATCH_FROM = 0.85
    # ... until this multiple of it, when the run is plainly slower than usual.
    WATCH_UNTIL = 1.5

    def __init__(
        self,
        *,
        interval: float,
        fast_seconds: float,
        max_interval: float,
        expected_seconds: float | None = None,
        jitter: float = 0.1,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.interval = interval
        self.fast_seconds = fast_seconds
        self.max_interval = max_interval
        self.expected_seconds = expected_seconds
        self.jitter = jitter
        self._rand = rand
        self._polls = 0
        self._slow_polls = 0

    @classmethod
    def from_config(
        cls, config: ClientConfig, *, expected_seconds: float | None = None
    ) -> PollSchedule:
        return cls(
            interval=config.poll_interval,
            fast_seconds=config.poll_fast_seconds,
            max_interval=config.poll_max_interval,
            expected_seconds=expected_seconds,
        )

    def next_wait(self, elapsed: float) -> float:
        """Seconds to wait after a poll made `elapsed` seconds after waiting for the run began."""
        self._polls += 1
        if self._knows_the_duration():
            wait = self._wait_around_expected_finish(elapsed)
        elif elapsed < self.fast_seconds:
            steps_left = max(self.RAMP_STEPS - self._polls + 1, 0)
            wait = self.interval / 2**steps_left
        else:
            wait = self._backed_off_wait()
        return wait * (1 - self.jitter * self._rand())

    def _knows_the_duration(self) -> bool:
        # A run expected within a few intervals is best served by the ramp.
        expected = self.expected_seconds
        return expected is not None and expected * self.WATCH_FROM > 2 * self.interval

    def _wait_around_expected_finish(self, elapsed: float) -> float:
        expected = self.expected_seconds or 0.0
        watch_from = expected * self.WATCH_FROM
        if elapsed < watch_from - self.interval:
            return max(min(self.max_interval, watch_from - elapsed), self.interval)
        if elapsed < max(self.fast_seconds, expected * self.WATCH_UNTIL):
            return self.interval
        return self._backed_off_wait()

    def _backed_off_wait(self) -> float:
        self._slow_polls += 1
        return min(self.interval * 2**self._slow_polls, self.max_interval)


# --------------------------------------------------------------------------- transport


class _BearerAuth(requests.auth.AuthBase):
    """Adds `Authorization: Bearer` on each request; keeping the key here keeps it out of
    session headers that callers might log."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(****)"


class _RedirectGuardedSession(requests.Session):
    """A session that follows a redirect only to where the client may connect at all.

    Stripe does not redirect; a redirect to plain http:// elsewhere would carry an answer
    (a result file) unencrypted, around the https rule. `requests` already drops the
    Authorization header when a redirect changes host, port or scheme.
    """

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None:
            url = urljoin(resp.url, target)
            parts = urlsplit(url)
            if not (
                parts.scheme == "https"
                or (parts.scheme == "http" and _is_loopback(parts.hostname or ""))
            ):
                raise requests.exceptions.InvalidURL(
                    f"refused a redirect to {parts.scheme}://{parts.hostname}: only https:// "
                    "(or http:// to a loopback host) is allowed"
                )
        return target


@dataclass(frozen=True)
class JSONAnswer:
    """A decoded JSON object Stripe answered, with what traces it: status and Request-Id."""

    body: dict[str, Any]
    http_status: int
    request_id: str | None


class StripeTransport:
    """Stripe's HTTP conventions over `requests`: auth, headers, idempotency, retries, errors.

    Thread-safe: each thread gets its own `requests.Session`, all sharing one pool.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._auth = _BearerAuth(config.api_key)
        self._mask = mask_key(config.api_key)
        self._adapter = HTTPAdapter(
            pool_connections=4, pool_maxsize=config.max_connections, max_retries=0
        )
        self._local = threading.local()
        self._headers = {"User-Agent": f"sigma-load/{__version__}"}
        if config.stripe_version:
            self._headers["Stripe-Version"] = config.stripe_version
        if config.stripe_account:
            self._headers["Stripe-Account"] = config.stripe_account

    def close(self) -> None:
        """Close pooled connections. The transport reconnects if used again."""
        self._adapter.close()

    def scrub(self, text: str) -> str:
        """`text` with the API key replaced by its masked form."""
        return text.replace(self._config.api_key, self._mask)

    def request_answer(
        self,
        method: str,
        base: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        form: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> JSONAnswer:
        """Send a request (retried per Stripe's rule); return the JSON object and Request-Id.

        Raises the `SigmaAPIError` subclass that fits the answer; a body that is not a JSON
        object raises `APIServerError` naming the endpoint and the Request-Id.
        """
        endpoint = f"{method} {path}"
        response = self.send(
            method, base, path, params=params, form=form, idempotency_key=idempotency_key
        )
        try:
            # Scrubbed before decoding, so no field (a run's error message, say) can carry
            # the key onward into an exception or a lineage table.
            body = json.loads(self.scrub(response.content.decode("utf-8")))
        except ValueError as e:
            raise APIServerError(
                f"answered with a body that is not JSON: {self._snippet(response)}",
                endpoint=endpoint,
                http_status=response.status_code,
                request_id=response.headers.get("Request-Id"),
            ) from e
        if not isinstance(body, dict):
            raise APIServerError(
                f"answered with JSON that is not an object: {self._snippet(response)}",
                endpoint=endpoint,
                http_status=response.status_code,
                request_id=response.headers.get("Request-Id"),
            )
        return JSONAnswer(body, response.status_code, response.headers.get("Request-Id"))

    def send(
        self,
        method: str,
        base: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        form: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send a request with retries; return a 2xx response or raise a typed error.

        With `stream=True` the body is not read yet: the caller must close the response.
        """
        endpoint = f"{method} {path}"
        headers = dict(self._headers)
        if method == "POST":
            # One key per logical request, reused by every retry of it: a retry after a lost
            # answer replays the first result instead of starting a second query run.
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        session = self._session()
        request = requests.Request(
            method, base + path, params=params, data=form, headers=headers, auth=self._auth
        )
        prepared = session.prepare_request(request)
        settings = session.merge_environment_settings(prepared.url, {}, stream, None, None)
        retrying = self._retrying(endpoint)
        try:
            response = retrying(
                session.send, prepared, timeout=self._config.request_timeout, **settings
            )
        except requests.RequestException as e:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise NetworkError(
                f"{type(e).__name__} after {_attempts(attempts)}: {self._one_line(str(e))}",
                endpoint=endpoint,
            ) from e
        if response.ok:
            return response
        try:
            raise self._error_for(endpoint, response, retrying.statistics.get("attempt_number"))
        finally:
            response.close()

    def backoff_wait(self, state: RetryCallState) -> float:
        """Tenacity wait: the jittered backoff, honouring a Retry-After on the last answer."""
        response = None if state.outcome is None or state.outcome.failed else state.outcome.result()
        retry_after = None
        if isinstance(response, requests.Response):
            retry_after = response.headers.get("Retry-After")
        return retry_delay(
            state.attempt_number,
            backoff_factor=self._config.backoff_factor,
            max_delay=self._config.max_retry_delay,
            retry_after=retry_after,
        )

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = _RedirectGuardedSession()
            session.mount("https://", self._adapter)
            session.mount("http://", self._adapter)
            self._local.session = session
        return session

    def _retrying(self, endpoint: str) -> Retrying:
        return Retrying(
            retry=_retry_by_stripe_rule,
            wait=self.backoff_wait,
            stop=stop_after_attempt(self._config.max_attempts),
            before_sleep=self._log_and_release(endpoint),
            # When attempts run out, hand back the last response (or raise the last error)
            # so it maps to a typed exception instead of tenacity's RetryError.
            retry_error_callback=lambda state: state.outcome.result(),
            reraise=True,
        )

    def _log_and_release(self, endpoint: str) -> Callable[[RetryCallState], None]:
        def before_sleep(state: RetryCallState) -> None:
            if state.outcome.failed:
                what = type(state.outcome.exception()).__name__
            else:
                response = state.outcome.result()
                what = f"HTTP {response.status_code}"
                response.close()  # hand the connection back to the pool before the retry
            log.warning(
                "%s: %s, retrying in %.2f s (attempt %d of %d)",
                endpoint,
                what,
                state.next_action.sleep if state.next_action else 0.0,
                state.attempt_number + 1,
                self._config.max_attempts,
            )

        return before_sleep

    def _error_for(
        self, endpoint: str, response: requests.Response, attempts: int | None
    ) -> SigmaAPIError:
        error = _stripe_error_body(response)
        error_type = error.get("type")
        if error:
            message = self.scrub(str(error.get("message") or "(no error message)"))
        else:
            message = f"answered with a body that is not a Stripe error: {self._snippet(response)}"
        if attempts and attempts > 1:
            message = f"{message} (gave up after {_attempts(attempts)})"
        cls = error_class(response.status_code, error_type)
        return cls(
            message,
            endpoint=endpoint,
            http_status=response.status_code,
            error_type=error_type,
            code=error.get("code"),
            request_id=response.headers.get("Request-Id"),
        )

    def _snippet(self, response: requests.Response) -> str:
        """The start of a body, for a message; decoded leniently (it may be any garbage)."""
        return self._one_line(response.content[:1000].decode("utf-8", errors="replace"))

    def _one_line(self, text: str, limit: int = 200) -> str:
        one_line = " ".join(self.scrub(text).split())
        return one_line if len(one_line) <= limit else one_line[:limit] + "…"


def _retry_by_stripe_rule(state: RetryCallState) -> bool:
    outcome = state.outcome
    if outcome.failed:
        return should_retry(None, outcome.exception())
    return should_retry(outcome.result(), None)


def _stripe_error_body(response: requests.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def error_class(http_status: int, error_type: str | None) -> type[SigmaAPIError]:
    """The exception class for an error answer, by Stripe's error type then HTTP status."""
    if error_type == "idempotency_error":
        return IdempotencyError
    by_status: dict[int, type[SigmaAPIError]] = {
        401: AuthenticationError,
        403: SigmaPermissionError,
        429: RateLimitError,
    }
    if http_status in by_status:
        return by_status[http_status]
    if http_status >= 500:
        return APIServerError
    if 400 <= http_status < 500:
        return InvalidRequestError
    return SigmaAPIError


# --------------------------------------------------------------------------- Sigma v1


@dataclass(frozen=True)
class WaitResult:
    """A query run that finished with a result file, and what waiting for it took."""

    run: QueryRun
    polls: int
    seconds: float


class _IncompleteDownload(Exception):
    """One download attempt ended short; the whole transfer is tried again."""

    def __init__(self, message: str, *, request_id: str | None) -> None:
        super().__init__(message)
        self.request_id = request_id


class SigmaClient:
    """The Stripe Sigma v1 API: query runs, saved queries, scheduled query runs and files.

    Thread-safe; use one client for the whole process and close it (or use `with`) at the
    end. Every method raises a `SigmaLoadError` subclass on failure, never a bare
    `requests` exception.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._http = StripeTransport(config)

    def __enter__(self) -> SigmaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"SigmaClient(api_base={self.config.api_base!r})"

    # ---- query runs

    def create_query_run(
        self,
        sql: str | None = None,
        *,
        saved_query: str | None = None,
        idempotency_key: str | None = None,
    ) -> QueryRun:
        """Start a query run from SQL text or from a saved query (`qfl_...`), not both.

        Answers at once with a `running` run; `wait()` for it. `idempotency_key` lets a
        caller that restarts reuse the run a lost answer started (default: a fresh uuid4).
        """
        if (sql is None) == (saved_query is None):
            raise ValueError("create_query_run takes exactly one of sql or saved_query")
        if sql is not None and not sql.strip():
            raise ValueError("create_query_run: sql is empty")
        form = {"sql": sql} if sql is not None else {"from_saved_query": saved_query}
        return self._call(
            QueryRun, "POST", "/v1/sigma/query_runs", form=form, idempotency_key=idempotency_key
        )

    def retrieve_query_run(self, run_id: str) -> QueryRun:
        return self._call(QueryRun, "GET", _run_path(run_id))

    def wait(
        self,
        run_id: str,
        *,
        poll_timeout: float | None = None,
        on_poll: Callable[[QueryRun], None] | None = None,
        expected_seconds: float | None = None,
    ) -> WaitResult:
        """Poll a run until it finishes; return it when it succeeded with a result file.

        Polls at once, then as `PollSchedule` says (from the config's `poll_interval`,
        `poll_fast_seconds` and `poll_max_interval`, and `expected_seconds`: how long the
        same query took before, if known), the last poll falling on the deadline.
        `on_poll` sees every polled state. Raises `QueryRunError` for a run that failed, was
        canceled, timed out, has an unknown status or finished without a file;
        `PollTimeoutError` when it is still running after `poll_timeout` seconds (default:
        the config's).
        """
        timeout = self.config.poll_timeout if poll_timeout is None else poll_timeout
        endpoint = f"GET {_run_path(run_id)}"
        started = time.monotonic()
        deadline = started + timeout
        schedule = PollSchedule.from_config(self.config, expected_seconds=expected_seconds)
        polls = 0
        while True:
            run = self.retrieve_query_run(run_id)
            polls += 1
            if on_poll is not None:
                on_poll(run)
            if run.is_finished:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PollTimeoutError(
                    f"no result after waiting {timeout:g} s ({polls} polls; poll_timeout); "
                    "the run may still finish: retrieve it later by id",
                    run_id=run_id,
                    status=run.status,
                    endpoint=endpoint,
                    request_id=run.request_id,
                )
            wait = schedule.next_wait(time.monotonic() - started)
            time.sleep(min(wait, remaining))
        check_run_succeeded(run, endpoint=endpoint)
        return WaitResult(run=run, polls=polls, seconds=time.monotonic() - started)

    # ---- saved queries

    def create_saved_query(
        self, sql: str, *, name: str | None = None, idempotency_key: str | None = None
    ) -> SavedQuery:
        form = {"sql": sql} if name is None else {"sql": sql, "name": name}
        return self._call(
            SavedQuery,
            "POST",
            "/v1/sigma/saved_queries",
            form=form,
            idempotency_key=idempotency_key,
        )

    def retrieve_saved_query(self, saved_query_id: str) -> SavedQuery:
        return self._call(SavedQuery, "GET", f"/v1/sigma/saved_queries/{_path_id(saved_query_id)}")

    def update_saved_query(
        self, saved_query_id: str, *, sql: str | None = None, name: str | None = None
    ) -> SavedQuery:
        form = {key: value for key, value in (("sql", sql), ("name", name)) if value is not None}
        if not form:
            raise ValueError("update_saved_query needs sql or name (or both)")
        path = f"/v1/sigma/saved_queries/{_path_id(saved_query_id)}"
        return self._call(SavedQuery, "POST", path, form=form)

    def delete_saved_query(self, saved_query_id: str) -> None:
        path = f"/v1/sigma/saved_queries/{_path_id(saved_query_id)}"
        self._http.request_answer("DELETE", self.config.api_base, path)

    # ---- scheduled query runs

    def list_scheduled_query_runs(self, *, limit: int = 100) -> Iterator[ScheduledQueryRun]:
        """Every scheduled query run, newest first, fetching pages of `limit` as it goes."""
        if not 1 <= limit <= 100:
            raise ValueError(f"limit must be between 1 and 100, got {limit}")
        path = "/v1/sigma/scheduled_query_runs"
        params: dict[str, Any] = {"limit": limit}
        while True:
            page = self._http.request_answer("GET", self.config.api_base, path, params=params)
            items = _list_items(page, f"GET {path}")
            for item in items:
                yield _parsed(ScheduledQueryRun, replace(page, body=item), f"GET {path}")
            if not page.body.get("has_more") or not items:
                return
            params = {"limit": limit, "starting_after": items[-1]["id"]}

    def retrieve_scheduled_query_run(self, scheduled_run_id: str) -> ScheduledQueryRun:
        path = f"/v1/sigma/scheduled_query_runs/{_path_id(scheduled_run_id)}"
        return self._call(ScheduledQueryRun, "GET", path)

    # ---- files

    def retrieve_file(self, file_id: str) -> FileObject:
        """The File object (size, expiry): metadata lives on the API host."""
        return self._call(FileObject, "GET", f"/v1/files/{_path_id(file_id)}")

    def download_file(
        self,
        file_id: str,
        dest: Path,
        *,
        expected_size: int | None = None,
        on_progress: Callable[[int], None] | None = None,
        query_run_id: str | None = None,
    ) -> int:
        """Stream a file's contents from the files host into `dest`; return its byte count.

        Streams in chunks of at most 1 MiB, never holding the file in memory. The byte count
        must match the Content-Length and `expected_size` (the File object's `size`); a
        transfer that ends short, breaks off or stalls for `request_timeout` starts again from
        scratch, up to `download_attempts` times, then raises `DownloadError`, which says how
        many bytes did arrive. An expired or unknown file raises `InvalidRequestError` at once.
        On failure `dest` is removed, so no partial file is left to be read. `on_progress` gets
        the bytes received so far, all of them on disk in `dest` (0 as each transfer starts, so
        back to 0 when one restarts); an exception it raises stops the download. `query_run_id`,
        the run whose result the file is, is named in any error.
        """
        dest = Path(dest)
        endpoint = f"GET {_contents_path(file_id)}"
        attempts = Retrying(
            retry=retry_if_exception_type(_IncompleteDownload),
            wait=self._http.backoff_wait,
            stop=stop_after_attempt(self.config.download_attempts),
            before_sleep=lambda state: log.warning(
                "file %s: %s; downloading again (attempt %d of %d)",
                file_id,
                state.outcome.exception(),
                state.attempt_number + 1,
                self.config.download_attempts,
            ),
            reraise=True,
        )
        try:
            return attempts(self._download_once, file_id, dest, expected_size, on_progress)
        except _IncompleteDownload as e:
            dest.unlink(missing_ok=True)
            tries = attempts.statistics.get("attempt_number", self.config.download_attempts)
            raise DownloadError(
                f"{e} after {_attempts(tries)}",
                endpoint=endpoint,
                run_id=query_run_id,
                request_id=e.request_id,
            ) from e
        except SigmaAPIError as e:
            dest.unlink(missing_ok=True)
            if query_run_id is None or query_run_id in e.message:
                raise
            raise _naming_run(e, query_run_id) from e
        except OSError as e:  # this machine's side: a full disk, a folder that is not there
            dest.unlink(missing_ok=True)
            if isinstance(e, requests.RequestException):  # an OSError too, but not ours
                raise
            raise DownloadError(
                f"cannot write {dest}: {e.strerror or e}", endpoint=endpoint, run_id=query_run_id
            ) from e
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _download_once(
        self,
        file_id: str,
        dest: Path,
        expected_size: int | None,
        on_progress: Callable[[int], None] | None,
    ) -> int:
        path = _contents_path(file_id)
        try:
            response = self._http.send("GET", self.config.files_base, path, stream=True)
        except InvalidRequestError as e:
            if e.http_status != 404:
                raise
            raise InvalidRequestError(
                f"file {file_id} has expired or does not exist (result files are kept for a "
                f"limited time; run the query again): {e.message}",
                endpoint=e.endpoint,
                http_status=e.http_status,
                error_type=e.error_type,
                code=e.code,
                request_id=e.request_id,
            ) from e
        with response, dest.open("wb") as out:
            received = 0
            if on_progress is not None:
                on_progress(received)  # the file is (again) empty on disk
            try:
                for chunk in _body_as_it_arrives(response):
                    out.write(chunk)
                    received += len(chunk)
                    if on_progress is not None:
                        out.flush()  # what progress counts is on disk, for a reader following it
                        on_progress(received)
            except (requests.RequestException, Urllib3Error) as e:
                raise _IncompleteDownload(
                    f"received {_arrived(response, received)} of "
                    f"{_expected_bytes(response, expected_size)} bytes "
                    f"({self._why_it_broke_off(e)})",
                    request_id=response.headers.get("Request-Id"),
                ) from e
            _check_complete(response, received, expected_size)
        return received

    def _why_it_broke_off(self, error: Exception) -> str:
        cause = error.args[0] if error.args else None
        if isinstance(error, (requests.Timeout, ReadTimeoutError)) or isinstance(
            cause, ReadTimeoutError
        ):
            return f"no data for {self.config.request_timeout:g} s: request_timeout"
        return f"connection broke off: {type(error).__name__}"

    def _call(self, cls: Any, method: str, path: str, **kwargs: Any) -> Any:
        """One request to the API host, its answer parsed as a `cls`."""
        answer = self._http.request_answer(method, self.config.api_base, path, **kwargs)
        return _parsed(cls, answer, f"{method} {path}")


def check_run_succeeded(run: QueryRun, *, endpoint: str | None = None) -> None:
    """Raise `QueryRunError` unless a finished run succeeded with a result file.

    The error names `endpoint` (where `run` was polled) and the Request-Id of that answer.
    """
    if run.is_success:
        return
    stripe_says = run.error_message or "Stripe gave no error message"
    if run.status in RUN_FAILED:
        message = stripe_says
    elif run.status in RUN_SUCCEEDED:
        message = "finished without a result file"
    elif run.status in RUN_IN_PROGRESS:
        message = f"was finalized while still {run.status!r}, without a result file"
    else:
        known = ", ".join(sorted(RUN_IN_PROGRESS | RUN_SUCCEEDED | RUN_FAILED))
        message = f"unknown status {run.status!r} (known: {known}): {stripe_says}"
    raise QueryRunError(
        message, run_id=run.id, status=run.status, endpoint=endpoint, request_id=run.request_id
    )


def _body_as_it_arrives(response: requests.Response) -> Iterator[bytes]:
    """A streamed body in chunks of what the socket delivered (at most 1 MiB each).

    Not `iter_content`: it waits to fill a whole 1 MiB chunk and, when the connection breaks
    off or stalls first, drops the part it had, so a short transfer would count as 0 bytes.
    """
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # an older urllib3: whole chunks only
        yield from response.iter_content(chunk_size=DOWNLOAD_CHUNK_BYTES)
        return
    while chunk := read1(DOWNLOAD_CHUNK_BYTES, decode_content=True):
        yield chunk


def _arrived(response: requests.Response, received: int) -> int:
    """The bytes of a broken-off transfer that did arrive, as Content-Length counts them
    (on the wire: compressed, if the server compressed)."""
    wire = response.raw.tell() if response.raw is not None else received
    if response.headers.get("Content-Length") is not None:
        return wire
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    return received if encoded else max(received, wire)


def _expected_bytes(response: requests.Response, expected_size: int | None) -> str:
    length = response.headers.get("Content-Length")
    if length is not None:
        return length
    return str(expected_size) if expected_size is not None else "an unknown number of"


def _check_complete(response: requests.Response, received: int, expected_size: int | None) -> None:
    # Content-Length counts bytes on the wire (compressed, if the server compressed);
    # `expected_size` counts the file as stored. Compare each with its own count.
    length = response.headers.get("Content-Length")
    on_wire = response.raw.tell() if response.raw is not None else received
    request_id = response.headers.get("Request-Id")
    if length is not None and length.isdigit() and on_wire != int(length):
        raise _IncompleteDownload(
            f"received {on_wire} of {length} bytes (Content-Length)", request_id=request_id
        )
    if expected_size is not None and received != expected_size:
        raise _IncompleteDownload(
            f"received {received} bytes, but the file's size is {expected_size} bytes",
            request_id=request_id,
        )


def _run_path(run_id: str) -> str:
    return f"/v1/sigma/query_runs/{_path_id(run_id)}"


def _contents_path(file_id: str) -> str:
    return f"/v1/files/{_path_id(file_id)}/contents"


def _naming_run(error: SigmaAPIError, run_id: str) -> SigmaAPIError:
    """The same error, its message saying which query run's result it concerns."""
    return type(error)(
        f"result of query run {run_id}: {error.message}",
        endpoint=error.endpoint,
        http_status=error.http_status,
        error_type=error.error_type,
        code=error.code,
        request_id=error.request_id,
    )


def _path_id(object_id: str) -> str:
    if not isinstance(object_id, str) or not object_id:
        raise ValueError(f"an object id must be a non-empty string, got {object_id!r}")
    return quote(object_id, safe="")


def _list_items(answer: JSONAnswer, endpoint: str) -> list[Any]:
    """The `data` of a Stripe list object; any other body is an `APIServerError`, so that a
    wrong answer is never taken for an empty list."""
    body = answer.body
    if (
        not isinstance(body, dict)
        or body.get("object") != "list"
        or not isinstance(body.get("data"), list)
    ):
        raise APIServerError(
            "answered with something other than a list object",
            endpoint=endpoint,
            http_status=answer.http_status,
            request_id=answer.request_id,
        )
    return body["data"]


def _parsed(cls: Any, answer: JSONAnswer, endpoint: str) -> Any:
    """`cls.from_api(answer.body)`, turning a body of the wrong shape into `APIServerError`
    that names the endpoint and the answer's Request-Id."""
    try:
        if cls is QueryRun:
            return QueryRun.from_api(answer.body, request_id=answer.request_id)
        return cls.from_api(answer.body)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise APIServerError(
            f"answered with an unexpected {cls.__name__} object ({type(e).__name__}: {e})",
            endpoint=endpoint,
            http_status=answer.http_status,
            request_id=answer.request_id,
        ) from e
