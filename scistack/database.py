"""A project: the object store and the index wired together, found the way git finds `.git`.

`configure_database("gait.duckdb", ["subject", "session"])` creates or opens the project whose
index is `gait.duckdb` and whose objects live in `.scistack/` beside it, and makes it current
for `BaseVariable`. `Database.discover()` walks up from the working directory to the nearest
`.scistack/config.json` (the `SCISTACK_DB` environment variable overrides), which is how the
`scistack` commands and scripts run from a sub-directory find their project.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import secrets
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scistack import htmlrepr
from scistack._atomic import write_atomic
from scistack.address import shown_address
from scistack.errors import (InvalidMetadataError, InvalidNameError, NotARepositoryError, ReadOnlyProjectError,
                             SchemaMismatchError, ScistackError,
                             UnreadableJournalWarning, WebViewError)
from scistack.index import Index, check_identifier
from scistack.index.sql import INTERNAL_SCHEMA, result_frame
from scistack.index.journal import JournalBackend
from scistack.inline import Inliner
from scistack.index.pgjournal import PostgresJournal, redact
from scistack.objects import LocalObjectStore, ObjectStore
from scistack.objects import chunking
from scistack.objects.s3 import S3ObjectStore, objects_location
from scistack.objects.canonical_json import from_tree
from scistack.records import read_call, same_arguments

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
SHARED_FROM = "moved_from_id"  # lab project setting: the id of the laptop project `share` copied
_SHARED_KEYS_TTL = 10.0  # seconds a lab session trusts the shared schema keys it last read
ENV_VAR = "SCISTACK_DB"


class SaveInfo:
    """What a save needs from a value that is already stored (a loaded variable, a result)."""

    __slots__ = ("oid", "kind", "summary", "call", "params")

    def __init__(self, oid: str, kind: str, summary: str, call: str | None = None,
                 params: dict | None = None) -> None:
        self.oid, self.kind, self.summary, self.call, self.params = oid, kind, summary, call, params or {}


def _unwritable(folder: Path) -> str | None:
    """Why this process cannot write the project's folder (None when it can): the message
    every refused write gives."""
    if not folder.is_dir() or os.access(folder, os.W_OK):
        return None
    try:
        read_only_mount = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_mount = False
    why = "it is on a read-only file system" if read_only_mount else "you have no permission to write it"
    return (f"the project {folder.parent} can be read but not written ({why}): it is open for "
            "reading only, and nothing was changed. Saving, deleting and gc need a copy you can "
            "write (cp -r the folder, or `scistack export` what you need)")


class Database:
    """One scistack project: `store` (objects) + `index` (names)."""

    def __init__(self, path: str | os.PathLike, schema_keys: Sequence[str] | None = None, *,
                 fsync: bool = False, sync_delay: float = 0.5, store: ObjectStore | None = None,
                 journal: JournalBackend | None = None, shared: str | None = None,
                 objects: str | None = None, cache_bytes: int | None = None) -> None:
        """`shared` (a postgresql:// URL) and `objects` (an s3:// URL) make a lab project: names
        in a shared PostgreSQL journal, content in a shared bucket, both remembered in the
        project's config (without passwords) so later opens need neither."""
        self.path = Path(path).resolve()
        _refuse_a_folder(self.path, path)
        if self.path.stem.lower() == INTERNAL_SCHEMA:
            raise InvalidNameError(
                f"a project file cannot be named {self.path.name!r}: DuckDB names a database after "
                f"its file, and {INTERNAL_SCHEMA!r} is the schema of scistack's own tables, so SQL "
                f"could not tell them apart. Use another name, e.g. {INTERNAL_SCHEMA}_project.duckdb"
            )
        self.root = self.path.parent
        self.scistack_dir = self.root / ".scistack"
        self._objects_given = objects is not None  # (else the config's: the shared record overrides it)
        self._chunking: chunking.ChunkPolicy | None = None  # recorded in the config (`chunk_policy`)
        self._shared_from: str | None = None  # (`project_ids`)
        self._laptop: dict[str, Any] | None = None  # the config as read for `project_ids`
        shared, objects = _lab_urls(self.scistack_dir / CONFIG_NAME, shared, objects)
        if shared and journal is None:
            journal = PostgresJournal(shared, self.scistack_dir / "shared-journal")
        self.opened_with: tuple[Any, dict[str, Any]] = (schema_keys, {})  # (configure_database's arguments)
        self.shared_url = redact(shared) if shared else None  # (what configure_database compares)
        self.objects_url: str | None = None
        # the lab's bucket, opened while the shared settings are checked (before any config is
        # written): `_open_bucket` opens it, `_lab_store` is it once opened
        self._open_bucket: Any = None if store is not None else functools.partial(
            S3ObjectStore, cache_dir=self.scistack_dir / "cache", max_bytes=cache_bytes)
        self._lab_store: ObjectStore | None = None
        try:
            self.schema_keys = self._check_config(schema_keys, journal if shared else None, shared, objects)
            self._config_stamp = (self.scistack_dir / CONFIG_NAME).stat().st_mtime_ns
            self._config_keys, self._shared_keys_at = list(self.schema_keys), time.monotonic()
            if shared and store is None:
                store = self._lab_store
        except BaseException:
            if shared and journal is not None:
                journal.close()
            raise
        # a folder this process cannot write (a read-only mount, another user's project): read
        # as it is, nothing written (the local index is caught up in memory); writes refused
        self.read_only = None if shared or store is not None else _unwritable(self.scistack_dir)
        # the backends are swappable (a lab's shared journal and object store); local by default
        self.store: ObjectStore = store or LocalObjectStore(self.scistack_dir / "objects", fsync=fsync,
                                                            read_only=self.read_only)
        self.index = Index(self.scistack_dir, self.path, self.schema_keys, fsync=fsync,
                           sync_delay=sync_delay, journal=journal, read_only=self.read_only)
        self.index.before_flush = self.store.flush  # objects first, then the refs naming them
        self.index.before_append = self.store.wait_uploads
        self.index.record_exists = self.store.contains
        self.index.same_arguments = functools.partial(same_arguments, self.store)
        self.index.set_inliner(Inliner(self.store))  # the views' values, read by the sync
        # Opening never waits for DuckDB (held by DBeaver, or far behind after a killed run):
        # the journal is the record of truth and a background thread brings DuckDB up to date.
        self.index.poke_sync(unless_in_step=True)
        self.index.refresh()
        unread = self.index.unreadable_journal_warning()
        if unread is not None:  # (the CLI says it in `status` and `ls` instead)
            warnings.warn(unread, UnreadableJournalWarning, stacklevel=3)

    def records_project(self) -> str | None:
        """The id call records name beside `function.project_file` (`script_path` resolves that
        only for a record of this project, never for one imported from another): a lab's
        project id; a laptop project's own, made (in its config, `laptop_id`: kept by a copy of
        the folder) the first time a record needs one. None when it cannot be written."""
        if self.project_id is not None or self.shared_url:
            return self.project_id
        if "laptop_id" not in self._laptop_config() and not self.read_only:
            try:
                self._update_config(lambda now: now if now.get("laptop_id") else now | {"laptop_id": secrets.token_hex(16)})
            except OSError:  # (a folder it cannot write: records name no project, as before)
                return None
            self._laptop = None
        return self._laptop_config().get("laptop_id")

    @property
    def project_ids(self) -> frozenset[str]:
        """The ids whose call records are this project's own: its id, and for a lab project
        made by `share`, the laptop project's."""
        if self.project_id is not None or self.shared_url:
            return frozenset(i for i in (self.project_id, self._shared_from) if i)
        found = self._laptop_config().get("laptop_id")
        return frozenset([found]) if found else frozenset()

    def _laptop_config(self) -> dict[str, Any]:
        if self._laptop is None:
            try:
                self._laptop = json.loads((self.scistack_dir / CONFIG_NAME).read_text())
            except (OSError, ValueError):
                return {}
        return self._laptop

    def _check_config(self, schema_keys: Sequence[str] | None, shared_journal: Any = None,
                      shared: str | None = None, objects: str | None = None) -> list[str]:
        config_path = self.scistack_dir / CONFIG_NAME
        self.project_id: str | None = None
        shared_added: list[str] = []
        if shared_journal is not None:
            schema_keys, shared_added, objects = self._check_shared(shared_journal, schema_keys, config_path,
                                                                    objects)
        if config_path.exists():
            config = json.loads(config_path.read_text())
            if config.get("db") and config["db"] != self.path.name:
                raise SchemaMismatchError(
                    f"{self.root} already holds the scistack project {config['db']!r}; one folder "
                    f"holds one project. Open {config['db']!r}, or put {self.path.name!r} in its own folder"
                )
            if shared_journal is not None and schema_keys is not None and config.get("schema_keys") != schema_keys:
                # another checkout added a schema key to the lab project: its keys are the shared
                # ones (DuckDB gets the new column on its next sync)
                config = self._update_config(
                    lambda now: now | {"schema_keys": list(schema_keys), "added_keys": shared_added})
            found = list(config["schema_keys"])
            if _written_before(schema_keys, found, config.get("added_keys", ())):
                warnings.warn(f"{self.path.name} has schema keys {found} since a finer level was added; "
                              f"opened with them (update the list in configure_database)", stacklevel=4)
                schema_keys = found
            if schema_keys is not None and list(schema_keys) != found:
                wanted = list(schema_keys)
                finer = wanted[:len(found)] == found and len(wanted) > len(found)
                raise SchemaMismatchError(
                    f"{self.path.name} has schema keys {found}, not {wanted}; nothing was changed. "
                    f"Open it with configure_database({self.path.name!r}, {found})"
                    + (f", then add the finer level with db.add_schema_key({wanted[len(found)]!r}) "
                       f"(scistack add-key {wanted[len(found)]}): the values saved so far keep their "
                       "addresses" if finer else ", or use a new database file for a different layout")
                )
            if shared_journal is not None and (config.get("shared") != redact(shared)
                                               or config.get("objects") != objects):  # (the same place:
                # _check_objects refused any other)
                self._update_config(lambda now: now | {"shared": redact(shared), "objects": objects,
                                                       "project_id": self.project_id})
            return found
        if schema_keys is None:
            raise NotARepositoryError(
                f"{self.path} is not a scistack project yet; create it with "
                f"configure_database({str(self.path.name)!r}, [\"subject\", \"session\", ...]) "
                f"or `scistack init {self.path.name} --keys subject,session`"
            )
        keys = _validate_schema_keys(schema_keys)
        config = {"db": self.path.name, "format": FORMAT_VERSION, "schema_keys": keys}
        if shared_journal is not None:  # the password stays in the environment / ~/.pgpass
            config |= {"shared": redact(shared), "objects": objects, "project_id": self.project_id}
        with self._config_locked() as path:
            if shared_journal is not None or not path.exists():  # (a lab's is the shared journal's)
                self._write_config(config)
                return keys
        # another process created the project meanwhile (a job array's first jobs): as it made it
        return self._check_config(schema_keys)

    @contextmanager
    def _config_locked(self) -> Iterator[Path]:
        """The config file, held by this process alone: every change to it reads it again and
        writes it under this lock. Each change had read the file, then written it whole: a
        chunking recorded by one process while another added a schema key lost one of them,
        and two processes recording a new project's chunking each kept their own."""
        self.scistack_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.scistack_dir / "config.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self.scistack_dir / CONFIG_NAME
        finally:
            os.close(fd)  # (releases the lock)

    def _update_config(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """The config after `change` (given the config as it is now, under the lock; None or
        the same: nothing to write)."""
        with self._config_locked() as path:
            config = json.loads(path.read_text())
            changed = change(config)
            if changed is None or changed == config:
                return config
            self._write_config(changed)
            return changed

    def _write_config(self, config: dict[str, Any]) -> None:
        self.scistack_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.scistack_dir / CONFIG_NAME
        # (`write_atomic`: a temporary name of its own, as two processes recording the chunking
        # of a new project at once had renamed one `config.tmp`, and the second rename failed)
        write_atomic(config_path, json.dumps(config, indent=2) + "\n")

    def chunk_policy(self) -> chunking.ChunkPolicy:
        """How this project's large values are chunked (threshold and chunk budget): part of
        every such value's identity, so it is recorded in the project's config the first time
        one of its values needs it (from this process's `$SCISTACK_CHUNK_THRESHOLD` and
        `$SCISTACK_CHUNK_BYTES`, or `set_chunking`), and every process opening the project
        uses the recorded one: a shell or a cluster job without those variables gives identical
        data the same oid, and its cached results stay hits. A process that asked for another
        is told once, with a warning."""
        policy = self._chunking
        if policy is not None:
            return policy
        config_path = self.scistack_dir / CONFIG_NAME
        config = json.loads(config_path.read_text())
        recorded = chunking.policy_from_config(config.get("chunking"))
        if config.get("shared"):  # a lab's is the shared project's (every machine's the same)
            chosen = chunking.process_policy()
            try:
                found = self.index.shared_setting("chunking", json.dumps(
                    {"threshold": chosen.threshold, "chunk_bytes": chosen.chunk_bytes}, sort_keys=True))
            except ScistackError:  # (a reader's role cannot record it: read as it is)
                found = self.index.project_meta().get("chunking")
            if found is not None:
                recorded = chunking.policy_from_config(json.loads(found))
        if recorded is None:
            chosen = chunking.process_policy()
            if self.read_only:  # (recorded by the first process that can write the folder)
                return chosen
            mine = {"threshold": chosen.threshold, "chunk_bytes": chosen.chunk_bytes}
            config = self._update_config(lambda now: None if now.get("chunking") else now | {"chunking": mine})
            recorded = chunking.policy_from_config(config["chunking"])  # (another's, if it came first)
        if chunking.chosen_in_environment() and chunking.process_policy() != recorded:
            asked = chunking.process_policy()
            warnings.warn(
                f"{self.path.name} chunks values of more than {recorded.threshold:,} bytes into chunks of "
                f"{recorded.chunk_bytes:,} bytes (recorded in .scistack/config.json when its first value "
                f"needed it); this process asked for {asked.threshold:,} and {asked.chunk_bytes:,} "
                f"(${chunking.THRESHOLD_ENV}, ${chunking.CHUNK_BYTES_ENV} or set_chunking). The project's "
                "are used: they are part of every large value's identity, so identical data keeps its oid "
                "and its cached results. Unset them (or set the project's) to silence this", stacklevel=2)
        self._chunking = recorded
        return recorded

    def recorded_chunk_policy(self) -> chunking.ChunkPolicy | None:
        """The chunking the project records (None before a value needed it), recording none:
        what an export writes into its bundle."""
        if self._chunking is not None:
            return self._chunking
        config = json.loads((self.scistack_dir / CONFIG_NAME).read_text())
        if config.get("shared"):
            found = self.index.project_meta().get("chunking")
            return chunking.policy_from_config(json.loads(found)) if found else None
        return chunking.policy_from_config(config.get("chunking"))

    def adopt_chunk_policy(self, policy: chunking.ChunkPolicy) -> chunking.ChunkPolicy:
        """Record `policy` as the project's chunking unless it records one already; returns
        the project's. An import adopts its bundle's, so that a large value saved again here
        (identical data) gets the oid it came with: the chunking is part of its identity."""
        mine = {"threshold": policy.threshold, "chunk_bytes": policy.chunk_bytes}
        config = json.loads((self.scistack_dir / CONFIG_NAME).read_text())
        if config.get("shared"):
            try:
                found = self.index.shared_setting("chunking", json.dumps(mine, sort_keys=True))
            except ScistackError:  # (a reader's role cannot record it: read as it is)
                found = self.index.project_meta().get("chunking")
            recorded = chunking.policy_from_config(json.loads(found)) if found else None
        else:
            config = self._update_config(lambda now: None if now.get("chunking") else now | {"chunking": mine})
            recorded = chunking.policy_from_config(config.get("chunking"))
        self._chunking = recorded
        return recorded or policy

    def _check_shared(self, journal: Any, schema_keys: Sequence[str] | None, config_path: Path,
                      objects: str | None) -> tuple[list[str] | None, list[str], str]:
        """Lab mode: the schema keys (and those added later), project id and objects URL are
        the shared journal's; a local folder joined to one shared project is never silently
        pointed at another, nor at another prefix (returns the objects URL to open)."""
        defaults = {"schema_keys": json.dumps(_validate_schema_keys(schema_keys))} if schema_keys else {}
        if defaults and "schema_keys" not in journal.read_project_meta():
            self._check_new_lab_objects(journal, config_path, objects)
        meta = journal.project_meta(defaults)
        self.project_id = meta.get("project_id")  # (none: the shared journal holds no project yet)
        self._shared_from = meta.get(SHARED_FROM)  # (`share`: the laptop project's records are its own)
        local: dict[str, Any] = {}
        if config_path.exists():
            local = json.loads(config_path.read_text())
            if not local.get("shared"):
                _refuse_hiding_a_laptop_project(self.root)
            if local.get("project_id") and local["project_id"] != self.project_id:
                raise SchemaMismatchError(
                    f"{self.root} belongs to the shared project {local['project_id'][:12]}, but "
                    f"{redact(journal.url)} holds project {self.project_id[:12]}; nothing was changed. "
                    "Join the other project in a new folder"
                )
        if "schema_keys" not in meta:
            if schema_keys is None:
                raise NotARepositoryError(
                    f"the shared journal {redact(journal.url)} holds no project yet; create it with "
                    "configure_database(path, [\"subject\", ...], shared=..., objects=\"s3://bucket/prefix\")"
                )
        objects = self._check_objects(journal, meta, local, objects)
        if "schema_keys" not in meta:
            return list(schema_keys), [], objects
        found, added = json.loads(meta["schema_keys"]), json.loads(meta.get("added_keys", "[]"))
        if _written_before(schema_keys, found, added):
            warnings.warn(f"the shared project at {redact(journal.url)} has schema keys {found} since a finer "
                          "level was added; opened with them (update the list in configure_database)", stacklevel=5)
        elif schema_keys is not None and list(schema_keys) != found:
            raise SchemaMismatchError(
                f"the shared project at {redact(journal.url)} has schema keys {found}, not "
                f"{list(schema_keys)}; nothing was changed. Open it with schema keys {found}"
                + (f", then add the finer level with db.add_schema_key({list(schema_keys)[len(found)]!r})"
                   if list(schema_keys)[:len(found)] == found and len(schema_keys) > len(found) else "")
            )
        return found, added, objects

    def _check_new_lab_objects(self, journal: Any, config_path: Path, objects: str | None) -> None:
        """Before a new lab project is recorded in the shared journal (its schema keys, its
        id): its objects URL is given and its bucket answers. Recorded first, a refused
        create (objects= left out, a mistyped bucket) had fixed the keys of a project that
        never opened, and the corrected retry was refused as a schema mismatch."""
        local = json.loads(config_path.read_text()) if config_path.exists() else {}
        objects = objects or local.get("objects")
        if objects is None:
            raise InvalidNameError(
                f"a new lab project needs objects='s3://bucket/prefix' (`scistack init`: --objects; where its values go) "
                f"besides shared= ({redact(journal.url)}, which holds no project yet); nothing was "
                "changed. Give both, or neither for a local project")
        if self._open_bucket is not None:
            store = self._open_bucket(objects)
            store.owner()  # (a bucket that does not exist, or refuses us, raises here)
            self._open_bucket = lambda url, opened=objects, store=store, open_=self._open_bucket: (
                store if url == opened else open_(url))

    def _check_objects(self, journal: Any, meta: dict[str, str], local: dict[str, Any], objects: str | None) -> str:
        """The objects URL of the lab project: the one its shared settings record (since
        2026-12), else the one this checkout's config remembers. Another is refused: saves
        would be journalled for every member while their bytes went where no one else looks.
        The URL is recorded once the prefix is claimed for the project (a bucket that does
        not exist must not be recorded: the retry with the right URL would be refused). A
        project created before the URL was recorded records it so, at the first open by a
        writer whose prefix already holds the project's objects (its `project.json` names
        the project), or while its journal is still empty: a project that has names is
        never bound to a prefix that holds none of them (a reader records nothing)."""
        where = redact(journal.url)
        recorded = meta.get("objects")
        kept = recorded or (objects_location(local["objects"]) if local.get("objects") else None)
        if recorded is not None and not self._objects_given:
            objects = None  # the config's URL: the project's own record is the one (a moved bucket)
        if objects is None:
            if kept is None:
                raise InvalidNameError(
                    f"the shared project at {where} records no objects URL (it was created before "
                    "projects recorded it); give objects='s3://bucket/prefix' as its other checkouts "
                    "have it (their .scistack/config.json), once")
            objects = kept
        elif kept is not None and objects_location(objects) != kept:
            whose = (f"the shared project at {where} keeps its objects at {kept}" if recorded else
                     f"this checkout ({self.root}) of the shared project at {where} keeps its objects at {kept}")
            raise SchemaMismatchError(
                f"{whose}, not {objects_location(objects)}: values saved there would be named for the "
                "whole lab with bytes no one else finds. Nothing was changed. Leave objects= out "
                f"(the project's own URL is used), or give objects={kept!r}")
        store = self._open_bucket(objects) if self._open_bucket is not None else None
        if recorded is None and self.project_id is not None and store is not None and journal.size() > 0:
            if store.owner() is None:
                raise SchemaMismatchError(
                    f"{objects_location(objects)} holds no objects of the shared project at {where} "
                    "(no project.json there), yet its journal names values: objects= is likely "
                    "mistyped. Nothing was changed. Give the objects URL the lab's other checkouts "
                    "use (in their .scistack/config.json)")
        if store is not None and self.project_id is not None:
            store.claim(self.project_id)
            if recorded is None:
                held = journal.record_project_meta("objects", objects_location(objects))
                if held is not None and held != objects_location(objects):  # another machine was first
                    raise SchemaMismatchError(
                        f"the shared project at {where} keeps its objects at {held}, not "
                        f"{objects_location(objects)}. Nothing was changed. Leave objects= out (the "
                        f"project's own URL is used), or give objects={held!r}")
        self._lab_store, self.objects_url = store, objects_location(objects)
        return objects

    def opened_as(self, shared: str | None, objects: str | None) -> bool:
        """Whether lab URLs given to open this project again name this very project (none
        given: whatever it is; `objects` alone: never, it needs `shared`)."""
        if shared is None and objects is None:
            return True
        return (bool(shared) and redact(shared) == self.shared_url
                and (objects is None or objects_location(objects) == self.objects_url))

    @classmethod
    def discover(cls, start: str | os.PathLike | None = None) -> Database:
        """Open the project named by `$SCISTACK_DB`, or the nearest one above `start`."""
        if os.environ.get(ENV_VAR):
            return cls(os.environ[ENV_VAR])
        here = Path(start or os.getcwd()).resolve()
        for folder in (here, *here.parents):
            config = folder / ".scistack" / CONFIG_NAME
            if config.is_file():
                return cls(folder / json.loads(config.read_text())["db"])
        raise NotARepositoryError(
            f"no scistack project in {here} or any parent folder; run from inside a project, pass "
            f"--db PATH, set {ENV_VAR}, or create one with configure_database(path, schema_keys)"
        )

    @contextmanager
    def batch(self, *, atomic: bool = False) -> Iterator[Database]:
        """Group many saves: small objects go into one pack and the journal gets one append.

        Saves inside are durable when the block exits (for_each also flushes every second),
        also when it exits with an error: a batch groups writes for speed, it is not a
        transaction, so what was computed before a failure is kept. Held saves are numbered
        when they are written (another process may save in between): asking a saved variable
        for its version (or record) inside, a load by `version=` or `where=`, or
        `list_versions`, writes what is held first. An `atomic` batch that ends with an
        error journals nothing (`Index.batch`); its objects stay, unnamed, for gc.
        """
        try:  # (begun inside: a Ctrl-C just before the try had left the store holding objects
            self.store.begin_batch()  # its refs named; ended once too often, a batch ends early)
            with self.index.batch(atomic=atomic):
                yield self
        finally:
            self.store.end_batch()

    def flush(self) -> None:
        """Write what a batch holds so far: objects (a pack), then the journal."""
        self.index.flush()

    def sync(self) -> int:
        """Copy every journalled change into the DuckDB file now (views included)."""
        return self.index.sync()

    def reindex(self) -> int:
        """Rebuild the DuckDB file's tables and views from the journal (after damage or loss)."""
        self.index.flush()
        return self.index.rebuild()

    def check_version_keys(self, names: Any) -> None:
        """Refuse version keys that another session has made schema keys since this one opened
        (`add_schema_key` there): saved here as version keys they would be a second meaning of
        one name. Only for saves that name a version key: one `stat` of the config, and in a
        lab one read of the shared settings every `_SHARED_KEYS_TTL` seconds."""
        keys = self._keys_now()
        added = [k for k in names if k in keys and k not in self.schema_keys]
        if added:
            raise SchemaMismatchError(
                f"{added[0]!r} became a schema key of this project in another session (its keys are now "
                f"{keys}); reopen the project (configure_database again) to save with it. Nothing was saved")

    def schema_keys_now(self) -> list[str]:
        """The project's schema keys now, which another session may have added to since this
        one opened: an error path's explanation (a query naming one is not wrong, the session
        is old)."""
        return list(self._keys_now())

    def _keys_now(self) -> list[str]:
        """The project's schema keys as another session may have changed them."""
        path = self.scistack_dir / CONFIG_NAME
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return self._config_keys
        if stamp != self._config_stamp:  # (kept, not just the stamp: a later save checks its own names)
            self._config_keys = json.loads(path.read_text()).get("schema_keys", self.schema_keys)
            self._config_stamp = stamp
        if self.project_id is not None and time.monotonic() - self._shared_keys_at > _SHARED_KEYS_TTL:
            shared = self.index.project_meta().get("schema_keys")  # another machine's add-key
            self._shared_keys_at = time.monotonic()
            if shared:
                self._config_keys = json.loads(shared)
        return self._config_keys

    def add_schema_key(self, name: str) -> list[str]:
        """Add a finer level to the project's schema (`"trial"` under subject and session);
        returns the new schema keys. Values saved so far keep their addresses, now at the
        coarser level: a for_each over trials hands each trial its session's values. Close
        other sessions of the project first: they keep the old keys until reopened."""
        keys = _validate_schema_keys([*self.schema_keys, check_identifier(name, "schema key")])

        def check() -> None:  # under the journal's lock, the index caught up: no save slips in between
            for var in self.index.variables():
                used = [k for k in self.index.vkey_names(var) | self.index.param_names(var)
                        if k.split(".")[-1].lower() == name.lower()]
                if used:
                    raise InvalidMetadataError(
                        f"{var} has records with {used[0]!r} as a version key or lineage parameter; as a "
                        f"schema key {name!r} would change what {var}.load({name}=...) means. Choose "
                        "another name for the new level. Nothing was changed")

        def record() -> None:
            def change(config: dict[str, Any]) -> dict[str, Any]:
                added = [*config.get("added_keys", ()), name]  # an older script may still give the keys before these
                if config.get("shared"):  # the lab's keys are the shared journal's: every checkout
                    # takes them when it next opens the project (its own config and DuckDB follow)
                    self.index.set_project_meta({"schema_keys": json.dumps(keys), "added_keys": json.dumps(added)})
                return config | {"schema_keys": keys, "added_keys": added}
            self._update_config(change)

        self.index.add_schema_key(keys, check, record)
        self.schema_keys = self._config_keys = keys
        self._config_stamp = (self.scistack_dir / CONFIG_NAME).stat().st_mtime_ns
        return keys

    def get_provenance(self, variable: Any, **metadata: Any) -> dict[str, Any] | None:
        """How the value at `metadata` was made: function, constants, inputs, code, environment.

        Returns None for a value saved without lineage.
        """
        record = loaded_record(variable, metadata, "get_provenance")
        if record is None:
            if not hasattr(variable, "load_one"):
                raise InvalidMetadataError(
                    f"get_provenance takes a variable class or a loaded value, e.g. "
                    f"db.get_provenance(FilteredEMG, subject=1); got {variable!r}")
            record = variable.load_one(**metadata).record
        if record.call is None:
            return None
        return Provenance(self.call_record(record.call) | {"value_oid": record.oid}, self.schema_keys)

    def call_record(self, call_oid: str) -> dict[str, Any]:
        """A stored call record in the shape `get_provenance` returns."""
        call = read_call(self.store, call_oid)
        fn = _decoded(call.function.to_value())
        inputs = {
            name: _decoded({k: v for k, v in item.to_value().items() if k in _INPUT_KEYS})
            for name, item in call.inputs.items()
        }
        constants = {name: _decoded(item.const) for name, item in call.constants.items()}
        return {
            "function_name": fn["name"], "module": fn["module"], "code_hash": fn["identity"],
            "code": fn["code"], "constants": constants, "inputs": inputs,
            "outputs": list(call.outputs), "params": _decoded(call.params),
            "env": _decoded(call.env), "created_at": call.started,
            "duration": call.duration, "call": call_oid, "function": fn,
        }

    def ui(self, *, port: int = 0) -> Any:
        """Start the local web view of this project in the background and return it (`.url`,
        `.stop()`); Jupyter shows it inline. The same view as `scistack ui`."""
        if _ui_opener is None:  # registered by scistack.ui, which `import scistack` loads
            raise WebViewError("the web view is not loaded; `import scistack.ui` first")
        return _ui_opener(self, port=port)

    def export(self, variable: Any = None, *, to: str | os.PathLike, all_current: Any = None,
               raw_files: bool = False, **metadata: Any) -> Any:
        """Write the value(s) of `variable` at `metadata` (or the current values of every variable
        in `all_current`) and their whole lineage to the new folder `to` as a bundle (open files,
        scistack objects, an RO-Crate; with `raw_files`, the raw files its calls read); the same
        as `scistack export`."""
        return _bundle_verbs["export"](self, variable, to=to, all_current=all_current, raw_files=raw_files,
                                       **metadata)

    def import_bundle(self, path: str | os.PathLike, raw_to: str | os.PathLike | None = None) -> Any:
        """Merge a bundle written by `export` into this project (values, versions, lineage, call
        cache, same oids); checked whole first, so a damaged bundle changes nothing. `raw_to`:
        a folder its raw files (`--with-raw`) go back into, each at the path it was read as."""
        return _bundle_verbs["import"](self, path, raw_to)

    def share(self, *, to: str | os.PathLike, shared: str, objects: str) -> Any:
        """Copy this laptop project whole (every version, its lineage and cache, its objects)
        into a new lab project at `shared` (postgresql://) and `objects` (s3://), with a lab
        checkout in the folder `to`; this project stays as it is. The same as `scistack share`."""
        return _bundle_verbs["share"](self, to=to, shared=shared, objects=objects)

    def sql(self, query: str, params: list | None = None) -> Any:
        """Run a read-only SQL query on the index; returns a pandas DataFrame (an integer column
        holding a NULL is a nullable Int64 one, NULL as pd.NA, so its numbers stay exact).
        One statement: several (`SELECT 1; SELECT 2`) raise `QueryError`, as one frame cannot
        hold each one's result (`scistack sql` shows them all)."""
        return result_frame(self.index.query(query, params))

    def close(self) -> None:
        """Flush and sync; the project stays on disk. Further use needs a new configure_database."""
        global _current
        try:
            self.index.close()
        finally:  # every name is written, or never will be (a failed flush raises): a pruning gc may now run
            self.store.release_writes()
        try:  # a writer with many small packs merges some (bounded: objects/local.py)
            self.store.merge_packs(auto=True)
        except Exception as exc:  # noqa: BLE001 - never fail a close: a later close or gc merges
            log.warning("small packs were not merged at close (%s)", exc)
        if _current is self:
            _current = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r}, schema_keys={self.schema_keys})"


# The web view sits above this layer, so it registers how to open it (scistack.ui does).
_ui_opener: Any = None


# Export sits above this layer too (scistack.export registers its two verbs).
def loaded_record(value: Any, metadata: dict[str, Any], verb: str) -> Any:
    """The saved record of a loaded value (`why(FilteredEMG.load(subject=1))`), or None when
    `value` is a variable class (then `metadata` addresses it). A value given with an address,
    or never saved, is refused: which of the two was meant cannot be told."""
    if isinstance(value, type) or isinstance(value, str) or not hasattr(type(value), "load_all"):
        return None
    name = type(value).__name__
    if value.record is None:
        raise InvalidMetadataError(
            f"{verb}({value!r}): that value was never saved; save it first, or give the variable "
            f"and an address: {verb}({name}, subject=1)")
    if metadata:
        raise InvalidMetadataError(
            f"{verb}: give a loaded value alone ({verb}(value)) or the variable with an address "
            f"({verb}({name}, {shown_address(metadata)})), not both")
    return value.record


_bundle_verbs: dict[str, Any] = {}


def register_share(share: Any) -> None:
    """Called once by scistack.share: `Database.share` runs it."""
    _bundle_verbs["share"] = share


def register_bundle_verbs(export: Any, import_bundle: Any) -> None:
    """Called once by scistack.export: `Database.export` and `Database.import_bundle` use them."""
    _bundle_verbs.update(export=export, **{"import": import_bundle})


def register_ui(opener: Any) -> None:
    """Called once by scistack.ui: `Database.ui` opens the web view through `opener`."""
    global _ui_opener
    _ui_opener = opener


def _refuse_hiding_a_laptop_project(root: Path) -> None:
    """A laptop project that has saved names is not opened with shared= (its journal stays local)."""
    journal_file = root / ".scistack" / "refs.log"
    if journal_file.exists() and journal_file.stat().st_size:
        raise SchemaMismatchError(
            f"{root} holds a laptop project with saved names; opening it with shared= "
            "would hide them (its journal stays local). Nothing was changed. Copy it into "
            "a new lab project with scistack share --to NEW_FOLDER --shared URL --objects URL "
            "(db.share(...)), or create the lab project in a new folder"
        )


def _lab_urls(config_path: Path, shared: str | None, objects: str | None) -> tuple[str | None, str | None]:
    """The lab URLs given, else those the project's config remembers (a lab project is both;
    `shared` alone: the objects URL is the one the shared project records)."""
    if shared is None and objects is None and config_path.exists():
        config = json.loads(config_path.read_text())
        shared, objects = config.get("shared"), config.get("objects")
    check_lab_urls(shared, objects, objects_optional=True)
    return shared, objects


def check_lab_urls(shared: str | None, objects: str | None, *, objects_optional: bool = False) -> None:
    """Refuse a lab URL pair that cannot work (one without the other, a wrong scheme)."""
    if bool(shared) != bool(objects) and not (objects_optional and shared and not objects):
        raise InvalidNameError(
            "a lab project needs both shared='postgresql://...' (the names) and "
            "objects='s3://bucket/prefix' (the content); give both, or neither for a local project"
        )
    if shared and not shared.startswith(("postgresql://", "postgres://")):
        raise InvalidNameError(f"shared= must be a postgresql:// URL, not {redact(shared)!r}")
    if objects and not objects.startswith("s3://"):
        raise InvalidNameError(f"objects= must be an s3://bucket/prefix URL, not {objects!r}")


_INPUT_KEYS = ("var", "addr", "oid", "call", "items", "members", "path", "writes")


class Provenance(dict):
    """`get_provenance`'s record: a plain dict that shows as a table in a notebook (inputs'
    addresses in the project's schema order, `schema_keys`)."""

    def __init__(self, record: dict[str, Any] = {}, schema_keys: Sequence[str] = ()) -> None:  # noqa: B006 - not mutated
        super().__init__(record)
        self.schema_keys = list(schema_keys)

    def _repr_html_(self) -> str:
        def short(oid: Any) -> str:
            return oid[:12] if isinstance(oid, str) else repr(oid)

        rows: list[tuple[str, Any]] = [
            ("function", f"{self.get('function_name')} ({self.get('module')})"),
            ("code", short(self.get("code_hash"))),
        ]
        rows += [(f"constant {k}", v) for k, v in (self.get("constants") or {}).items()]
        for name, item in (self.get("inputs") or {}).items():
            where = shown_address(item.get("addr") or {}, getattr(self, "schema_keys", []))
            origin = item.get("var") or ("<result>" if item.get("call") else "<constant>")
            source = f"{origin}@{short(item.get('oid'))}"
            rows.append((f"input {name}", f"{source} {where}".strip()))
        rows += [("outputs", ", ".join(short(o) for o in self.get("outputs") or [])),
                 ("ran", f"{str(self.get('created_at'))[:19].replace('T', ' ')} UTC, "
                         f"{float(self.get('duration') or 0):.3g} s"),
                 ("call", short(self.get("call")))]
        return htmlrepr.fields(rows, caption=f"provenance of {short(self.get('value_oid'))}")


def _decoded(tree: Any) -> Any:
    """A record's JSON tree as `ObjectStore.get_value` decodes it (a `$ref` stays its oid)."""
    return from_tree(tree, lambda oid: oid)


def _written_before(given: Sequence[str] | None, found: list[str], added: Sequence[str]) -> bool:
    """Whether `given` are a project's keys before the finer levels `added` later
    (`add_schema_key`): a script written before then names the coarser keys, which mean what
    they meant (a list short of keys the project was created with is still refused: a slip)."""
    return given is not None and len(given) < len(found) and found[:len(given)] == list(given) and set(
        found[len(given):]) <= set(added)


def _validate_schema_keys(keys: Sequence[str]) -> list[str]:
    if isinstance(keys, str) or not keys:
        raise InvalidNameError(
            f"schema keys must be a non-empty list of names, e.g. [\"subject\", \"session\"], not {keys!r}"
        )
    for key in keys:
        check_identifier(key, "schema key")
    folded = [key.lower() for key in keys]  # SQL (DuckDB's columns) ignores case
    if len(set(folded)) != len(folded):
        twice = sorted({k for k in keys if folded.count(k.lower()) > 1})
        raise InvalidNameError(
            f"schema keys {list(keys)} repeat a name ({', '.join(map(repr, twice))}; names differing "
            "only in case are one column in SQL); list each key once"
        )
    return list(keys)


_current: Database | None = None
_refusing: str | None = None  # why writes are refused (`writes_refused`)


def _current_chunking() -> chunking.ChunkPolicy | None:
    """The current project's chunking policy (values are encoded and hashed with it)."""
    db = _current
    return db.chunk_policy() if db is not None else None


chunking.set_policy_source(_current_chunking)


@contextmanager
def writes_refused(why: str) -> Iterator[None]:
    """Every save, delete and run in the block refused with `why`, in the current database and
    in any the block opens, which is closed after it; the current one stays current. A report
    imports a pipeline module to compare its code, and the module's top level (a script's
    `configure_database`, saves, `for_each`) must not change any project."""
    global _current, _refusing
    held, before, opened_before = _refusing, _current, len(_opened_refusing)
    touched = before if before is not None and not before.read_only else None
    try:  # (refused inside: a Ctrl-C just before the try had left the session refusing)
        _refusing = why
        if touched is not None:
            touched.read_only = touched.index.read_only = why
        yield
    finally:
        _refusing = held
        if touched is not None:
            touched.read_only = touched.index.read_only = None
        _current = before
        while len(_opened_refusing) > opened_before:
            _opened_refusing.pop().close()


_opened_refusing: list[Database] = []  # opened inside `writes_refused`, closed as it ends


def _refuse_a_folder(path: Path, given: str | os.PathLike | None = None) -> None:
    """A project is named by its DuckDB file: given a folder, the project had gone to the
    folder's parent (`.scistack/` beside the folder), and DuckDB failed later and raw on
    the folder ("Is a directory", also at every exit). `given`: the path as written, whose
    trailing slash names a folder not made yet (`Path` drops it: "newdir/" had become a
    DuckDB file named newdir)."""
    text = os.fspath(given) if given is not None else ""
    slashed = isinstance(text, str) and text.endswith(tuple(filter(None, (os.sep, os.altsep))))
    if not path.is_dir() and not slashed:
        return
    try:  # (a folder that holds a project: its file)
        named = json.loads((path / ".scistack" / CONFIG_NAME).read_text())["db"]
    except (OSError, ValueError, KeyError, TypeError):
        named = None
    inside = path / (named if isinstance(named, str) and named else "project.duckdb")
    raise InvalidNameError(
        f"{path} is a folder; a project is named by its DuckDB file, with its objects in .scistack/ "
        f"beside it: give the file's path, e.g. configure_database({str(inside)!r}, ...) for a project in "
        f"that folder. Nothing was created")


def configure_database(path: str | os.PathLike, dataset_schema_keys: Sequence[str] | None = None,
                       *args: Any, schema_keys: Sequence[str] | None = None, **kwargs: Any) -> Database:
    """Create or open a project and make it the current database for `BaseVariable`.
    `path` is the project's DuckDB file (its folder gets `.scistack/`); the schema keys are
    the second argument, or `schema_keys=` (as `Database` names them).

    In a forked child (a `multiprocessing` pool under the fork start method), the project its
    parent had open is returned as it is, as in the parent: a project opened anew there would
    be no better (DuckDB hands a process one instance per file, and the lab's S3 client one
    runtime per process, both the parent's). Its saves and loads work; SQL is refused there if the parent had
    a connection open at the fork, and lab requests to the bucket if the parent had used it,
    each naming `multiprocessing.get_context('spawn')`, in which `configure_database` opens
    the project anew."""
    global _current
    if schema_keys is not None:
        if dataset_schema_keys is not None:
            raise InvalidMetadataError(
                f"configure_database was given the schema keys twice ({dataset_schema_keys!r} and "
                f"schema_keys={schema_keys!r}); give them once, as the second argument or as schema_keys=")
        dataset_schema_keys = schema_keys
    _refuse_a_folder(Path(path).resolve(), path)
    if args:
        warnings.warn(
            "configure_database() no longer takes a separate lineage database path: lineage lives "
            "in the same project now; drop the third argument",
            DeprecationWarning, stacklevel=2,
        )
    again = _current is not None and _current.path == Path(path).resolve()
    if again and not _current.opened_as(kwargs.get("shared"), kwargs.get("objects")):
        # lab URLs the open project was not opened with (a notebook cell re-run with them added
        # or changed): checked as a fresh process checks them, never the open one returned
        if _current.shared_url is None:
            check_lab_urls(kwargs.get("shared"), kwargs.get("objects"), objects_optional=True)
            _refuse_hiding_a_laptop_project(_current.root)
        if _current.index.in_batch or _refusing is not None:
            raise SchemaMismatchError(
                f"{_current.path} is open {'inside a batch' if _refusing is None else 'for a report'}; "
                "configure_database with other lab URLs would close it. Call it after that. Nothing was changed")
        before = _current
        before.close()  # (one project folder is open once at a time: its fold, its DuckDB)
        try:
            _current = Database(path, dataset_schema_keys, **kwargs)
        except BaseException:
            try:  # refused: the project as it was open stays current, opened as it was
                keys, options = before.opened_with
                _current = Database(before.path, keys, **options)
                _current.opened_with = before.opened_with
            except Exception:  # noqa: BLE001 - what was refused first is what is said
                _current = None
            raise
        _current.opened_with = (dataset_schema_keys, kwargs)
        return _current
    elif again:
        if dataset_schema_keys is not None and list(dataset_schema_keys) != _current.schema_keys:
            _current._check_config(dataset_schema_keys)
        return _current
    if dataset_schema_keys is not None:  # refused before anything touches disk
        _validate_schema_keys(dataset_schema_keys)
    if _refusing is not None and not (Path(path).resolve().parent / ".scistack" / CONFIG_NAME).exists():
        raise ReadOnlyProjectError(  # (a report creates nothing: see `writes_refused`)
            f"{Path(path).resolve()}: no project is there, and a report imported a module that opens it to "
            "compare its code, so nothing was created there. If the module names its project by a relative "
            "path, run the report from the folder its scripts run from, or name the project from the "
            "module's own folder (Path(__file__).parent / 'gait.duckdb')")
    opened = Database(path, dataset_schema_keys, **kwargs)  # a failure leaves the current one open
    if _refusing is not None:  # opened inside `writes_refused`: read only, closed as it ends,
        opened.read_only = opened.index.read_only = _refusing  # and the one before stays open
        _opened_refusing.append(opened)
        _current = opened
        return opened
    if _current is not None:
        _current.close()
    _current = opened
    _current.opened_with = (dataset_schema_keys, kwargs)
    return _current


def get_database() -> Database:
    """The current database, or a clear error saying how to get one."""
    if _current is None:
        raise NotARepositoryError(
            "no database is configured; call configure_database(\"project.duckdb\", "
            "[\"subject\", \"session\"]) first"
        )
    return _current


def current_database() -> Database | None:
    """The current database, or None (lineage works without one)."""
    return _current
