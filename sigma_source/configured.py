"""`[sources.sigma]` settings for the commands that do not build the dlt source.

`run` lets dlt resolve the source's arguments. `ls`, `compile` and `saved-queries` need a few
of the same settings (the project folder, the API key and endpoints) without building the
source, so they look them up here, in the same places: environment variables
`SOURCES__SIGMA__<KEY>`, then `.dlt/secrets.toml`, then `.dlt/config.toml`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sigma_source.errors import ConfigError

if TYPE_CHECKING:
    from sigma_source.client import SigmaClient

SECTION = "sources.sigma"
DEFAULT_PROJECT_DIR = "pipelines/queries"


def project_dir(override: str | None = None) -> str:
    """`--project-dir` when given, else `project_dir` from the settings, else the default."""
    if override:
        return override
    return str(_lookup("project_dir", str) or DEFAULT_PROJECT_DIR)


def sigma_client(**overrides: Any) -> SigmaClient:
    """A `SigmaClient` configured like the source's: API key, endpoints and retry settings."""
    from sigma_source.client import ClientConfig, SigmaClient

    settings: dict[str, Any] = {}
    for spec in dataclasses.fields(ClientConfig):
        if spec.name == "api_key":
            continue
        kind = type(spec.default) if spec.default is not None else str
        value = _lookup(spec.name, kind)
        if value is not None:
            settings[spec.name] = value
    settings.update(overrides)
    if "api_key" not in settings:
        settings["api_key"] = _api_key()
    return SigmaClient(ClientConfig(**settings))


def _api_key() -> str:
    import dlt

    key = dlt.secrets.get(f"{SECTION}.api_key")
    if not key:
        raise ConfigError(
            f"{SECTION}.api_key is not set: put it under [{SECTION}] in .dlt/secrets.toml "
            "or set SOURCES__SIGMA__API_KEY"
        )
    return str(key)


def _lookup(key: str, kind: type) -> Any:
    import dlt
    from dlt.common.configuration.exceptions import ConfigurationException

    try:
        return dlt.config.get(f"{SECTION}.{key}", kind)
    except ConfigurationException as error:
        # Never echo the value: a value that does not fit may be a secret pasted there.
        raise ConfigError(
            f"{SECTION}.{key}: the value set cannot be read as {kind.__name__}"
        ) from error
