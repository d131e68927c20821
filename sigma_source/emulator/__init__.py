"""A local Stripe Sigma API (v1) on a real socket: the project's test double, the `demo`'s data
source, and a tool users run for their own CI.

    from sigma_source.emulator import Emulator, Fault

    with Emulator(seed=42, scale=1000) as emu:
        emu.add_fault(Fault(kind="status", status=429, retry_after=1))
        ...  # point a client at emu.url

DuckDB is imported only when an emulator starts, so importing this package is cheap.
"""

from sigma_source.emulator.app import Emulator, serve
from sigma_source.emulator.faults import Fault
from sigma_source.emulator.server import RecordedRequest

__all__ = ["Emulator", "Fault", "RecordedRequest", "serve"]
