"""ISF's data_base, as dictionary access over a scistack project.

```python
db = scistack.open("sims")                 # a folder; created on first use
db["simulation", "run_1"] = frame          # versioned, with its environment recorded
db["simulation", "run_1"]                  # the newest version
del db["simulation", "run_1"]; db.keys(); ("simulation", "run_1") in db
cell = db.create_sub_db("cell_1")          # db["cell_1"] is the sub-database
scistack.get_db_by_unique_id(cell.unique_id)
```
A key is a str, an int, or a tuple of them; it is the address of the value in an implicit
schema `key_1 .. key_8` of the one variable `Entry`, so the SQL view `Entry` lists every value
and `scistack log Entry --key_1 simulation` shows a key's history. A sub-database is the same
project seen under a key prefix. Each assignment stores a call record (time, git commit and
uncommitted diff, package versions, host, user), as a computed value has; a value computed by
a lineage function keeps its own call instead. The folder holds `data_base.duckdb` and
`.scistack/dictdb.json` (the database's unique id and its sub-databases). A per-user registry
maps unique ids to folders: `$SCISTACK_CONFIG_DIR`, else `$XDG_CONFIG_HOME/scistack`, else
`~/.config/scistack`, file `databases.json`.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scistack._atomic import write_atomic
from scistack.address import address_problem, shown
from scistack.codeid.files import content_stamp
from scistack.database import Database
from scistack.errors import (
    DataBaseKeyError,
    InvalidMetadataError,
    KeyNotInDataBaseError,
    NotARepositoryError,
    ReadOnlyProjectError,
)
from scistack.index import key_of, utc_now
from scistack.lineage.calls import describe
from scistack.lineage.function import LineageFunction
from scistack.lineage.running import refuse_load_inside
from scistack.objects.chunking import with_policy
from scistack.objects.codec import value_kind
from scistack.summary import summarize

DEPTH = 8
SCHEMA = [f"key_{i}" for i in range(1, DEPTH + 1)]
VARIABLE = "Entry"
PROJECT_FILE = "data_base.duckdb"
MARKER = "dictdb.json"
_open: dict[Path, Database] = {}   # one Database per folder in a process, shared by sub-databases
_markers: dict[Path, tuple[tuple[int, int, int, int], dict[str, Any]]] = {}


def _assigned(value: Any) -> Any:
    """The call an assignment `db[key] = value` records (its environment is the metadata)."""
    return value


_ASSIGN = LineageFunction(_assigned)


def _stored(db: Database, value: Any) -> tuple[str, str, str, str]:
    """(kind, oid, summary, call record) of `value`, stored as an assignment."""
    kind = value_kind(value)
    oid = db.store.put_value(value)
    summary = summarize(value)
    call = _ASSIGN.record_call(db.store, _ASSIGN.identity(), {"value": describe("value", value)},
                               [oid], utc_now(), 0.0)
    return kind, oid, summary, call


_RAISE = object()  # no default given: a missing key raises, as `dict[key]` does


class DataBase:
    """A dictionary-style view of a scistack project (or of a key prefix of one)."""

    def __init__(self, folder: Path, prefix: tuple[Any, ...], unique_id: str) -> None:
        self.folder, self.prefix, self.unique_id = folder, prefix, unique_id
        self.project = _project(folder)

    # -- dictionary access ---------------------------------------------------------------
    def __setitem__(self, key: Any, value: Any) -> None:
        full = self._full(key)
        if self._sub_id(full) is not None:
            raise DataBaseKeyError(f"{_shown(full)} is a sub-database; assign below it "
                                   f"(db[{_shown(full)}, 'name'] = value) or use another key")
        db = self.project
        addr = _address(full)
        hook = getattr(value, "__scistack_saveinfo__", None)
        info = hook(db) if hook is not None else None
        if info is not None:  # a computed value keeps the call that computed it
            oid, kind, summary, call = info.oid, info.kind, info.summary, info.call
        else:
            # this project's chunking, whichever is current
            kind, oid, summary, call = with_policy(db.chunk_policy(), _stored, db, value)
        db.index.put_ref(VARIABLE, addr, {}, oid, kind, call=call, summary=summary)

    def __getitem__(self, key: Any) -> Any:
        return self.get(key)

    def get(self, key: Any, default: Any = _RAISE, *, version: int | None = None, lazy: bool = False) -> Any:
        """The value at `key` (its newest version, or `version=`); a sub-database for its key;
        `default` when given and there is no such key (else KeyNotInDataBaseError).

        With `lazy=True` a value stored chunked (above 256 MiB) comes back unread: a
        `LazyTable` (`.read(columns)`, `.to_dask()`) or `LazyArray`; others load as usual.
        """
        if default is not _RAISE and key not in self:
            return default
        full = self._full(key)
        refuse_load_inside(f"data_base[{_shown(full)}]", "that entry",
                           "Read it before the call and pass the value as an argument")
        sub = self._sub_id(full)
        if sub is not None:
            return DataBase(self.folder, full, sub)
        record = self._record(full, version)
        if lazy and record.kind in ("chunked", "json"):  # (a dict or list may hold chunked values)
            return self.project.store.open_value(record.oid)
        return self.project.store.get_value(record.oid)

    def __delitem__(self, key: Any) -> None:
        full = self._full(key)
        versions = self.project.index.versions_at(VARIABLE, key_of(_address(full)))
        if not versions:
            raise KeyNotInDataBaseError(self._missing(full))
        self.project.index.delete_refs(versions)

    def __contains__(self, key: Any) -> bool:
        full = self._full(key)
        return self._sub_id(full) is not None or bool(
            self.project.index.versions_at(VARIABLE, key_of(_address(full))))

    def keys(self) -> list[Any]:
        """Every key below this database (a str or int for a one-part key, else a tuple),
        sorted; a sub-database shows as its own key, not as the keys inside it."""
        n = len(self.prefix)
        subs = {tuple(json.loads(k)) for k in _marker(self.folder)["subs"]}
        found = set()
        for full in {self._key_of(r.addr) for r in self.project.index.records(VARIABLE)} | subs:
            if len(full) <= n or full[:n] != self.prefix:
                continue
            inner = next((full[:i] for i in range(n + 1, len(full)) if full[:i] in subs), full)
            found.add(inner[n:])
        ordered = sorted(found, key=lambda k: [(isinstance(p, str), p) for p in k])
        return [k[0] if len(k) == 1 else k for k in ordered]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    # the rest of a dict's methods, as code written for a dict (or ISF's data_base) calls them
    def values(self) -> Iterator[Any]:
        """Each key's value, read one at a time (never all in memory at once)."""
        return (self[k] for k in self.keys())

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs, read one at a time."""
        return ((k, self[k]) for k in self.keys())

    def update(self, other: Any = (), /, **more: Any) -> None:
        """`db[k] = v` for each pair of `other` (a mapping or pairs) and of `more`."""
        pairs = other.items() if hasattr(other, "items") else other
        for key, value in [*pairs, *more.items()]:
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """The value at `key`; stored as `default` first when there is none."""
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: Any, default: Any = _RAISE) -> Any:
        """The value at `key`, then its names deleted (every version); `default` when absent."""
        if key not in self:
            if default is _RAISE:
                raise KeyNotInDataBaseError(self._missing(self._full(key)))
            return default
        value = self[key]
        del self[key]
        return value

    def __len__(self) -> int:
        return len(self.keys())

    # -- versions, metadata, sub-databases -------------------------------------------------
    def versions(self, key: Any) -> list[int]:
        """The version numbers kept at `key`, oldest first."""
        return [r.version for r in self.project.index.versions_at(VARIABLE, key_of(_address(self._full(key))))]

    def metadata(self, key: Any, *, version: int | None = None) -> dict[str, Any]:
        """When and how the value at `key` was saved: version, time, oid, and the environment
        (git commit and diff oid, Python and package versions, host, user) of its call."""
        record = self._record(self._full(key), version)
        out: dict[str, Any] = {"version": record.version, "created_at": record.created_at, "oid": record.oid}
        if record.call:
            call = self.project.call_record(record.call)
            out.update(function=call["function_name"], env=call["env"], call=record.call)
        return out

    def create_sub_db(self, key: Any) -> DataBase:
        """A sub-database at `key` (an existing one is returned as it is)."""
        full = self._full(key)
        if len(full) >= DEPTH:
            raise DataBaseKeyError(f"a sub-database at {_shown(full)} would leave no key parts below it "
                                   f"(keys have at most {DEPTH} parts)")
        found = self._sub_id(full)
        if found is not None:
            return DataBase(self.folder, full, found)
        if self.project.index.versions_at(VARIABLE, key_of(_address(full))):
            raise DataBaseKeyError(f"{_shown(full)} already holds a value; delete it first or choose another "
                                   "key for the sub-database")
        if self.project.read_only:  # (before the marker's lock file)
            raise ReadOnlyProjectError(self.project.read_only)
        unique_id = uuid.uuid4().hex
        _update_marker(self.folder, lambda m: m["subs"].__setitem__(json.dumps(list(full)), unique_id))
        _register(unique_id, self.folder, full)
        return DataBase(self.folder, full, unique_id)

    def close(self) -> None:
        """Close the project (for every view of this folder in the process)."""
        db = _open.pop(self.folder, None)
        if db is not None:
            db.close()

    def __enter__(self) -> DataBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        below = f", sub-database {_shown(self.prefix)}" if self.prefix else ""
        return f"DataBase({str(self.folder)!r}{below}, unique_id={self.unique_id!r})"

    # -- helpers -------------------------------------------------------------------------
    def _full(self, key: Any) -> tuple[Any, ...]:
        full = self.prefix + _parts(key)
        if len(full) > DEPTH:
            raise DataBaseKeyError(f"key {_shown(full)} has {len(full)} parts; at most {DEPTH} are kept "
                                   "(join some parts into one string, or store a dict under a shorter key)")
        return full

    def _sub_id(self, full: tuple[Any, ...]) -> str | None:
        return _marker(self.folder)["subs"].get(json.dumps(list(full)))

    def _record(self, full: tuple[Any, ...], version: int | None) -> Any:
        versions = self.project.index.versions_at(VARIABLE, key_of(_address(full)))
        if version is not None:
            versions = [r for r in versions if r.version == version]
        if not versions:
            raise KeyNotInDataBaseError(self._missing(full, version))
        return versions[-1]

    def _missing(self, full: tuple[Any, ...], version: int | None = None) -> str:
        what = f"version {version} of {_shown(full)}" if version is not None else _shown(full)
        near = [k for k in self.keys()][:10]
        return f"{what} is not in {self.folder}; keys here: {near or 'none'}"

    @staticmethod
    def _key_of(addr: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(addr[k] for k in SCHEMA if k in addr)


def _parts(key: Any) -> tuple[Any, ...]:
    """A key as its parts; refuses anything but a str, an int or a non-empty tuple of them."""
    parts = key if isinstance(key, tuple) else (key,)
    if not parts:
        raise DataBaseKeyError("an empty tuple is not a key; use a str, an int, or a tuple of them")
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (str, int)):
            raise DataBaseKeyError(
                f"key {key!r}: {part!r} is a {type(part).__name__}; a key is a str, an int, or a tuple "
                "of them, e.g. db['simulation', 'run_1']")
        problem = address_problem(part)
        if problem is not None:
            raise DataBaseKeyError(f"key {key!r}: {shown(part)} {problem}")
    return parts


def _address(full: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(SCHEMA, full))


def _shown(full: tuple[Any, ...]) -> str:
    return repr(full[0]) if len(full) == 1 else repr(full)


# -- folders, markers and the registry -------------------------------------------------------
def open_data_base(path: str | os.PathLike, *, create: bool = True) -> DataBase:
    """The dictionary database in folder `path`, created there when missing (with `create`)."""
    folder = Path(path).resolve()
    if not is_data_base(folder):
        if not create:
            raise NotARepositoryError(f"{folder} is not a data_base; scistack.open({str(path)!r}) creates one")
        if (folder / ".scistack").exists():
            raise InvalidMetadataError(
                f"{folder} already holds a scistack project that is not a data_base; open it with "
                "configure_database, or give scistack.open another folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReadOnlyProjectError(
                f"cannot create the data_base {folder} ({exc.strerror}); give scistack.open a "
                "folder you can write") from None
        _project(folder)
        unique_id = uuid.uuid4().hex
        _write_marker(folder, {"unique_id": unique_id, "subs": {}})
        _register(unique_id, folder, ())
    marker = _marker(folder)
    return DataBase(folder, (), marker["unique_id"])


def is_data_base(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding a dictionary database."""
    return (Path(path) / ".scistack" / MARKER).is_file()


def get_db_by_unique_id(unique_id: str) -> DataBase:
    """The database (or sub-database) registered under `unique_id` for this user."""
    entry = _read_registry().get(unique_id)
    if entry is None:
        raise NotARepositoryError(f"no data_base with unique id {unique_id!r} is registered in "
                                  f"{_registry_path()}; open it once by path with scistack.open(...)")
    folder = Path(entry["path"])
    if not is_data_base(folder):
        raise NotARepositoryError(f"data_base {unique_id!r} was registered at {folder}, which is no "
                                  "data_base now (moved or deleted?); open it by its new path")
    return DataBase(folder, tuple(entry["prefix"]), unique_id)


def _project(folder: Path) -> Database:
    db = _open.get(folder)
    if db is None:
        db = _open[folder] = Database(folder / PROJECT_FILE, SCHEMA)
    return db


def _marker(folder: Path) -> dict[str, Any]:
    """The folder's marker, re-read only when the file changed (every access consults it):
    remembered under its whole stat when that vouches for its content (`content_stamp`: keyed
    by mtime, size and inode alone, a marker restored in place by ``cp -p`` or rewritten in
    the same timestamp tick by another process kept the old sub-databases)."""
    path = folder / ".scistack" / MARKER
    stamp = content_stamp(path)
    known = _markers.get(folder)
    if stamp is None or known is None or known[0] != stamp:
        marker = json.loads(path.read_text())
        if stamp is None:
            _markers.pop(folder, None)
            return marker
        known = _markers[folder] = (stamp, marker)
    return known[1]


def _write_marker(folder: Path, marker: dict[str, Any]) -> None:
    _atomic_json(folder / ".scistack" / MARKER, marker)


def _update_marker(folder: Path, change: Any) -> None:
    with _locked(folder / ".scistack" / (MARKER + ".lock")):
        marker = json.loads((folder / ".scistack" / MARKER).read_text())
        change(marker)
        _write_marker(folder, marker)


def _registry_path() -> Path:
    base = os.environ.get("SCISTACK_CONFIG_DIR")
    if not base:
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        base = os.path.join(xdg, "scistack")
    return Path(base) / "databases.json"


def _read_registry() -> dict[str, Any]:
    try:
        return json.loads(_registry_path().read_text())
    except FileNotFoundError:
        return {}


def _register(unique_id: str, folder: Path, prefix: tuple[Any, ...]) -> None:
    path = _registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_suffix(".lock")):
        registry = _read_registry()
        registry[unique_id] = {"path": str(folder), "prefix": list(prefix)}
        _atomic_json(path, registry)


def _atomic_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


class _locked:
    """An exclusive flock on `path` while the block runs (other processes wait)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
