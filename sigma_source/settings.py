"""`[sources.sigma]` settings as a user writes them: typos caught, dlt's errors made one line.

dlt ignores a key it does not know, so `poll_timout = 60` in `.dlt/config.toml` (or
`SOURCES__SIGMA__POLL_TIMOUT`) would silently leave the default in force; a scheduled job
deserves to hear about it. dlt's own errors for a missing or mistyped setting are many lines
long (every place it looked), and a mistyped value might be a secret pasted in the wrong
place, so they are rewritten here as one line that never shows a value.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection
from typing import Any

from sigma_source.errors import ConfigError

SECTION = "sources.sigma"
_SOURCE_SPEC = "SigmaSourceConfiguration"  # the spec dlt builds from sigma_source's signature
_EXPECTED = {int: "a whole number", float: "a number (of seconds)", bool: "true or false"}
_ENV_KEY = re.compile(r"SOURCES__SIGMA__([A-Za-z0-9_]+)")
# Arguments of `sigma_source` that each run passes itself: never read from the settings.
RUN_ARGUMENTS = frozenset({"select", "exclude", "full_refresh", "vars", "report"})


def check_known_keys(known: Collection[str]) -> None:
    """Raise `ConfigError` for a `[sources.sigma]` key that no setting of the source reads.

    Looks in the TOML files dlt reads (config.toml, secrets.toml) and in `SOURCES__SIGMA__*`
    environment variables. Subsections (`[sources.sigma.<name>]`) are dlt's to interpret.
    `known` may be the source's parameters: those in `RUN_ARGUMENTS` are not settings.
    """
    import dlt

    known = sorted(set(known) - RUN_ARGUMENTS)

    for provider in dlt.config.config_providers:
        if provider.name == "Environment Variables":
            keys = _environment_keys()
        else:
            keys = _table_keys(provider)
        for key, where in keys:
            if key not in known:
                raise ConfigError(_unknown_key_message(key, where, known))


def _environment_keys() -> list[tuple[str, str]]:
    found = []
    for name in os.environ:
        match = _ENV_KEY.fullmatch(name)
        if match and "__" not in match.group(1):
            found.append((match.group(1).lower(), f"environment variable {name}"))
    return found


def _table_keys(provider: Any) -> list[tuple[str, str]]:
    try:
        table, _ = provider.get_value("sigma", Any, None, "sources")
    except Exception:  # a provider that cannot list a section (a vault) is not checked
        return []
    if not isinstance(table, dict):
        return []
    return [
        (key, f"[{SECTION}] in {provider.name}")
        for key, value in table.items()
        if not isinstance(value, dict)
    ]


def _unknown_key_message(key: str, where: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"{SECTION}.{key} ({where}): unknown setting; {guess}valid: {', '.join(sorted(known))}"


def config_error(error: Exception) -> ConfigError:
    """dlt's configuration exception as a one-line `ConfigError` naming the setting.

    Never shows the value: a value that does not fit its setting may be a key pasted there.
    """
    from dlt.common.configuration.exceptions import (
        ConfigFieldMissingException,
        ConfigValueCannotBeCoercedException,
    )

    if isinstance(error, ConfigFieldMissingException) and error.spec_name == _SOURCE_SPEC:
        names = ", ".join(f"{SECTION}.{name}" for name in error.fields)
        env = ", ".join(f"SOURCES__SIGMA__{name.upper()}" for name in error.fields)
        where = "secrets.toml" if any("key" in name for name in error.fields) else "config.toml"
        return ConfigError(
            f"{names} is not set: put it under [{SECTION}] in .dlt/{where} or set {env}"
        )
    if isinstance(error, ConfigFieldMissingException) and error.fields:
        # A destination's setting, e.g. [destination.postgres] credentials.
        trace = error.traces[error.fields[0]]
        sections = _looked_up_sections(trace)
        lacking = _credential_fields_lacking(trace)
        if sections and lacking:
            return _incomplete_credentials_error(sections, lacking)
        if sections:
            setting, table = ".".join(sections), ".".join(sections[:-1])
            return ConfigError(
                f"{setting} is not set: put it under [{table}] in .dlt/secrets.toml "
                f"or set {'__'.join(sections).upper()}"
            )
    if isinstance(error, ConfigValueCannotBeCoercedException):
        expected = _EXPECTED.get(error.hint, getattr(error.hint, "__name__", str(error.hint)))
        return ConfigError(f"{SECTION}.{error.field_name}: the value set is not {expected}")
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ConfigError(f"configuration error: {first_line}")


def _credential_fields_lacking(trace: Any) -> list[str]:
    """The fields a credentials value lacks when it was given in part (a Postgres URL with no
    password); none when it was not given at all."""
    traces = trace if isinstance(trace, list) else [trace]
    for lookup in traces:
        given = getattr(lookup, "resolved_fields_set", None)
        missing = getattr(lookup, "traces", None)
        if given and isinstance(missing, dict) and missing:
            return list(missing)
    return []


def _incomplete_credentials_error(sections: list[str], lacking: list[str]) -> ConfigError:
    """`sections` name the credentials (destination, postgres, credentials)."""
    setting, env = ".".join(sections), "__".join(sections).upper()
    variables = " and ".join(f"{env}__{field.upper()}" for field in lacking)
    them = "it" if len(lacking) == 1 else "them"
    # dlt asks for a password even where the server asks for none (trust authentication).
    url = " (a URL takes it as user:password@host)" if "password" in lacking else ""
    return ConfigError(
        f"{setting} is set but has no {' or '.join(lacking)}: add {them} to the "
        f"credentials{url}, or set {variables}"
    )


def _looked_up_sections(trace: Any) -> list[str]:
    """The sections of the first place dlt looked for a field; its traces nest in lists and,
    for credentials, per credential field."""
    if isinstance(trace, list):
        return _looked_up_sections(trace[0]) if trace else []
    sections = getattr(trace, "sections", None)
    if isinstance(sections, list):
        return list(sections)
    nested = getattr(trace, "traces", None)
    if isinstance(nested, dict) and nested:
        return _looked_up_sections(next(iter(nested.values())))
    return []
