"""Every command documents itself (`--help` with examples) and is documented in README.md,
and `--help` stays fast: it loads none of the heavy libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sigma_source import __version__
from sigma_source.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def _commands(group=None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf command, as the words a user types after `sigma-load`."""
    group = group or typer.main.get_command(app)
    found = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands()


def test_the_cli_has_the_commands_of_the_design():
    assert COMMANDS == [
        ("compile",),
        ("demo",),
        ("emulator",),
        ("freshness",),
        ("ls",),
        ("run",),
        ("runs",),
        ("saved-queries", "delete"),
        ("saved-queries", "list"),
        ("saved-queries", "pull"),
        ("saved-queries", "push"),
    ]


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(words):
    result = CliRunner().invoke(app, [*words, "--help"])

    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"sigma-load {' '.join(words)}" in result.stdout


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_is_documented_in_the_readme(words):
    assert f"sigma-load {' '.join(words)}" in README.read_text(encoding="utf-8")


def test_the_top_level_help_lists_the_exit_codes():
    result = CliRunner().invoke(app, ["--help"])

    assert "Exit codes: 0 success; 1 a query, the load or a freshness check failed; 2 a" in (
        " ".join(result.stdout.split())
    )


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])

    assert (result.exit_code, result.stdout) == (0, f"sigma-load {__version__}\n")


def test_help_loads_none_of_the_heavy_libraries():
    probe = (
        "import sys\n"
        "from sigma_source.cli import main\n"
        "sys.argv = ['sigma-load', 'run', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('dlt', 'pyarrow', 'duckdb', 'rich') if m in sys.modules)\n"
        "print('loaded:', heavy, file=sys.stderr)\n"
    )

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)

    assert done.stderr.strip().splitlines()[-1] == "loaded: []"


def test_an_unknown_option_is_a_usage_error_with_exit_2():
    result = CliRunner().invoke(app, ["run", "--selct", "x"])

    assert result.exit_code == 2
    assert "No such option: --selct" in result.stderr
