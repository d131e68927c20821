"""What every benchmark shares: timed subprocesses, statistics, the emulator, the machine.

Each contender runs in a process of its own, started through `/usr/bin/time`, so its peak RSS
is its own (a child forked straight from this process could inherit this one's peak).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

PYTHON = sys.executable
API_KEY = "sk_test_benchmark_0000000000000042"
TIME = "/usr/bin/time"
TABLE = "balance_transactions"
SEED = 1
# dlt's anonymous telemetry posts each pipeline step to an outside server from a background
# thread: not what a benchmark times, and the benchmark machines must send nothing outside.
# Every contender inherits this environment.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")


# --- measuring one process -------------------------------------------------------------------


def compile_package() -> None:
    """Write sigma_source's bytecode, as `pip install` of the package does.

    An editable install under PYTHONDONTWRITEBYTECODE (set on some machines and CI images)
    would otherwise compile every module from source in every timed process, a cost no
    installed copy pays and the baselines, which import only installed packages, never do.
    """
    import compileall

    compileall.compile_dir(str(_repo_root() / "sigma_source"), quiet=1)


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_mib: float
    cpu_seconds: float | None = None  # user + system, all threads (None: not measured)
    file_mib: float | None = None  # the size of the DuckDB file it loaded (None: not one)


class BenchmarkFailed(RuntimeError):
    """A contender exited with an error: its numbers would mean nothing."""


def measure(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    label: str = "",
) -> Measurement:
    """Run `command` to its end; its wall time (from here), and its peak RSS and CPU time
    (user + system, every thread) from /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        wrapped = [TIME, "-f", "%M %U %S", "-o", report.name, *command]
        started = time.perf_counter()
        done = subprocess.run(
            wrapped,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise BenchmarkFailed(f"{label or command[0]} exited {done.returncode}:\n{tail}")
        peak_kib, user, system = report.read().strip().splitlines()[-1].split()
    measurement = Measurement(seconds, int(peak_kib) / 1024, float(user) + float(system))
    if label:
        log(
            f"  {label:<36} {measurement.seconds:7.2f} s {measurement.peak_mib:7.0f} MiB "
            f"{measurement.cpu_seconds:6.2f} s CPU"
        )
    return measurement


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- statistics --------------------------------------------------------------------------------


@dataclass
class Series:
    """Repeated measurements of one contender."""

    name: str
    runs: list[Measurement] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [run.seconds for run in self.runs]

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peaks(self) -> list[float]:
        return [run.peak_mib for run in self.runs]

    @property
    def median_peak(self) -> float:
        return statistics.median(self.peaks)

    @property
    def cpu_seconds(self) -> list[float]:
        return [run.cpu_seconds for run in self.runs if run.cpu_seconds is not None]

    @property
    def median_cpu_seconds(self) -> float | None:
        return statistics.median(self.cpu_seconds) if self.cpu_seconds else None

    @property
    def median_file_mib(self) -> float | None:
        sizes = [run.file_mib for run in self.runs if run.file_mib is not None]
        return statistics.median(sizes) if sizes else None


def repeat_interleaved(
    contenders: Mapping[str, Callable[[], Measurement]], repeat: int
) -> dict[str, Series]:
    """Run every contender `repeat` times, rotating the order so none always runs first."""
    names = list(contenders)
    series = {name: Series(name) for name in names}
    for round_number in range(repeat):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            series[name].runs.append(contenders[name]())
    return series


def span(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
    """`median (min–max)` of `values`."""
    median = statistics.median(values)
    return f"{median:.{digits}f} {unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def verdict(ok: bool) -> str:
    return "✅ met" if ok else "❌ not met"


# --- the emulator, in a process of its own -----------------------------------------------------


class EmulatorProcess:
    """`python -m benchmarks.serve_emulator` in the background, and its control API.

    It answers SQL that already ran with the same result file (a hard link): the benchmarks
    time the loader, not the emulator writing a CSV again.
    """

    def __init__(self, *, scale: int, seed: int = SEED) -> None:
        self.scale = scale
        self.seed = seed
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> EmulatorProcess:
        log(f"starting an emulator with {self.scale:,} balance transactions …")
        started = time.perf_counter()
        command = [PYTHON, "-m", "benchmarks.serve_emulator", "--scale", str(self.scale)]
        command += ["--seed", str(self.seed)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, cwd=_repo_root()
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("http://"):
            self.__exit__()
            raise BenchmarkFailed(f"the emulator did not start: {line!r}")
        self.url = line.strip()
        log(f"  emulator on {self.url} after {time.perf_counter() - started:.1f} s")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=60)
        self._process = None

    def settings(self, **values: Any) -> None:
        response = requests.post(f"{self.url}/_emulator/settings", json=values, timeout=30)
        response.raise_for_status()

    def add_fault(self, fault: Mapping[str, Any]) -> None:
        """Inject a fault (the emulator's `Fault` fields), e.g. a slow download link."""
        response = requests.post(f"{self.url}/_emulator/faults", json=dict(fault), timeout=30)
        response.raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/_emulator/faults", timeout=30).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/_emulator/requests", timeout=30)
        response.raise_for_status()
        return response.json()["data"]

    def run_query(self, sql: str) -> dict[str, Any]:
        """Run `sql` to its end (quickly polled); the finished run."""
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {API_KEY}"
            run = http.post(f"{self.url}/v1/sigma/query_runs", data={"sql": sql}, timeout=30)
            run.raise_for_status()
            body = run.json()
            while body["status"] == "running":
                time.sleep(0.05)
                got = http.get(f"{self.url}/v1/sigma/query_runs/{body['id']}", timeout=30)
                body = got.json()
        if body["status"] != "succeeded":
            raise BenchmarkFailed(f"emulator run of {sql!r} ended {body['status']}")
        return body

    def file_url(self, run: Mapping[str, Any]) -> str:
        return f"{self.url}/v1/files/{run['result']['file']}/contents"

    def download(self, sql: str, path: Path) -> Path:
        """Run `sql` and save its result file at `path`."""
        url = self.file_url(self.run_query(sql))
        headers = {"Authorization": f"Bearer {API_KEY}"}
        partial = path.with_suffix(".part")  # never leave a short file where a cache looks
        with requests.get(url, headers=headers, stream=True, timeout=300) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                for chunk in response.iter_content(1 << 20):
                    out.write(chunk)
        partial.rename(path)
        return path


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# --- running sigma-load ------------------------------------------------------------------------


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"sigma-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_project(folder: Path, queries: Mapping[str, str]) -> Path:
    """A query project: one `NAME.sql` per query."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in queries.items():
        (folder / f"{name}.sql").write_text(sql + "\n")
    return folder


def sigma_load_env(emulator_url: str, data_dir: Path, **settings: Any) -> dict[str, str]:
    """Environment for a `sigma-load` process: the emulator, and dlt state under `data_dir`."""
    env = {
        "SOURCES__SIGMA__API_KEY": API_KEY,
        "SOURCES__SIGMA__API_BASE": emulator_url,
        "SOURCES__SIGMA__FILES_BASE": emulator_url,
        "DLT_DATA_DIR": str(data_dir),
    }
    env.update({f"SOURCES__SIGMA__{key.upper()}": str(value) for key, value in settings.items()})
    return env


def sigma_load_command(*args: str) -> list[str]:
    return [str(Path(PYTHON).with_name("sigma-load")), *args]


def run_sigma_load(
    emulator_url: str,
    queries: Mapping[str, str],
    *,
    label: str,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    verify: Callable[[Path], None] | None = None,
    launcher: Sequence[str] | None = None,
    untimed_runs: int = 0,
) -> Measurement:
    """`sigma-load run` of `queries` into a fresh pipeline (a first, full load).

    `verify` gets the DuckDB file afterwards, to check the load really happened.
    `launcher` replaces the `sigma-load` executable (to run the CLI under a profiler).
    `untimed_runs` runs the same command that many times first, into the same pipeline:
    the timed run is then a repeat load (a daily refresh), with every column's type already
    in dlt's schema, so no inference pass.
    """
    with scratch_dir("run") as work:
        project = write_project(work / "queries", queries)
        run_env = sigma_load_env(emulator_url, work / "dlt", **dict(settings or {}))
        run_env.update(env or {})
        arguments = ["run", "--project-dir", str(project), "--pipeline-name", "bench"]
        arguments += extra_args
        command = [*launcher, *arguments] if launcher else sigma_load_command(*arguments)
        for _ in range(untimed_runs):
            measure(command, env=run_env, cwd=work)
        measurement = measure(command, env=run_env, cwd=work, label=label)
        duckdb_file = work / "bench.duckdb"
        if verify is not None:
            verify(duckdb_file)
        return with_file_size(measurement, duckdb_file)


def with_file_size(measurement: Measurement, duckdb_file: Path) -> Measurement:
    """`measurement` with the size of the DuckDB file its contender loaded, if there is one."""
    if not duckdb_file.exists():
        return measurement
    return replace(measurement, file_mib=duckdb_file.stat().st_size / (1 << 20))


# --- the machine -------------------------------------------------------------------------------


def machine_description() -> list[str]:
    """Markdown lines describing where the numbers were measured."""
    lines = [
        f"- CPU: {_cpu_model()} — {os.cpu_count()} logical cores",
        f"- Memory: {_memory_gib():.1f} GiB",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; " + ", ".join(_versions()),
        f"- Load average when the suite started: {_load_average()}",
    ]
    return lines


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else "unknown CPU"


def _memory_gib() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^MemTotal:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) / 1024 / 1024 if found else 0.0


def _versions() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("dlt", "duckdb", "pyarrow", "requests"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return found


def _load_average() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def dump_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
