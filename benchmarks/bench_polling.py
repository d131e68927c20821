"""Polling: how many polls a running query costs, and how late its finish is noticed.

`SigmaClient.wait` with the default settings against an emulator whose runs take a given
time, all at once (each waits in a thread of its own): each length once as a query seen for
the first time, and once as a query whose earlier runs took a known time (what `sigma-load
run` passes from the query's state, as `expected_seconds`), also when that history is 20%
off. From the emulator's request log: the polls per run, and the delay between the run's
finish (its creation plus its run time) and the poll that saw it finished.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from benchmarks.harness import API_KEY, log

RUN_LENGTHS = (0.3, 1.0, 5.0, 20.0, 45.0, 59.0, 60.0)
# A repeat run: how long the query's earlier runs took, as a share of this run's length.
HISTORY_SHARES = (1.0, 0.8, 1.2)


@dataclass(frozen=True)
class PolledRun:
    run_seconds: float
    polls: int
    notice_delay: float
    expected_seconds: float | None = None  # None: a query seen for the first time


def measure_polling(run_lengths: tuple[float, ...] = RUN_LENGTHS) -> list[PolledRun]:
    from sigma_source.client import ClientConfig, SigmaClient
    from sigma_source.emulator import Emulator

    cases = [(seconds, None) for seconds in run_lengths]
    cases += [(seconds, seconds * share) for seconds in run_lengths for share in HISTORY_SHARES]
    log(f"polling: {len(cases)} runs of {', '.join(f'{s:g}' for s in run_lengths)} s at once")
    with Emulator(seed=1, scale=100, run_seconds=0.0) as emulator:
        config = ClientConfig(api_key=API_KEY, api_base=emulator.url, files_base=emulator.url)
        with SigmaClient(config) as client:
            run_ids = {}
            for case in cases:
                emulator.run_seconds = case[0]
                run_ids[case] = client.create_query_run(_sql(*case)).id
            threads = [
                threading.Thread(
                    target=client.wait, args=(run_id,), kwargs={"expected_seconds": expected}
                )
                for (_, expected), run_id in run_ids.items()
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        log_entries = emulator.requests
    return [_polled(*case, run_id, log_entries) for case, run_id in run_ids.items()]


def _sql(run_seconds: float, expected_seconds: float | None) -> str:
    return f"select {run_seconds} as run_seconds, {expected_seconds or 0} as expected_seconds"


def _polled(
    run_seconds: float, expected_seconds: float | None, run_id: str, entries: list
) -> PolledRun:
    created = next(
        entry.received_at
        for entry in entries
        if entry.method == "POST" and entry.form.get("sql") == _sql(run_seconds, expected_seconds)
    )
    polls = [
        entry.received_at
        for entry in entries
        if entry.method == "GET" and entry.path == f"/v1/sigma/query_runs/{run_id}"
    ]
    return PolledRun(run_seconds, len(polls), polls[-1] - (created + run_seconds), expected_seconds)
