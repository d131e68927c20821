"""Shared fixtures. The emulator fixtures start a real Sigma API server on a loopback socket."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from sigma_source.emulator import Emulator

TEST_API_KEY = "sk_test_emulator_0123456789abcdef"

# dlt's anonymous telemetry would post every pipeline run of the suite to dlt's servers.
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"


@pytest.fixture
def api_key() -> str:
    """A Stripe test-mode secret key: the emulator accepts any `sk_test_` / `rk_test_` key."""
    return TEST_API_KEY


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A small, fast emulator (500 balance transactions, runs finish at once), per test."""
    with Emulator(seed=42, scale=500, run_seconds=0.0) as emu:
        yield emu


@pytest.fixture
def sigma_http(emulator: Emulator, api_key: str) -> Iterator[requests.Session]:
    """A plain `requests` session that authenticates to the emulator like Stripe's SDKs do."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {api_key}"
        yield session


@pytest.fixture
def run_query(
    emulator: Emulator, sigma_http: requests.Session, wait_for_run: Callable[..., dict[str, Any]]
) -> Callable[..., dict[str, Any]]:
    """Start a query run with `sql` and poll it until it leaves `running`; returns the run."""

    def run(sql: str, *, timeout: float = 10.0) -> dict[str, Any]:
        created = sigma_http.post(f"{emulator.url}/v1/sigma/query_runs", data={"sql": sql})
        assert created.status_code == 200, created.text
        return wait_for_run(created.json()["id"], timeout=timeout)

    return run


@pytest.fixture
def wait_for_run(emulator: Emulator, sigma_http: requests.Session) -> Callable[..., dict[str, Any]]:
    """Poll a query run (by id) until its status is no longer `running`; returns the run."""

    def wait(run_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = sigma_http.get(f"{emulator.url}/v1/sigma/query_runs/{run_id}")
            assert response.status_code == 200, response.text
            run = response.json()
            if run["status"] != "running":
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"query run {run_id} still running after {timeout} s")
            time.sleep(0.02)

    return wait


@pytest.fixture
def postgres_dataset(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(DSN, a fresh dataset name) on the local Postgres; the dataset is dropped afterwards.

    The DSN is also dlt's Postgres credentials in this process (for in-process runs).

    Skipped without a server, failed instead when SIGMA_LOAD_REQUIRE_POSTGRES=1 (CI).
    """
    import uuid

    from tests.loader_helpers import POSTGRES_DSN, connect_test_postgres

    connection, dsn = connect_test_postgres(), POSTGRES_DSN
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", dsn)
    dataset = f"sigma_rel_{uuid.uuid4().hex[:8]}"
    try:
        yield dsn, dataset
    finally:
        with connection.cursor() as cursor:
            for schema in (dataset, f"{dataset}_staging"):
                cursor.execute(f'drop schema if exists "{schema}" cascade')
        connection.close()


@pytest.fixture
def cli(tmp_path: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A CLI project in `tmp_path` (the working directory) with one query, against the
    emulator. Test modules that need another project define their own `cli`."""
    from tests.cli_helpers import CUSTOMERS_BY_COUNTRY_SQL, CliProject

    monkeypatch.chdir(tmp_path)
    project = CliProject(tmp_path, emulator)
    project.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    return project
