"""The installed `sigma-load` command as a shell runs it: a live display on a terminal (a
pseudo-terminal here), shell completion, and a confirmation with no one to answer it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.cli_helpers import CliProject

SIGMA_LOAD = Path(sys.executable).parent / "sigma-load"  # the console script
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d customers_by_country ", re.MULTILINE)


def _environment(cli: CliProject, **more: str) -> dict[str, str]:
    return {**os.environ, **cli.env, "RUNTIME__DLTHUB_TELEMETRY": "false", **more}


def _run_on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run a command with stdin, stdout and stderr on a 120x40 pseudo-terminal; its exit
    code and everything it drew."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        args, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd
    )
    os.close(follower)
    drawn = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    return process.wait(timeout=30), drawn.decode("utf-8", errors="replace")


def test_on_a_terminal_run_draws_a_live_table_instead_of_log_lines(cli):
    cli.emulator.run_seconds = 1.5  # long enough for the table to be redrawn while running

    code, drawn = _run_on_a_terminal(
        [str(SIGMA_LOAD), "run"], _environment(cli, TERM="xterm-256color"), cli.tmp_path
    )

    assert code == 0, drawn
    assert "\x1b[?25l" in drawn  # the cursor is hidden while the table is live...
    assert "\x1b[1A" in drawn or "\x1b[2K" in drawn  # ...and the table redrawn in place
    text = ANSI.sub("", drawn).replace("\r", "")
    assert re.search(r"customers_by_country\s+running qry_\w+ \d+ s", text)
    assert not LOG_LINE.search(text)  # no log lines: those are for pipes
    assert "1 of 1 query loaded, 11 rows" in text


def test_off_a_terminal_the_same_command_logs_lines(cli):
    done = subprocess.run(
        [str(SIGMA_LOAD), "run"],
        env=_environment(cli),
        cwd=cli.tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert LOG_LINE.search(done.stderr) and "\x1b[" not in done.stderr


# --- shell completion ------------------------------------------------------------------------


def _complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the words typed so far (the last one unfinished)."""
    typed = words.split(" ")
    done = subprocess.run(
        [str(SIGMA_LOAD)],
        env={
            **(env or os.environ),
            "_SIGMA_LOAD_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(typed) - 1),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_show_completion_prints_a_bash_completion_script():
    # Typer's own switch to name the shell instead of finding it among the parent processes,
    # which depend on how the suite was started (a terminal, CI, a background job).
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run(
        [str(SIGMA_LOAD), "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )

    assert done.returncode == 0
    assert "_SIGMA_LOAD_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _sigma_load_completion sigma-load" in done.stdout


def test_completion_completes_commands_subcommands_and_options():
    assert _complete("sigma-load saved-q") == ["saved-queries"]
    assert _complete("sigma-load fr") == ["freshness"]
    assert sorted(_complete("sigma-load saved-queries ")) == ["delete", "list", "pull", "push"]
    assert _complete("sigma-load run --sel") == ["--select"]


# --- a confirmation nobody can answer --------------------------------------------------------


def test_delete_with_stdin_closed_deletes_nothing_and_exits_1(cli):
    pushed = subprocess.run(
        [str(SIGMA_LOAD), "saved-queries", "push"],
        env=_environment(cli),
        cwd=cli.tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pushed.returncode == 0, pushed.stderr
    lock = cli.project_dir / "saved_queries.lock.json"
    saved_id = json.loads(lock.read_text())["saved_queries"]["customers_by_country"]["id"]

    done = subprocess.run(
        [str(SIGMA_LOAD), "saved-queries", "delete", "--select", "customers_by_country"],
        env=_environment(cli),
        cwd=cli.tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stdout.startswith(
        f"Delete 1 saved query from Stripe: customers_by_country ({saved_id})? [y/N]: "
    )
    assert done.stderr == "error: not confirmed; nothing deleted\n"
    assert not [r for r in cli.emulator.requests if r.method == "DELETE"]
    assert saved_id in lock.read_text()
