"""`sigma-load`: a thin command line over the library.

Commands parse options, call the library and turn its errors into one line and an exit code:
0 every selected query loaded; 1 a query (or the load) failed; 2 a usage or configuration
error. Heavy modules are imported inside the commands so `sigma-load --help` starts fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from sigma_source.loader import RunResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="sigma-load",
    help="Load Stripe Sigma query results into DuckDB, Postgres or BigQuery with dlt.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)

SelectOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        "--select", "-s", help="Queries to run: names, globs or tag:NAME; repeat or comma-separate."
    ),
]
ExcludeOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--exclude", help="Queries to leave out: names, globs or tag:NAME."),
]
ProjectDirOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--project-dir", help="Folder of *.sql query files [default: sources.sigma.project_dir]."
    ),
]


@app.command()
def run(
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Replace the tables and reset their cursors.")
    ] = False,
    destination: Annotated[
        str, typer.Option(help="Where to load: duckdb, postgres or bigquery.")
    ] = "duckdb",
    dataset: Annotated[str, typer.Option(help="Dataset (schema) to load into.")] = "sigma",
    pipeline_name: Annotated[
        str, typer.Option(help="dlt pipeline name; also names the DuckDB file.")
    ] = "sigma_load",
    project_dir: ProjectDirOption = None,
    var: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--var", help="Template variable NAME=VALUE for var('NAME'); repeatable."),
    ] = None,
) -> None:
    """Run the selected queries on Sigma and load their results.

    Example: sigma-load run --select tag:finance --destination postgres
    """
    from sigma_source.loader import RunOptions

    settings = {"project_dir": project_dir} if project_dir else {}
    options = RunOptions(
        destination=destination,
        dataset=dataset,
        pipeline_name=pipeline_name,
        select=tuple(select or ()),
        exclude=tuple(exclude or ()),
        full_refresh=full_refresh,
        vars=_parse_vars(var or []),
        source_settings=settings,
    )
    result = _run_or_exit(options)
    _print_result(result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


@app.command()
def demo(
    project_dir: Annotated[
        str, typer.Option("--project-dir", help="Example query project to load.")
    ] = "pipelines/queries",
    scale: Annotated[int, typer.Option(help="Rows of balance_transactions to generate.")] = 20_000,
    duckdb_path: Annotated[str, typer.Option(help="DuckDB file to create.")] = "sigma_demo.duckdb",
) -> None:
    """Load the example project from a local Sigma emulator into DuckDB (no Stripe account)."""
    from sigma_source.demo import run_demo

    code = _guarded(lambda: run_demo(project_dir=project_dir, scale=scale, duckdb_path=duckdb_path))
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
    """Serve a local emulator of Stripe's Sigma API (for tests, CI and the demo)."""
    from sigma_source.emulator import serve

    _guarded(lambda: serve(port=port, seed=seed, scale=scale, run_seconds=run_seconds) or 0)


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _usage_error(f"--var {pair!r}: expected NAME=VALUE")
        parsed[name.strip()] = value
    return parsed


def _run_or_exit(options: object) -> RunResult:
    from sigma_source.errors import ConfigError, SigmaLoadError
    from sigma_source.loader import run as run_pipeline

    try:
        return run_pipeline(options)  # type: ignore[arg-type]
    except ConfigError as error:
        _usage_error(str(error))
    except SigmaLoadError as error:
        _fail(str(error))
    raise AssertionError("unreachable")


def _guarded(action: object) -> int:
    from sigma_source.errors import ConfigError, SigmaLoadError

    try:
        return action()  # type: ignore[operator]
    except ConfigError as error:
        _usage_error(str(error))
    except SigmaLoadError as error:
        _fail(str(error))
    return EXIT_FAILED


def _print_result(result: RunResult) -> None:
    from sigma_source.report import print_run_table

    print_run_table(result.records)
    for line in result.failures.values():
        typer.echo(f"FAILED {line}", err=True)


def _usage_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
