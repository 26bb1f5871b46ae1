"""Refs in memory: `RefRecord`, the filters of a selection, and `RefState`, a fold of journal
entries held in memory.

`RefState` serves two small jobs: the writes a batch holds until it flushes (an overlay every
read consults before the SQLite fold), and the fresh fold of the whole journal that gc and
fsck judge by (they must not trust derived state). Values are never decoded here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from scistack.address import typed
from scistack.errors import AmbiguousParamError
from scistack.objects.canonical_json import dumps_canonical, float_tree, maybe_big_int
from scistack.records import RunRecord

_quote = json.encoder.encode_basestring_ascii
_NONE: frozenset[str] = frozenset()


class RefRecord:
    """One saved version of a variable at an address (a line of the journal). Immutable.

    Records read from the fold keep the address, version keys and parameters as their
    canonical text and decode them on first use: a run over 100k combinations reads 200k
    records and needs few of their dicts (the address is the combination's own).
    """

    __slots__ = ("var", "_addr", "_vkeys", "version", "oid", "kind", "call", "_params", "_params_text",
                 "summary", "created_at", "addr_key", "vkeys_key")

    def __init__(self, var: str, addr: dict[str, Any] | None, vkeys: dict[str, Any] | None, version: int,
                 oid: str, kind: str, call: str | None, params: dict[str, Any] | None, summary: str,
                 created_at: str, addr_key: str = "", vkeys_key: str = "", params_text: str = "") -> None:
        _fill(self, var, addr, vkeys, version, oid, kind, call, params, params_text, summary, created_at,
              addr_key, vkeys_key)

    @classmethod
    def from_text(cls, var: str, addr_key: str, vkeys_key: str, version: int, oid: str, kind: str,
                  call: str | None, params_text: str, summary: str, created_at: str) -> RefRecord:
        """A record whose dicts are decoded from their canonical text when first read."""
        self = object.__new__(cls)  # a point load builds one per version: skip __init__'s call
        _fill(self, var, None, None, version, oid, kind, call, None, params_text, summary, created_at,
              addr_key, vkeys_key)
        return self

    @classmethod
    def from_row(cls, var: str, addr_key: str, row: tuple) -> RefRecord:
        """A record of `var` at `addr_key` from a fold row (version, vkeys, oid, kind, call,
        params, summary, created_at), its dicts decoded when first read. Built through an
        unsealed twin whose slots take plain assignments, then sealed: a quarter of the cost
        of `from_text`'s thirteen `object.__setattr__` calls (a point load builds one)."""
        self = _new(_Unsealed)
        self.version, self.vkeys_key, oid, self.kind, self.call, self._params_text, summary, \
            self.created_at = row
        self.oid = oid.hex() if type(oid) is bytes else oid  # the fold keeps 32 bytes (`fold.oid_in`)
        self.summary = summary or ""
        self.var, self.addr_key = var, addr_key
        self._addr = self._vkeys = self._params = None
        self.__class__ = cls
        return self

    @property
    def addr(self) -> dict[str, Any]:
        if self._addr is None:
            object.__setattr__(self, "_addr", _loads_key(self.addr_key))
        return self._addr

    @property
    def vkeys(self) -> dict[str, Any]:
        if self._vkeys is None:
            object.__setattr__(self, "_vkeys", {} if self.vkeys_key == "{}" else _loads_key(self.vkeys_key))
        return self._vkeys

    @property
    def params(self) -> dict[str, Any]:
        """The lineage parameters, a NaN or infinite constant as the float (`untagged_params`)."""
        if self._params is None:
            text = self._params_text
            params = {} if text in ("", "{}") else json.loads(text)
            object.__setattr__(self, "_params", untagged_params(params) if '"$float"' in text else params)
        return self._params

    def recorded_params(self) -> dict[str, Any]:
        """The parameters as the journal holds them (NaN and infinities tagged)."""
        return tagged_params(self.params)

    @property
    def has_params(self) -> bool:
        """Whether any lineage parameter is recorded (read without decoding them)."""
        return bool(self._params) if self._params is not None else self._params_text not in ("", "{}")

    def to_dict(self) -> dict[str, Any]:
        """The record's fields, as plain data."""
        return {"var": self.var, "addr": self.addr, "vkeys": self.vkeys, "version": self.version,
                "oid": self.oid, "kind": self.kind, "call": self.call, "params": self.params,
                "summary": self.summary, "created_at": self.created_at}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RefRecord is immutable (cannot set {name})")

    def _fields(self) -> tuple:
        return (self.var, self.addr_key, self.vkeys_key, self.version, self.oid, self.kind, self.call,
                key_of(self.recorded_params()), self.summary, self.created_at)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RefRecord) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.var, self.addr_key, self.vkeys_key, self.version, self.oid))

    def __repr__(self) -> str:
        return (f"RefRecord(var={self.var!r}, addr={self.addr!r}, vkeys={self.vkeys!r}, version={self.version}, "
                f"oid={self.oid!r}, kind={self.kind!r}, call={self.call!r}, params={self.params!r}, "
                f"summary={self.summary!r}, created_at={self.created_at!r})")

    def __reduce__(self) -> tuple:
        return (RefRecord, (self.var, self.addr, self.vkeys, self.version, self.oid, self.kind, self.call,
                            self.recorded_params(), self.summary, self.created_at, self.addr_key,
                            self.vkeys_key))

    @classmethod
    def from_entry(cls, e: dict[str, Any], addr_key: str | None = None) -> RefRecord:
        """Build from a journal `put` entry (`addr_key`: its address's `key_of`, when known)."""
        return cls(
            e["var"], e["addr"], e.get("vkeys") or {}, e["version"], e["oid"], e["kind"],
            e.get("call"), e.get("params") or {}, e.get("summary", ""), e["t"],
            key_of(e["addr"]) if addr_key is None else addr_key, key_of(e.get("vkeys") or {}),
        )

    def to_entry(self) -> dict[str, Any]:
        """The journal `put` entry for this record."""
        return {
            "op": "put", "var": self.var, "addr": self.addr, "vkeys": self.vkeys,
            "version": self.version, "oid": self.oid, "kind": self.kind, "call": self.call,
            "params": self.recorded_params(), "summary": self.summary, "t": self.created_at,
        }


class _Unsealed(RefRecord):
    """`RefRecord`'s layout with plain attribute assignment, for `from_row` only."""

    __slots__ = ()
    __setattr__ = object.__setattr__


_new = object.__new__


def _fill(self: RefRecord, var: str, addr: Any, vkeys: Any, version: int, oid: str, kind: str, call: Any,
          params: Any, params_text: str, summary: str, created_at: str, addr_key: str, vkeys_key: str) -> None:
    """Set every slot of an immutable record, through the slots' own setters (half the cost of
    `object.__setattr__` by name: `load_all` of 10k records builds 10k of them)."""
    _SET_VAR(self, var)
    _SET_ADDR(self, addr)
    _SET_VKEYS(self, vkeys)
    _SET_VERSION(self, version)
    _SET_OID(self, oid)
    _SET_KIND(self, kind)
    _SET_CALL(self, call)
    _SET_PARAMS(self, untagged_params(params) if params else params)  # (from a journal entry: tagged)
    _SET_PARAMS_TEXT(self, params_text)
    _SET_SUMMARY(self, summary)
    _SET_CREATED_AT(self, created_at)
    _SET_ADDR_KEY(self, addr_key)
    _SET_VKEYS_KEY(self, vkeys_key)


(_SET_VAR, _SET_ADDR, _SET_VKEYS, _SET_VERSION, _SET_OID, _SET_KIND, _SET_CALL, _SET_PARAMS, _SET_PARAMS_TEXT,
 _SET_SUMMARY, _SET_CREATED_AT, _SET_ADDR_KEY, _SET_VKEYS_KEY) = (
    getattr(RefRecord, slot).__set__ for slot in RefRecord.__slots__)


def tagged_params(params: dict[str, Any]) -> dict[str, Any]:
    """Lineage parameters as the journal records them: a NaN or infinite float tagged."""
    for value in params.values():
        if type(value) is float and value - value != 0:  # (nan for nan and the infinities)
            return {k: float_tree(v) if type(v) is float else v for k, v in params.items()}
    return params


def untagged_params(params: dict[str, Any]) -> dict[str, Any]:
    """Lineage parameters as the call had them: JSON holds no NaN or infinity, so such a
    constant is recorded tagged (`{"$float": "inf"}`, as every canonical value) and read
    back here as the float."""
    for value in params.values():
        if type(value) is dict:
            return {k: float(v["$float"]) if type(v) is dict and v.keys() == {"$float"} else v
                    for k, v in params.items()}
    return params


def key_of(mapping: dict[str, Any]) -> str:
    """The canonical text of an address or version-key dict: typed (1 and "1" differ).

    Addresses are flat dicts of scalars, so their canonical JSON is built directly (with the C
    string escaper `json` itself uses): folding a journal spends most of its time here. Anything
    else goes through the canonical encoder; a property test pins the two to the same text.
    """
    if not mapping:
        return "{}"
    parts = []
    for key in sorted(mapping):
        text = _value_text(mapping[key])
        if text is None:
            return dumps_canonical(mapping).decode("ascii")
        parts.append(f"{_quote(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def keys_of(mappings: list[dict[str, Any]]) -> list[str]:
    """`key_of` of many addresses that mostly share their keys and values (a for_each's
    combinations): each key order and each distinct value is written once."""
    orders: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    texts: dict[tuple[type, Any], str | None] = {}
    out = []
    for mapping in mappings:
        shape = tuple(mapping)
        order = orders.get(shape)
        if order is None:
            order = orders[shape] = [(k, f"{_quote(k)}:") for k in sorted(mapping)] if type(mapping) is dict else []
        parts = []
        for key, label in order:
            value = mapping[key]
            kind = type(value)
            memo = (kind, float.__repr__(value) if kind is float else value)  # -0.0 == 0.0
            try:
                text = texts[memo]
            except KeyError:
                text = texts[memo] = _value_text(value)
            except TypeError:  # unhashable: not an address value
                text = None
            if text is None:
                break
            parts.append(label + text)
        else:
            if order:
                out.append("{" + ",".join(parts) + "}")
                continue
        out.append(key_of(mapping))
    return out


def _value_text(value: Any) -> str | None:
    """An address value's canonical JSON text, or None when only the encoder can say."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None:
        return "null"
    return None


def shown_as(value: Any) -> tuple[str, tuple[str, ...]] | None:
    """An address value's type ("int", "float", "str", "bool") and the texts it shows as in a
    column holding text as well as numbers (a view's VARCHAR column, `where=`): 1 and "1" both
    show as `1`, a whole float such as 1.0 as `1.0` and `1`. (A save makes a whole float its int
    first, `address_value`: one reaches an address as a float only beyond 2**53, 2.0**60 beside
    the int 2**60, or from a journal written before that rule.) None for None (and what an
    address cannot hold)."""
    kind = type(value)
    if kind is str:
        return "str", (value,)
    if kind is bool:
        return "bool", ("true" if value else "false",)
    if kind is int:
        return "int", (int.__repr__(value),)
    if kind is float:
        text = float.__repr__(value)
        return "float", ((text, str(int(value))) if math.isfinite(value) and value.is_integer() else (text,))
    return None


class RefState:
    """Refs, call cache and runs folded from the journal."""

    def __init__(self) -> None:
        self.offset = 0
        self._refs: dict[str, dict[str, list[RefRecord]]] = {}
        self._max_version: dict[tuple[str, str], int] = {}
        self._vkey_names: dict[str, set[str]] = {}
        self._param_names: dict[str, set[str]] = {}
        self.calls: dict[str, dict[str, Any]] = {}
        self.call_keys: dict[str, str] = {}  # call record oid -> its call key (every call entry, ever)
        self.runs: list[RunRecord] = []
        # (a batch's overlay only, `hold`) variable -> address key -> versions its held deletes take
        # out of the fold: reads leave them out, as the fold will once the batch is written
        self.gone: dict[str, dict[str, set[int]]] = {}
        # (a batch's overlay only) (variable, version key) -> (type, value) of each value its
        # held saves hold there: a save of a look-alike beside one is refused (`Index._check_vkey_value`)
        self.held_vkeys: dict[tuple[str, str], set[tuple[type, Any]]] = {}

    # -- folding -------------------------------------------------------------------------
    def apply(self, entry: dict[str, Any]) -> RefRecord | None:
        """Fold one journal entry (validated by the journal's reader); returns a put's record."""
        op = entry.get("op")
        if op == "put":
            return self.add(RefRecord.from_entry(entry))
        if op == "del":
            self._remove(entry["var"], key_of(entry["addr"]), entry["version"])
        elif op == "call" or op == "uncall":  # (the one rule: `call_changes`)
            apply_call_changes(self.calls, call_changes((entry,)))
            if op == "call":
                self.call_keys[entry["call"]] = entry["key"]
        elif op == "run":
            self.runs.append(RunRecord.from_entry(entry))
        return None

    def hold(self, entry: dict[str, Any]) -> None:
        """Fold one entry a batch holds (`apply`), a delete kept in `gone` too: the records it
        removes are in the fold, not here (a batch writes what it holds before a delete, so
        held deletes name only journalled records), and every read of the fold must leave them
        out until the batch is written."""
        record = self.apply(entry)
        if record is not None:
            for key, value in record.vkeys.items():
                if shown_as(value) is not None:
                    self.held_vkeys.setdefault((record.var, key), set()).add((type(value), value))
        if entry["op"] == "del":
            self.gone.setdefault(entry["var"], {}).setdefault(key_of(entry["addr"]), set()).add(entry["version"])

    def add(self, record: RefRecord) -> RefRecord:
        """Add a record (keeping each address's versions in order)."""
        versions = self._refs.setdefault(record.var, {}).setdefault(record.addr_key, [])
        versions.append(record)
        if len(versions) > 1 and versions[-2].version > record.version:
            versions.sort(key=lambda r: r.version)
        slot = (record.var, record.addr_key)
        self._max_version[slot] = max(self._max_version.get(slot, 0), record.version)
        if record.vkeys:
            self._vkey_names.setdefault(record.var, set()).update(record.vkeys)
        if record.params:
            self._param_names.setdefault(record.var, set()).update(record.params)
        return record

    def _remove(self, var: str, addr_key: str, version: int) -> None:
        versions = self._refs.get(var, {}).get(addr_key)
        if versions:
            versions[:] = [r for r in versions if r.version != version]
            if not versions:
                del self._refs[var][addr_key]

    def next_version(self, var: str, addr_key: str) -> int:
        """The version number the next save at this address gets (numbers are never reused)."""
        return self._max_version.get((var, addr_key), 0) + 1

    # -- reading -------------------------------------------------------------------------
    def variables(self) -> list[str]:
        """Names of variables with at least one live record."""
        return sorted(v for v, addrs in self._refs.items() if addrs)

    def records(self, var: str) -> Iterator[RefRecord]:
        """Every live record of a variable, all versions."""
        for versions in self._refs.get(var, {}).values():
            yield from versions

    def count(self, var: str) -> int:
        """How many live records the variable has (every version)."""
        return sum(map(len, self._refs.get(var, {}).values()))

    def versions_at(self, var: str, addr_key: str) -> list[RefRecord]:
        """All live versions at one address, oldest first."""
        return self._refs.get(var, {}).get(addr_key, [])

    def current_at(self, var: str, addr_key: str, vkeys_key: str) -> RefRecord | None:
        """The newest record at an address with exactly these version keys."""
        for record in reversed(self.versions_at(var, addr_key)):
            if record.vkeys_key == vkeys_key:
                return record
        return None

    def vkey_names(self, var: str) -> set[str]:
        """Version-key names used by any record of the variable (ever: names are cheap hints)."""
        return self._vkey_names.get(var, _NONE)

    def param_names(self, var: str) -> set[str]:
        """Qualified lineage parameter names recorded for the variable (ever)."""
        return self._param_names.get(var, _NONE)


def resolve_params(var: str, params: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Map bare parameter names to `function.param` spellings, refusing ambiguity."""
    resolved = {}
    for name, value in params.items():
        if name in known:
            resolved[name] = value
            continue
        spellings = sorted(k for k in known if k.rsplit(".", 1)[-1] == name)
        if len(spellings) > 1:
            raise AmbiguousParamError(
                f"{var}: parameter {name!r} is ambiguous, it names {', '.join(spellings)}; "
                f"use the qualified spelling, e.g. load(**{{{spellings[0]!r}: {value!r}}})"
            )
        resolved[spellings[0] if spellings else name] = value
    return resolved


def select_from(
    groups: Iterable[list[RefRecord]], addr: dict[str, Any], vkeys: dict[str, Any],
    params: dict[str, Any], *, all_versions: bool = False,
) -> list[RefRecord]:
    """Filter records grouped by address (each group oldest version first); unless
    `all_versions`, keep the newest matching record per (address, version keys). A key an
    address or version keys lack counts as None: `session=None` asks for the records saved
    without a session (at a coarser level), as `where="session IS NULL"` does (no saved label
    is None: save refuses it), and `note=None` for the variant saved without a note."""
    out: list[RefRecord] = []
    addr_f, vkeys_f, params_f = _compile(addr), _compile(vkeys), _compile(params)
    if addr_f:
        groups = list(groups)
        decode_addresses([versions[0] for versions in groups if versions])
    elif not vkeys_f and not params_f:  # nothing to match: each group's newest per variant
        for versions in groups:
            if len(versions) == 1 or all_versions:
                out.extend(reversed(versions))
            elif versions:
                out.extend(newest_per_variant(versions))
        return out
    for versions in groups:
        if not versions or (addr_f and not _matches(versions[0].addr, addr_f, absent=None)):
            continue
        seen: set[str] = set()
        for record in reversed(versions):
            if not all_versions and record.vkeys_key in seen:
                continue
            if (not vkeys_f or _matches(record.vkeys, vkeys_f, absent=None)) and (
                    not params_f or _matches(record.params, params_f)):
                out.append(record)
                seen.add(record.vkeys_key)
    return out


def _loads_key(text: str) -> dict[str, Any]:
    """An address's (or version keys') canonical text as a dict: orjson (0.3 us, not 1.5: a
    cache hit reads its input's address) unless an integer may pass 64 bits (orjson would make
    it a float) or orjson refuses the text."""
    data = text.encode()
    if not maybe_big_int(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def decode_addresses(records: list[RefRecord]) -> list[dict[str, Any]]:
    """The records' addresses, those read as text (`from_text`) decoded in one orjson call
    instead of a `json.loads` each (a third of a `load_all` of 10k records went there); the
    list saves a caller the `addr` property's call per record (0.2 s of 300k)."""
    todo = [r for r in records if r._addr is None]
    for record, addr in zip(todo, decode_keys([r.addr_key for r in todo]) if todo else ()):
        object.__setattr__(record, "_addr", addr)
    return [r._addr for r in records]


def decode_keys(keys: list[str]) -> list[dict[str, Any]]:
    """Address (or version-key) texts as dicts, in one orjson call (orjson makes an integer
    beyond 64 bits a float: such texts, or any orjson refuses, go to `json` one by one)."""
    text = "[" + ",".join(keys) + "]"
    try:
        found = None if maybe_big_int(text.encode()) else orjson.loads(text)
    except orjson.JSONDecodeError:
        found = None
    if found is None or len(found) != len(keys):
        found = [json.loads(key) for key in keys]
    return found


def matching_addresses(addr_keys: list[str], want: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(key, address) of the address keys (canonical texts) that `select_from`'s address
    filter `want` keeps (every one when `want` is empty), decoded in one orjson call: a
    partial address (`load(subject=1)`) need not make a record of every ref of the variable
    to find its few."""
    pairs: Any = zip(addr_keys, decode_keys(addr_keys))
    if not want:  # (every one: no call per address)
        return list(pairs)
    for name, value in want.items():  # first by plain equality, a superset of `_matches`' (1 == 1.0
        if is_multi(value):  # == True) for an address's JSON scalars, without a call per address
            try:
                accepted = set(value)
            except TypeError:
                continue
            pairs = [(key, addr) for key, addr in pairs if addr.get(name) in accepted]
        elif value == value:  # (a NaN meets NaN in `_matches` alone)
            pairs = [(key, addr) for key, addr in pairs if addr.get(name) == value]
    compiled = _compile(want)
    return [(key, addr) for key, addr in pairs if _matches(addr, compiled, absent=None)]


def newest_per_variant(versions: list[RefRecord]) -> list[RefRecord]:
    """The newest version per version-key variant of one address (given oldest first), newest
    first: what `select_from` keeps of a group when nothing but the address filters."""
    if len(versions) == 1:
        return list(versions)
    out, seen = [], set()
    for record in reversed(versions):
        if record.vkeys_key not in seen:
            seen.add(record.vkeys_key)
            out.append(record)
    return out


def is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset, range))


_NO = object()


def _compile(want: dict[str, Any]) -> list[tuple[str, Any]]:
    """Filters as (key, normalised value or set of them): list membership costs O(1)."""
    return [(k, frozenset(map(_norm, v)) if is_multi(v) else _norm(v)) for k, v in want.items()]


def _matches(have: dict[str, Any], want: dict[str, Any] | list[tuple[str, Any]], *, absent: Any = _NO) -> bool:
    """Whether `have` holds every wanted value. `absent`: the value a missing key counts as
    (None: `note=None` asks for the variant saved without a note, `session=None` for the
    addresses without a session)."""
    for key, wanted in (_compile(want) if isinstance(want, dict) else want):
        if key not in have:
            if absent is _NO:
                return False
            stands_for = _norm(absent)
            if not (wanted == stands_for or (isinstance(wanted, frozenset) and stands_for in wanted)):
                return False
            continue
        value = _norm(have[key])
        if value != wanted and not (isinstance(wanted, frozenset) and value in wanted):
            return False
    return True


_norm = typed


def call_changes(entries: Iterable[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The changes journal entries make to the call cache, in journal order: the one rule by
    which `RefState`, the local fold (`fold._apply`) and DuckDB's `scistack.calls` (the `sql`
    sync) keep it, so all agree on every key. A `call` line makes its key's entry, the last in
    journal order winning: a later record of a call replaces the entry (a twin's or a moved
    project's record taking it over, an import's `raw_to`, fsck naming another intact record,
    and two processes or machines that computed the call at once, the second unable to know
    when it journals that it lost). An `uncall` line drops the key's entry only while the
    entry names that record. Returned as ("put", {key: entry}) for each run of call lines
    (each key's last line in the run) and ("drop", [(key, call), ...]) for each run of uncall
    lines. (Only the entries: which key a call record has, `call_keys`, is every call line's.)"""
    changes: list[tuple[str, Any]] = []
    for entry in entries:
        op, key, call = entry.get("op"), entry.get("key"), entry.get("call")
        if op not in ("call", "uncall") or not isinstance(key, str) or not isinstance(call, str):
            continue
        kind = "put" if op == "call" else "drop"
        if not changes or changes[-1][0] != kind:
            changes.append((kind, {} if kind == "put" else []))
        if kind == "put":
            changes[-1][1][key] = entry
        else:
            changes[-1][1].append((key, call))
    return changes


def apply_call_changes(calls: dict[str, dict[str, Any]], changes: list[tuple[str, Any]]) -> None:
    """`call_changes` applied to a cache held in a dict (key -> its entry)."""
    for kind, change in changes:
        if kind == "put":
            calls.update(change)
        else:
            for key, call in change:
                if (calls.get(key) or {}).get("call") == call:
                    del calls[key]
