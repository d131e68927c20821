"""Durations as written in config(): `30m`, `3h`, `2d`, `1w`, `1h30m`, and zero."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sigma_source.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("3h", timedelta(hours=3)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 3h ", timedelta(hours=3)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        (0, timedelta(0)),
    ],
)
def test_a_duration_is_read_into_a_timedelta(text, span):
    assert parse_duration(text) == span


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("3x", "not a duration; use e.g. '30m', '3h', '2d'"),
        ("3H", "not a duration"),
        ("1mo", "not a duration"),
        ("1y", "not a duration"),
        ("3 h", "not a duration"),
        ("-3h", "not a duration"),
        ("", "not a duration"),
        ("h", "not a duration"),
        (3, "a bare number has no unit"),
        (1.5, "not a duration"),
        (True, "not a duration"),
        (None, "not a duration"),
        ("1h2h", "repeats a unit"),
    ],
)
def test_anything_else_is_refused_with_a_hint(value, problem):
    with pytest.raises(ValueError, match=problem.replace("(", "\\(")):
        parse_duration(value)


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(0), "0"),
        (timedelta(hours=3), "3h"),
        (timedelta(days=90), "12w6d"),
        (timedelta(hours=1, minutes=30, seconds=5), "1h30m5s"),
    ],
)
def test_a_span_is_written_in_the_shortest_spelling(span, text):
    assert format_duration(span) == text


@given(st.integers(min_value=0, max_value=10**9))
def test_format_and_parse_are_inverses_for_whole_seconds(seconds):
    span = timedelta(seconds=seconds)

    assert parse_duration(format_duration(span)) == span
