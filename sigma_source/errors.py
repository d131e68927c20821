"""The exceptions sigma-load raises.

One root, `SigmaLoadError`, so a caller (and the CLI) can catch everything the loader
raises on purpose and show it as one line. Every message names what failed: the query,
file or setting, the endpoint, the query run id, Stripe's Request-Id. No message ever
contains an API key.
"""

from __future__ import annotations


class SigmaLoadError(Exception):
    """Root of every error sigma-load raises on purpose."""


def one_line(text: object) -> str:
    """`text` whole, on one line: each run of whitespace (newlines too) becomes one space.

    Stripe's messages (a failed run's SQL error, say) can span lines; an error prints as one.
    """
    return " ".join(str(text).split())


def _request_suffix(request_id: str | None) -> str:
    return f" [Request-Id {request_id}]" if request_id else ""


class ConfigError(SigmaLoadError):
    """A setting, a query file or a command-line option is wrong."""


class SigmaAPIError(SigmaLoadError):
    """Stripe answered a request with an error (or could not be reached).

    Carries what Stripe said, so a caller can act on `http_status`, `code` or `type`,
    and `request_id` so the failure can be traced in Stripe's dashboard.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        http_status: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = one_line(message)
        self.endpoint = endpoint
        self.http_status = http_status
        self.error_type = error_type
        self.code = code
        self.request_id = request_id
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        status = f"HTTP {self.http_status} " if self.http_status else ""
        kind = f"{self.error_type}" if self.error_type else ""
        code = f" ({self.code})" if self.code else ""
        head = f"{status}{kind}{code}".strip()
        head = f"{head}: " if head else ""
        return f"{where}{head}{self.message}{_request_suffix(self.request_id)}"


class AuthenticationError(SigmaAPIError):
    """401: the API key is missing, wrong or revoked."""


class SigmaPermissionError(SigmaAPIError):
    """403: the key lacks a permission Sigma needs (use a restricted key with Sigma rights)."""


class InvalidRequestError(SigmaAPIError):
    """400/404: the request is wrong (bad parameter, unknown id, expired file)."""


class IdempotencyError(SigmaAPIError):
    """An Idempotency-Key was reused with different parameters."""


class RateLimitError(SigmaAPIError):
    """429 after every retry was spent."""


class APIServerError(SigmaAPIError):
    """5xx (or a malformed answer) after every retry was spent."""


class NetworkError(SigmaAPIError):
    """The connection failed, timed out or was reset after every retry was spent."""


class QueryRunError(SigmaLoadError):
    """A query run ended without a usable result: failed, canceled, timed out, or no file.

    `endpoint` and `request_id` are those of the last answer about the run (its last poll).
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        status: str | None = None,
        endpoint: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = one_line(message)
        self.run_id = run_id
        self.status = status
        self.endpoint = endpoint
        self.request_id = request_id
        super().__init__(str(self))

    def __str__(self) -> str:
        run = f"query run {self.run_id} " if self.run_id else "query run "
        status = f"{self.status}: " if self.status else ""
        where = f" ({self.endpoint})" if self.endpoint else ""
        return f"{run}{status}{self.message}{where}{_request_suffix(self.request_id)}"


class PollTimeoutError(QueryRunError):
    """The loader stopped waiting for a run after `poll_timeout` seconds."""


class DownloadError(SigmaLoadError):
    """A result file could not be downloaded whole after every retry was spent.

    `endpoint` is the download's (`GET /v1/files/{id}/contents`), `run_id` the query run
    whose result it is (when the caller said), `request_id` that of the last answer.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        run_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = one_line(message)
        self.endpoint = endpoint
        self.run_id = run_id
        self.request_id = request_id
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        run = f"result of query run {self.run_id}: " if self.run_id else ""
        return f"{where}{run}{self.message}{_request_suffix(self.request_id)}"


class CSVTypeError(SigmaLoadError):
    """A value in a result file does not fit its column's type."""


class CSVFormatError(SigmaLoadError):
    """A result file is not the CSV Sigma writes: empty, ragged rows, broken quoting, not UTF-8."""
