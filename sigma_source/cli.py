"""`sigma-load`: a thin command line over the library.

Commands parse options, call the library and turn its errors into one line and an exit code:
0 every selected query loaded (or every table is fresh enough); 1 a query, the load or a
freshness check failed; 2 a usage or configuration error. Heavy modules are imported inside
the commands so `sigma-load --help` starts fast.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from sigma_source.freshness import SigmaSnapshot
    from sigma_source.history import PipelineView
    from sigma_source.loader import RunOptions
    from sigma_source.project import Query
    from sigma_source.saved_queries import Outcome

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="sigma-load",
    help=(
        "Load Stripe Sigma query results into DuckDB, Postgres or BigQuery with dlt.\n\n"
        "Exit codes: 0 success; 1 a query, the load or a freshness check failed; "
        "2 a usage or configuration error."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)
saved_queries_app = typer.Typer(
    help=(
        "Publish the project's SQL files as Stripe saved queries, and bring them back.\n\n"
        "The id of each saved query is recorded in saved_queries.lock.json in the project "
        "folder (commit it): Stripe cannot list saved queries, so the next push finds the "
        "saved query to update there."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(saved_queries_app, name="saved-queries")


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


# --- options shared by several commands ----------------------------------------------------

SelectOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        "--select",
        "-s",
        metavar="SELECTOR",
        help="Queries to use: names, globs or tag:NAME; repeat or comma-separate.",
    ),
]
ExcludeOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--exclude", metavar="SELECTOR", help="Queries to leave out: names, globs or tag:NAME."
    ),
]
ProjectDirOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--project-dir",
        metavar="DIR",
        help="Folder of *.sql query files [default: sources.sigma.project_dir].",
    ),
]
DestinationOption = Annotated[
    str,
    typer.Option(
        "--destination", metavar="NAME", help="Where to load: duckdb, postgres or bigquery."
    ),
]
DatasetOption = Annotated[
    str, typer.Option("--dataset", metavar="NAME", help="Dataset (schema) to load into.")
]
PipelineNameOption = Annotated[
    str,
    typer.Option(
        "--pipeline-name", metavar="NAME", help="dlt pipeline name; also names the DuckDB file."
    ),
]
PipelinesDirOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--pipelines-dir",
        metavar="DIR",
        help="Where dlt keeps pipeline state [default: ~/.dlt/pipelines, or "
        "$DLT_DATA_DIR/pipelines].",
    ),
]
VarOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--var",
        metavar="NAME=VALUE",
        help="Template variable for var('NAME') in templates; repeatable.",
    ),
]
FullRefreshOption = Annotated[
    bool, typer.Option("--full-refresh", help="Replace the tables and reset their cursors.")
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table for people, json for scripts.")
]


# --- run -------------------------------------------------------------------------------------


@app.command()
def run(
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    full_refresh: FullRefreshOption = False,
    destination: DestinationOption = "duckdb",
    dataset: DatasetOption = "sigma",
    pipeline_name: PipelineNameOption = "sigma_load",
    project_dir: ProjectDirOption = None,
    pipelines_dir: PipelinesDirOption = None,
    var: VarOption = None,
    target_dir: Annotated[
        str, typer.Option("--target-dir", metavar="DIR", help="Folder for run_results.json.")
    ] = "target",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            help="text: a live table on a terminal, log lines otherwise; "
            "json: one JSON object per line on stdout, ending with the run's summary.",
        ),
    ] = LogFormat.text,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress and no table: errors (and a JSON summary) only."
        ),
    ] = False,
) -> None:
    """Run the selected queries on Sigma and load their results.

    Shows each query's progress (rendering, running, downloading, staged and waiting for the
    other queries, loading in dlt's load step) and writes TARGET_DIR/run_results.json with
    per-query status, query run ids, windows, rows, bytes and timings. Exit 0 when every
    query loaded, 1 when any failed (one FAILED line each on stderr), 2 on a usage or
    configuration error.

    Examples:

      sigma-load run

      sigma-load run --select tag:finance --exclude daily_revenue

      sigma-load run --destination postgres --dataset stripe --log-format json
    """
    options = _run_options(
        destination,
        dataset,
        pipeline_name,
        pipelines_dir,
        select=tuple(select or ()),
        exclude=tuple(exclude or ()),
        full_refresh=full_refresh,
        vars=_parse_vars(var or []),
        source_settings={"project_dir": project_dir} if project_dir else {},
    )
    args = {
        "command": "run",
        "select": list(select or []),
        "exclude": list(exclude or []),
        "full_refresh": full_refresh,
        "destination": destination,
        "dataset": dataset,
        "pipeline_name": pipeline_name,
        "project_dir": project_dir,
        "pipelines_dir": pipelines_dir,
        "vars": dict(options.vars),
        "target_dir": target_dir,
    }
    code = _run_with_progress(options, args, target_dir, log_format.value, quiet)
    raise typer.Exit(code)


def _run_with_progress(
    options: RunOptions, args: dict[str, Any], target_dir: str, log_format: str, quiet: bool
) -> int:
    """Run with a progress display, write run_results.json, print the summary."""
    from rich.console import Console

    from sigma_source.artifacts import run_and_record
    from sigma_source.progress import JsonDisplay, RunTracker, pick_display, showing_logs
    from sigma_source.report import print_run_summary

    display = pick_display(log_format, quiet, Console(stderr=True), sys.stdout)
    with _handled_errors(), showing_logs(display):
        recorded = run_and_record(options, RunTracker(display), args=args, target_dir=target_dir)
    document = recorded.run_results
    if isinstance(display, JsonDisplay):
        display.summary(document, recorded.path)
    elif not quiet:
        print_run_summary(recorded.records, document, recorded.path)
    load_failure = f"not loaded: {document['error']}"
    for result in document["results"]:
        if result["status"] == "failed" and result["error"] != load_failure:
            typer.echo(f"FAILED {result['query']}: {result['error']}", err=True)
    if document["error"]:
        typer.echo(f"error: {document['error']}", err=True)
    return EXIT_OK if recorded.ok else EXIT_FAILED


# --- ls and compile --------------------------------------------------------------------------


@app.command("ls")
def ls_command(
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    project_dir: ProjectDirOption = None,
    destination: DestinationOption = "duckdb",
    dataset: DatasetOption = "sigma",
    pipeline_name: PipelineNameOption = "sigma_load",
    pipelines_dir: PipelinesDirOption = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """List the queries a run would load, with their config and current state.

    For each query: its table, write disposition, primary key, cursor, tags, the highest
    cursor value loaded and the time of its last successful load. Reads the pipeline's
    state and the _sigma_query_runs table; changes nothing and never calls Stripe. While a
    load holds the DuckDB file, reads the pipeline's local state instead (with a note).

    Examples:

      sigma-load ls

      sigma-load ls --select tag:finance --format json
    """
    from sigma_source.report import print_queries, query_records

    with _handled_errors():
        queries = _selected_queries(project_dir, select, exclude)
        with _view(destination, dataset, pipeline_name, pipelines_dir) as view:
            records = query_records(
                queries,
                dataset,
                view.last_cursors(),
                view.last_loads(),
                view.usual_run_seconds(),
            )
    _output(records, output_format, print_queries)
    _note(view.note)


@app.command("compile")
def compile_command(
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    full_refresh: FullRefreshOption = False,
    var: VarOption = None,
    project_dir: ProjectDirOption = None,
    destination: DestinationOption = "duckdb",
    dataset: DatasetOption = "sigma",
    pipeline_name: PipelineNameOption = "sigma_load",
    pipelines_dir: PipelinesDirOption = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Print the SQL the next run would send to Sigma, without calling Stripe.

    Windows are planned from the same cursor state `run` would start from (a load left
    pending by a killed run included), so the SQL is what `run` sends then, except that
    cursor_end (now) will have moved on. Each run's SQL follows a `-- query: window` comment
    line; --format json gives one object per run.

    Examples:

      sigma-load compile --select balance_transactions

      sigma-load compile --full-refresh --var revenue_since=2025-01-01

      sigma-load compile --format json
    """
    from sigma_source.compiler import compile_project, compiled_records, compiled_text

    values = _parse_vars(var or [])
    with _handled_errors():
        queries = _selected_queries(project_dir, select, exclude)
        with _view(destination, dataset, pipeline_name, pipelines_dir) as view:
            cursors = {} if full_refresh else view.last_cursors()
        compiled = compile_project(queries, cursors, vars=values, full_refresh=full_refresh)
    if output_format is OutputFormat.json:
        _print_json(compiled_records(compiled))
    else:
        typer.echo(compiled_text(compiled))
    _note(view.note)


# --- runs and freshness ----------------------------------------------------------------------


@app.command("runs")
def runs_command(
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, metavar="N", help="How many runs to show.")
    ] = 20,
    project_dir: ProjectDirOption = None,
    destination: DestinationOption = "duckdb",
    dataset: DatasetOption = "sigma",
    pipeline_name: PipelineNameOption = "sigma_load",
    pipelines_dir: PipelinesDirOption = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Show the history of query runs from the _sigma_query_runs table, newest first.

    One line per Sigma query run the loader made: when it started, the query, its run id,
    window, rows, status and the seconds spent waiting for and downloading the result;
    failed runs show their error. Without --select, every query's runs are shown.

    Examples:

      sigma-load runs --limit 5

      sigma-load runs --select charges --format json
    """
    from sigma_source.report import history_records, print_history

    with _handled_errors():
        names = None
        if select or exclude:
            names = [query.name for query in _selected_queries(project_dir, select, exclude)]
        with _view(destination, dataset, pipeline_name, pipelines_dir) as view:
            records = history_records(view.runs(names, limit))
    _output(records, output_format, print_history)


@app.command("freshness")
def freshness_command(
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    project_dir: ProjectDirOption = None,
    destination: DestinationOption = "duckdb",
    dataset: DatasetOption = "sigma",
    pipeline_name: PipelineNameOption = "sigma_load",
    pipelines_dir: PipelinesDirOption = None,
    output_format: FormatOption = OutputFormat.table,
    data_load_time: Annotated[
        bool,
        typer.Option(
            "--data-load-time/--no-data-load-time",
            help="Ask Stripe (one request, when an api_key is set) for Sigma's data_load_time.",
        ),
    ] = True,
) -> None:
    """Check how fresh each table is against its warn_after / error_after thresholds.

    Age is now minus the newest cursor value loaded (for a query without a cursor: minus its
    last successful load). Thresholds come from the query's config, e.g.
    config(freshness={'warn_after': '6h', 'error_after': '1d'}). Exit 1 when a table is past
    error_after, or has thresholds but nothing loaded, with one STALE line each on stderr, so
    a scheduler can alert; warnings alone exit 0.

    When an api_key is set, also shows Sigma's data_load_time: how fresh Sigma's own data
    is, from the newest run of a query scheduled in the Dashboard (Sigma states it nowhere
    else). While a load holds the DuckDB file, reads the pipeline's local state instead
    (with a note on stderr): a busy file is never reported as stale.

    Examples:

      sigma-load freshness

      sigma-load freshness --select tag:finance --format json
    """
    from sigma_source.freshness import check_project
    from sigma_source.report import freshness_records, print_freshness, stale_reason

    with _handled_errors():
        queries = _selected_queries(project_dir, select, exclude)
        with _view(destination, dataset, pipeline_name, pipelines_dir) as view:
            cursors, loads = view.last_cursors(), view.last_loads()
    snapshot, unknown = _sigma_snapshot() if data_load_time else (None, None)
    moment = snapshot.data_load_time if snapshot else None
    records = freshness_records(check_project(queries, cursors, loads, data_load_time=moment))
    _output(records, output_format, lambda shown: print_freshness(shown, snapshot))
    _note(view.note)
    _note(unknown)
    stale = [record for record in records if record["status"] == "error"]
    for record in stale:
        typer.echo(f"STALE {record['query']}: {stale_reason(record)}", err=True)
    raise typer.Exit(EXIT_FAILED if stale else EXIT_OK)


def _sigma_snapshot() -> tuple[SigmaSnapshot | None, str | None]:
    """Sigma's data_load_time, and why it is unknown if asking failed.

    Not asked without an api_key (a warehouse host may check freshness without one); a
    failure to ask is a note, never a failed check.
    """
    import dlt

    from sigma_source.errors import SigmaLoadError
    from sigma_source.freshness import sigma_data_load_time

    if not dlt.secrets.get("sources.sigma.api_key"):
        return None, None
    try:
        with _client(max_attempts=2) as client:
            return sigma_data_load_time(client), None
    except SigmaLoadError as error:
        return None, f"Sigma's data_load_time is unknown: {_first_line(error)}"


def _note(note: str | None) -> None:
    """A remark about where the facts shown came from, on stderr: never part of the data."""
    if note:
        typer.echo(f"note: {note}", err=True)


# --- saved queries ---------------------------------------------------------------------------

IdsArgument = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(metavar="SAVED_QUERY_ID", help="Saved query ids (qfl_...).", show_default=False),
]


@saved_queries_app.command("list")
def saved_queries_list(
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    project_dir: ProjectDirOption = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Show the saved queries recorded in the lock file, compared with their SQL files.

    Stripe's API cannot list saved queries, so this shows those the project published or
    pulled (from saved_queries.lock.json), retrieving each to say whether it is in sync,
    edited locally (push it), edited in Stripe (pull it), or gone.

    Example:

      sigma-load saved-queries list
    """
    from sigma_source.report import outcome_records, print_outcomes
    from sigma_source.saved_queries import status

    with _handled_errors():
        folder, lock, queries = _saved_query_context(project_dir)
        names = _recorded_names(lock, queries, select, exclude)
        with _client() as client:
            outcomes = status(client, lock, names, queries)
    _output(
        outcome_records(outcomes),
        output_format,
        lambda records: print_outcomes(f"saved queries recorded in {lock.path}", records, "status"),
    )
    raise typer.Exit(EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED)


@saved_queries_app.command("push")
def saved_queries_push(
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    project_dir: ProjectDirOption = None,
) -> None:
    """Create or update a Stripe saved query for each selected plain-SQL file.

    The first push creates the saved query (named after the file) and records its id in
    saved_queries.lock.json; later pushes update its SQL. Templated files, and files that
    run from a saved query already, are skipped. `run` still sends the files' SQL: to run
    from a saved query, set config(saved_query='qfl_...') in a file.

    Examples:

      sigma-load saved-queries push

      sigma-load saved-queries push --select customers_by_country
    """
    from sigma_source.saved_queries import push

    with _handled_errors():
        folder, lock, _queries = _saved_query_context(project_dir)
        chosen = _selected_queries(folder, select, exclude)
        with _client() as client:
            outcomes = push(client, chosen, lock)
    _report_outcomes("saved queries pushed", outcomes)


@saved_queries_app.command("pull")
def saved_queries_pull(
    ids: IdsArgument = None,
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--name", metavar="NAME", help="File (table) name for the one saved query id given."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files edited since the last push/pull.")
    ] = False,
    project_dir: ProjectDirOption = None,
) -> None:
    """Write SQL files from Stripe saved queries.

    Without ids: refresh the files of the recorded saved queries (all, or --select) with
    the SQL Stripe holds, keeping each file's config() block. With ids: add those saved
    queries to the project as new files, named after the saved query (or --name), and
    record them. A file edited since its last push or pull is left alone unless --force.

    Examples:

      sigma-load saved-queries pull

      sigma-load saved-queries pull qfl_1NwZ3sH2eZvKYlo2 --name monthly_fees
    """
    from sigma_source.saved_queries import pull, pull_by_id

    with _handled_errors():
        folder, lock, queries = _saved_query_context(project_dir, allow_empty=bool(ids))
        with _client() as client:
            if ids:
                outcomes = pull_by_id(client, lock, ids, queries, folder, name=name, force=force)
            else:
                names = _recorded_names(lock, queries, select, exclude)
                outcomes = pull(client, lock, names, queries, folder, force=force)
    _report_outcomes("saved queries pulled", outcomes)


@saved_queries_app.command("delete")
def saved_queries_delete(
    ids: IdsArgument = None,
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    project_dir: ProjectDirOption = None,
) -> None:
    """Delete saved queries in Stripe and forget them in the lock file; SQL files stay.

    Name them by --select (queries recorded in the lock file) or by id. Asks for
    confirmation unless --yes; without an answer (no terminal), nothing is deleted.

    Examples:

      sigma-load saved-queries delete --select customers_by_country

      sigma-load saved-queries delete qfl_1NwZ3sH2eZvKYlo2 --yes
    """
    from sigma_source.saved_queries import delete

    if not ids and not select:
        _usage_error("say what to delete: --select NAME (a recorded query) or saved query ids")
    with _handled_errors():
        folder, lock, queries = _saved_query_context(project_dir, allow_empty=True)
        targets = [(lock.name_of(saved_id) or saved_id, saved_id) for saved_id in ids or []]
        if select:
            names = _recorded_names(lock, queries, select, exclude)
            targets += [(name, lock.entries[name].id) for name in names]
    if not targets:
        _usage_error("nothing to delete: no saved query is recorded for the selected queries")
    from sigma_source.report import counted

    listing = ", ".join(name if name == sid else f"{name} ({sid})" for name, sid in targets)
    question = f"Delete {counted(len(targets), 'saved query', 'saved queries')} from Stripe"
    if not yes and not _confirmed(f"{question}: {listing}?"):
        typer.echo("error: not confirmed; nothing deleted", err=True)
        raise typer.Exit(EXIT_FAILED)
    with _handled_errors(), _client() as client:
        outcomes = delete(client, lock, targets)
    _report_outcomes("saved queries deleted", outcomes)


def _saved_query_context(
    project_dir: str | None, *, allow_empty: bool = False
) -> tuple[str, Any, dict[str, Query]]:
    """The project folder, its lock file and its queries by name.

    `allow_empty`: a folder without SQL files yet is fine (pulling the first one into it).
    """
    from pathlib import Path

    from sigma_source import configured
    from sigma_source.project import load_project
    from sigma_source.saved_queries import SavedQueryLock

    folder = configured.project_dir(project_dir)
    has_sql = Path(folder).is_dir() and any(Path(folder).rglob("*.sql"))
    queries = {q.name: q for q in load_project(folder)} if has_sql or not allow_empty else {}
    return folder, SavedQueryLock.load(folder), queries


def _recorded_names(
    lock: Any, queries: dict[str, Query], select: list[str] | None, exclude: list[str] | None
) -> list[str]:
    """The lock's query names, narrowed to the selection when one is given."""
    from sigma_source.project import select_queries

    if not select and not exclude:
        return sorted(lock.entries)
    chosen = select_queries(list(queries.values()), select or (), exclude or ())
    return [query.name for query in chosen if query.name in lock.entries]


def _report_outcomes(title: str, outcomes: list[Outcome]) -> None:
    from sigma_source.report import outcome_records, print_outcomes

    print_outcomes(title, outcome_records(outcomes), "action")
    for outcome in outcomes:
        if not outcome.ok:
            typer.echo(f"FAILED {outcome.query_name}: {outcome.detail}", err=True)
    raise typer.Exit(EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED)


def _confirmed(question: str) -> bool:
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:  # no answer: stdin closed
        typer.echo()
        return False


@contextmanager
def _client(**overrides: Any) -> Iterator[Any]:
    from sigma_source import configured

    client = configured.sigma_client(**overrides)
    try:
        yield client
    finally:
        client.close()


# --- demo and emulator -----------------------------------------------------------------------


@app.command()
def demo(
    project_dir: Annotated[
        str, typer.Option("--project-dir", help="Example query project to load.")
    ] = "pipelines/queries",
    scale: Annotated[int, typer.Option(help="Rows of balance_transactions to generate.")] = 20_000,
    duckdb_path: Annotated[str, typer.Option(help="DuckDB file to create.")] = "sigma_demo.duckdb",
) -> None:
    """Load the example project from a local Sigma emulator into DuckDB (no Stripe account).

    Example:

      sigma-load demo --scale 100000
    """
    from sigma_source.demo import run_demo

    with _handled_errors():
        code = run_demo(project_dir=project_dir, scale=scale, duckdb_path=duckdb_path)
    raise typer.Exit(code)


@app.command()
def emulator(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to listen on.")] = 12111,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 42,
    scale: Annotated[int, typer.Option(help="Rows of balance_transactions.")] = 1000,
    run_seconds: Annotated[
        float, typer.Option(help="How long each query run stays 'running'.")
    ] = 0.0,
) -> None:
    """Serve a local emulator of Stripe's Sigma API (for tests, CI and the demo).

    Point the loader at it with SOURCES__SIGMA__API_BASE and SOURCES__SIGMA__FILES_BASE set
    to http://127.0.0.1:PORT and any sk_test_ key.

    Example:

      sigma-load emulator --port 12111 --scale 100000 --run-seconds 2
    """
    from sigma_source.emulator import serve

    with _handled_errors():
        serve(port=port, seed=seed, scale=scale, run_seconds=run_seconds)


# --- helpers ---------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        from sigma_source import __version__

        typer.echo(f"sigma-load {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Load Stripe Sigma query results into DuckDB, Postgres or BigQuery with dlt."""


@contextmanager
def _handled_errors() -> Iterator[None]:
    """Library errors as one `error: ...` line: exit 2 for configuration, 1 for the rest."""
    from sigma_source.errors import ConfigError, SigmaLoadError

    try:
        yield
    except ConfigError as error:
        _usage_error(str(error))
    except SigmaLoadError as error:
        _fail(str(error))


def _run_options(
    destination: str, dataset: str, pipeline_name: str, pipelines_dir: str | None, **more: Any
) -> RunOptions:
    from sigma_source.loader import RunOptions

    return RunOptions(
        destination=destination,
        dataset=dataset,
        pipeline_name=pipeline_name,
        pipelines_dir=pipelines_dir,
        **more,
    )


def _view(
    destination: str, dataset: str, pipeline_name: str, pipelines_dir: str | None
) -> PipelineView:
    from sigma_source.history import PipelineView

    return PipelineView(_run_options(destination, dataset, pipeline_name, pipelines_dir))


def _selected_queries(
    project_dir: str | None, select: list[str] | None, exclude: list[str] | None
) -> list[Query]:
    from sigma_source import configured
    from sigma_source.project import load_project, select_queries

    queries = load_project(configured.project_dir(project_dir))
    return select_queries(queries, select or (), exclude or ())


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _usage_error(f"--var {pair!r}: expected NAME=VALUE")
        parsed[name.strip()] = value
    return parsed


def _output(records: list[dict[str, Any]], output_format: OutputFormat, table: Any) -> None:
    """Records as JSON for scripts, or laid out by `table` for people."""
    if output_format is OutputFormat.json:
        _print_json(records)
    else:
        table(records)


def _print_json(records: list[dict[str, Any]]) -> None:
    typer.echo(json.dumps(records, indent=2, default=str))


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else ""


def _usage_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Console-script entry point: never a traceback, unless SIGMA_LOAD_DEBUG=1 asks for one."""
    # A load makes many short-lived objects beside a large, long-lived heap (dlt, pyarrow):
    # collecting cycles less often took ~0.3 s off a 1M-row run. This process ends after one
    # command, so the cycles left over meanwhile cost only a few MB.
    gc.set_threshold(50_000, 20, 20)
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:
        if os.environ.get("SIGMA_LOAD_DEBUG") == "1":
            raise
        typer.echo(
            f"error: unexpected {type(error).__name__}: {_first_line(error)} "
            "(set SIGMA_LOAD_DEBUG=1 to see the traceback)",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    finally:
        # The process ends here: spare the interpreter collecting every object a load made
        # on its way out (0.3-0.4 s after a 1M-row run).
        gc.freeze()
