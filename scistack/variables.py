"""`BaseVariable`: one line declares a kind of data; save/load address it by metadata.

```python
class RawEMG(BaseVariable): pass
RawEMG.save(signal, subject=1, session="pre")       # schema keys address the value
RawEMG.load(subject=1, session="pre").data          # newest version
RawEMG.load(subject=1)                              # partial address -> list
RawEMG.load_all(as_df=True)                         # one DataFrame
```
Metadata keys that are schema keys form the address; any other key given on save is a
*version key* (`smoothing=0.2`) that tells variants at one address apart. On load, a key may
also name a lineage parameter of the producing call or of any upstream call
(`load(low_hz=20)` or `load(**{"bandpass.low_hz": 20})`). Saving at a coarser level than the
schema (subject only) is allowed: the address is the schema keys given.
"""

from __future__ import annotations

from datetime import datetime
import difflib
from dataclasses import dataclass, replace
import threading
import time
import warnings
from typing import Any

import numpy as np

from scistack.address import checked_label, shown, shown_address
from scistack import htmlrepr
from scistack.database import Database, SaveInfo, current_database, get_database
from scistack.errors import (
    AmbiguousVersionError,
    DuplicateVariableError,
    EmptyVariableError,
    InvalidMetadataError,
    InvalidNameError,
    ScistackError,
    UnknownMetadataKeyError,
    UnsavedVariableWarning,
    UnsupportedValueError,
    VariableNotFoundError,
)
from scistack.gc import freshen_lineage
from scistack.gcpause import paused
from scistack.index import Deletion, RefRecord, check_identifier
from scistack.index.state import select_from
from scistack.lazy_import import lazy_module
from scistack.lineage.calls import unwrap_inputs
from scistack.lineage.context import copy_lineage
from scistack.lineage.running import refuse_load_inside, warn_save_inside
from scistack.selection import (choose_variant, label_query, point_records, select_records, sort_records,
                                unknown_keys_message, unsaved_message)
from scistack.objects.codec import value_kind
from scistack.summary import summarize
from scistack.tables import export_frame, rows_to_save, save_rows
from scistack.where import FIXED, exact_as_double, function_names, record_columns
from scistack.objects.forks import renew_in_child

pa = lazy_module("pyarrow", globals(), "pa")

_registry: dict[str, type[BaseVariable]] = {}
_registry_lock = threading.Lock()


# A forked child's registry lock is new: a thread of the parent defining a variable may have
# held it (the child's first class definition waited for ever). The registry stays whole
# without waiting for that thread: it is changed by one assignment.
renew_in_child(lambda: [_registry_lock])



def _refuse_the_base_class(cls: type, what: str) -> None:
    """`BaseVariable.save(...)` made a variable named "BaseVariable": a subclass was meant."""
    if cls is BaseVariable:
        raise InvalidNameError(
            f"BaseVariable.{what}() names no variable: declare one, e.g. class RawEMG(BaseVariable): "
            f"pass, then RawEMG.{what}(...)")


def refuse_addressless_delete(db: Any, name: str, metadata: dict[str, Any], version: int | None,
                              count: int, *, shell: bool = False) -> None:
    """Refuse a delete that names no address (every record, or version N at every address:
    versions are numbered per address) unless asked for by all=True (`--all` in the shell).
    The one rule for `Var.delete` and `scistack rm`, so the shell deletes no more than the
    library would."""
    key = db.schema_keys[0]
    if shell:
        asked = " ".join([f"scistack rm {name}", *(f"--{k} {shown(v)}" for k, v in metadata.items()),
                          *([f"--version {version}"] if version is not None else [])])
        example = f"scistack rm {name} --{key} ...{f' --version {version}' if version is not None else ''}"
        everything = "--all"
    else:
        where = ", ".join([*(f"{k}={shown(v)}" for k, v in metadata.items()),
                           *([f"version={version}"] if version is not None else [])])
        asked = f"{name}.delete({where})"
        example = f"{name}.delete({key}=...{f', version={version}' if version is not None else ''})"
        everything = "all=True"
    if not metadata and version is None:
        raise InvalidMetadataError(
            f"{asked} names no address: it would delete every record of {name} ({count} ref(s), "
            f"every address and version). Name what to delete, e.g. {example}, or pass "
            f"{everything} to delete them all")
    if version is not None and not set(metadata) & set(db.schema_keys):
        raise InvalidMetadataError(
            f"{asked} names no address: versions are numbered per address, so it would delete "
            f"version {version} at every address ({count} ref(s)). Name the address, e.g. "
            f"{example}, or pass {everything} to delete version {version} at every address")


class BaseVariable:
    """Subclass with an empty body to declare a variable; the class name is its name."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = check_identifier(cls.__name__, "variable name")
        with _registry_lock:  # class creation may race in threads; the registry must not
            known = _registry.get(name)
            if known is not None and known.__module__ != cls.__module__:
                raise DuplicateVariableError(
                    f"two different variables are named {name!r} ({known.__module__}.{known.__qualname__} "
                    f"and {cls.__module__}.{cls.__qualname__}); the class name is the variable's name in "
                    "the database, so rename one of them"
                )
            _registry[name] = cls  # same module: a notebook cell re-run redefines it

    def __init__(self, data: Any = None, *, record: RefRecord | None = None, held: Any = None,
                 origin: Any = None) -> None:
        self.data = data
        self._record = record
        self._held = held  # the index holding the save in a batch (its version not given yet)
        self._origin = origin  # the store the record is in (a save elsewhere copies its lineage)

    @property
    def record(self) -> RefRecord | None:
        """The saved record. A save held in a batch is numbered when the batch is written
        (another save may come first), so asking for it writes what the batch holds so far:
        the version a held save had at once was a guess (version 1 at an address that had 6)."""
        if self._held is not None:
            index, self._held = self._held, None
            self._record = index.settled(self._record)
        return self._record

    @record.setter
    def record(self, record: RefRecord | None) -> None:
        self._record, self._held = record, None

    def __getstate__(self) -> dict[str, Any]:
        self.record  # (settled first: the index stays in this process)
        return {k: v for k, v in self.__dict__.items() if k not in ("_input_meta", "_origin")}

    # -- record fields -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def metadata(self) -> dict[str, Any]:
        """Address (in schema order) and version keys the value was saved with."""
        r = self.record
        if r is None:
            return {}
        if r.vkeys_key == "{}":  # (a cache hit asks for its input's: no merge)
            found = _schema_ordered(r.addr)
            return dict(found) if found is r._addr else found
        return {**_schema_ordered(r.addr), **r.vkeys}

    @property
    def oid(self) -> str | None:
        # (a held save's oid is its content's: asking writes nothing, where `record` writes the
        # batch so far to number it; a loop that kept the oids of 10k saves wrote 10k packs)
        r = self._record if self._held is not None else self.record
        return r.oid if r else None

    @property
    def version(self) -> int | None:
        return self.record.version if self.record else None

    @property
    def created_at(self) -> str | None:
        return self.record.created_at if self.record else None

    @property
    def call(self) -> str | None:
        """Oid of the call record that produced the value (None for raw saves)."""
        return self.record.call if self.record else None

    def __scistack_saveinfo__(self, db: Database) -> SaveInfo | None:
        if self.record is None:
            return None
        r = self.record
        # as the put it replaces: young again, or (loaded from another project, or collected
        # since) put again; a lab's `contains` answers from this machine's cache, so a value
        # gone from the bucket but cached here had been named again with no copy there (and
        # likewise the call record that made it). A dict, list or chunked value is an object
        # naming its arrays or chunks: each is freshened too (a lab's from this machine's
        # cache), and any gone below it stores the value again from memory
        if r.kind in _PARENT_KINDS:
            if freshen_lineage(db.store, [r.oid], set(), {r.oid: r.kind}):
                db.store.put_value(self.data)
        elif not db.store.freshen(r.oid):
            db.store.put_value(self.data)
        call = r.call
        if call is not None and not db.store.freshen(call):
            origin = self.__dict__.get("_origin")
            if origin is not None and origin is not db.store:  # loaded from another project
                copy_lineage(origin, db, call)
            if not db.store.contains(call):  # collected by gc since, or its project is gone
                warnings.warn(
                    f"{self.name}: the call record that made this value ({call[:12]}) is not in the store "
                    "nor where the value was loaded from (gc collected it after the records naming it "
                    "were deleted), so the value is saved without that lineage; compute it again to "
                    "record it", stacklevel=4)
                call = None
        return SaveInfo(r.oid, r.kind, r.summary, call, r.params)

    def __scistack_input__(self) -> tuple:
        """(value, oid, variable name, metadata, call, params): how lineage sees a loaded input."""
        r = self._record if self._held is None else self.record  # (`record`: a hit asks each time)
        if r is None and self.data is None:
            raise EmptyVariableError(
                f"{self.name}() has no data: it was neither saved nor loaded, so it cannot be an input. "
                f"To load {self.name} at each for_each combination pass the class itself "
                f"(inputs={{..., {self.name}}}); for one saved value use {self.name}.load(...)")
        if r is None:
            return self.data, None, self.name, {}, None, {}
        known = self.__dict__.get("_input_meta")  # a loop passes the same loaded value again
        if known is None or known[0] is not r:
            # (in key order, not the schema's: a record sorts it, and a hit's input spent
            # ~1.5 us of its ~50 ordering it)
            known = self._input_meta = (r, r.addr if r.vkeys_key == "{}" else {**r.addr, **r.vkeys})
        return self.data, r.oid, type(self).__name__, known[1], r.call, r.params  # (`name`)

    def __repr__(self) -> str:
        if self.record is None:
            return f"{self.name}(unsaved, data={summarize(self.data)})"
        meta = shown_address(self.metadata)
        return f"{self.name}({meta}, version={self.version}, oid={self.oid[:12]}, data={self.record.summary})"

    def _repr_html_(self) -> str:
        if self.record is None:
            return htmlrepr.fields([("data", summarize(self.data))], caption=f"{self.name} (unsaved)")
        r = self.record
        return htmlrepr.fields(
            [*self.metadata.items(), ("version", r.version), ("oid", r.oid[:12]), ("data", r.summary),
             ("saved (UTC)", r.created_at[:19].replace("T", " ")),
             ("call", r.call[:12] if r.call else "(saved directly)")],
            caption=self.name)

    # -- save ------------------------------------------------------------------------------
    @classmethod
    def save(cls, data: Any, /, **metadata: Any) -> BaseVariable:
        """Save `data` at the address given by the schema keys in `metadata`.

        Identical data at the same address and version keys is a no-op returning the
        existing record; new data adds a version and older versions stay loadable.

        Raises
        ------
        InvalidMetadataError
            No schema key given, or an address value that is not a single int/str/float/bool.
        UnsupportedValueError
            `data` has no canonical encoding (e.g. a custom class): convert it first.
        """
        _refuse_the_base_class(cls, "save")
        db = get_database()
        addr, vkeys = _split_for_save(db, cls.__name__, metadata)
        warn_save_inside(cls.__name__)
        db.index.check_save(cls.__name__, addr, vkeys)  # (before `_save_info` copies in a call)
        info = _save_info(db, data)
        record = db.index.put_ref(cls.__name__, addr, vkeys, info.oid, info.kind, call=info.call,
                                  params=info.params, summary=info.summary)
        value = getattr(data, "data", data) if hasattr(data, "__scistack_saveinfo__") else data
        return cls(value, record=record, held=db.index if db.index.holding else None, origin=db.store)

    @classmethod
    def save_from_dataframe(cls, frame: Any, /, value_column: str | None = None, *,
                            value_columns: list[str] | None = None, **version_keys: Any) -> int:
        """Save one record per row of `frame`, addressed by its schema-key columns, in one batch.

        The value is the `value_column` cell, a dict of the `value_columns` cells, or (neither
        given) the only other column. `version_keys` tag every row. Returns how many records
        were added or changed (identical rows are no-ops). A datetime or timedelta column's
        cells are numpy's in the column's unit (a missing one too: NaT of that unit), a
        nullable column's NA is None, and so is a missing cell of a text column (pandas'
        `str` dtype, an object or categorical column of strings, as `read_csv` gives them,
        hold it as NaN); a float column's NaN is a float, and stays NaN.

        Raises
        ------
        InvalidMetadataError
            No schema-key column, an unknown value column, two rows at one address, or a row
            with a missing key (rows named by their index labels): nothing is saved.
        """
        _refuse_the_base_class(cls, "save_from_dataframe")
        db = get_database()
        if value_column is not None and value_columns is not None:
            raise InvalidMetadataError("give value_column= (one column) or value_columns= (several), not both")
        wrong = [k for k in version_keys if k in db.schema_keys]
        if wrong:
            raise InvalidMetadataError(f"{cls.__name__}.save_from_dataframe: {wrong} are schema keys; "
                                       "give them as columns of the frame")
        vkeys = {check_identifier(k, "metadata key"): _version_value(cls.__name__, k, v)
                 for k, v in version_keys.items()}
        db.check_version_keys(vkeys)
        rows = rows_to_save(db, cls.__name__, frame, value_column if value_columns is None else value_columns)
        return save_rows(db, cls.__name__, rows, vkeys)

    @classmethod
    def to_csv(cls, path: str | Any, **metadata: Any) -> str:
        """Write `load_all(as_df=True, **metadata)` as CSV (array cells as JSON lists)."""
        return export_frame(cls.load_all(as_df=True, **metadata), path, "csv")

    @classmethod
    def to_parquet(cls, path: str | Any, **metadata: Any) -> str:
        """Write `load_all(as_df=True, **metadata)` as Parquet (array cells as lists)."""
        return export_frame(cls.load_all(as_df=True, **metadata), path, "parquet")

    # -- load ------------------------------------------------------------------------------
    @classmethod
    def load(cls, *, version: int | None = None, as_df: bool = False, lazy: bool = False,
             where: str | tuple | None = None, **metadata: Any) -> Any:
        """Load by metadata: a full address gives one variable, a partial one a list.

        A list value means any of (`subject=[1, 2]`); `where` is a SQL condition over schema
        keys, version keys, lineage parameters, fn, version, created_at and a scalar `value`
        (`where="subject > 3 AND low_hz = 20"`, or `("subject > ?", [3])` to bind values), or
        a dict's field as in the SQL views' JSON column: `where="value->>'label' = 'a'"` (its
        text; `value.label` is JSON, so `value.label = 'a'` is refused naming this).
        With `lazy=True` a chunked value's `.data` reads nothing until sliced (see
        `scistack.objects.lazy`); other values load as usual.

        Raises
        ------
        VariableNotFoundError
            Nothing matches; the message lists what exists nearby.
        AmbiguousVersionError
            Several version-key variants at the address and no selector among them.
        """
        refuse_load_inside(f"{cls.__name__}.load()", cls.__name__)
        db = get_database()
        if version is None and where is None and not as_df:
            exact = point_records(db, cls.__name__, metadata)
            if exact:  # the address itself, as below, without the general filters
                chosen = choose_variant(cls.__name__, exact, schema_keys=db.schema_keys)
                return cls._from_record(db, chosen, lazy=lazy)
        records = select_records(db, cls.__name__, metadata, version=version, where=where)
        if as_df:
            return _frame(db, records, lazy=lazy)
        by_addr: dict[str, list[RefRecord]] = {}
        for record in records:
            by_addr.setdefault(record.addr_key, []).append(record)
        asked = {k for k, v in metadata.items()  # (`session=None`: the address has no session)
                 if k in db.schema_keys and not _is_multi(v) and v is not None}
        if len(by_addr) == 1 and set(records[0].addr) == asked:
            chosen = choose_variant(cls.__name__, records, schema_keys=db.schema_keys)
            return cls._from_record(db, chosen, lazy=lazy)
        return [cls._from_record(db, r, lazy=lazy) for r in sort_records(db, records)]

    @classmethod
    def load_one(cls, **metadata: Any) -> BaseVariable:
        """Exactly one record (newest version), or an error saying how to narrow the query."""
        found = cls.load(**metadata)
        if isinstance(found, list):
            if len(found) != 1:
                db = get_database()
                asked = shown_address(metadata) or "everything"
                raise AmbiguousVersionError(
                    f"{len(found)} records of {cls.__name__} match {asked}, one is needed; give "
                    f"the full address (schema keys {db.schema_keys}) and any version keys"
                )
            found = found[0]
        return found

    @classmethod
    def load_all(cls, *, as_df: bool = False, where: str | tuple | None = None, lazy: bool = False,
                 **metadata: Any) -> Any:
        """Every current record matching `metadata` and `where` (all when empty): a list, or a
        DataFrame with the columns of the SQL view (`data` holding the value). With `lazy=True`
        chunked values come unread, as from `load(lazy=True)` (a frame of recordings larger
        than memory).

        `subject=1` selects every record whose subject is 1, those saved per subject and those
        saved per session alike, as `where="subject = 1"` does (`load(subject=1)` gives the
        per-subject value alone, when there is one); keywords and `where` together select the
        records both hold. `where` takes the columns of the variable's SQL view: every schema
        key is one, also a key none of its values was saved with (all NULL there, so
        `where="session = 'pre'"` of values saved per subject gives [] and
        `where="session IS NULL"` every one); a name that is no column raises `QueryError`.

        Nothing matching gives an empty list; a key the variable does not have (a typo) raises
        `UnknownMetadataKeyError` naming the valid keys.
        """
        refuse_load_inside(f"{cls.__name__}.load_all()", cls.__name__)
        db = get_database()
        if as_df and not metadata and where is None:
            frame = _doubles_frame(db, cls.__name__)
            if frame is not None:
                return frame
        with paused():  # ~30 objects a record, none in a cycle: the collector's passes doubled the time
            try:
                records = sort_records(db, select_records(db, cls.__name__, metadata, where=where, finer=True))
            except VariableNotFoundError as error:
                if isinstance(error, UnknownMetadataKeyError) and (
                        db.index.count(cls.__name__) or db.index.ever_saved(cls.__name__)):
                    raise  # (a typo; of a variable never saved, any key but a schema key is unknown)
                records = []
                if not db.index.ever_saved(cls.__name__):
                    warnings.warn(unsaved_message(db, cls.__name__), UnsavedVariableWarning, stacklevel=2)
            if as_df:
                return _frame(db, records, presorted=True, lazy=lazy)
            return [cls._from_record(db, r, lazy=lazy) for r in records]

    @classmethod
    def list_versions(cls, **metadata: Any) -> VersionList:
        """Every saved version matching `metadata`, oldest first within each address."""
        db = get_database()
        return VersionList(sort_records(db, select_records(db, cls.__name__, metadata, all_versions=True)),
                           db.schema_keys)

    @classmethod
    def delete(cls, *, version: int | None = None, **metadata: Any) -> int:
        """Remove the names of matching records, every version unless `version=` is given;
        every record of the variable only when asked by `all=True` (a bare `delete()`, say
        from an empty dict of keys, would otherwise wipe it: `scistack rm` asks first, MATLAB
        refuses), and so `version=` at every address (numbers count per address: version 1
        of one subject is not of another).

        The values stay in the object store until `scistack gc` reclaims them.
        """
        db = get_database()
        everything = metadata.pop("all", False) if "all" not in db.schema_keys else False
        addressless = not metadata and version is None
        # (every record is refused before they are all read: the count is the index's)
        records = ([] if addressless and everything is not True else
                   select_records(db, cls.__name__, metadata, version=version, all_versions=True))
        if everything is not True:
            refuse_addressless_delete(db, cls.__name__, metadata, version,
                                      db.index.count(cls.__name__) if addressless else len(records))
        return db.index.delete_refs(records)

    @classmethod
    def undelete(cls, **metadata: Any) -> int:
        """Undo, at each address matching `metadata` (schema and version keys; a list means
        any of; none: all of the variable's), that address's last delete (or `scistack rm`)
        of matching records, made within an hour of the newest (`UNDO_WINDOW_S`): a loop of
        per-subject deletes is undone whole, an address deleted long before stays deleted
        (named; asked for by its address, it comes back). The records it
        removed come back as new versions holding the same values and lineage, in the order
        they were saved, once (one live again since, brought back or its value saved again,
        is not brought back twice). Records an address's older deletes removed (a version
        deleted on purpose) stay deleted: bringing every deleted record back made a bad
        version deleted long ago current again. Versions gc's retention rule dropped are
        lifecycle, not deletes: never undone, nor taken for an address's last delete.
        `version=` brings back the deleted version of that number, whichever delete (or
        retention rule) removed it.
        Possible until `scistack gc` reclaims the values. An address saved again since the
        delete keeps what it has now. Returns how many came back."""
        result = undelete_records(get_database(), cls.__name__, metadata)
        if result.note:
            warnings.warn(f"{cls.__name__}.undelete: {result.note}", stacklevel=2)
        return len(result.back)

    @classmethod
    def _from_record(cls, db: Database, record: RefRecord, *, lazy: bool = False) -> BaseVariable:
        return cls(_from_record_value(db, record, lazy), record=record, origin=db.store)


@dataclass(frozen=True)
class Undeleted:
    """What `undelete_records` brought back, and why the rest did not come back."""

    back: list[RefRecord]        # as they were before their delete
    reclaimed: list[RefRecord]   # values gc has freed since
    taken: list[RefRecord]       # at addresses saved again since the delete
    schema_keys: tuple[str, ...] = ()  # (the order addresses are shown in)
    again: list[RefRecord] = ()  # live again since the delete (brought back, or saved again)
    older: list[RefRecord] = ()  # removed by an older delete than its address's undone: left deleted
    dropped: list[RefRecord] = ()  # dropped by gc's retention rule: left deleted
    superseded: list[RefRecord] = ()  # older versions than ones still there: left deleted
    earlier: list[RefRecord] = ()  # their address's last delete long before the newest: left deleted

    @property
    def note(self) -> str:
        parts = []
        if self.reclaimed:
            parts.append(f"{len(self.reclaimed)} not, their values reclaimed by gc "
                         f"(e.g. {_where(self.reclaimed[0], self.schema_keys)})")
        if self.taken:
            parts.append(f"{len(self.taken)} left deleted: their address holds records again since the delete "
                         f"(saved or brought back; e.g. {_where(self.taken[0], self.schema_keys)}), and keeps them")
        if self.again:
            parts.append(f"{len(self.again)} back already (brought back or saved again since the delete; "
                         f"e.g. {_where(self.again[0], self.schema_keys)})")
        if self.superseded:
            first = self.superseded[0]
            parts.append(f"{len(self.superseded)} left deleted: newer versions at their address are still there, "
                         f"and a version brought back becomes the current one (e.g. {_where(first, self.schema_keys)}, "
                         f"version={first.version}; undelete(..., version=N) brings one back as the current value)")
        for records, how in ((self.older, "removed by an older delete"),
                             (self.dropped, "dropped by gc's retention rule")):
            if records:
                parts.append(f"{len(records)} {how} left deleted (e.g. {_where(records[0], self.schema_keys)}, "
                             f"version={records[0].version}; undelete(..., version=N) brings one back)")
        if self.earlier:
            first = self.earlier[0]
            addr = shown_address(first.addr, self.schema_keys)
            parts.append(f"{len(self.earlier)} left deleted: their address's last delete was made more than "
                         f"{UNDO_WINDOW_S / 3600:g} h before the newest one undone, so not in the same go "
                         f"(e.g. {_where(first, self.schema_keys)}; undelete({addr}) brings it back)")
        return f"{len(self.back)} record(s) back; " + "; ".join(parts) if parts else ""


def undelete_records(db: Database, name: str, metadata: dict[str, Any],
                     deleted: list[Deletion] | None = None) -> Undeleted:
    """`BaseVariable.undelete` by the variable's name (the CLI's `scistack undelete`): what
    each address's last delete of matching records removed (`_last_deletes`), or with
    `version=` that deleted version;
    `deleted`: the variable's deletions, when the caller has read them already."""
    # (in version order: each address's records come back in the order they were saved)
    # (matched as load matches: the index's `select_from`, a list meaning any of)
    metadata = dict(metadata)
    version = metadata.pop("version", None)  # (a reserved name: never an address or version key)
    query = label_query(name, metadata)  # (a NaN refused as load refuses it)
    deleted = db.index.deletions(name).get(name, []) if deleted is None else deleted
    unknown = [k for k in query if k not in db.schema_keys and not any(k in d.record.vkeys for d in deleted)]
    if unknown:  # (a misspelt key had said only that nothing deleted matched)
        vkeys = {k for d in deleted for k in d.record.vkeys}
        raise UnknownMetadataKeyError(unknown_keys_message(db, name, unknown, vkeys))
    groups: dict[str, list[RefRecord]] = {}
    for deletion in deleted:
        groups.setdefault(deletion.record.addr_key, []).append(deletion.record)
    matching = select_from(groups.values(), {k: v for k, v in query.items() if k in db.schema_keys},
                           {k: v for k, v in query.items() if k not in db.schema_keys}, {}, all_versions=True)
    slots = {_slot(r) for r in matching}
    matched = [d for d in deleted if _slot(d.record) in slots]  # (in journal order)
    if version is not None:
        matched = [d for d in matched if d.record.version == version]
    if not matched:
        asked = {**metadata, **({"version": version} if version is not None else {})}
        wanted = " matching " + shown_address(asked) if asked else ""
        raise VariableNotFoundError(f"{name} has no deleted record{wanted} to bring back "
                                    f"({name}.list_versions(...) shows what is saved)")
    if version is not None:  # asked by its number: back even if the address was saved again since
        return bring_back(db, name, matched, named=True)
    chosen, earlier = _last_deletes(matched)
    undone = {id(d) for d in chosen} | {id(d) for d in earlier}
    left = [d for d in matched if id(d) not in undone]
    result = bring_back(db, name, chosen)
    since = _saved_since(db, name, left)  # (after: one brought back just now is back already)
    left = [d for d in left if since[_slot(d.record)] != "again"]
    return replace(result, older=[d.record for d in left if not d.retention],
                   dropped=[d.record for d in left if d.retention], earlier=[d.record for d in earlier])


# how long before the newest delete an address's last delete may be and still be undone with it
# (a loop of deletes takes seconds; a delete made on purpose hours or days before stays)
UNDO_WINDOW_S = 3600


def _last_deletes(deletions: list[Deletion]) -> tuple[list[Deletion], list[Deletion]]:
    """Of `deletions` (in journal order), each address's own last delete by a user, made
    within `UNDO_WINDOW_S` of the newest: a loop of per-subject deletes is undone whole, while
    a version an address had deleted on purpose before, another address's delete made long
    before (returned second: named, left deleted), and what gc's retention rule dropped
    (lifecycle, not a delete) stay deleted."""
    last: dict[str, str] = {}  # address key -> the time of its last delete (one time a delete)
    for d in deletions:
        if not d.retention:
            last[d.record.addr_key] = d.t
    if not last:
        return [], []
    newest = datetime.fromisoformat(max(last.values()))
    recent = {a for a, t in last.items() if (newest - datetime.fromisoformat(t)).total_seconds() <= UNDO_WINDOW_S}
    ones = [d for d in deletions if not d.retention and d.t == last[d.record.addr_key]]
    return ([d for d in ones if d.record.addr_key in recent],
            [d for d in ones if d.record.addr_key not in recent])


def bring_back(db: Database, name: str, chosen: list[Deletion], *, named: bool = False) -> Undeleted:
    """Put deleted records of `name` back as new versions (oldest first), except one live
    again since its delete (brought back already, or its value saved again), one whose value
    gc has freed, and (unless `named` by its version) one at an address saved again since."""
    since = _saved_since(db, name, chosen)
    records = sorted((d.record for d in chosen), key=lambda r: r.version)
    free = [r for r in records if not since[_slot(r)] or (named and since[_slot(r)] in ("other", "newer"))]
    # (freshened first: a gc running now keeps the rest; what is gone gc freed)
    gone = freshen_lineage(db.store, [o for r in free for o in (r.oid, r.call)], set())
    back = [r for r in free if not {r.oid, r.call} & gone]
    with db.batch():
        for r in back:
            db.index.put_ref(name, r.addr, r.vkeys, r.oid, r.kind, call=r.call, params=r.params, summary=r.summary)
    return Undeleted(back, [r for r in free if {r.oid, r.call} & gone],
                     [r for r in records if since[_slot(r)] == "other" and not named], tuple(db.schema_keys),
                     [r for r in records if since[_slot(r)] == "again"],
                     superseded=[r for r in records if since[_slot(r)] == "newer" and not named])


def _saved_since(db: Database, name: str, deletions: list[Deletion]) -> dict[tuple[str, int], str]:
    """Per deleted record, what its address (with its version keys) holds that was saved or
    brought back since its delete: "again" its value, "other" only others; else "newer" when
    a version above it from before the delete is still there (it was not the current value:
    brought back, a new version, it would become that), "" nothing (numbers grow)."""
    live = {a: db.index.versions_at(name, a) for a in {d.record.addr_key for d in deletions}}
    found = {}
    for d in deletions:
        same = [r for r in live[d.record.addr_key] if r.vkeys_key == d.record.vkeys_key]
        since = {r.oid for r in same if r.version > d.top}
        found[_slot(d.record)] = ("again" if d.record.oid in since else "other" if since else
                                  "newer" if any(r.version > d.record.version for r in same) else "")
    return found


def _slot(record: RefRecord) -> tuple[str, int]:
    return record.addr_key, record.version


def _where(record: RefRecord, schema_keys: tuple[str, ...]) -> str:
    return shown_address({**record.addr, **dict(sorted(record.vkeys.items()))}, list(schema_keys))


def _from_record_value(db: Database, record: RefRecord, lazy: bool) -> Any:
    """A record's value, read-only; unread when chunked and `lazy`."""
    if lazy and record.kind in ("chunked", "json"):  # (a dict or list may hold chunked values)
        return _read_only(db.store.open_value(record.oid))
    return _read_only(db.store.get_value(record.oid))


def _read_only(value: Any) -> Any:
    """A loaded array is keyed by its oid in lineage: writing to it in place would make every
    result computed from it lie about its input, so it is read-only (copy it to change it);
    so are the arrays inside a loaded dict or list."""
    if isinstance(value, dict):
        for item in value.values():
            _read_only(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _read_only(item)
    array = value
    while isinstance(array, np.ndarray):
        array.flags.writeable = False
        array = array.base
    return value


class VersionList(list):
    """`list_versions`: a list of records that prints (and shows in a notebook) as a table
    with short oids, addresses in schema order."""

    def __init__(self, records: list[RefRecord], schema_keys: list[str]) -> None:
        super().__init__(records)
        self.schema_keys = list(schema_keys)

    def _rows(self) -> list[list[Any]]:
        return [[r.var, ", ".join(f"{k}={shown(v, 30)}" for k, v in
                                   {**htmlrepr.ordered(r.addr, self.schema_keys), **r.vkeys}.items()),
                 r.version, r.oid[:12], r.summary, r.created_at[:19].replace("T", " ")] for r in self]

    _HEADERS = ["variable", "address", "version", "oid", "data", "saved (UTC)"]

    def __repr__(self) -> str:
        if not self:
            return "[] (no versions)"
        rows = [self._HEADERS, *([str(c) for c in row] for row in self._rows())]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEADERS))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)

    def _repr_html_(self) -> str:
        return htmlrepr.table(self._HEADERS, self._rows()[:200], caption=f"{len(self)} versions",
                              more=max(0, len(self) - 200))


def _schema_ordered(addr: dict[str, Any]) -> dict[str, Any]:
    db = current_database()
    return htmlrepr.ordered(addr, db.schema_keys) if db is not None else addr


# -- helpers ---------------------------------------------------------------------------------
def _save_info(db: Database, data: Any) -> SaveInfo:
    hook = getattr(data, "__scistack_saveinfo__", None)
    info = hook(db) if hook is not None else None
    if info is not None:
        if getattr(data, "cached", False):  # a cache hit's objects may be old and unnamed
            if {info.oid, info.call} & freshen_lineage(db.store, [info.oid, info.call], _recently_freshened()):
                info = hook(db)  # a gc freed them since the hook looked: it stores the value again
        return info
    if isinstance(data, BaseVariable):
        data = data.data
    kind = value_kind(data)  # first: refuses an object-dtype dask array before it is computed
    try:
        oid = db.store.put_value(data)
    except UnsupportedValueError:
        if type(data) not in (list, tuple, dict):
            raise
        data = unwrap_inputs(data)  # {"emg": EMG.load(...), "fs": 2000}: the loaded value's data
        kind = value_kind(data)  # (tried only when the container cannot be stored as it is)
        oid = db.store.put_value(data)
    return SaveInfo(oid, kind, summarize(data))


_FRESHENED: dict[str, Any] = {"since": 0.0, "oids": set()}
_PARENT_KINDS = ("json", "chunked")  # a value kept as an object that names others (arrays, chunks)


def _recently_freshened() -> set[str]:
    """Oids this process made young for gc within the last hour (a walk need not repeat)."""
    now = time.monotonic()
    if now - _FRESHENED["since"] > 3600:
        _FRESHENED["since"], _FRESHENED["oids"] = now, set()
    return _FRESHENED["oids"]


def _split_for_save(db: Database, var: str, metadata: dict[str, Any]) -> tuple[dict, dict]:
    addr, vkeys = {}, {}
    for key, value in metadata.items():
        if key in db.schema_keys:
            addr[key] = _address_value(var, key, value)
        else:
            check_identifier(key, "metadata key")
            vkeys[key] = _version_value(var, key, value)
            close = difflib.get_close_matches(key, db.schema_keys, n=1, cutoff=0.8)
            if close and close[0].lower() != key.lower():  # (but for case: the index refuses it)
                warnings.warn(f"{var}.save: {key!r} is not a schema key, so it is saved as a version "
                              f"key; did you mean {close[0]!r}?", stacklevel=3)
    if vkeys:
        db.check_version_keys(vkeys)
    if not addr:
        raise InvalidMetadataError(
            f"{var}.save() needs at least one schema key to address the value; the schema is "
            f"{db.schema_keys}, e.g. {var}.save(data, {db.schema_keys[0]}=1). Saving at a coarser "
            "level (only some schema keys) is fine"
        )
    return addr, vkeys


def _address_value(var: str, key: str, value: Any) -> Any:
    return checked_label(value, f"{var}.save: {key}",
                         not_scalar=". To save several addresses, call save once per address (or use for_each)")


def _version_value(var: str, key: str, value: Any) -> Any:
    return checked_label(value, f"{var}.save: version key {key}", none_ok=True,
                         not_scalar=" (or None); save structured settings as their own variable")


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset, range))


def _load_values(db: Database, records: list[RefRecord], lazy: bool = False) -> list[Any]:
    # Sequential on purpose: for small objects, threads lose more to the GIL than they gain.
    if lazy and any(r.kind in ("chunked", "json") for r in records):
        return [_from_record_value(db, r, lazy) for r in records]
    return db.store.get_values([r.oid for r in records])


def _frame(db: Database, records: list[RefRecord], *, presorted: bool = False, lazy: bool = False) -> Any:
    """The records as the SQL view shows them: keys, version keys, lineage parameters, `data`,
    fn, version, created_at, oid."""
    import pandas as pd

    records = records if presorted else sort_records(db, records)
    if not records:  # the columns every record gives: `frame["version"]` of none is empty, no KeyError
        return pd.DataFrame({**{k: pd.Series(dtype=object) for k in (*db.schema_keys, "data", "fn")},
                             "version": pd.Series(dtype="int64"),
                             "created_at": pd.Series(dtype="datetime64[ns, UTC]"), "oid": pd.Series(dtype=object)})
    columns = {name: _key_column(values) for name, values in record_columns(db.schema_keys, records, db.store).items()}
    meta = {k: columns.pop(k) for k in FIXED}
    meta["created_at"] = pd.to_datetime(meta["created_at"], utc=True)  # a TIMESTAMPTZ in the views
    columns["data"] = _column(_load_values(db, records, lazy))
    return pd.DataFrame({**columns, **meta})


def _doubles_frame(db: Database, var: str) -> Any:
    """`_frame` of every current record of a variable of plain doubles, from one DuckDB query
    (`Index.newest_doubles`; 300k values in a fresh process: 0.6 s of CPU where the records
    and objects took 3.1 s), or None (read as usual). A frame column of doubles is float64
    as soon as one value is a float or numpy float64 (numpy float32 values alone make it
    float32, and DuckDB holds them as doubles too), so the first value is read to see which."""
    import pandas as pd

    table = db.index.newest_doubles(var)
    if table is None or not table.num_rows:
        return None
    first = table["oid"][0].as_py()
    try:
        if type(db.store.get_values([first])[0]) not in (float, np.float64):
            return None
    except ScistackError:
        return None
    held = set(table.column_names)  # (the address keys the records hold: a key none holds, all None)
    columns = {k: (table[k].to_pandas() if pa.types.is_string(table[k].type) else
                   table[k].to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).array if table[k].null_count
                   else table[k].to_numpy())
               if k in held else [None] * table.num_rows
               for k in db.schema_keys}  # (text as pandas makes it from str; ints missing somewhere: Int64)
    columns["data"] = table["value"].to_numpy()
    calls = table["call"]
    if calls.null_count == len(calls):
        fn = [None] * len(calls)
    else:
        calls = calls.to_pylist()
        names = function_names(db.store, [c for c in calls if c is not None])
        fn = [None if c is None else names.get(c) for c in calls]
    return pd.DataFrame({**columns, "fn": fn, "version": table["version"].to_numpy(),
                         "created_at": pd.to_datetime(table["created_at"].to_pandas(), utc=True).array,
                         "oid": table["oid"].to_pandas()})


def _key_column(values: list[Any]) -> Any:
    """A key column (schema key, version key, lineage parameter) as `db.sql` gives the view's:
    integers with a record lacking the key (saved at a coarser level, or without that version
    key) stay integers, the missing ones pd.NA (pandas had made the column float64, 1 -> 1.0,
    missing NaN, where the view has BIGINT and NULL); other columns as pandas makes them (a
    missing text or bool None, a missing float NaN, as `db.sql` has them too)."""
    import pandas as pd

    if None in values and any(type(v) is int for v in values) and all(type(v) is int or v is None for v in values):
        try:
            return pd.array(values, dtype="Int64")
        except (OverflowError, TypeError, ValueError):  # (beyond 64 bits: kept as they are)
            return values
    return values


def _column(values: list[Any]) -> Any:
    """Scalars become a typed column as pandas infers it (ints beside floats: float64, as a
    pandas user expects), unless that would change a value: an int that is no double
    (2**53 + 1 beside 1.5) keeps the column object, each cell what `load()` gives; arrays and
    containers stay objects in cells."""
    import pandas as pd

    kinds = set(map(type, values))  # (one C-speed pass: 300k floats had taken two Python loops)
    if values and (kinds <= _PLAIN_SCALARS or all(isinstance(v, (int, float, bool, np.generic)) for v in values)):
        column = pd.Series(values)
        if column.dtype.kind != "f" or kinds == {float} or all(_same_as_float(v) for v in values):
            return column
    return pd.Series(values, dtype=object)


_PLAIN_SCALARS = frozenset({int, float, bool})


def _same_as_float(value: Any) -> bool:
    """Whether a scalar stays itself in a float64 column (an int beyond 2**53 may not)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        return True
    return exact_as_double(int(value))
