"""How often a running query run is polled: quick to notice a finish, cheap for long runs."""

from __future__ import annotations

import pytest

from sigma_source.client import ClientConfig, PollSchedule, SigmaClient
from sigma_source.errors import ConfigError

KEY = "sk_test_polling_suite_0000000000000042"


def schedule(*, rand: float = 0.0, **overrides: float) -> PollSchedule:
    settings = {"interval": 2.0, "fast_seconds": 60.0, "max_interval": 15.0} | overrides
    return PollSchedule(**settings, rand=lambda: rand)


def poll_times(plan: PollSchedule, run_seconds: float) -> list[float]:
    """When each poll happens for a run that finishes after `run_seconds` (first poll at 0)."""
    times = [0.0]
    while times[-1] < run_seconds:
        times.append(times[-1] + plan.next_wait(times[-1]))
    return times


def test_the_first_waits_ramp_up_so_a_quick_run_is_noticed_at_once():
    plan = schedule()

    waits = [plan.next_wait(elapsed) for elapsed in (0.0, 0.1, 0.4, 0.9, 1.9)]

    assert waits == [0.125, 0.25, 0.5, 1.0, 2.0]


def test_during_the_first_minute_no_wait_exceeds_the_interval():
    times = poll_times(schedule(), run_seconds=59.9)

    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert max(gaps) == 2.0


def test_a_run_finishing_within_the_first_minute_is_noticed_within_the_interval():
    for run_seconds in (0.05, 0.7, 3.3, 17.0, 42.5, 59.9):
        times = poll_times(schedule(), run_seconds)

        assert times[-1] - run_seconds <= 2.0, run_seconds


def test_after_the_first_minute_waits_double_up_to_the_cap():
    plan = schedule()

    waits = [plan.next_wait(elapsed) for elapsed in (60.0, 64.0, 72.0, 88.0, 103.0)]

    assert waits == [4.0, 8.0, 15.0, 15.0, 15.0]


def test_a_run_of_a_minute_costs_about_thirty_six_polls():
    # Noticing any finish within 2 s needs a poll every 2 s: 30 in a minute, plus the ramp.
    times = poll_times(schedule(rand=0.5), run_seconds=60.0)

    assert 30 <= len(times) <= 40


def test_an_hour_long_run_costs_a_poll_every_fifteen_seconds_after_the_first_minute():
    times = poll_times(schedule(), run_seconds=3600.0)

    assert len(times) < 30 + 4 + (3600 - 60) / 15 + 5


def test_jitter_only_shortens_a_wait():
    longest = schedule(rand=0.0).next_wait(30.0)
    shortest = schedule(rand=0.999).next_wait(30.0)

    assert shortest < longest
    assert shortest >= 0.9 * longest


def test_the_schedule_follows_the_client_settings():
    config = ClientConfig(
        api_key=KEY, poll_interval=1.0, poll_fast_seconds=10.0, poll_max_interval=3.0
    )
    plan = PollSchedule.from_config(config)

    assert (plan.interval, plan.fast_seconds, plan.max_interval) == (1.0, 10.0, 3.0)


def test_a_negative_fast_phase_is_refused():
    with pytest.raises(ConfigError, match="poll_fast_seconds must be at least 0"):
        ClientConfig(api_key=KEY, poll_fast_seconds=-1)


def test_wait_notices_a_run_soon_after_it_finishes(emulator):
    emulator.run_seconds = 0.6
    config = ClientConfig(
        api_key=KEY, api_base=emulator.url, files_base=emulator.url, poll_interval=0.2
    )
    with SigmaClient(config) as client:
        run = client.create_query_run("select 1 as one")

        waited = client.wait(run.id)

    # Finished after 0.6 s; polls come at most 0.2 s apart (plus a request's own time).
    assert 0.6 <= waited.seconds < 0.6 + 0.2 + 0.3
    assert waited.polls <= 1 + PollSchedule.RAMP_STEPS + 0.6 / 0.18 + 1


# --- with the query's usual duration known (from its earlier runs) --------------------------


def test_knowing_a_minute_long_run_it_costs_at_most_twelve_polls():
    for rand in (0.0, 0.5, 0.999):
        times = poll_times(schedule(rand=rand, expected_seconds=60.0), run_seconds=60.0)

        assert len(times) <= 12, rand


def test_knowing_the_duration_a_run_is_still_noticed_within_the_interval():
    for run_seconds in (51.0, 55.5, 60.0, 64.0, 75.0, 89.9):
        times = poll_times(schedule(rand=0.5, expected_seconds=60.0), run_seconds)

        assert times[-1] - run_seconds <= 2.0, run_seconds


def test_a_run_far_quicker_than_expected_is_noticed_within_the_cap():
    for run_seconds in (1.0, 14.0, 33.3):
        times = poll_times(schedule(expected_seconds=60.0), run_seconds)

        assert times[-1] - run_seconds <= 15.0, run_seconds


def test_a_run_far_slower_than_expected_backs_off_after_half_as_long_again():
    plan = schedule(expected_seconds=60.0)

    waits = [plan.next_wait(elapsed) for elapsed in (89.0, 90.0, 94.0, 102.0)]

    assert waits == [2.0, 4.0, 8.0, 15.0]


def test_a_run_expected_within_a_few_intervals_keeps_the_quick_ramp():
    assert poll_times(schedule(expected_seconds=4.0), 0.3) == poll_times(schedule(), 0.3)


def test_wait_polls_sparsely_until_near_the_expected_finish(emulator):
    emulator.run_seconds = 2.0
    config = ClientConfig(
        api_key=KEY,
        api_base=emulator.url,
        files_base=emulator.url,
        poll_interval=0.1,
        poll_max_interval=0.8,
    )
    with SigmaClient(config) as client:
        unknown = client.wait(client.create_query_run("select 1 as one").id)
        known = client.wait(client.create_query_run("select 1 as one").id, expected_seconds=2.0)

    assert known.polls < unknown.polls / 2
    # The wait's clock starts when the create has returned, a moment after the run's own.
    assert 2.0 - 0.1 <= known.seconds < 2.0 + 0.1 + 0.3
