"""The API key appears nowhere a run leaves anything: output, logs, exceptions, tables, files.

One project is run through every kind of failure (API errors, dead runs, broken downloads,
bad CSV, bad templates, bad settings, a revoked key), through the CLI with dlt logging at
DEBUG and in-process, and then everything is scanned for the key: stdout and stderr, log
records, exception chains, every text value in the DuckDB file (`_sigma_query_runs` and
dlt's tables, state decompressed), and every file under the run's folder byte by byte
(dlt's working folder with its state, schemas, trace.pickle and load packages, gzip and
parquet opened; `target/`).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
import traceback
from pathlib import Path

import pytest

from sigma_source.emulator import Fault
from sigma_source.errors import SigmaLoadError
from sigma_source.lineage import LINEAGE_TABLE
from tests.reliability_helpers import (
    INCREMENTAL_SQL,
    REPO,
    CliProject,
    files_containing,
    secret_in_duckdb,
)
from tests.test_reliability_faults import PERMANENT

SECRET = "sk_test_" + secrets.token_hex(16)
REVOKED = "sk_live_" + secrets.token_hex(16)
TABLE = "balance_transactions"


@pytest.fixture
def project(tmp_path, emulator) -> CliProject:
    project = CliProject(tmp_path, emulator.url, api_key=SECRET)
    project.write_query(TABLE, INCREMENTAL_SQL)
    project.write_query("render_fails", "select {{ nope }} from charges")
    project.write_query("ragged", "select 1 as ragged_marker")
    emulator.add_canned_result("ragged_marker", b"id,amount\n1,2,3\n")
    return project


# One fault of each kind; the fault matrix scans for its own key after every permanent fault.
CLI_FAULTS = (
    "query run failed",
    "result file expired",
    "403 key without Sigma permission",
    "malformed JSON from poll",
    "truncated on every download",
)


def _failing_cli_runs(project: CliProject, emulator) -> list[str]:
    """Run the CLI through faults of each kind, logging at DEBUG; return what it printed."""
    printed = []
    debug = project.env(RUNTIME__LOG_LEVEL="DEBUG")
    for name in CLI_FAULTS:
        emulator.add_fault(PERMANENT[name].fault)
        done = project.cli("run", "--log-format", "json", env=debug)
        assert done.returncode == 1, done.stderr
        printed += [done.stdout, done.stderr]
        emulator.clear_faults()
    revoked = project.cli("run", env={**debug, "SOURCES__SIGMA__API_KEY": REVOKED})
    assert revoked.returncode == 1 and "HTTP 401" in revoked.stderr
    printed += [revoked.stdout, revoked.stderr]
    return printed


def _failing_in_process_runs(project: CliProject, emulator) -> list[str]:
    """Runs that raise, with their whole exception chains as text."""
    texts = []
    for settings in (
        {"api_base": "http://api.stripe.com"},
        {"max_concurrent_runs": 0},
        {"api_key": SECRET + "\n"},
        {"project_dir": str(project.tmp_path / "missing")},
    ):
        with pytest.raises(SigmaLoadError) as error:
            project.run(source_settings=settings)
        texts += [str(error.value), repr(error.value), *traceback.format_exception(error.value)]
    emulator.add_fault(Fault(kind="run_status", run_status="failed", times=None))
    result = project.run()
    texts += [*result.failures.values(), *(repr(record) for record in result.records)]
    emulator.clear_faults()
    return texts


def test_the_api_key_is_nowhere_after_runs_that_fail_in_every_way(project, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("dlt").addHandler(caplog.handler)
    try:
        outputs = _failing_cli_runs(project, emulator)
        outputs += _failing_in_process_runs(project, emulator)
    finally:
        logging.getLogger("dlt").removeHandler(caplog.handler)
    outputs.append(caplog.text)

    leaks = [text for text in outputs if SECRET in text or REVOKED in text]
    assert leaks == []
    for key in (SECRET, REVOKED):
        assert files_containing(key, [project.tmp_path]) == []
        assert secret_in_duckdb(project.duckdb_path, key) == []
    # The scans see what is there: the failures' run ids are in the tables and files.
    run_id = project.sql("select max(query_run_id) from sigma._sigma_query_runs")[0][0]
    assert run_id.startswith("qry_")
    assert "sigma._sigma_query_runs.query_run_id" in secret_in_duckdb(project.duckdb_path, run_id)
    assert files_containing(LINEAGE_TABLE, [project.working_dir])  # in dlt's schema files
    masked = f"sk_live_****{REVOKED[-4:]}"  # how Stripe names the revoked key in its answer
    assert files_containing(masked, [project.tmp_path / "target"])


def test_a_malformed_key_is_refused_without_echoing_it(project):
    done = project.cli("run", env=project.env(SOURCES__SIGMA__API_KEY=f"{SECRET} trailing"))

    assert done.returncode == 2
    assert "api_key contains whitespace" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_the_example_secrets_file_is_git_ignored_where_it_would_be_created():
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (".dlt/secrets.toml", "pipelines/.dlt/secrets.toml"):
        ignored = subprocess.run(
            [git, "check-ignore", "--quiet", "--no-index", path], cwd=REPO, check=False
        )
        assert ignored.returncode == 0, f"{path} is not git-ignored"


def test_the_readme_and_the_secrets_example_ask_for_a_restricted_key_with_sigma_rights_only():
    readme = " ".join((REPO / "README.md").read_text().split())
    example = (REPO / ".dlt" / "secrets.toml.example").read_text()

    assert "restricted key" in readme and "only the Sigma permissions" in readme
    assert "restricted key" in example and "Sigma permissions" in example


def test_the_secrets_example_holds_no_real_key():
    example = Path(REPO / ".dlt" / "secrets.toml.example").read_text()

    assert 'api_key = "rk_live_..."' in example
