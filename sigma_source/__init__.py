"""sigma-load: Stripe Sigma query results into a warehouse, typed and incremental, with dlt.

Public entry points:

- `sigma_source(...)`: the dlt source, one resource per SQL file of the query project;
- `run(RunOptions(...))`: the source through a dlt pipeline, as `sigma-load run` does it;
- `SigmaClient(ClientConfig(...))`: the Stripe Sigma API client on its own.

Heavy modules (dlt, pyarrow, duckdb) load on first use of these names, not on import, so
`sigma-load --help` starts fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sigma_source.errors import (
    ConfigError,
    CSVTypeError,
    DownloadError,
    QueryRunError,
    SigmaAPIError,
    SigmaLoadError,
)

__version__ = "0.1.0"

_LAZY = {
    "sigma_source": "sigma_source.source",
    "RunReport": "sigma_source.source",
    "run": "sigma_source.loader",
    "RunOptions": "sigma_source.loader",
    "RunResult": "sigma_source.loader",
    "SigmaClient": "sigma_source.client",
    "ClientConfig": "sigma_source.client",
}

__all__ = [
    "ClientConfig",
    "ConfigError",
    "CSVTypeError",
    "DownloadError",
    "QueryRunError",
    "RunOptions",
    "RunReport",
    "RunResult",
    "SigmaAPIError",
    "SigmaClient",
    "SigmaLoadError",
    "__version__",
    "run",
    "sigma_source",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sigma_source' has no attribute {name!r}")
