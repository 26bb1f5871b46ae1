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

import difflib
import threading
import warnings
from typing import Any

import numpy as np

from scistack.address import is_address_value, plain
from scistack.database import Database, SaveInfo, get_database
from scistack.errors import (
    AmbiguousVersionError,
    DuplicateVariableError,
    InvalidMetadataError,
    VariableNotFoundError,
)
from scistack.index import RefRecord, check_identifier
from scistack.selection import ambiguous_error, select_records, sort_records
from scistack.objects.codec import value_kind
from scistack.summary import summarize
from scistack.where import FIXED, record_columns

_registry: dict[str, type[BaseVariable]] = {}
_registry_lock = threading.Lock()


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

    def __init__(self, data: Any = None, *, record: RefRecord | None = None) -> None:
        self.data = data
        self.record = record

    # -- record fields -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def metadata(self) -> dict[str, Any]:
        """Address and version keys the value was saved with."""
        return {**self.record.addr, **self.record.vkeys} if self.record else {}

    @property
    def oid(self) -> str | None:
        return self.record.oid if self.record else None

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
        if not db.store.contains(r.oid):  # loaded from another project: copy the value over
            db.store.put_value(self.data)
        return SaveInfo(r.oid, r.kind, r.summary, r.call, r.params)

    def __scistack_input__(self) -> tuple:
        """(value, oid, variable name, metadata, call, params): how lineage sees a loaded input."""
        r = self.record
        if r is None:
            return self.data, None, self.name, {}, None, {}
        return self.data, r.oid, self.name, self.metadata, r.call, r.params

    def __repr__(self) -> str:
        if self.record is None:
            return f"{self.name}(unsaved, data={summarize(self.data)})"
        meta = ", ".join(f"{k}={v!r}" for k, v in self.metadata.items())
        return f"{self.name}({meta}, version={self.version}, oid={self.oid[:12]}, data={self.record.summary})"

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
        db = get_database()
        addr, vkeys = _split_for_save(db, cls.__name__, metadata)
        info = _save_info(db, data)
        record = db.index.put_ref(cls.__name__, addr, vkeys, info.oid, info.kind, call=info.call,
                                  params=info.params, summary=info.summary)
        value = getattr(data, "data", data) if hasattr(data, "__scistack_saveinfo__") else data
        return cls(value, record=record)

    # -- load ------------------------------------------------------------------------------
    @classmethod
    def load(cls, *, version: int | None = None, as_df: bool = False, where: str | tuple | None = None,
             **metadata: Any) -> Any:
        """Load by metadata: a full address gives one variable, a partial one a list.

        A list value means any of (`subject=[1, 2]`); `where` is a SQL condition over schema
        keys, version keys, lineage parameters, fn, version and created_at
        (`where="subject > 3 AND low_hz = 20"`, or `("subject > ?", [3])` to bind values).

        Raises
        ------
        VariableNotFoundError
            Nothing matches; the message lists what exists nearby.
        AmbiguousVersionError
            Several version-key variants at the address and no selector among them.
        """
        db = get_database()
        records = select_records(db, cls.__name__, metadata, version=version, where=where)
        if as_df:
            return _frame(db, records)
        by_addr: dict[str, list[RefRecord]] = {}
        for record in records:
            by_addr.setdefault(record.addr_key, []).append(record)
        asked = {k for k, v in metadata.items() if k in db.schema_keys and not _is_multi(v)}
        if len(by_addr) == 1 and set(records[0].addr) == asked:
            if len(records) > 1:
                raise ambiguous_error(cls.__name__, records)
            return cls._from_record(db, records[0])
        return [cls._from_record(db, r) for r in sort_records(db, records)]

    @classmethod
    def load_one(cls, **metadata: Any) -> BaseVariable:
        """Exactly one record (newest version), or an error saying how to narrow the query."""
        found = cls.load(**metadata)
        if isinstance(found, list):
            if len(found) != 1:
                db = get_database()
                raise AmbiguousVersionError(
                    f"{len(found)} records of {cls.__name__} match {metadata}, one is needed; give "
                    f"the full address (schema keys {db.schema_keys}) and any version keys"
                )
            found = found[0]
        return found

    @classmethod
    def load_all(cls, *, as_df: bool = False, where: str | tuple | None = None, **metadata: Any) -> Any:
        """Every current record matching `metadata` and `where` (all when empty): a generator,
        or a DataFrame with the columns of the SQL view (`data` holding the value)."""
        db = get_database()
        try:
            records = sort_records(db, select_records(db, cls.__name__, metadata, where=where))
        except VariableNotFoundError:
            records = []
        if as_df:
            return _frame(db, records, presorted=True)
        return (cls._from_record(db, r) for r in records)

    @classmethod
    def list_versions(cls, **metadata: Any) -> list[RefRecord]:
        """Every saved version matching `metadata`, oldest first within each address."""
        db = get_database()
        return sort_records(db, select_records(db, cls.__name__, metadata, all_versions=True))

    @classmethod
    def delete(cls, *, version: int | None = None, **metadata: Any) -> int:
        """Remove the names of matching records, every version unless `version=` is given.

        The values stay in the object store until `scistack gc` reclaims them.
        """
        db = get_database()
        records = select_records(db, cls.__name__, metadata, version=version, all_versions=True)
        return db.index.delete_refs(records)

    @classmethod
    def _from_record(cls, db: Database, record: RefRecord) -> BaseVariable:
        return cls(_read_only(db.store.get_value(record.oid)), record=record)


def _read_only(value: Any) -> Any:
    """A loaded array is keyed by its oid in lineage: writing to it in place would make every
    result computed from it lie about its input, so it is read-only (copy it to change it)."""
    array = value
    while isinstance(array, np.ndarray):
        array.flags.writeable = False
        array = array.base
    return value


# -- helpers ---------------------------------------------------------------------------------
def _save_info(db: Database, data: Any) -> SaveInfo:
    hook = getattr(data, "__scistack_saveinfo__", None)
    info = hook(db) if hook is not None else None
    if info is not None:
        return info
    if isinstance(data, BaseVariable):
        data = data.data
    return SaveInfo(db.store.put_value(data), value_kind(data), summarize(data))


def _split_for_save(db: Database, var: str, metadata: dict[str, Any]) -> tuple[dict, dict]:
    addr, vkeys = {}, {}
    for key, value in metadata.items():
        if key in db.schema_keys:
            addr[key] = _address_value(var, key, value)
        else:
            check_identifier(key, "metadata key")
            vkeys[key] = _version_value(var, key, value)
            close = difflib.get_close_matches(key, db.schema_keys, n=1, cutoff=0.8)
            if close:
                warnings.warn(f"{var}.save: {key!r} is not a schema key, so it is saved as a version "
                              f"key; did you mean {close[0]!r}?", stacklevel=3)
    if not addr:
        raise InvalidMetadataError(
            f"{var}.save() needs at least one schema key to address the value; the schema is "
            f"{db.schema_keys}, e.g. {var}.save(data, {db.schema_keys[0]}=1). Saving at a coarser "
            "level (only some schema keys) is fine"
        )
    return addr, vkeys


def _address_value(var: str, key: str, value: Any) -> Any:
    value = plain(value)
    if not is_address_value(value):
        raise InvalidMetadataError(
            f"{var}.save: {key}={value!r} is a {type(value).__name__}; an address value must be one "
            "int, str, finite float or bool. To save several addresses, call save once per address "
            "(or use for_each)"
        )
    return value


def _version_value(var: str, key: str, value: Any) -> Any:
    value = plain(value)
    if value is not None and not is_address_value(value):
        raise InvalidMetadataError(
            f"{var}.save: version key {key}={value!r} must be an int, str, float, bool or None "
            f"(got {type(value).__name__}); save structured settings as their own variable"
        )
    return value


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset, range))


def _load_values(db: Database, records: list[RefRecord]) -> list[Any]:
    # Sequential on purpose: for small objects, threads lose more to the GIL than they gain.
    get = db.store.get_value
    return [get(r.oid) for r in records]


def _frame(db: Database, records: list[RefRecord], *, presorted: bool = False) -> Any:
    """The records as the SQL view shows them: keys, version keys, lineage parameters, `data`,
    fn, version, created_at, oid."""
    import pandas as pd

    records = records if presorted else sort_records(db, records)
    if not records:
        return pd.DataFrame(columns=[*db.schema_keys, "data"])
    columns = record_columns(db.schema_keys, records, db.store)
    meta = {k: columns.pop(k) for k in FIXED}
    columns["data"] = _column(_load_values(db, records))
    return pd.DataFrame({**columns, **meta})


def _column(values: list[Any]) -> Any:
    """Scalars become a typed column; arrays and containers stay objects in cells."""
    import pandas as pd

    if values and all(isinstance(v, (int, float, bool, np.generic)) for v in values):
        return pd.Series(values)
    return pd.Series(values, dtype=object)
