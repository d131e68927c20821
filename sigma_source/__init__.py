"""sigma-load: Stripe Sigma query results into a warehouse, typed and incremental, with dlt.

Kept import-light on purpose: `sigma-load --help` must start fast, so heavy modules
(dlt, pyarrow, duckdb) are imported by the modules that use them, never here.
"""

from sigma_source.errors import (
    ConfigError,
    CSVTypeError,
    DownloadError,
    QueryRunError,
    SigmaAPIError,
    SigmaLoadError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CSVTypeError",
    "DownloadError",
    "QueryRunError",
    "SigmaAPIError",
    "SigmaLoadError",
    "__version__",
]
