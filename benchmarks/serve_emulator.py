"""Serve a Sigma emulator for the benchmarks, in a process of its own.

Prints its URL on the first line once it serves, then serves until SIGTERM. It answers SQL
that already ran with the earlier result file (`Warehouse.reuse_results`), so that a
benchmark times the loader rather than the emulator writing the same CSV again; each suite
runs every query once before timing it.

    python -m benchmarks.serve_emulator --scale 1000000
"""

from __future__ import annotations

import argparse
import signal
import threading

from sigma_source.emulator import Emulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Emulator(seed=args.seed, scale=args.scale, run_seconds=0.0) as emulator:
        emulator.warehouse.reuse_results = True
        print(emulator.url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
