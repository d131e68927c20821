"""The query project: one `NAME.sql` file per table, dbt style.

A file is a Jinja template of Trino SQL with an optional `{{ config(...) }}` block. This module
finds the files, reads their config without running any template code, renders the SQL for a
run's cursor window in a sandbox, selects queries by name or tag, and plans the windows of an
incremental run. It is pure: no HTTP, no dlt, no clock (callers pass `now`).

Why the care: a query's SQL goes to Stripe verbatim and its config decides what is loaded and
what is overwritten, so a mistake must fail loudly at load time with the file and key named,
and a value put into SQL must always arrive as a well-formed literal.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fnmatch import fnmatchcase
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sigma_source.durations import format_duration, parse_duration
from sigma_source.errors import ConfigError
from sigma_source.sigma_types import parse_sigma_type

__all__ = [
    "CONFIG_KEYS",
    "Freshness",
    "MAX_WINDOWS",
    "Query",
    "QueryConfig",
    "Window",
    "load_project",
    "load_query",
    "plan_windows",
    "render_sql",
    "select_queries",
    "trino_literal",
]

WriteDisposition = Literal["append", "merge", "replace"]
WRITE_DISPOSITIONS: tuple[WriteDisposition, ...] = ("append", "merge", "replace")
RESERVED_PREFIXES = ("_dlt", "_sigma")
MAX_WINDOWS = 10_000
"""More windows than this in one run is a mistake (a chunk of `1h` over years), not a plan."""

_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TAG = re.compile(r"[A-Za-z0-9_.-]+")
_SAVED_QUERY_ID = re.compile(r"qfl_[A-Za-z0-9]+")
_UNSAFE_IN_SQL = re.compile(r"['\";\\]|--|/\*|\*/|[\x00-\x1f\x7f]")
_TEMPLATE_NAMES = "is_incremental(), cursor_start, cursor_end, var(), config()"
_WINDOW_NAMES = {"is_incremental": "is_incremental()", "cursor_start": "cursor_start"}
_UTC = timezone.utc
_CURSOR_PRECISION = timedelta(milliseconds=1)


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    """dbt-style thresholds: how old a table's newest data may get before `freshness` complains.

    Age is measured from the newest cursor value loaded (the last load time for a query
    without a cursor); past `warn_after` the check warns, past `error_after` it fails.
    """

    warn_after: timedelta | None = None
    error_after: timedelta | None = None


@dataclass(frozen=True)
class QueryConfig:
    """What a file's `config(...)` block says, validated and with defaults filled in."""

    primary_key: tuple[str, ...] = ()
    cursor: str | None = None
    initial_value: datetime | None = None
    lag: timedelta = timedelta(0)
    backfill_chunk: timedelta | None = None
    columns: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tags: tuple[str, ...] = ()
    enabled: bool = True
    saved_query: str | None = None
    write_disposition: WriteDisposition = "append"
    description: str | None = None
    freshness: Freshness | None = None


@dataclass(frozen=True)
class Query:
    """One SQL file: table `name`, its config and its compiled (sandboxed) template."""

    name: str
    path: Path
    config: QueryConfig
    text: str = field(repr=False)
    template: Template = field(repr=False, compare=False)
    templated: bool = False
    """Whether the file holds Jinja besides its config() block, i.e. renders per run."""


@dataclass(frozen=True)
class Window:
    """The cursor range one query run reads: `start <= cursor < end`, both UTC.

    `start` is None when the run has no lower bound (a first run without `initial_value`,
    or a query without a cursor): the query then runs whole and `is_incremental()` is false.
    """

    start: datetime | None
    end: datetime

    def __post_init__(self) -> None:
        for bound in (self.start, self.end):
            if bound is not None and bound.utcoffset() != timedelta(0):
                raise ValueError(f"window bounds must be UTC datetimes, got {bound!r}")
        if self.start is not None and self.start >= self.end:
            raise ValueError(f"window start {self.start} is not before its end {self.end}")

    @property
    def is_incremental(self) -> bool:
        return self.start is not None


# --- discovery -------------------------------------------------------------------------------


def load_project(project_dir: str | os.PathLike[str]) -> list[Query]:
    """Every `*.sql` file under `project_dir` (subfolders included), sorted by table name.

    Subfolders only organise files: the table is always named after the file, so two files
    with the same name in different folders are an error rather than a silent overwrite.
    Hidden files and folders (a leading dot: editor backups, checkpoints) are ignored.
    """
    folder = Path(project_dir)
    hint = "set project_dir in [sources.sigma] or pass --project-dir"
    if not folder.is_dir():
        raise ConfigError(f"project_dir {str(folder)!r}: no such folder ({hint})")
    paths = _sql_files(folder)
    if not paths:
        raise ConfigError(f"project_dir {str(folder)!r}: holds no *.sql files ({hint})")
    queries = [load_query(path) for path in paths]
    _refuse_duplicate_names(queries)
    return sorted(queries, key=lambda query: query.name)


def load_query(path: str | os.PathLike[str]) -> Query:
    """Read, parse and validate one SQL file; the table is named after the file."""
    path = Path(path)
    name = _table_name(path)
    text = _read_text(path)
    environment = _environment()
    tree = _syntax_checked(lambda: environment.parse(text, name=name, filename=str(path)), path)
    call = _config_call(tree, path)
    settings = _config_arguments(call, path) if call else {}
    templated = _has_template_code(tree, call)
    config = _build_config(settings, path, templated=templated)
    if not templated and not config.saved_query and not _static_text(tree).strip():
        raise ConfigError(f"{path}: no SQL after the config() block")
    _check_cursor_use(tree, config, path)
    # Unknown filters and tests only show up when the parsed template is compiled.
    code = _syntax_checked(lambda: environment.compile(tree, name=name, filename=str(path)), path)
    template = environment.template_class.from_code(
        environment, code, environment.make_globals(None), None
    )
    return Query(
        name=name, path=path, config=config, text=text, template=template, templated=templated
    )


def _syntax_checked(step: Callable[[], Any], path: Path) -> Any:
    try:
        return step()
    except TemplateSyntaxError as error:
        raise ConfigError(f"{path}:{error.lineno}: template error: {error.message}") from error


def _sql_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if f.endswith(".sql") and f[0] != "."]
    return found


def _table_name(path: Path) -> str:
    name = path.name.removesuffix(".sql")
    if not _TABLE_NAME.fullmatch(name):
        raise ConfigError(
            f"{path}: {name!r} cannot be a table name; name the file with lower-case letters, "
            "digits and _ (not starting with a digit, at most 63 characters)"
        )
    if name.startswith(RESERVED_PREFIXES):
        raise ConfigError(
            f"{path}: table names starting with _dlt or _sigma are reserved for the loader's "
            "own tables; rename the file"
        )
    return name


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the file: {error.strerror}") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save the file as UTF-8"
        ) from error


def _refuse_duplicate_names(queries: list[Query]) -> None:
    seen: dict[str, Path] = {}
    for query in queries:
        if query.name in seen:
            raise ConfigError(
                f"{seen[query.name]} and {query.path} would both load table {query.name!r}; "
                "rename one of them"
            )
        seen[query.name] = query.path


# --- reading config() without running the template -------------------------------------------


def _config_call(tree: nodes.Template, path: Path) -> nodes.Call | None:
    """The one `{{ config(...) }}` call, found in the parsed template, never executed."""
    calls = [
        call
        for call in tree.find_all(nodes.Call)
        if isinstance(call.node, nodes.Name) and call.node.name == "config"
    ]
    if not calls:
        return None
    if len(calls) > 1:
        raise ConfigError(
            f"{path}:{calls[1].lineno}: a second config() block; put every setting in one"
        )
    call = calls[0]
    top_level = [
        child for node in tree.body if isinstance(node, nodes.Output) for child in node.nodes
    ]
    if not any(child is call for child in top_level):
        raise ConfigError(
            f"{path}:{call.lineno}: config() must stand alone as {{{{ config(...) }}}}, "
            "outside any {% if %} or {% for %} and any expression"
        )
    return call


def _config_arguments(call: nodes.Call, path: Path) -> dict[str, Any]:
    where = f"{path}:{call.lineno}"
    if call.args or call.dyn_args or call.dyn_kwargs:
        raise ConfigError(
            f"{where}: config() takes keyword arguments only, e.g. config(primary_key='id')"
        )
    settings: dict[str, Any] = {}
    for keyword in call.kwargs:
        if keyword.key in settings:
            raise ConfigError(f"{where}: config({keyword.key}=...) is given twice")
        try:
            settings[keyword.key] = _literal_value(keyword.value)
        except ValueError:
            raise ConfigError(
                f"{where}: config({keyword.key}=...): must be a literal value (a string, "
                "number, boolean, list or dict), not a template expression"
            ) from None
    return settings


def _literal_value(node: nodes.Node) -> Any:
    """The Python value of a constant expression; ValueError for anything computed."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return [_literal_value(item) for item in node.items]
    if isinstance(node, nodes.Dict):
        if not all(isinstance(pair.key, nodes.Const) for pair in node.items):
            raise ValueError("dict keys must be constants")
        return {pair.key.value: _literal_value(pair.value) for pair in node.items}
    raise ValueError(f"not a literal: {type(node).__name__}")


def _has_template_code(tree: nodes.Template, config_call: nodes.Call | None) -> bool:
    """Whether the file holds any Jinja besides the config() block (comments do not count)."""
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return True
        for child in node.nodes:
            if child is not config_call and not isinstance(child, nodes.TemplateData):
                return True
    return False


def _check_cursor_use(tree: nodes.Template, config: QueryConfig, path: Path) -> None:
    """Filtering on a window needs a cursor: without one, is_incremental() is always false."""
    referenced = {node.name for node in tree.find_all(nodes.Name)}
    used = [shown for name, shown in _WINDOW_NAMES.items() if name in referenced]
    if used and not config.cursor:
        raise ConfigError(
            f"{path}: uses {' and '.join(used)} but config() sets no cursor, so no run "
            "is ever incremental; add config(cursor='created', ...)"
        )
    if config.cursor and "cursor_start" not in referenced:
        raise ConfigError(
            f"{path}: config(cursor={config.cursor!r}) but the SQL never filters on "
            f"{{{{ cursor_start }}}}, so every run would re-read the whole table; add "
            f"`where {config.cursor} >= {{{{ cursor_start }}}} and {config.cursor} < "
            "{{ cursor_end }}` inside {% if is_incremental() %}"
        )


def _static_text(tree: nodes.Template) -> str:
    return "".join(
        child.data
        for node in tree.body
        if isinstance(node, nodes.Output)
        for child in node.nodes
        if isinstance(child, nodes.TemplateData)
    )


# --- validating config() ---------------------------------------------------------------------


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def _column_names(value: object) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ValueError("expected a column name or a list of column names")
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise ValueError("expected a column name or a list of column names")
    if len(set(names)) != len(names):
        raise ValueError("names a column twice")
    return tuple(names)


def _initial_value(value: object) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            "integer cursors are not supported; the cursor must be a timestamp column, "
            "e.g. initial_value='2024-01-01'"
        )
    if not isinstance(value, str):
        raise ValueError("expected a date or timestamp string, e.g. '2024-01-01'")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "not an ISO date or timestamp; use e.g. '2024-01-01' or '2024-01-01 06:00:00' (UTC)"
        ) from None
    return _utc_ms(parsed)


def _lag(value: object) -> timedelta:
    return parse_duration(value)


def _backfill_chunk(value: object) -> timedelta:
    span = parse_duration(value)
    if span <= timedelta(0):
        raise ValueError("must be longer than zero, e.g. '30d'")
    return span


def _columns(value: object) -> Mapping[str, str]:
    if not isinstance(value, dict) or not value:
        raise ValueError("expected a dict of column name to Sigma type, e.g. {'amount': 'bigint'}")
    declared = {}
    for column, sigma_type in value.items():
        if not isinstance(column, str) or not column.strip():
            raise ValueError(f"column name {column!r} is not a non-empty string")
        declared[column] = _sigma_type(column, sigma_type)
    return MappingProxyType(declared)


def _sigma_type(column: str, value: object) -> str:
    try:
        return parse_sigma_type(str(value), column=column)
    except ConfigError as error:
        raise ValueError(str(error)) from None


def _tags(value: object) -> tuple[str, ...]:
    tags = [value] if isinstance(value, str) else value
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("expected a tag or a list of tags")
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise ValueError(f"tag {tag!r} may hold only letters, digits, _ . and -")
    return tuple(dict.fromkeys(tags))


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _saved_query(value: object) -> str:
    if not isinstance(value, str) or not _SAVED_QUERY_ID.fullmatch(value):
        raise ValueError("expected a saved query id such as 'qfl_1234abcd'")
    return value


_FRESHNESS_KEYS = ("warn_after", "error_after")


def _freshness(value: object) -> Freshness:
    if not isinstance(value, dict) or not value:
        raise ValueError("expected a dict such as {'warn_after': '6h', 'error_after': '1d'}")
    unknown = sorted(set(value) - set(_FRESHNESS_KEYS), key=str)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; use warn_after and error_after")
    spans = {}
    for key, text in value.items():
        try:
            span = parse_duration(text)
        except ValueError as error:
            raise ValueError(f"{key}: {error}") from None
        if span <= timedelta(0):
            raise ValueError(f"{key}: must be longer than zero, e.g. '6h'")
        spans[key] = span
    warn, error = spans.get("warn_after"), spans.get("error_after")
    if warn and error and warn >= error:
        raise ValueError("warn_after must be shorter than error_after")
    return Freshness(**spans)


def _write_disposition(value: object) -> str:
    if value not in WRITE_DISPOSITIONS:
        raise ValueError(f"expected one of {', '.join(WRITE_DISPOSITIONS)}")
    return str(value)


_VALIDATORS: dict[str, Callable[[object], object]] = {
    "primary_key": _column_names,
    "cursor": _text,
    "initial_value": _initial_value,
    "lag": _lag,
    "backfill_chunk": _backfill_chunk,
    "columns": _columns,
    "tags": _tags,
    "enabled": _enabled,
    "saved_query": _saved_query,
    "write_disposition": _write_disposition,
    "description": _text,
    "freshness": _freshness,
}
CONFIG_KEYS = tuple(sorted(_VALIDATORS))


def _build_config(settings: Mapping[str, Any], path: Path, *, templated: bool) -> QueryConfig:
    values = {key: _validated(key, value, path) for key, value in settings.items()}
    if "write_disposition" not in values:
        values["write_disposition"] = "merge" if values.get("primary_key") else "append"
    config = QueryConfig(**values)
    problem = _conflict(config, templated)
    if problem:
        key, message = problem
        raise ConfigError(f"{path}: config({key}={_shown(settings.get(key))}): {message}")
    return config


def _validated(key: str, value: object, path: Path) -> object:
    validator = _VALIDATORS.get(key)
    if validator is None:
        close = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{path}: config({key}={_shown(value)}): unknown key; {guess}"
            f"valid keys: {', '.join(CONFIG_KEYS)}"
        )
    try:
        return validator(value)
    except ValueError as error:
        raise ConfigError(f"{path}: config({key}={_shown(value)}): {error}") from None


def _conflict(config: QueryConfig, templated: bool) -> tuple[str, str] | None:
    """The first rule two settings break together, as (key to blame, what is wrong)."""
    needs_cursor = "needs cursor (the timestamp column that marks new rows)"
    if config.write_disposition == "merge" and not config.primary_key:
        return "write_disposition", "needs primary_key (the columns that identify a row)"
    for key in ("initial_value", "lag", "backfill_chunk"):
        if getattr(config, key) not in (None, timedelta(0)) and not config.cursor:
            return key, needs_cursor
    if config.saved_query and config.cursor:
        return "saved_query", "runs stored SQL that cannot take a cursor window; drop cursor"
    if config.saved_query and templated:
        return "saved_query", "runs stored SQL; this file's body must not use Jinja"
    if config.cursor and config.write_disposition == "replace":
        return "write_disposition", "with a cursor each run would keep only its own window"
    if config.lag and config.write_disposition == "append":
        return "lag", "re-reads loaded rows, which append would load twice; set primary_key"
    cursor_type = config.columns.get(config.cursor or "")
    if cursor_type not in (None, "timestamp", "date"):
        return "columns", f"cursor {config.cursor!r} must be a timestamp or date column"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- rendering -------------------------------------------------------------------------------


class _TemplateProblem(Exception):
    """Raised by the functions a template calls; render_sql adds the file and line."""


class _VarText(str):
    """A string that came from var(): printed raw only if it cannot break out of quotes."""

    var_name: str

    def __new__(cls, value: str, var_name: str) -> _VarText:
        text = super().__new__(cls, value)
        text.var_name = var_name
        return text


class _IsIncremental:
    """is_incremental(): a call, never a truth value, so `{% if is_incremental %}` fails."""

    def __init__(self, value: bool) -> None:
        self._value = value

    def __call__(self) -> bool:
        return self._value

    def __bool__(self) -> bool:
        raise _TemplateProblem("write is_incremental() with parentheses")


def trino_literal(value: object) -> str:
    """`value` as a Trino SQL literal: the only way values enter rendered SQL.

    datetime → `timestamp '2024-01-01 00:00:00.000'` (UTC, milliseconds; naive means UTC),
    date → `date '2024-01-01'`, str → `'it''s'`, bool → `true`, None → `null`, int, float and
    Decimal → digits, a list or tuple → `(a, b)` for `in`. TypeError/ValueError otherwise.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        stamp = _utc_ms(value).replace(tzinfo=None)
        return f"timestamp '{stamp.isoformat(sep=' ', timespec='milliseconds')}'"
    if isinstance(value, date):
        return f"date '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no SQL literal")
        return repr(value) if isinstance(value, float) else format(value, "f")
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("an empty list has no SQL literal")
        if any(isinstance(item, (list, tuple)) for item in value):
            raise ValueError("a nested list has no SQL literal")
        return "(" + ", ".join(trino_literal(item) for item in value) + ")"
    raise TypeError(f"a {type(value).__name__} value has no SQL literal")


def render_sql(
    query: Query, *, window: Window | None, vars: Mapping[str, object] | None = None
) -> str:
    """The SQL to send for one run of `query` over `window`; ConfigError naming file and line.

    `window=None` renders as a run without a cursor window: `is_incremental()` is false and
    `cursor_start`/`cursor_end` are undefined. The result is stripped of the blank lines the
    config block leaves, so it starts with the SQL itself.
    """
    context = {
        "config": _config_placeholder,
        "is_incremental": _IsIncremental(window is not None and window.is_incremental),
        "cursor_start": _bound(window.start if window else None, "cursor_start"),
        "cursor_end": _bound(window.end if window else None, "cursor_end"),
        "var": _var_function(dict(vars or {})),
    }
    try:
        sql = query.template.render(context).strip()
    except Exception as error:  # everything a template raises is that file's fault
        raise ConfigError(f"{_where(query.path, error)}: {_describe(error)}") from error
    if not sql and not query.config.saved_query:
        raise ConfigError(f"{query.path}: renders to empty SQL for this window")
    return sql


def check_renders(query: Query, *, now: datetime, vars: Mapping[str, object] | None = None) -> None:
    """Render `query` for each kind of window its runs can get; ConfigError on the first failure.

    The next run takes one branch of `{% if is_incremental() %}`; a mistake in the other
    would otherwise surface only on some later night's run.
    """
    if query.config.saved_query:
        return
    for window in _possible_windows(query.config, _utc_ms(now)):
        render_sql(query, window=window, vars=vars)


def _possible_windows(config: QueryConfig, end: datetime) -> list[Window]:
    whole = Window(None, end)
    if not config.cursor:
        return [whole]
    start = config.initial_value
    incremental = Window(start if start is not None and start < end else end - timedelta(1), end)
    # With an initial_value every run is incremental, the first one included.
    return [incremental] if start is not None else [whole, incremental]


def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        finalize=_printed,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    del environment.globals["lipsum"]  # random text would make rendering non-deterministic
    environment.filters["literal"] = _literal_filter
    return environment


def _config_placeholder(**_settings: object) -> str:
    return ""


def _bound(value: datetime | None, name: str) -> object:
    if value is not None:
        return value
    return StrictUndefined(
        hint=f"{name} is undefined: this run has no cursor window; "
        "use it inside {% if is_incremental() %} only"
    )


def _var_function(values: dict[str, object]) -> Callable[..., object]:
    missing = object()

    def var(name: str, default: object = missing) -> object:
        if name in values:
            value = values[name]
        elif default is not missing:
            value = default
        else:
            raise _TemplateProblem(
                f"var({name!r}) is not set; pass it in vars or give a default: var({name!r}, ...)"
            )
        return _VarText(value, name) if isinstance(value, str) else value

    return var


def _printed(value: object) -> str:
    """How `{{ value }}` prints: strings as written, every other value as a SQL literal."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError with its hint
    if isinstance(value, _VarText):
        if _UNSAFE_IN_SQL.search(value):
            raise _TemplateProblem(
                f"var({value.var_name!r}) holds a quote, semicolon, comment marker or line "
                f"break; print it as a quoted literal: {{{{ var({value.var_name!r}) | literal }}}}"
            )
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        raise _TemplateProblem(
            f"cannot print a {type(value).__name__} in SQL; use | literal for an (a, b) list "
            "or a {% for %} loop"
        )
    return _literal_filter(value)


def _literal_filter(value: object) -> str:
    if isinstance(value, Undefined):
        str(value)
    try:
        return trino_literal(value)
    except (TypeError, ValueError) as error:
        raise _TemplateProblem(str(error)) from error


def _where(path: Path, error: BaseException) -> str:
    """`path:line` of the template line that raised, as far as Jinja's traceback knows it."""
    line = getattr(error, "lineno", None) if isinstance(error, TemplateSyntaxError) else None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == str(path):
            line = trace.tb_lineno
        trace = trace.tb_next
    return f"{path}:{line}" if line else str(path)


def _describe(error: BaseException) -> str:
    if isinstance(error, SecurityError):
        return f"refused by the template sandbox: {error}"
    if isinstance(error, UndefinedError):
        return f"{error} (templates know {_TEMPLATE_NAMES})"
    if isinstance(error, (_TemplateProblem, TemplateSyntaxError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


# --- selection -------------------------------------------------------------------------------


def select_queries(
    queries: Sequence[Query],
    select: Sequence[str] | None = (),
    exclude: Sequence[str] | None = (),
) -> list[Query]:
    """The queries a run should load, in project order.

    Selectors are names, globs (`charges*`) or `tag:NAME` (globs too); a string may hold
    several separated by commas or spaces, and all of them add up (a union). No `select`
    means every enabled query. A disabled query runs only when selected by its exact name.
    A selector that matches nothing is an error, in `exclude` too: it is surely a typo.
    """
    chosen = [query for query in queries if query.config.enabled]
    select_terms = _terms(select)
    if select_terms:
        picked = set()
        for term in select_terms:
            picked |= {q.name for q in _matching(term, queries, "select") if _runs(q, term)}
        chosen = [query for query in queries if query.name in picked]
    dropped = {q.name for term in _terms(exclude) for q in _matching(term, queries, "exclude")}
    return [query for query in chosen if query.name not in dropped]


def _terms(selectors: Sequence[str] | str | None) -> list[str]:
    if selectors is None:
        return []
    if isinstance(selectors, str):
        selectors = [selectors]
    return [term for selector in selectors for term in re.split(r"[,\s]+", selector) if term]


def _runs(query: Query, term: str) -> bool:
    return query.config.enabled or term == query.name


def _matching(term: str, queries: Sequence[Query], option: str) -> list[Query]:
    method, _, pattern = term.rpartition(":")
    if method not in ("", "tag") or not pattern:
        raise ConfigError(
            f"{option} {term!r}: not a selector; use a name, a glob such as charges*, or tag:NAME"
        )
    if method == "tag":
        found = [q for q in queries if any(fnmatchcase(tag, pattern) for tag in q.config.tags)]
    else:
        found = [q for q in queries if fnmatchcase(q.name, pattern)]
    if not found:
        raise ConfigError(f"{option} {term!r} matches no query; {_choices(term, queries)}")
    return found


def _choices(term: str, queries: Iterable[Query]) -> str:
    names = [query.name for query in queries]
    tags = sorted({f"tag:{tag}" for query in queries for tag in query.config.tags})
    close = difflib.get_close_matches(term, names + tags, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"{guess}queries: {', '.join(names)}; tags: {', '.join(tags) or 'none'}"


# --- windows ---------------------------------------------------------------------------------


def plan_windows(
    config: QueryConfig, *, last_cursor: datetime | None, now: datetime
) -> list[Window]:
    """The cursor windows of one run, oldest first; [] when there is nothing new to read.

    start = the highest cursor loaded so far − `lag` (never before `initial_value`; for
    `append`, which has no lag, one millisecond after it), or `initial_value` on a first
    run; end = `now`. A query without a cursor, or a first run without `initial_value`,
    gets one window without a start (not incremental). With
    `backfill_chunk`, a longer span is cut into chunks of that length from the start; the last
    one ends at `now`. Bounds are UTC with millisecond precision, the precision of Sigma's
    timestamps; a naive `last_cursor` is taken as UTC.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    end = _utc_ms(now)
    start = _window_start(config, last_cursor)
    if start is None:
        return [Window(None, end)]
    if start >= end:
        return []
    return _chunks(start, end, config.backfill_chunk)


def _window_start(config: QueryConfig, last_cursor: datetime | None) -> datetime | None:
    if not config.cursor:
        return None
    if last_cursor is None:
        return config.initial_value
    start = _utc_ms(last_cursor) - config.lag
    if config.write_disposition == "append":
        # Append keeps every row it is given: start just after the highest cursor loaded
        # (Sigma's timestamps count milliseconds), or the rows at that very instant would be
        # loaded again by every run.
        start += _CURSOR_PRECISION
    if config.initial_value is not None:
        start = max(start, config.initial_value)
    return start


def _chunks(start: datetime, end: datetime, chunk: timedelta | None) -> list[Window]:
    if chunk is None:
        return [Window(start, end)]
    count = math.ceil((end - start) / chunk)
    if count > MAX_WINDOWS:
        raise ConfigError(
            f"backfill_chunk={format_duration(chunk)!r} would cut {start:%Y-%m-%d} .. "
            f"{end:%Y-%m-%d} into {count} query runs (at most {MAX_WINDOWS}); use a longer chunk"
        )
    bounds = [start + index * chunk for index in range(count)] + [end]
    return [Window(low, high) for low, high in pairwise(bounds)]


def _utc_ms(value: datetime) -> datetime:
    """A plain UTC datetime cut to milliseconds; naive values are UTC already (as in Sigma)."""
    if value.tzinfo is not None:
        value = value.astimezone(_UTC)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond // 1000 * 1000,
        tzinfo=_UTC,
    )
