"""`sigma-load saved-queries`: publish SQL files as Stripe saved queries, and bring them back.

The SQL files stay the source of truth; a saved query is their published copy, for the
Dashboard and for teammates. Which saved query belongs to which file is recorded in a lock
file, `saved_queries.lock.json` in the project folder, meant to be committed:

- not in the file's `config(saved_query=...)`: that setting means "run from the saved query
  instead of this SQL", so writing it would silently change what `run` executes;
- and Stripe's v1 API cannot list saved queries, so without a record a second `push` could
  not find the first one and would create a duplicate.

The lock also keeps the SHA-256 of the SQL last pushed or pulled, which tells a local edit
(push it) from a change made in Stripe (pull it), and keeps `pull` from overwriting a file
edited since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sigma_source.errors import ConfigError, InvalidRequestError, SigmaLoadError
from sigma_source.project import Query, load_query, render_sql

if TYPE_CHECKING:
    from sigma_source.api_objects import SavedQuery
    from sigma_source.client import SigmaClient

LOCK_FILE_NAME = "saved_queries.lock.json"
LOCK_VERSION = 1
_LOCK_NOTE = (
    "Written by `sigma-load saved-queries`: the Stripe saved query of each SQL file. "
    "Commit it, so the next push updates these saved queries instead of creating new ones."
)
_CONFIG_BLOCK = re.compile(r"\{\{-?\s*config\s*\(.*?\)\s*-?\}\}", re.DOTALL)
_NOT_IN_NAME = re.compile(r"[^a-z0-9_]+")

# What happened to one query; `failed` and `refused` make the command exit 1.
FAILED = "failed"
REFUSED = "refused"


@dataclass(frozen=True)
class LockEntry:
    """The saved query published from one SQL file, and the SQL it held when last synced."""

    id: str
    sql_sha256: str
    synced_at: str


@dataclass(frozen=True)
class Outcome:
    """What a command did with one query (or saved query): the action and the id involved."""

    query_name: str
    action: str
    saved_query_id: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.action not in (FAILED, REFUSED)


class SavedQueryLock:
    """`saved_queries.lock.json`: query name → saved query, read and written whole."""

    def __init__(self, path: Path, entries: dict[str, LockEntry] | None = None) -> None:
        self.path = path
        self.entries: dict[str, LockEntry] = dict(entries or {})

    @classmethod
    def load(cls, project_dir: str | os.PathLike[str]) -> SavedQueryLock:
        path = Path(project_dir) / LOCK_FILE_NAME
        if not path.is_file():
            return cls(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            entries = {
                name: LockEntry(**fields) for name, fields in document["saved_queries"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"{path}: not a saved-queries lock file ({type(error).__name__}: {error}); "
                "restore it from version control"
            ) from error
        return cls(path, entries)

    def record(self, query_name: str, saved_query_id: str, sql: str) -> None:
        synced_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.entries[query_name] = LockEntry(saved_query_id, sql_digest(sql), synced_at)

    def forget(self, query_name: str) -> None:
        self.entries.pop(query_name, None)

    def name_of(self, saved_query_id: str) -> str | None:
        return next((name for name, e in self.entries.items() if e.id == saved_query_id), None)

    def save(self) -> None:
        """Write the file atomically, keys sorted, so that diffs in review stay small."""
        document = {
            "note": _LOCK_NOTE,
            "version": LOCK_VERSION,
            "saved_queries": {name: asdict(self.entries[name]) for name in sorted(self.entries)},
        }
        _write_atomically(self.path, json.dumps(document, indent=2) + "\n")


def sql_digest(sql: str | None) -> str:
    return hashlib.sha256((sql or "").strip().encode("utf-8")).hexdigest()


def plain_sql(query: Query) -> str:
    """The SQL of a file without Jinja: what a saved query of it holds."""
    return render_sql(query, window=None)


def not_pushable(query: Query) -> str | None:
    """Why `query` cannot become a saved query, or None when it can."""
    if query.config.saved_query:
        return f"runs from saved query {query.config.saved_query} already (config saved_query)"
    if query.templated:
        return "templated: a saved query holds fixed SQL, without Jinja"
    return None


# --- push ------------------------------------------------------------------------------------


def push(client: SigmaClient, queries: Sequence[Query], lock: SavedQueryLock) -> list[Outcome]:
    """Create or update one saved query per plain-SQL file; the lock is saved after each."""
    outcomes = []
    for query in queries:
        reason = not_pushable(query)
        if reason:
            outcomes.append(Outcome(query.name, "skipped", detail=reason))
            continue
        try:
            outcome = _push_one(client, lock, query.name, plain_sql(query))
        except SigmaLoadError as error:
            entry = lock.entries.get(query.name)
            outcome = Outcome(query.name, FAILED, entry.id if entry else None, str(error))
        else:
            lock.save()
        outcomes.append(outcome)
    return outcomes


def _push_one(client: SigmaClient, lock: SavedQueryLock, name: str, sql: str) -> Outcome:
    entry = lock.entries.get(name)
    if entry is None:
        saved = client.create_saved_query(sql, name=name)
        action, detail = "created", None
    else:
        try:
            # Only the SQL: a name given in the Dashboard is the team's to keep.
            saved = client.update_saved_query(entry.id, sql=sql)
            action, detail = "updated", None
        except InvalidRequestError as error:
            if error.http_status != 404:
                raise
            saved = client.create_saved_query(sql, name=name)
            action, detail = "created", f"{entry.id} was no longer in Stripe"
    lock.record(name, saved.id, sql)
    return Outcome(name, action, saved.id, detail)


# --- pull ------------------------------------------------------------------------------------


def pull(
    client: SigmaClient,
    lock: SavedQueryLock,
    names: Iterable[str],
    queries: Mapping[str, Query],
    project_dir: str | os.PathLike[str],
    *,
    force: bool = False,
) -> list[Outcome]:
    """Rewrite the SQL files of the recorded saved queries `names` with Stripe's SQL.

    A file's config() block is kept. A file edited since it was last pushed or pulled is
    refused unless `force`: pulling must not lose work.
    """
    outcomes = []
    for name in names:
        entry = lock.entries.get(name)
        if entry is None:
            outcomes.append(
                Outcome(name, "skipped", detail="no saved query recorded; push it first")
            )
            continue
        outcomes.append(
            _pulled(client, lock, name, entry.id, queries.get(name), project_dir, force)
        )
    return outcomes


def pull_by_id(
    client: SigmaClient,
    lock: SavedQueryLock,
    saved_query_ids: Sequence[str],
    queries: Mapping[str, Query],
    project_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    force: bool = False,
) -> list[Outcome]:
    """Bring saved queries the project does not know yet into it, one SQL file each.

    The file is named `name`, else after the saved query's name, else its id. Stripe cannot
    list saved queries, so their ids must be given (they show in the Dashboard's URLs).
    """
    if name is not None and len(saved_query_ids) != 1:
        raise ConfigError("--name names one file: give exactly one saved query id with it")
    outcomes = []
    for saved_query_id in saved_query_ids:
        try:
            saved = client.retrieve_saved_query(saved_query_id)
        except SigmaLoadError as error:
            outcomes.append(Outcome(name or saved_query_id, FAILED, saved_query_id, str(error)))
            continue
        target = name or lock.name_of(saved.id) or file_name_for(saved)
        entry = lock.entries.get(target)
        if entry is not None and entry.id != saved.id and not force:
            outcomes.append(
                Outcome(
                    target,
                    REFUSED,
                    saved.id,
                    f"{target} is recorded as {entry.id}; --force replaces it, "
                    "or pick another --name",
                )
            )
            continue
        outcomes.append(
            _written(lock, target, saved, queries.get(target), project_dir, force=force)
        )
    return outcomes


def file_name_for(saved: SavedQuery) -> str:
    """A table name from a saved query's name: lower case, `_` for the rest, at most 63."""
    name = _NOT_IN_NAME.sub("_", (saved.name or "").lower()).strip("_")
    if not name:
        name = saved.id.lower()
    if name[0].isdigit():
        name = f"q_{name}"
    return name[:63]


def _pulled(
    client: SigmaClient,
    lock: SavedQueryLock,
    name: str,
    saved_query_id: str,
    query: Query | None,
    project_dir: str | os.PathLike[str],
    force: bool,
) -> Outcome:
    try:
        saved = client.retrieve_saved_query(saved_query_id)
    except SigmaLoadError as error:
        return Outcome(name, FAILED, saved_query_id, _gone_or(error, saved_query_id))
    return _written(lock, name, saved, query, project_dir, force=force)


def _written(
    lock: SavedQueryLock,
    name: str,
    saved: SavedQuery,
    query: Query | None,
    project_dir: str | os.PathLike[str],
    *,
    force: bool,
) -> Outcome:
    """Write `saved`'s SQL into the file of `name` unless that would lose a local edit."""
    remote = (saved.sql or "").strip()
    if not remote:
        return Outcome(name, FAILED, saved.id, "the saved query holds no SQL")
    path = query.path if query else Path(project_dir) / f"{name}.sql"
    if query is not None:
        local = None if query.templated else plain_sql(query)
        if local is not None and local.strip() == remote:
            lock.record(name, saved.id, remote)
            lock.save()
            return Outcome(name, "unchanged", saved.id)
        entry = lock.entries.get(name)
        edited = entry is None or local is None or sql_digest(local) != entry.sql_sha256
        if edited and not force:
            return Outcome(
                name,
                REFUSED,
                saved.id,
                f"{path} was edited since the last push or pull; --force overwrites it",
            )
    try:
        _replace_sql(path, remote)
    except ConfigError as error:
        return Outcome(name, FAILED, saved.id, str(error))
    lock.record(name, saved.id, remote)
    lock.save()
    return Outcome(name, "written", saved.id, str(path))


def _replace_sql(path: Path, sql: str) -> None:
    """Put `sql` in the file after its config() block; the old text stays if it won't load."""
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    block = _CONFIG_BLOCK.search(old or "")
    head = old[: block.end()] + "\n" if old and block else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, f"{head}{sql}\n")
    try:
        load_query(path)
    except ConfigError as error:
        if old is None:
            path.unlink()
        else:
            _write_atomically(path, old)
        raise ConfigError(f"not written, the saved query's SQL would not load: {error}") from error


# --- delete and list -------------------------------------------------------------------------


def delete(
    client: SigmaClient, lock: SavedQueryLock, targets: Sequence[tuple[str, str]]
) -> list[Outcome]:
    """Delete saved queries `(name, id)` in Stripe and from the lock; SQL files stay."""
    outcomes = []
    for name, saved_query_id in targets:
        detail = None
        try:
            client.delete_saved_query(saved_query_id)
        except InvalidRequestError as error:
            if error.http_status != 404:
                outcomes.append(Outcome(name, FAILED, saved_query_id, str(error)))
                continue
            detail = "was already gone from Stripe"
        except SigmaLoadError as error:
            outcomes.append(Outcome(name, FAILED, saved_query_id, str(error)))
            continue
        entry = lock.entries.get(name)
        if entry is not None and entry.id == saved_query_id:
            lock.forget(name)
            lock.save()
        outcomes.append(Outcome(name, "deleted", saved_query_id, detail))
    return outcomes


def status(
    client: SigmaClient,
    lock: SavedQueryLock,
    names: Iterable[str],
    queries: Mapping[str, Query],
) -> list[Outcome]:
    """Compare each recorded saved query with its file (one retrieve per id)."""
    outcomes = []
    for name in names:
        entry = lock.entries[name]
        try:
            saved = client.retrieve_saved_query(entry.id)
        except SigmaLoadError as error:
            missing = isinstance(error, InvalidRequestError) and error.http_status == 404
            action = "missing in Stripe" if missing else FAILED
            outcomes.append(Outcome(name, action, entry.id, None if missing else str(error)))
            continue
        query = queries.get(name)
        local = plain_sql(query) if query and not query.templated else None
        state = _compare(entry, local, saved.sql) if query else "no local file"
        outcomes.append(Outcome(name, state, entry.id, saved.name))
    return outcomes


def _compare(entry: LockEntry, local: str | None, remote: str | None) -> str:
    local_digest, remote_digest = sql_digest(local), sql_digest(remote)
    if local is not None and local_digest == remote_digest:
        return "in sync"
    if remote_digest == entry.sql_sha256:
        return "edited locally"
    if local_digest == entry.sql_sha256:
        return "edited in Stripe"
    return "edited on both sides"


def _gone_or(error: SigmaLoadError, saved_query_id: str) -> str:
    if isinstance(error, InvalidRequestError) and error.http_status == 404:
        return f"{saved_query_id} is no longer in Stripe; push the file to publish it again"
    return str(error)


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
