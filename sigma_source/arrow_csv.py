"""Sigma result CSV → a stream of typed Arrow record batches, same types on every run.

A Sigma result file is untyped CSV. pyarrow's streaming reader would fix each column's
type from the first block and then fail, or guess wrong, further down the file; so this
module never lets pyarrow infer. Every column's Sigma type is resolved first, the first
rule that knows it winning:

1. `declared`: the query's `config(columns={...})`;
2. `api`: a result schema returned by the API (the newer Sigma APIs return typed columns);
3. `stored`: the type the destination already holds from earlier loads (dlt's schema), so
   a column never changes type between runs;
4. `inferred`: the narrowest type every value in the whole file fits, checked with
   streaming, vectorized tests (`infer_column_types`).

Then the file is parsed with those types given explicitly (`read_batches`). A first load,
with columns to infer, does both in one pass instead (`InferringRead`): the columns to
infer are read as text, checked and converted block by block, with the types the first
block suggests; the rare file whose later rows need other types is read again.
A value that does not fit its column's type fails the query with one line naming the
query, column, row and value: no silent NULLs, no variant columns.

Sigma's CSV dialect: RFC 4180 quoting (quoted values may hold commas and newlines), an
optional UTF-8 BOM, only the empty field is NULL (`NA`, `NULL`, `nan`, `None` are data),
timestamps `YYYY-MM-DD HH:MM:SS[.fff]` in UTC without an offset.
"""

from __future__ import annotations

import csv
import io
import queue
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from decimal import Decimal
from os import PathLike
from typing import Literal, TextIO, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from sigma_source.arriving_file import ArrivingFile
from sigma_source.errors import ConfigError, CSVFormatError, CSVTypeError
from sigma_source.sigma_types import (
    BIGINT,
    BOOLEAN,
    DATE,
    DOUBLE,
    MAX_DECIMAL_PRECISION,
    TIMESTAMP,
    VARCHAR,
    arrow_schema,
    arrow_type,
    decimal_type,
    parse_api_type,
    parse_decimal,
    parse_sigma_type,
    sigma_type_from_dlt_column,
    stored_sigma_types,
)

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "InferredTypes",
    "InferringRead",
    "ResolvedTypes",
    "Rule",
    "arrow_schema",
    "infer_column_types",
    "prefetched",
    "read_batches",
    "read_header",
    "resolve_column_types",
    "resolve_file_types",
    "sigma_type_from_dlt_column",
    "stored_sigma_types",
    "TypesChanged",
]

# pyarrow parses one block at a time; the block size bounds the reader's memory. 1 MiB
# blocks measured as fast as larger ones and kept peak RSS far lower.
DEFAULT_BLOCK_SIZE = 1 << 20
# A row longer than a block is read with larger blocks, up to this: one row's worth of memory.
MAX_BLOCK_SIZE = 256 << 20

FilePath = str | PathLike[str]
# A file still downloading is read as it arrives: each read waits for its bytes.
ResultFile = FilePath | ArrivingFile
Rule = Literal["declared", "api", "stored", "cursor", "inferred"]
_Item = TypeVar("_Item")

_RULE_TEXT: dict[str, str] = {
    "declared": "declared in config(columns=…)",
    "api": "from Sigma's result schema",
    "stored": "as stored by earlier loads",
    "cursor": "the type a cursor column has unless config(columns=…) declares another",
    "inferred": "inferred from this file",
}
_DECLARE_HINT = "declare the column's type in config(columns=…)"
_RULE_HINT: dict[str, str] = {
    "declared": "fix the type declared in config(columns=…)",
    # A full refresh infers the column anew (or takes the declared type) and rebuilds the
    # table with it; declaring alone cannot change the type of a table that is not replaced.
    "stored": f"reload the table with --full-refresh ({_DECLARE_HINT} if inference would "
    "not give the type you want)",
    "cursor": "declare the cursor's type in config(columns=…) (a date, say), or make the "
    "query return the cursor as a timestamp",
}
# pyarrow's own spellings for booleans. Inference takes the words in any of these cases
# (Trino writes lower case); a declared boolean column also takes 1 and 0.
_TRUE_VALUES = ["true", "True", "TRUE", "1"]
_FALSE_VALUES = ["false", "False", "FALSE", "0"]


@dataclass(frozen=True)
class ResolvedTypes:
    """Each column's Sigma type in file order, and which rule decided it (for errors, docs).

    `valueless`: the inferred columns that are varchar only because the file holds no value
    for them (a header-only result, a column NULL everywhere). `suggested`: for the columns
    `resolve_file_types` was asked to `watch`, the type their values in this file suggest
    (None: no value). Neither takes part in comparisons: they describe the evidence, not
    the types the rows are parsed with.
    """

    types: dict[str, str]
    rules: dict[str, Rule]
    valueless: frozenset[str] = field(default=frozenset(), compare=False)
    suggested: dict[str, str | None] = field(default_factory=dict, compare=False)

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema batches will have; enough to create the table of an empty result."""
        return arrow_schema(self.types)


def read_header(path: ResultFile) -> list[str]:
    """The result file's column names, UTF-8 BOM stripped."""
    try:
        with _open_text(path) as file:
            header = next(csv.reader(file), [])
    except csv.Error as error:
        raise CSVFormatError(f"{path}: cannot read the header row: {error}") from error
    if not header:
        raise CSVFormatError(f"{path}: the result file is empty (no header row)")
    for name in header:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as error:
            raise CSVFormatError(f"{path}: the header row is not valid UTF-8") from error
    return header


def _open_text(path: ResultFile) -> TextIO:
    # surrogateescape: a bad byte further down the file is the row parser's to report; only
    # the header's own bytes must be UTF-8 here.
    text = {"encoding": "utf-8-sig", "errors": "surrogateescape", "newline": ""}
    if isinstance(path, ArrivingFile):
        return io.TextIOWrapper(io.BufferedReader(path.open()), **text)
    return open(path, **text)  # noqa: SIM115 - the caller closes it


def resolve_column_types(
    columns: Sequence[str],
    *,
    declared: Mapping[str, str] | None = None,
    api_schema: Mapping[str, str] | None = None,
    stored: Mapping[str, str] | None = None,
    cursor: Mapping[str, str] | None = None,
    infer: Callable[[list[str]], Mapping[str, str]] | None = None,
    query_name: str | None = None,
    if_no_values: Mapping[str, str] | None = None,
) -> ResolvedTypes:
    """Give every column a Sigma type; per column, the first rule that knows it wins.

    `columns` is the result's header. `declared`, `api_schema` and `stored` map column
    names to Sigma types (`stored` usually comes from `stored_sigma_types`); `cursor` gives
    an incremental query's cursor column its default type, after those three. `infer` is
    called once, with the columns no other rule typed, and only if there are any; without
    it such columns are varchar. When `infer` answers with `InferredTypes`, a column it
    found no value for takes its type from `if_no_values` (rule `stored`) if that has one:
    a full refresh passes the table's types there, so an empty result does not turn its
    columns into varchar. A declared type that is unknown, or declared for a column the
    result does not have, raises ConfigError: a typo must not pass silently.
    """
    where = f"query {query_name!r}" if query_name else ""
    _check_header(columns, where=where or "result file")
    by_rule: list[tuple[Rule, dict[str, str]]] = [
        ("declared", _declared_types(declared or {}, columns, where=where)),
        ("api", {name: parse_api_type(t, column=name) for name, t in (api_schema or {}).items()}),
        ("stored", {name: parse_sigma_type(t, column=name) for name, t in (stored or {}).items()}),
        ("cursor", {name: parse_sigma_type(t, column=name) for name, t in (cursor or {}).items()}),
    ]
    types: dict[str, str] = {}
    rules: dict[str, Rule] = {}
    for name in columns:
        for rule, known in by_rule:
            if name in known:
                types[name], rules[name] = known[name], rule
                break
    unresolved = [name for name in columns if name not in types]
    valueless: set[str] = set()
    if unresolved:
        inferred = infer(unresolved) if infer else {}
        without_values = inferred.valueless if isinstance(inferred, InferredTypes) else set()
        fallback = {
            name: parse_sigma_type(t, column=name) for name, t in (if_no_values or {}).items()
        }
        for name in unresolved:
            if name in without_values and name in fallback:
                types[name], rules[name] = fallback[name], "stored"
                continue
            types[name] = parse_sigma_type(inferred.get(name, VARCHAR), column=name)
            rules[name] = "inferred"
            if name in without_values:
                valueless.add(name)
    return ResolvedTypes(
        {name: types[name] for name in columns},
        {name: rules[name] for name in columns},
        valueless=frozenset(valueless),
    )


def resolve_file_types(
    path: ResultFile,
    *,
    query_name: str,
    declared: Mapping[str, str] | None = None,
    api_schema: Mapping[str, str] | None = None,
    stored: Mapping[str, str] | None = None,
    cursor: Mapping[str, str] | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    if_no_values: Mapping[str, str] | None = None,
    watch: Collection[str] = (),
) -> ResolvedTypes:
    """`resolve_column_types` for a result file: reads its header, infers only what is left.

    `watch` names columns whose values the pass also reads although another rule types
    them; what those values suggest ends up in `ResolvedTypes.suggested`. A first load
    reads its file once instead, with `InferringRead`; this pass settles the types first.
    """
    header = read_header(path)
    watching = set(watch)
    watched = [name for name in header if name in watching]
    evidence: list[InferredTypes] = []

    def resolve(infer: Callable[[list[str]], Mapping[str, str]]) -> ResolvedTypes:
        return resolve_column_types(
            header,
            declared=declared,
            api_schema=api_schema,
            stored=stored,
            cursor=cursor,
            infer=infer,
            query_name=query_name,
            if_no_values=if_no_values,
        )

    def infer(columns: list[str]) -> InferredTypes:
        wanted = [*columns, *(name for name in watched if name not in columns)]
        inferred = infer_column_types(
            path,
            columns=wanted,
            block_size=block_size,
            query_name=query_name,
        )
        evidence.append(inferred)
        return inferred

    resolved = resolve(infer)
    if not watched:
        return resolved
    if not evidence:  # every column was typed by another rule: read the watched ones alone
        evidence.append(
            infer_column_types(path, columns=watched, block_size=block_size, query_name=query_name)
        )
    return replace(resolved, suggested=_suggestions(evidence[0], watched))


def _suggestions(seen: InferredTypes, names: Sequence[str]) -> dict[str, str | None]:
    """The type each of `names` suggests by its values in `seen`; None: it had no value."""
    return {name: None if name in seen.valueless else seen[name] for name in names}


def _declared_types(
    declared: Mapping[str, str], columns: Sequence[str], *, where: str
) -> dict[str, str]:
    missing = [name for name in declared if name not in columns]
    if missing:
        raise ConfigError(
            f"{where or 'config(columns=…)'}: declares a type for {', '.join(map(repr, missing))} "
            f"but the result has no such column; columns: {', '.join(columns)}"
        )
    return {name: parse_sigma_type(t, column=name, where=where) for name, t in declared.items()}


def _check_header(columns: Sequence[str], *, where: str) -> None:
    seen: set[str] = set()
    for position, name in enumerate(columns, start=1):
        if not name:
            raise ConfigError(
                f"{where}: column {position} of the result has no name; "
                "give it one (an alias) in the SQL"
            )
        if name in seen:
            raise ConfigError(
                f"{where}: the result has two columns named {name!r}; "
                "give each column its own name (an alias) in the SQL"
            )
        seen.add(name)


# --- Rule 5: inference ------------------------------------------------------------------
#
# A column gets the first of bigint, double, decimal, boolean, timestamp, date that every
# non-empty value in the whole file fits, else varchar. Each column keeps the set of types
# still possible and drops the ones a batch of values rules out. Checks are vectorized
# (Arrow casts, which also check the calendar; RE2 regexes where a cast is too lenient);
# the first value of a batch is probed in Python before any of them, which rejects a text
# column without scanning it. Text columns usually settle in the first block; the file is
# then read on with only the columns still undecided, and the pass stops as soon as every
# column is varchar.

_INTEGER = r"^-?(0|[1-9][0-9]*)$"  # no leading zeros: "007" is an identifier, not a number
_PLAIN = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"  # an integer, or fixed-point with a fraction
# Trino writes doubles as Java does: 1.0E-5, -2.5E10, NaN, Infinity.
_SCIENTIFIC = r"^-?[0-9](\.[0-9]+)?[eE][-+]?[0-9]+$|^(NaN|Infinity|-Infinity)$"
# "12.50" is how Trino writes a decimal(p,2); a double prints in its shortest form ("12.5",
# "100.0"), so a fraction with a superfluous trailing zero marks a decimal column.
_TRAILING_ZERO = r"\.[0-9]+0$"
_BOOLEAN_WORDS = ("true", "false", "True", "False", "TRUE", "FALSE")

_NUMBER_PROBE = re.compile(f"{_PLAIN}|{_SCIENTIFIC}")
_INTEGER_PROBE = re.compile(_INTEGER)
_BOOLEAN_PROBE = re.compile("|".join(_BOOLEAN_WORDS))
_TIMESTAMP_PROBE = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d{1,6})?", re.ASCII)
_SHORTEST_TIMESTAMP = len("2025-04-01 12:34:56")
_DATE_PROBE = re.compile(r"\d{4}-\d\d-\d\d", re.ASCII)

_DECIMAL = "decimal"  # decimal(38, largest scale seen), decided when the pass ends
_NUMERIC = frozenset({BIGINT, DOUBLE, _DECIMAL})
_INFERENCE_ORDER = (BIGINT, DOUBLE, _DECIMAL, BOOLEAN, TIMESTAMP, DATE)
# Any number written with at most this many significant digits survives a float64 round trip.
_FLOAT64_SAFE_DIGITS = 15
_INT64_SAFE_DIGITS = 18


@dataclass
class _Numbers:
    """What one batch of a column's values says about numeric types."""

    fits_int64: bool  # every value an integer in int64's range
    fits_float64: bool  # every value reads back from float64 as written (Trino's doubles do)
    has_scientific: bool
    int_digits: int
    scale: int


class _ColumnEvidence:
    """The types one column can still have, narrowed batch by batch."""

    def __init__(self) -> None:
        self.candidates: set[str] = set(_INFERENCE_ORDER)
        self.has_values = False
        self.int_digits = 0
        self.scale = 0

    @property
    def settled(self) -> bool:
        """Only varchar is left: later values cannot change the answer."""
        return self.has_values and not self.candidates

    def observe(self, values: pa.StringArray, converted: Converted | None = None) -> None:
        """Narrow the candidates by a batch of the column's values.

        Some checks convert the values (to int64, a timestamp, a date) to test them. Given
        `converted`, each conversion of the whole batch that succeeded is kept there, by
        type, for a caller that needs the values converted (`InferringRead`).
        """
        if self.settled:
            return
        if values.null_count:
            values = pc.drop_null(values)
            converted = None  # a conversion of fewer values than the batch has
        if len(values) == 0:
            return
        self.has_values = True
        first = values[0].as_py()
        if self.candidates & _NUMERIC:
            self._observe_numbers(values, first, converted)
        shaped = (
            (BOOLEAN, _BOOLEAN_PROBE, _all_booleans),
            (TIMESTAMP, _TIMESTAMP_PROBE, _all_timestamps),
            (DATE, _DATE_PROBE, _all_dates),
        )
        for sigma_type, probe, check in shaped:
            if sigma_type in self.candidates and not (
                probe.fullmatch(first) and check(values, converted)
            ):
                self.candidates.discard(sigma_type)

    def _observe_numbers(
        self, values: pa.StringArray, first: str, converted: Converted | None
    ) -> None:
        numbers = None
        if _NUMBER_PROBE.match(first):
            check_float64 = DOUBLE in self.candidates
            numbers = _read_numbers(values, first, check_float64=check_float64, into=converted)
        if numbers is None:
            self.candidates -= _NUMERIC
            return
        if not numbers.fits_int64:
            self.candidates.discard(BIGINT)
        if not numbers.fits_float64:
            self.candidates.discard(DOUBLE)
        if numbers.has_scientific:
            self.candidates.discard(_DECIMAL)
        self.int_digits = max(self.int_digits, numbers.int_digits)
        self.scale = max(self.scale, numbers.scale)

    def sigma_type(self) -> str:
        if not self.has_values:
            return VARCHAR  # NULL everywhere: nothing to go by, and text holds anything
        for candidate in _INFERENCE_ORDER:
            if candidate not in self.candidates:
                continue
            if candidate != _DECIMAL:
                return candidate
            if self.int_digits + self.scale <= MAX_DECIMAL_PRECISION:
                return decimal_type(MAX_DECIMAL_PRECISION, self.scale)
        return VARCHAR


# Values converted by the checks, by the type they were converted to.
Converted = dict[pa.DataType, pa.Array]


def _casts(values: pa.Array, to: pa.DataType, into: Converted | None = None) -> bool:
    """Whether every value converts to `to`; the converted values go `into` if given."""
    try:
        converted = pc.cast(values, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    if into is not None:
        into[to] = converted
    return True


def _all_booleans(values: pa.StringArray, _into: Converted | None = None) -> bool:
    return pc.all(pc.is_in(values, value_set=pa.array(_BOOLEAN_WORDS))).as_py()


def _all_timestamps(values: pa.StringArray, into: Converted | None = None) -> bool:
    # The cast takes only YYYY-MM-DD[( |T)HH[:MM[:SS[.ffffff]]]] and checks the calendar;
    # the length keeps dates and times without seconds out.
    return pc.min(pc.binary_length(values)).as_py() >= _SHORTEST_TIMESTAMP and _casts(
        values, pa.timestamp("us"), into
    )


def _all_dates(values: pa.StringArray, into: Converted | None = None) -> bool:
    # The cast takes only YYYY-MM-DD and checks the calendar.
    return _casts(values, pa.date32(), into)


def _read_numbers(
    values: pa.StringArray, first: str, *, check_float64: bool, into: Converted | None = None
) -> _Numbers | None:
    """Classify a batch of values as numbers, or None if some value is not a number."""
    if _INTEGER_PROBE.fullmatch(first):
        integers = _read_integers(values, check_float64=check_float64, into=into)
        if integers is not None:
            return integers
    is_plain = pc.match_substring_regex(values, _PLAIN)
    plain, has_scientific = values, False
    if not pc.all(is_plain).as_py():
        is_number = pc.or_(is_plain, pc.match_substring_regex(values, _SCIENTIFIC))
        if not pc.all(is_number).as_py():
            return None
        plain, has_scientific = values.filter(is_plain), True
    int_digits, scale = _digits(plain)
    # An integer beyond int64 is a decimal(38,0) in Trino, never a double.
    integers_fit_int64 = int_digits <= _INT64_SAFE_DIGITS or _casts(
        plain.filter(pc.match_substring_regex(plain, _INTEGER)), pa.int64()
    )
    fits_float64 = check_float64 and integers_fit_int64 and _fits_float64(plain, int_digits, scale)
    return _Numbers(
        fits_int64=False,  # not all integers, or not all in range (else the fast path took it)
        fits_float64=fits_float64,
        has_scientific=has_scientific,
        int_digits=int_digits,
        scale=scale,
    )


def _read_integers(
    values: pa.StringArray, *, check_float64: bool, into: Converted | None = None
) -> _Numbers | None:
    """The fast path for the common case: every value an int64 written without leading zeros."""
    if not _casts(values, pa.int64(), into):
        return None
    zero_led = pc.or_(pc.starts_with(values, "0"), pc.starts_with(values, "-0"))
    if (
        pc.any(zero_led).as_py()
        and not pc.all(pc.is_in(values.filter(zero_led), value_set=pa.array(["0", "-0"]))).as_py()
    ):
        return None
    longest = pc.max(pc.binary_length(values)).as_py()
    int_digits = longest if longest <= _FLOAT64_SAFE_DIGITS else _digits(values)[0]
    return _Numbers(
        fits_int64=True,
        fits_float64=not check_float64 or _fits_float64(values, int_digits, 0),
        has_scientific=False,
        int_digits=int_digits,
        scale=0,
    )


def _digits(plain: pa.StringArray) -> tuple[int, int]:
    """The most digits before and after the decimal point among plain (not E-notation) numbers."""
    if len(plain) == 0:
        return 0, 0
    length = pc.binary_length(plain)
    point = pc.find_substring(plain, ".")
    has_point = pc.greater_equal(point, 0)
    sign = pc.cast(pc.starts_with(plain, "-"), pa.int32())
    before = pc.subtract(pc.if_else(has_point, point, length), sign)
    after = pc.if_else(has_point, pc.subtract(pc.subtract(length, point), 1), 0)
    return pc.max(before).as_py(), pc.max(after).as_py()


def _has_trailing_zero(plain: pa.StringArray) -> bool:
    ends_in_zero = plain.filter(pc.ends_with(plain, "0"))  # cheap; the regex runs on few
    return (
        len(ends_in_zero) > 0
        and pc.any(pc.match_substring_regex(ends_in_zero, _TRAILING_ZERO)).as_py()
    )


def _fits_float64(plain: pa.StringArray, int_digits: int, scale: int) -> bool:
    """Whether every value reads back from float64 exactly as written.

    A value survives when float64 → shortest decimal text gives the same number (compared
    exactly, as decimals) and it carries no superfluous trailing fractional zero.
    """
    if len(plain) == 0:
        return True
    if scale and _has_trailing_zero(plain):
        return False
    if int_digits + scale <= _FLOAT64_SAFE_DIGITS:
        return True
    if int_digits + scale > MAX_DECIMAL_PRECISION:
        return False
    exact_type = pa.decimal128(MAX_DECIMAL_PRECISION, scale)
    try:
        exact = pc.cast(plain, exact_type)
        printed = pc.cast(pc.cast(plain, pa.float64()), pa.string())
        round_tripped = pc.cast(printed, exact_type)
    except pa.ArrowInvalid:
        return False
    return pc.all(pc.equal(exact, round_tripped)).as_py()


class InferredTypes(dict[str, str]):
    """The types `infer_column_types` found, by column; `valueless` names the columns the
    file held no value for (varchar for lack of evidence, not because of their values)."""

    def __init__(self, types: Mapping[str, str], valueless: Collection[str] = ()) -> None:
        super().__init__(types)
        self.valueless = frozenset(valueless)


def infer_column_types(
    path: ResultFile,
    *,
    columns: Sequence[str] | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    query_name: str | None = None,
) -> InferredTypes:
    """Rule 5: the narrowest Sigma type every value of each column fits, from the whole file.

    The first of these that every non-empty value fits wins:

    - bigint: integers in int64's range, without leading zeros ("007" is an identifier);
    - double: plain (12.5, 100.0) or E-notation (-2.5E10, 1.0E-5) numbers, NaN, Infinity,
      every plain one surviving a float64 round trip as written;
    - decimal(38,s), s the largest scale seen: plain numbers where some value does not
      survive that round trip (12.500000000000000001, or 12.50: Trino writes decimals at
      full scale, doubles in shortest form), or an integer beyond int64;
    - boolean: true / false (also True, TRUE, False, FALSE);
    - timestamp: YYYY-MM-DD HH:MM:SS[.ffffff] (or with T), real calendar dates and times;
    - date: YYYY-MM-DD, real calendar dates;
    - varchar: anything else, and a column that is NULL everywhere.

    Reads only `columns` (default: all), as strings, one block at a time, so memory stays
    bounded whatever the file size. Most columns are decided by the first block; the rest of
    the file is read only for the others. The answer is a dict (`InferredTypes`) that also
    names the columns no value was found for.
    """
    header = read_header(path)
    _check_header(header, where=str(path))
    wanted = list(header if columns is None else columns)
    unknown = [name for name in wanted if name not in header]
    if unknown:
        raise ValueError(f"{path}: no column named {', '.join(map(repr, unknown))}")
    evidence = {name: _ColumnEvidence() for name in wanted}
    context = _ReadContext(path, header, query_name, ResolvedTypes({}, {}), block_size)
    _observe(context, evidence, wanted, first_block_only=True)
    undecided = [name for name in wanted if not evidence[name].settled]
    if undecided:
        # Re-reading the first block is cheaper than converting settled text columns to
        # the end of the file; observing a batch twice changes nothing.
        _observe(context, evidence, undecided, first_block_only=False)
    return _inferred(evidence, wanted)


def _inferred(evidence: Mapping[str, _ColumnEvidence], columns: list[str]) -> InferredTypes:
    return InferredTypes(
        {name: evidence[name].sigma_type() for name in columns},
        valueless=[name for name in columns if not evidence[name].has_values],
    )


def _observe(
    context: _ReadContext,
    evidence: dict[str, _ColumnEvidence],
    columns: list[str],
    *,
    first_block_only: bool,
) -> None:
    reader = context.open({name: pa.string() for name in columns})
    with closing(prefetched(context.batches(reader))) as batches:
        for batch in batches:
            for name, values in zip(batch.schema.names, batch.columns, strict=True):
                evidence[name].observe(values)
            if first_block_only or all(evidence[name].settled for name in columns):
                return


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def prefetched(items: Iterator[_Item], depth: int = 8) -> Iterator[_Item]:
    """`items`, produced on a helper thread up to `depth` ahead of the consumer.

    What the consumer does with one batch (inference checks, parquet encoding) then
    overlaps pyarrow's parse of the next (both release the GIL): on two cores this takes
    about a third off a pass. The consumer encodes a parquet row group at a time, about 25
    blocks' rows, and the producer parses on meanwhile: 8 ahead staged 1M rows in 0.80 s
    where 2 took 0.92 s (about 8 MB more held). An error raised while producing is raised
    to the consumer; closing the consumer (`contextlib.closing`) stops the producer.
    """
    buffer: queue.Queue[_Item | _Failure | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: _Item | _Failure | None) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(None)
        except BaseException as error:  # raised again on the consumer's side
            put(_Failure(error))

    producer = threading.Thread(target=produce, name="sigma-csv-prefetch", daemon=True)
    producer.start()
    try:
        while (item := buffer.get()) is not None:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        producer.join()


# --- Typed read ---------------------------------------------------------------------------


def read_batches(
    path: ResultFile,
    types: ResolvedTypes | Mapping[str, str],
    *,
    query_name: str,
    batch_rows: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Parse a result file into record batches typed as `types` (one Sigma type per column).

    Memory stays bounded: pyarrow parses `block_size` bytes at a time. Batches hold at most
    `batch_rows` rows (None: one batch per parsed block, about `block_size` bytes of CSV,
    without copying); smaller blocks are joined up to `batch_rows`. A header-only file
    yields exactly one empty batch, so a consumer that only forwards batches still creates
    the typed table. A value that does not fit its column's type (a decimal with more
    digits before the point than its precision allows included) raises CSVTypeError
    naming the query, column, row (1 = first row after the header) and value; pass the
    `ResolvedTypes` from resolution so the message says where the type came from.
    """
    resolved = types if isinstance(types, ResolvedTypes) else ResolvedTypes(dict(types), {})
    header = read_header(path)
    if set(header) != set(resolved.types) or len(header) != len(resolved.types):
        raise ValueError(
            f"{path}: types given for {sorted(resolved.types)} but the header is {header}"
        )
    ordered = ResolvedTypes({name: resolved.types[name] for name in header}, resolved.rules)
    context = _ReadContext(path, header, query_name, ordered, block_size)
    target = ordered.schema
    reader = context.open({name: _parse_type(t) for name, t in ordered.types.items()})
    parsed = _within_decimal_precision(context, context.batches(reader))
    typed = (_to_target(batch, target) for batch in parsed)
    yield from _rows_or_empty(typed if batch_rows is None else _rechunk(typed, batch_rows), target)


def _rows_or_empty(
    batches: Iterable[pa.RecordBatch], target: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The batches that hold rows; for a file without rows, one empty batch of `target`, so
    a consumer that only forwards batches still creates the typed table."""
    yielded = False
    for batch in batches:
        if batch.num_rows:
            yielded = True
            yield batch
    if not yielded:
        yield pa.RecordBatch.from_pylist([], schema=target)


# --- One pass that infers as it reads ---------------------------------------------------


class TypesChanged(Exception):
    """Values further down the file need other column types than the rows read so far got."""


class InferringRead:
    """Read a result file once, inferring the columns no rule types while their rows stream.

    A first load would otherwise read the file twice: once to infer, once to parse
    with the types found. Here the columns to infer are parsed as text, their values
    checked batch by batch with the same evidence `infer_column_types` gathers, and
    converted to the types the evidence so far supports. `types` are the types the batches
    come with: the rules' types, and for the inferred columns the narrowest types the first
    block fits, which nearly always hold for the whole file. When a later block needs other
    types (integers, then 12.5), iterating raises `TypesChanged`: the caller discards the
    rows it has and falls back to `resolve_file_types` and `read_batches`. When the
    iteration ends, `types` is what `resolve_file_types` would answer for the file,
    `valueless` and `suggested` included (the `watch`ed columns read as text).

    Rule-typed columns are converted by the CSV reader itself, with the same errors as
    `read_batches`. The file is read once: iterate once.
    """

    def __init__(
        self,
        path: ResultFile,
        *,
        query_name: str,
        declared: Mapping[str, str] | None = None,
        api_schema: Mapping[str, str] | None = None,
        stored: Mapping[str, str] | None = None,
        cursor: Mapping[str, str] | None = None,
        if_no_values: Mapping[str, str] | None = None,
        watch: Collection[str] = (),
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self.path = path
        self.header = read_header(path)
        self._rules = dict(
            declared=declared,
            api_schema=api_schema,
            stored=stored,
            cursor=cursor,
            query_name=query_name,
            if_no_values=if_no_values,
        )
        by_rules = resolve_column_types(self.header, **self._rules)
        self._to_infer = [name for name, rule in by_rules.rules.items() if rule == "inferred"]
        # Watched columns are read as text when no rule gives them another type: only then
        # does the loader ask what their values suggest (see staging.UntypedColumns).
        self._watched = [
            name
            for name in self.header
            if name in watch and (name in self._to_infer or by_rules.types[name] == VARCHAR)
        ]
        observed = {*self._to_infer, *self._watched}
        self._evidence = {name: _ColumnEvidence() for name in self.header if name in observed}
        # Inferred and watched columns are parsed as text; the others as their rule says.
        self._context = _ReadContext(path, self.header, query_name, by_rules, block_size)
        self._column_types = {
            name: pa.string() if name in observed else _parse_type(by_rules.types[name])
            for name in self.header
        }
        self._raw = self._context.batches(self._context.open(self._column_types))
        self._first = next(self._raw, None)
        self._first_converted = self._observe(self._first) if self._first is not None else {}
        self.types = self._resolve()
        self._context.resolved = self.types

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        target = self.types.schema
        # The inferred columns that are not text, and the type each is converted to.
        to_convert = {
            name: _parse_type(self.types.types[name])
            for name in self._to_infer
            if self.types.types[name] != VARCHAR
        }
        first = [(self._first, self._first_converted)] if self._first is not None else []
        # pyarrow parses the next block on a helper thread while this one checks and
        # converts the last (both release the GIL).
        with closing(prefetched(self._raw)) as rest:
            typed = (
                self._typed(batch, converted, to_convert, target)
                for batch, converted in self._checked(first, rest, to_convert)
            )
            yield from _rows_or_empty(_within_decimal_precision(self._context, typed), target)
        # A column read as text may have looked like numbers for a while and be text again
        # by the end: only the whole file decides it.
        final = self._resolve()
        if final != self.types:
            raise TypesChanged(f"{self.path}: the whole file gives other column types")
        watched = _suggestions(_inferred(self._evidence, self._watched), self._watched)
        self.types = replace(final, suggested=watched)

    def _checked(
        self,
        first: list[tuple[pa.RecordBatch, dict[str, Converted]]],
        rest: Iterator[pa.RecordBatch],
        to_convert: Mapping[str, pa.DataType],
    ) -> Iterator[tuple[pa.RecordBatch, dict[str, Converted]]]:
        """The file's batches, each with what checking it converted; each after the first
        observed here. A converted column whose type no longer holds stops the read at once:
        a candidate type, once ruled out, never comes back."""
        yield from first
        for batch in rest:
            converted = self._observe(batch)
            now = self._resolve().types
            if any(now[name] != self.types.types[name] for name in to_convert):
                raise TypesChanged(f"{self.path}: column types change further down the file")
            yield batch, converted

    def _observe(self, batch: pa.RecordBatch) -> dict[str, Converted]:
        """Observe the batch's values; by column, the conversions the checks made."""
        converted: dict[str, Converted] = {}
        for name, evidence in self._evidence.items():
            converted[name] = {}
            evidence.observe(batch.column(name), converted[name])
        return converted

    def _resolve(self) -> ResolvedTypes:
        return resolve_column_types(
            self.header, **self._rules, infer=lambda columns: _inferred(self._evidence, columns)
        )

    def _typed(
        self,
        batch: pa.RecordBatch,
        converted: dict[str, Converted],
        to_convert: Mapping[str, pa.DataType],
        target: pa.Schema,
    ) -> pa.RecordBatch:
        """The batch with its inferred columns converted from text to their types; a
        conversion the checks already made (`converted`) is taken as it is."""
        columns = []
        for name, values in zip(self.header, batch.columns, strict=True):
            parse_type = to_convert.get(name)
            if parse_type is not None:
                done = converted.get(name, {}).get(parse_type)
                try:
                    values = done if done is not None else pc.cast(values, parse_type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    # Arrow's cast refusing what the evidence took: let the CSV reader decide.
                    raise TypesChanged(f"{self.path}: column {name!r}: {error}") from error
            columns.append(values)
        return _to_target(pa.RecordBatch.from_arrays(columns, names=self.header), target)


def _parse_type(sigma_type: str) -> pa.DataType:
    """The type pyarrow parses a column as; a timestamp is parsed naive, then marked UTC.

    pyarrow rejects values without an offset for a timezone-aware column type.
    """
    return pa.timestamp("us") if sigma_type == TIMESTAMP else arrow_type(sigma_type)


def _to_target(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(target):
        return batch
    # Naive → UTC keeps the stored microseconds: Sigma's wall clock is UTC.
    return batch.cast(target)


def _within_decimal_precision(
    context: _ReadContext, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """`batches`, each decimal column checked against its precision.

    pyarrow's reader rescales a value to the column's scale but does not check the precision:
    it takes `123456789.5` as a decimal(10,2), and the destination then stores a number
    the column cannot hold. Costs one min/max per decimal column and batch.
    """
    limits: dict[int, tuple[str, int, Decimal]] = {}
    for index, (name, sigma_type) in enumerate(context.resolved.types.items()):
        precision_scale = parse_decimal(sigma_type)
        if precision_scale is not None:
            precision, scale = precision_scale
            # Built from text: Decimal arithmetic would round to 28 digits.
            largest = Decimal(f"{'9' * (precision - scale) or '0'}.{'9' * scale or '0'}")
            limits[index] = (name, precision - scale, largest)
    if not limits:
        yield from batches
        return
    rows_before = 0
    for batch in batches:
        for index, (name, digits, largest) in limits.items():
            column = batch.column(index)
            extremes = pc.min_max(column)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            if (high is None or high <= largest) and (low is None or low >= -largest):
                continue
            too_large = pc.greater(pc.abs(column), pa.scalar(largest, column.type))
            row = rows_before + pc.index(too_large, True).as_py() + 1
            raise context.type_violation(
                name,
                row,
                context.value_at(name, row),
                why=f"more than {digits} digit{'s' if digits != 1 else ''} before the "
                "decimal point",
            )
        rows_before += batch.num_rows
        yield batch


def _rechunk(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Re-slice batches to `batch_rows` rows each (the last may be shorter)."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows < batch_rows:
            continue
        joined = pa.concat_batches(pending) if len(pending) > 1 else pending[0]
        full = joined.num_rows - joined.num_rows % batch_rows
        for offset in range(0, full, batch_rows):
            yield joined.slice(offset, batch_rows)
        pending = [joined.slice(full)] if full < joined.num_rows else []
        pending_rows = joined.num_rows - full
    if pending_rows:
        yield pa.concat_batches(pending) if len(pending) > 1 else pending[0]


@dataclass
class _ReadContext:
    """One pass over a result file, and what an error message needs to say about it."""

    path: ResultFile
    header: list[str]
    query_name: str | None
    resolved: ResolvedTypes
    block_size: int

    # The columns of the last open(), to open the file again with larger blocks.
    column_types: dict[str, pa.DataType] = field(default_factory=dict)

    def open(self, column_types: Mapping[str, pa.DataType]) -> pa_csv.CSVStreamingReader:
        self.column_types = dict(column_types)
        while True:
            try:
                return _open_csv(self.path, column_types, self._options)
            except pa.ArrowInvalid as error:
                if not self._grow_block(error):
                    raise self._explain(error) from error

    def batches(self, reader: pa_csv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
        """The reader's batches. pyarrow cannot parse a row longer than a block (a 10 MB
        text value): the file is then read again with larger blocks, skipping the rows
        already produced, so the common case keeps its small blocks."""
        produced = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as error:
                if not self._grow_block(error):
                    raise self._explain(error) from error
                yield from _skip_rows(self.batches(self.open(self.column_types)), produced)
                return
            produced += batch.num_rows
            yield batch

    def _grow_block(self, error: pa.ArrowInvalid) -> bool:
        """Quadruple the block size after a row longer than a block; False for other errors."""
        if not _row_longer_than_block(error) or self.block_size >= MAX_BLOCK_SIZE:
            return False
        self.block_size = min(self.block_size * 4, MAX_BLOCK_SIZE)
        return True

    def _explain(self, error: pa.ArrowInvalid) -> Exception:
        """Turn pyarrow's error into one line naming the query, column, row and value."""
        message = str(error).splitlines()[0]
        where = f"query {self.query_name!r}: " if self.query_name else ""
        if _row_longer_than_block(error):
            return CSVFormatError(
                f"{where}{self.path} has a row longer than {MAX_BLOCK_SIZE >> 20} MiB, "
                "the most sigma-load reads in one row"
            )
        column_match = re.match(r"In CSV column #(\d+): (.*)", message)
        if not column_match or "UTF8" in message:
            return CSVFormatError(f"{where}{self.path} is not valid Sigma CSV: {message}")
        name = self.header[int(column_match.group(1))]
        sigma_type = self.resolved.types.get(name, VARCHAR)
        found = self._find_bad_value(name, sigma_type)
        if found is None:
            return CSVTypeError(
                f"{where}column {name!r} ({self._type_origin(name)}): "
                f"{column_match.group(2)}; {self._hint(name)}"
            )
        row, value = found
        return self.type_violation(name, row, value)

    def type_violation(self, column: str, row: int, value: str, why: str = "") -> CSVTypeError:
        """The one-line error for `value`, in `row` of `column`, breaking the column's type."""
        where = f"query {self.query_name!r}: " if self.query_name else ""
        sigma_type = self.resolved.types.get(column, VARCHAR)
        because = f": {why}" if why else ""
        return CSVTypeError(
            f"{where}column {column!r} ({self._type_origin(column)}), row {row}: "
            f"value {_shorten(value)} is not a valid {sigma_type}{because}; {self._hint(column)}"
        )

    def _type_origin(self, column: str) -> str:
        rule = self.resolved.rules.get(column)
        origin = f", {_RULE_TEXT[rule]}" if rule else ""
        return f"{self.resolved.types.get(column, VARCHAR)}{origin}"

    def _hint(self, column: str) -> str:
        return _RULE_HINT.get(self.resolved.rules.get(column) or "", _DECLARE_HINT)

    def _find_bad_value(self, column: str, sigma_type: str) -> tuple[int, str] | None:
        """(row, value) of the first value of `column` that does not parse as `sigma_type`.

        pyarrow's error names the column but not the row, so the column is read again as
        text, and each block's values are parsed again by the reader itself (with the same
        options) to find the one it refuses; this runs only when a load is already failing.
        """
        target = _parse_type(sigma_type)
        rows_before = 0
        try:
            for batch in _open_csv(self.path, {column: pa.string()}, self._options):
                values = batch.column(0)
                index = _first_unparsable(values, target)
                if index is not None:
                    return rows_before + index + 1, values[index].as_py()
                rows_before += batch.num_rows
        except pa.ArrowInvalid:
            return None
        return None

    def value_at(self, column: str, row: int) -> str:
        """The text of `column` in `row` (1 = the first row after the header), as written."""
        rows_before = 0
        for batch in _open_csv(self.path, {column: pa.string()}, self._options):
            if row <= rows_before + batch.num_rows:
                value = batch.column(0)[row - rows_before - 1].as_py()
                return "" if value is None else value
            rows_before += batch.num_rows
        raise IndexError(f"{self.path} has no row {row}")

    @property
    def _options(self) -> _ReadOptions:
        return _ReadOptions(self.block_size, single_column=len(self.header) == 1)


@dataclass(frozen=True)
class _ReadOptions:
    block_size: int
    single_column: bool


def _open_csv(
    path: ResultFile, column_types: Mapping[str, pa.DataType], options: _ReadOptions
) -> pa_csv.CSVStreamingReader:
    return pa_csv.open_csv(
        path.open() if isinstance(path, ArrivingFile) else path,
        read_options=pa_csv.ReadOptions(block_size=options.block_size),
        parse_options=_parse_options(single_column=options.single_column),
        convert_options=_convert_options(column_types),
    )


def _parse_options(*, single_column: bool) -> pa_csv.ParseOptions:
    return pa_csv.ParseOptions(
        # Sigma quotes values holding newlines; without this a block boundary inside one
        # desynchronizes the parser.
        newlines_in_values=True,
        # In a one-column result an empty line is a row holding NULL, not filler.
        ignore_empty_lines=not single_column,
    )


def _convert_options(column_types: Mapping[str, pa.DataType]) -> pa_csv.ConvertOptions:
    """How values become typed: the one definition for reading, and for finding a bad value."""
    return pa_csv.ConvertOptions(
        column_types=dict(column_types),
        include_columns=list(column_types),
        null_values=[""],
        strings_can_be_null=True,
        true_values=_TRUE_VALUES,
        false_values=_FALSE_VALUES,
    )


def _row_longer_than_block(error: pa.ArrowInvalid) -> bool:
    return "straddling object straddles two block boundaries" in str(error)


def _skip_rows(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """`batches` without their first `rows` rows."""
    for batch in batches:
        if rows >= batch.num_rows:
            rows -= batch.num_rows
            continue
        yield batch.slice(rows) if rows else batch
        rows = 0


def _first_unparsable(values: pa.StringArray, target: pa.DataType) -> int | None:
    """Index of the first of `values` the CSV reader would refuse as `target`, or None.

    The values are written back as one CSV column and parsed with the reader's own options:
    Arrow's compute casts accept other spellings than the CSV converter does (" 5" is an
    int64 to the reader, not to a cast), so only the reader itself can say which value it
    refused. Runs only when a read has already failed; a binary search over prefixes.
    """
    if _reader_accepts(values, target):
        return None
    low, high = 0, len(values)  # invariant: values[:low] parse, values[:high] do not
    while high - low > 1:
        middle = (low + high) // 2
        if _reader_accepts(values.slice(0, middle), target):
            low = middle
        else:
            high = middle
    return high - 1


def _reader_accepts(values: pa.StringArray, target: pa.DataType) -> bool:
    # Every value quoted (and NULL left empty), so no value is mistaken for a line ending
    # or a delimiter; the converter sees what it would in the result file.
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(
        pa.table({"v": values}),
        sink,
        write_options=pa_csv.WriteOptions(quoting_style="all_valid"),
    )
    try:
        pa_csv.read_csv(
            pa.BufferReader(sink.getvalue()),
            parse_options=_parse_options(single_column=True),
            convert_options=_convert_options({"v": target}),
        )
    except pa.ArrowInvalid:
        return False
    return True


def _shorten(value: str, limit: int = 60) -> str:
    shown = value if len(value) <= limit else value[:limit] + "…"
    return repr(shown)
