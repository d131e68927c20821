"""Helpers for the reliability, crash, soak, bad-input and security tests.

A `CliProject` is a query project laid out the way `sigma-load run` finds it when started in
`root`: the DuckDB file `sigma_load.duckdb` and dlt's state under `root/dlt-data`. The same
project can be run in-process (`project.run()`, fast) or as a real process
(`project.cli(...)`, for exit codes, stderr and SIGKILL), on the same files.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sigma_source.loader import RunOptions
from tests.loader_helpers import TEST_KEY, LoaderHarness

REPO = Path(__file__).resolve().parent.parent
PIPELINE = "sigma_load"

# Retries and polls in milliseconds rather than seconds: the faults are the same, the waits
# are not. Keys of [sources.sigma], so the CLI takes them from SOURCES__SIGMA__<KEY>.
FAST_CLIENT_SETTINGS: dict[str, Any] = {
    "max_attempts": 4,
    "backoff_factor": 0.01,
    "max_retry_delay": 0.05,
    "download_attempts": 3,
    "poll_interval": 0.01,
    "poll_max_interval": 0.05,
    "request_timeout": 10.0,
    "poll_timeout": 30.0,
}

INCREMENTAL_SQL = """
{{ config(primary_key='id', cursor='created', lag='1h', initial_value='2024-01-01') }}
select id, amount, fee, net, currency, type, created
from balance_transactions
{% if is_incremental() %}
where created >= {{ cursor_start }} and created < {{ cursor_end }}
{% endif %}
"""

# Append with a cursor and no lag: every row must arrive exactly once, the strictest case.
APPEND_SQL = """
{{ config(cursor='created', initial_value='2024-01-01') }}
select id, customer_id, amount, currency, status, created
from charges
where created >= {{ cursor_start }} and created < {{ cursor_end }}
"""

REPLACE_SQL = """
{{ config(write_disposition='replace') }}
select currency, count(*) as n, sum(amount) as amount
from balance_transactions
group by 1
"""

# One query of each write disposition, and how to read each table's rows from Sigma.
THREE_QUERIES = {
    "balance_transactions": INCREMENTAL_SQL,
    "charges": APPEND_SQL,
    "currencies": REPLACE_SQL,
}
EXPECTED_ROWS = {
    "balance_transactions": (
        "id, amount, fee, net, currency, type, created",
        "select id, amount, fee, net, currency, type, created from balance_transactions",
    ),
    "charges": (
        "id, customer_id, amount, currency, status, created",
        "select id, customer_id, amount, currency, status, created from charges",
    ),
    "currencies": (
        "currency, n, amount",
        "select currency, count(*), sum(amount) from balance_transactions group by 1",
    ),
}


class CliProject(LoaderHarness):
    """A LoaderHarness whose files are where `sigma-load run` (cwd = tmp_path) puts them.

    With `postgres_dsn` and `dataset` it loads into that Postgres dataset instead of DuckDB,
    in-process and through the CLI alike, and `sql()` reads from there.
    """

    def __init__(
        self,
        tmp_path: Path,
        emulator_url: str,
        *,
        api_key: str = TEST_KEY,
        postgres_dsn: str | None = None,
        dataset: str = "sigma",
        **settings: Any,
    ) -> None:
        super().__init__(tmp_path, emulator_url)
        self.api_key = api_key
        self.postgres_dsn = postgres_dsn
        self.dataset = dataset
        self.settings = {**FAST_CLIENT_SETTINGS, **settings}

    @property
    def destination(self) -> str:
        return "postgres" if self.postgres_dsn else "duckdb"

    @property
    def duckdb_path(self) -> Path:
        return self.tmp_path / f"{PIPELINE}.duckdb"

    @property
    def dlt_data_dir(self) -> Path:
        return self.tmp_path / "dlt-data"

    @property
    def pipelines_dir(self) -> Path:
        return self.dlt_data_dir / "pipelines"

    @property
    def working_dir(self) -> Path:
        """dlt's working folder of the pipeline: state, schemas, packages, trace."""
        return self.pipelines_dir / PIPELINE

    def options(self, **overrides: Any) -> RunOptions:
        """Run options for the in-process loader; only `settings` beyond the connection."""
        settings = {
            "api_key": self.api_key,
            "api_base": self.emulator_url,
            "files_base": self.emulator_url,
            "project_dir": str(self.project_dir),
            **self.settings,
            **overrides.pop("source_settings", {}),
        }
        values: dict[str, Any] = {
            "duckdb_path": str(self.duckdb_path),
            "pipelines_dir": str(self.pipelines_dir),
            "pipeline_name": PIPELINE,
            "destination": self.destination,
            "dataset": self.dataset,
            "source_settings": settings,
        }
        values.update(overrides)
        return RunOptions(**values)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment `sigma-load run` needs to reach the emulator, as a user sets it."""
        env = {
            "SOURCES__SIGMA__API_KEY": self.api_key,
            "SOURCES__SIGMA__API_BASE": self.emulator_url,
            "SOURCES__SIGMA__FILES_BASE": self.emulator_url,
            "SOURCES__SIGMA__PROJECT_DIR": str(self.project_dir),
            "DLT_DATA_DIR": str(self.dlt_data_dir),
        }
        env.update({f"SOURCES__SIGMA__{key.upper()}": str(v) for key, v in self.settings.items()})
        if self.postgres_dsn:
            env["DESTINATION__POSTGRES__CREDENTIALS"] = self.postgres_dsn
        env.update(extra)
        return env

    def cli_command(self, *args: str) -> list[str]:
        where = ["--destination", self.destination, "--dataset", self.dataset]
        if args[:1] == ("run",) and self.postgres_dsn:
            args = (*args, *where)
        return [sys.executable, "-m", "sigma_source", *args]

    def sql(self, query: str) -> list[tuple]:
        if not self.postgres_dsn:
            return super().sql(query)
        import psycopg2

        with psycopg2.connect(self.postgres_dsn) as connection, connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()

    def table_exists(self, table: str) -> bool:
        if not self.postgres_dsn and not self.duckdb_path.exists():
            return False
        rows = self.sql(
            "select count(*) from information_schema.tables "
            f"where table_schema = '{self.dataset}' and table_name = '{table}'"
        )
        return rows[0][0] == 1

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run `sigma-load ARGS` to completion in `tmp_path`."""
        return subprocess.run(
            self.cli_command(*args),
            cwd=self.tmp_path,
            env=_clean_environment() | (env if env is not None else self.env()),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start `sigma-load ARGS` without waiting (to kill it); output goes to files."""
        out = (self.tmp_path / "stdout.log").open("ab")
        err = (self.tmp_path / "stderr.log").open("ab")
        try:
            return subprocess.Popen(
                self.cli_command(*args),
                cwd=self.tmp_path,
                env=_clean_environment() | (env if env is not None else self.env()),
                stdout=out,
                stderr=err,
            )
        finally:
            out.close()
            err.close()

    def last_cursor(self, query: str) -> str | None:
        """The cursor dlt's local state holds for `query` (None before its first load)."""
        state_file = self.working_dir / "state.json"
        if not state_file.exists():
            return None
        state = json.loads(state_file.read_text())
        queries = state.get("sources", {}).get("sigma", {}).get("queries", {})
        return queries.get(query, {}).get("last_cursor")

    def rows(self, table: str, columns: str) -> list[tuple]:
        """The table's rows, sorted, timestamps as naive UTC (as the emulator holds them)."""
        rows = self.sql(f"select {columns} from {self.dataset}.{table}")
        return sorted(tuple(_naive_utc(value) for value in row) for row in rows)

    def lineage(self, columns: str = "query_name, query_run_id, status, row_count") -> list:
        return sorted(self.sql(f"select {columns} from {self.dataset}._sigma_query_runs"))


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _clean_environment() -> dict[str, str]:
    """This process's environment without sigma or dlt settings a developer may have set.

    dlt's telemetry stays off, as in the test process (see conftest): tests send nothing
    beyond this machine.
    """
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SOURCES__", "DESTINATION__", "DLT_", "RUNTIME__"))
    }
    return kept | {"RUNTIME__DLTHUB_TELEMETRY": "false"}


def source_rows(emulator: Any, sql: str) -> list[tuple]:
    """What the emulator's own tables say a query should load, sorted like `CliProject.rows`."""
    return sorted(emulator.execute(sql))


def assert_lineage_agrees(project: CliProject, table: str) -> None:
    """Every loaded row comes from a run recorded once, as succeeded, in one load."""
    dataset = project.dataset
    succeeded = project.sql(
        f"select query_run_id, row_count, _dlt_load_id from {dataset}._sigma_query_runs "
        f"where query_name = '{table}' and status = 'succeeded'"
    )
    run_ids = [run_id for run_id, _, _ in succeeded]
    assert len(run_ids) == len(set(run_ids)), f"a run of {table} is recorded twice"
    recorded = {run_id: rows for run_id, rows, _ in succeeded}
    loaded = project.sql(
        f"select _sigma_query_run_id, count(*) from {dataset}.{table} group by 1 order by 1"
    )
    for run_id, count in loaded:
        assert run_id in recorded, f"{table} holds rows of {run_id}, a run not recorded"
        assert count <= recorded[run_id], f"{table} holds more rows of {run_id} than it had"
    failed_with_rows = project.sql(
        f"select count(*) from {dataset}._sigma_query_runs "
        f"where query_name = '{table}' and status <> 'succeeded' and row_count <> 0"
    )
    assert failed_with_rows == [(0,)]


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (path for path in root.rglob("*") if path.is_file())


def files_containing(secret: str, roots: Sequence[Path]) -> list[str]:
    """Every file under `roots` whose bytes hold `secret`, also inside gzip and parquet files.

    dlt gzips the jsonl files of its load packages and parquet compresses its pages, so a
    plain byte scan alone would miss a key inside them.
    """
    needles = (secret.encode("utf-8"), secret.encode("utf-16-le"))
    return [
        str(path)
        for path in files_under(*roots)
        if any(needle in form for form in _readable_forms(path) for needle in needles)
    ]


def _readable_forms(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError, zlib.error):
            yield gzip.decompress(data)
    if data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        with contextlib.suppress(Exception):  # a file cut short by a kill is not parquet
            yield str(pq.read_table(path).to_pylist()).encode("utf-8")


def secret_in_duckdb(duckdb_path: Path, secret: str) -> list[str]:
    """`schema.table.column` of every text value in the DuckDB file that holds `secret`.

    DuckDB compresses strings on disk, so the file's bytes alone prove nothing; dlt's state
    table holds the pipeline state zlib-compressed, so it is decoded too.
    """
    import duckdb
    from dlt.common.versioned_state import decompress_state

    found = []
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        columns = connection.sql(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            hits = connection.execute(
                f'select count(*) from "{schema}"."{table}" where contains("{column}", ?)',
                [secret],
            ).fetchone()[0]
            if hits:
                found.append(f"{schema}.{table}.{column}")
            if table == "_dlt_pipeline_state" and column == "state":
                states = connection.sql(f'select state from "{schema}"."{table}"').fetchall()
                if any(secret in json.dumps(decompress_state(s)) for (s,) in states):
                    found.append(f"{schema}.{table}.state (decompressed)")
    return found


def assert_no_secret_anywhere(project: CliProject, secret: str, *outputs: str) -> None:
    """`secret` is in none of `outputs`, no file the run left (dlt's working folder, its
    trace and packages, `target/`, logs) and no text value in the DuckDB file."""
    assert not [output for output in outputs if secret in output]
    assert files_containing(secret, [project.tmp_path]) == []
    if project.duckdb_path.exists():
        assert secret_in_duckdb(project.duckdb_path, secret) == []
