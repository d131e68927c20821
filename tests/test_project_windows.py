"""Planning the cursor windows of a run: first run, lag, backfill chunks, nothing new."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sigma_source.errors import ConfigError
from sigma_source.project import MAX_WINDOWS, QueryConfig, Window, plan_windows

UTC = timezone.utc
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)
INCREMENTAL = QueryConfig(primary_key=("id",), cursor="created", write_disposition="merge")


def config(**settings) -> QueryConfig:
    return QueryConfig(**{**INCREMENTAL.__dict__, **settings})


def test_a_query_without_cursor_gets_one_window_without_start_ending_now():
    assert plan_windows(QueryConfig(), last_cursor=None, now=NOW) == [Window(None, NOW)]


def test_a_query_without_cursor_ignores_any_last_cursor():
    assert plan_windows(QueryConfig(), last_cursor=JAN_1, now=NOW) == [Window(None, NOW)]


def test_a_first_run_without_initial_value_is_not_incremental():
    windows = plan_windows(INCREMENTAL, last_cursor=None, now=NOW)

    assert windows == [Window(None, NOW)]
    assert not windows[0].is_incremental


def test_a_first_run_starts_at_initial_value():
    windows = plan_windows(config(initial_value=JAN_1), last_cursor=None, now=NOW)

    assert windows == [Window(JAN_1, NOW)]
    assert windows[0].is_incremental


def test_a_later_run_starts_at_the_last_cursor():
    last = datetime(2024, 5, 31, 8, 15, tzinfo=UTC)

    assert plan_windows(INCREMENTAL, last_cursor=last, now=NOW) == [Window(last, NOW)]


def test_lag_moves_the_start_back_from_the_last_cursor():
    last = datetime(2024, 5, 31, 8, 15, tzinfo=UTC)
    lagged = config(lag=timedelta(hours=3))

    windows = plan_windows(lagged, last_cursor=last, now=NOW)

    assert windows == [Window(datetime(2024, 5, 31, 5, 15, tzinfo=UTC), NOW)]


def test_lag_never_reaches_back_before_initial_value():
    lagged = config(lag=timedelta(days=7), initial_value=JAN_1)

    windows = plan_windows(lagged, last_cursor=datetime(2024, 1, 2, tzinfo=UTC), now=NOW)

    assert windows == [Window(JAN_1, NOW)]


def test_a_naive_last_cursor_is_taken_as_utc():
    windows = plan_windows(INCREMENTAL, last_cursor=datetime(2024, 5, 1), now=NOW)

    assert windows[0].start == datetime(2024, 5, 1, tzinfo=UTC)


def test_now_in_another_zone_becomes_utc():
    paris_noon = datetime(2024, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    windows = plan_windows(config(initial_value=JAN_1), last_cursor=None, now=paris_noon)

    assert windows[0].end == NOW
    assert windows[0].end.tzinfo is UTC


def test_bounds_are_cut_to_milliseconds_like_sigma_timestamps():
    now = datetime(2024, 6, 1, 12, 0, 0, 123999, tzinfo=UTC)
    last = datetime(2024, 5, 1, 0, 0, 0, 456789, tzinfo=UTC)

    [window] = plan_windows(INCREMENTAL, last_cursor=last, now=now)

    assert window.start.microsecond == 456000
    assert window.end.microsecond == 123000


def test_a_naive_now_is_a_programming_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_windows(INCREMENTAL, last_cursor=None, now=datetime(2024, 6, 1))


def test_nothing_new_to_read_gives_no_windows():
    assert plan_windows(INCREMENTAL, last_cursor=NOW, now=NOW) == []
    assert plan_windows(INCREMENTAL, last_cursor=NOW + timedelta(days=1), now=NOW) == []


def test_an_initial_value_in_the_future_gives_no_windows():
    future = config(initial_value=NOW + timedelta(days=1))

    assert plan_windows(future, last_cursor=None, now=NOW) == []


def test_backfill_chunks_are_consecutive_oldest_first_and_the_last_ends_now():
    chunked = config(initial_value=JAN_1, backfill_chunk=timedelta(days=60))

    windows = plan_windows(chunked, last_cursor=None, now=NOW)

    assert windows == [
        Window(JAN_1, datetime(2024, 3, 1, tzinfo=UTC)),
        Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 30, tzinfo=UTC)),
        Window(datetime(2024, 4, 30, tzinfo=UTC), NOW),
    ]


def test_a_span_of_whole_chunks_has_no_empty_tail_window():
    chunked = config(initial_value=JAN_1, backfill_chunk=timedelta(days=1))

    windows = plan_windows(chunked, last_cursor=None, now=datetime(2024, 1, 4, tzinfo=UTC))

    assert [window.end.day for window in windows] == [2, 3, 4]


def test_a_span_shorter_than_a_chunk_is_one_window():
    chunked = config(backfill_chunk=timedelta(days=90), lag=timedelta(hours=3))

    windows = plan_windows(chunked, last_cursor=NOW - timedelta(hours=1), now=NOW)

    assert windows == [Window(NOW - timedelta(hours=4), NOW)]


def test_a_later_run_is_chunked_from_its_lagged_start():
    chunked = config(backfill_chunk=timedelta(days=10), lag=timedelta(days=1))

    windows = plan_windows(chunked, last_cursor=datetime(2024, 5, 13, 12, tzinfo=UTC), now=NOW)

    assert [window.start for window in windows] == [
        datetime(2024, 5, 12, 12, tzinfo=UTC),
        datetime(2024, 5, 22, 12, tzinfo=UTC),
    ]
    assert windows[-1].end == NOW


def test_a_chunk_that_would_make_too_many_runs_is_refused_naming_backfill_chunk():
    tiny = config(initial_value=datetime(2020, 1, 1, tzinfo=UTC), backfill_chunk=timedelta(hours=1))

    with pytest.raises(ConfigError, match=f"backfill_chunk='1h'.*at most {MAX_WINDOWS}"):
        plan_windows(tiny, last_cursor=None, now=NOW)


def test_a_window_must_not_end_before_it_starts():
    with pytest.raises(ValueError, match="not before its end"):
        Window(NOW, JAN_1)


def test_a_window_needs_utc_bounds():
    with pytest.raises(ValueError, match="UTC"):
        Window(None, datetime(2024, 1, 1))
