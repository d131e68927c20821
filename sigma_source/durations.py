"""Short durations such as `30m`, `3h`, `2d` or `1h30m`, as written in a query's config().

Lags and backfill chunks are spans of wall-clock time, so only units with a fixed length are
accepted: weeks, days, hours, minutes, seconds. Months and years vary in length and would make
a window's bounds depend on the calendar; write `90d` or `52w` instead.
"""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"(?:\d+[wdhms])+")
EXAMPLES = "'30m', '3h', '2d'"


def parse_duration(value: object) -> timedelta:
    """`'3h'` → `timedelta(hours=3)`; also `'1h30m'`, and `0` or `'0'` for no time at all.

    Raises ValueError with a message fit to follow `config(lag='3x'): `. A bare number other
    than zero is refused: `lag=3` could mean hours or days, and guessing wrong loses data.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration; use e.g. {EXAMPLES}")
    if value == 0 or value == "0":
        return timedelta(0)
    if isinstance(value, int):
        raise ValueError(f"a bare number has no unit; use e.g. {EXAMPLES}")
    if not isinstance(value, str) or not _WHOLE.fullmatch(value.strip()):
        raise ValueError(f"not a duration; use e.g. {EXAMPLES} (units: w, d, h, m, s)")
    parts = _PART.findall(value.strip())
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units):
        raise ValueError(f"repeats a unit; use e.g. {EXAMPLES} or '1h30m'")
    return timedelta(**{UNITS[unit]: int(amount) for amount, unit in parts})


def format_duration(span: timedelta) -> str:
    """The shortest `1d12h`-style spelling of `span`; the inverse of `parse_duration`."""
    seconds = int(span.total_seconds())
    if seconds == 0:
        return "0"
    text = ""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            text += f"{amount}{unit}"
    return text
