"""The API key only ever travels encrypted, or to this machine: plain http:// elsewhere is
refused, by configuration and by redirect alike."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sigma_source.client import ClientConfig
from sigma_source.errors import ConfigError
from tests.reliability_helpers import INCREMENTAL_SQL, CliProject

TABLE = "balance_transactions"


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url)
    project.write_query(TABLE, INCREMENTAL_SQL)
    return project


NOT_LOOPBACK = [
    "http://api.stripe.com",
    "http://10.0.0.5:12111",
    "http://192.168.1.10",
    "http://127.0.0.1.nip.io",  # resolves to loopback, but the name is not a loopback host
    "http://localhost.example.com",
    "http://2130706433",  # 127.0.0.1 as a number: refused rather than guessed
    "ftp://files.stripe.com",
    "api.stripe.com",
]


@pytest.mark.parametrize("setting", ["api_base", "files_base"])
@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_plain_http_to_a_host_that_is_not_loopback_is_refused_before_any_request(
    project, emulator, setting, url
):
    with pytest.raises(ConfigError) as error:
        project.run(source_settings={setting: url})

    assert str(error.value).startswith(setting)
    assert emulator.requests == []


def test_plain_http_elsewhere_fails_the_cli_with_exit_2(project):
    done = project.cli("run", env=project.env(SOURCES__SIGMA__API_BASE="http://api.stripe.com"))

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: api_base: plain http:// is allowed only for loopback hosts (127.0.0.0/8, "
        "localhost, ::1), got http://api.stripe.com; use https://"
    )


def test_the_readme_quotes_the_refusal_as_the_client_words_it():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [quoted] = re.findall(r"\*\*`(plain http://[^`]*)`\.\*\*", readme)

    with pytest.raises(ConfigError) as error:
        ClientConfig(api_key="sk_test_0123456789abcdef", api_base="http://api.stripe.com")

    assert quoted in str(error.value)


class _Redirector(BaseHTTPRequestHandler):
    """Answers every GET with a redirect to `location`; records the headers it was sent."""

    location = ""
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        type(self).seen.append(dict(self.headers.items()))
        if self.location:
            self.send_response(302)
            self.send_header("Location", self.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"id,amount\n1,10\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(location: str) -> Iterator[tuple[str, list[dict[str, str]]]]:
    handler = type("Handler", (_Redirector,), {"location": location, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def redirect_to_plain_http() -> Iterator[tuple[str, list[dict[str, str]]]]:
    yield from _serve("http://files.example.com/v1/files/stolen/contents")


@pytest.fixture
def plain_file_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    yield from _serve("")


def test_a_redirect_to_plain_http_elsewhere_is_refused_and_fails_the_query(
    project, redirect_to_plain_http
):
    files_base, _ = redirect_to_plain_http

    result = project.run(source_settings={"files_base": files_base})

    line = result.failures[TABLE]
    assert "refused a redirect to http://files.example.com" in line
    assert "\n" not in line
    assert not project.table_exists(TABLE)


def test_a_redirect_to_another_origin_does_not_carry_the_api_key(project, plain_file_server):
    target, seen_by_target = plain_file_server
    redirector = _serve(f"{target}/elsewhere.csv")
    files_base, seen_by_files_host = next(redirector)
    try:
        project.run(source_settings={"files_base": files_base})
    finally:
        redirector.close()

    assert seen_by_files_host and all("Authorization" in h for h in seen_by_files_host)
    assert seen_by_target, "the redirect was not followed"
    assert not any("Authorization" in headers for headers in seen_by_target)
