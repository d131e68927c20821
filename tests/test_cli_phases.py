"""A query whose rows are staged waits for the others before dlt loads them all in one step:
`sigma-load run` shows and times that wait as `waiting`, and `loading` as dlt's load step."""

from __future__ import annotations

import re

import pytest

from tests.cli_helpers import CUSTOMERS_BY_COUNTRY_SQL, CliProject

# A window of 120 days at a time since 2024-01-01, one query run after the other: seconds of
# work, while customers_by_country is staged in a fraction of a second.
SLOW_SQL = """
{{ config(primary_key='id', cursor='created', initial_value='2024-01-01',
          backfill_chunk='120d') }}
select id, amount, created from charges
where created >= {{ cursor_start }} and created < {{ cursor_end }}
"""


STAGED = re.compile(r"slow_charges \[(\d+)/\1\] staged ")  # its last window staged


@pytest.fixture
def cli(tmp_path, emulator, monkeypatch) -> CliProject:
    monkeypatch.chdir(tmp_path)
    emulator.run_seconds = 0.2
    project = CliProject(tmp_path, emulator)
    project.write_query("customers_by_country", CUSTOMERS_BY_COUNTRY_SQL)
    project.write_query("slow_charges", SLOW_SQL)
    return project


def _by_query(document: dict) -> dict[str, dict]:
    return {result["query"]: result for result in document["results"]}


def test_a_query_staged_early_waits_and_its_loading_is_dlts_load_step(cli):
    result = cli.invoke("run")

    assert result.exit_code == 0, result.output
    document = cli.run_results()
    fast = _by_query(document)["customers_by_country"]["timings"]
    slow = _by_query(document)["slow_charges"]["timings"]
    assert slow["running"] > 1.5, slow  # the other query really took a while
    assert fast["waiting"] > 1.0, fast  # so the fast one waited for it...
    load_step = document["steps"]["load"]
    for timings in (fast, slow):  # ...and loading, for both, is dlt's load step alone
        assert timings["loading"] <= load_step + 0.05, (timings, document["steps"])


def test_the_live_lines_say_staged_and_waiting_until_the_load_step_starts(cli):
    result = cli.invoke("run")

    lines = result.stderr.splitlines()
    said = [line.split(" ", 1)[1] for line in lines]  # without the clock
    fast_waiting = said.index("customers_by_country staged 11 rows, waiting for other queries")
    fast_loading = said.index("customers_by_country loading 11 rows")
    slow_staged = next(i for i, line in enumerate(said) if STAGED.match(line))
    assert fast_waiting < slow_staged < fast_loading
    assert not any(line.startswith("customers_by_country loading") for line in said[:slow_staged])
