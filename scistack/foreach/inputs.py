"""Input specifications of `for_each` and how each resolves at one combination.

A variable class loads at the combination's address; `Fixed(Var, session="baseline")` pins
some keys; `Merge(A, B)` joins several variables into one table; anything else is a constant.
Resolution yields oids only: values are read from the store just for combinations that run.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from scistack.address import checked_label, coarser_addresses, query_value
from scistack.database import Database
from scistack.errors import InvalidMetadataError, UnsupportedValueError
from scistack.foreach.filestats import file_stats
from scistack.foreach.paths import PathInput, PathOutput
from scistack.index import RefRecord, key_of
from scistack.index.state import is_multi
from scistack.lineage.calls import BoundInput, agreed_params, describe
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.hashing import hash_bytes
from scistack.objects.store import ObjectStore
from scistack.selection import choose_variant, split_metadata


class Fixed:
    """Load `variable` with some address keys pinned: `Fixed(RawEMG, session="baseline")`."""

    def __init__(self, variable: type, **pinned: Any) -> None:
        if not is_variable(variable):
            raise InvalidMetadataError(_not_a_variable("Fixed", variable, "Fixed(RawEMG, session=\"baseline\")"))
        self.variable = variable
        self.pinned = {key: query_value(value) for key, value in pinned.items()}  # (numpy scalars too)
        refuse_several_pinned(getattr(variable, "__name__", repr(variable)), self.pinned)
        # (None pins the variant saved without a version key; a NaN had failed every combination)
        for key, value in self.pinned.items():
            checked_label(value, f"Fixed({variable.__name__}, {key}", closing=")", none_ok=True)

    def __repr__(self) -> str:
        pins = ", ".join(f"{k}={v!r}" for k, v in self.pinned.items())
        return f"Fixed({self.variable.__name__}, {pins})"


def refuse_several_pinned(var: str, pinned: dict[str, Any]) -> None:
    """A Fixed input is the record at one address: several values for a key (which had been
    taken for variants of one address, failing every combination) are refused with the way."""
    several = next((k for k, v in pinned.items() if isinstance(v, (list, range))), None)
    if several is not None:
        first, *_ = list(pinned[several]) or ["..."]
        raise InvalidMetadataError(
            f"Fixed({var}, {several}={pinned[several]!r}) pins several values; a Fixed input is the "
            f"record at one address. Give one input per value, e.g. inputs={{..., "
            f"\"{several}_{first}\": Fixed({var}, {several}={first!r}), ...}}")


class Merge:
    """Several variables at one combination, joined into one DataFrame (a column each)."""

    def __init__(self, *variables: Any) -> None:
        if len(variables) < 2:
            raise InvalidMetadataError("Merge needs at least two variables, e.g. Merge(Force, Velocity)")
        for part in variables:
            if not (is_variable(part) or isinstance(part, Fixed)):
                raise InvalidMetadataError(_not_a_variable("Merge", part, "Merge(Force, Fixed(Velocity, trial=1))"))
        self.columns = _merge_columns(variables)
        if len(set(self.columns)) < len(self.columns):
            twice = next(c for c in self.columns if self.columns.count(c) > 1)
            raise InvalidMetadataError(
                f"Merge names {twice} twice: each member must be another variable, or the same one at "
                f"another address, e.g. Merge({twice.split('[')[0]}, Fixed({twice.split('[')[0]}, session=\"baseline\"))")
        self.variables = variables


def _merge_columns(variables: tuple) -> list[str]:
    """Each member's column in the merged table: its variable's name, or, for a variable that
    is merged more than once, `Force[session=baseline]` for a `Fixed` member."""
    names = [(part.variable if isinstance(part, Fixed) else part).__name__ for part in variables]
    return [name + "[" + ",".join(f"{k}={v}" for k, v in part.pinned.items()) + "]"
            if isinstance(part, Fixed) and names.count(name) > 1 else name
            for name, part in zip(names, variables)]


class MergePart(NamedTuple):
    """A `Merge` member at one combination: its column, its records, and the keys a `Fixed`
    member pinned (its rows stand beside the combination's whatever their value there)."""

    column: str
    records: list[RefRecord]
    pinned: tuple[str, ...]


def _not_a_variable(what: str, given: Any, example: str) -> str:
    """The message for something that is not a variable class where one is needed: a loaded
    value (its class is meant) and a name in a string are the usual slips."""
    takes = "a variable class" if what == "Fixed" else "variable classes"
    if is_variable(type(given)):
        return f"{what} takes {takes}, got a loaded value {given!r}: give its class {type(given).__name__}, e.g. {example}"
    return f"{what} takes {takes} (class Force(BaseVariable): pass), got {given!r}, e.g. {example}"


class EachOf:
    """Alternatives for one input: `EachOf(RawEMG, CleanEMG)` runs the function once with each.

    Each alternative's results are saved with a version key named after the parameter whose
    value says which alternative made them (`signal="RawEMG"`; a constant's `repr`, or the
    label given with `labels=`).
    """

    def __init__(self, *alternatives: Any, labels: list[str] | None = None) -> None:
        if len(alternatives) < 2:
            raise InvalidMetadataError("EachOf needs at least two alternatives, e.g. EachOf(RawEMG, CleanEMG)")
        self.alternatives = alternatives
        self.labels = list(labels) if labels is not None else [_label(a) for a in alternatives]
        if len(self.labels) != len(alternatives) or len(set(self.labels)) != len(self.labels):
            raise InvalidMetadataError(
                f"EachOf labels {self.labels} must be one distinct label per alternative; pass "
                "labels=[...] to name them")

    def __repr__(self) -> str:
        return f"EachOf({', '.join(self.labels)})"


def _label(spec: Any) -> str:
    if is_variable(spec):
        return spec.__name__
    if isinstance(spec, Fixed):
        return spec.variable.__name__ + "".join(f",{k}={v}" for k, v in spec.pinned.items())
    if isinstance(spec, (str, int, float, bool)):
        return str(spec)
    return repr(spec)


def is_variable(spec: Any) -> bool:
    """Whether an input spec is a variable class (declared with BaseVariable)."""
    return isinstance(spec, type) and hasattr(spec, "load_all") and hasattr(spec, "save")


def is_loaded_input(spec: Any) -> bool:
    """Whether an input loads from the database at each combination."""
    return is_variable(spec) or isinstance(spec, (Fixed, Merge, PathInput, PathOutput))


@dataclass(slots=True)
class Resolved:
    """One input at one combination: records to load, and the lineage view (BoundInput)."""

    bound: BoundInput
    records: list[RefRecord] | None   # None for constants
    aggregate: bool
    var: str | None
    parts: tuple[MergePart, ...] = ()  # a Merge's members


def resolve(db: Database, name: str, spec: Any, combo: dict[str, Any], *, as_table: bool,
            addr_key: str | None = None) -> Resolved | None:
    """The input at `combo` (whose `key_of` is `addr_key`, if known), or None when it is missing there."""
    if isinstance(spec, Merge):
        parts = [resolve(db, name, s, combo, as_table=True) for s in spec.variables]
        if any(p is None for p in parts):
            return None
        pins = [tuple(s.pinned) if isinstance(s, Fixed) else () for s in spec.variables]
        tree: dict[str, Any] = {"merge": [p.bound.oid for p in parts]}  # type: ignore[union-attr]
        if any(pins):  # laid out differently before 2026-12 (a pinned member's rows stood apart):
            tree["pinned"] = [list(p) for p in pins]  # so keyed apart from those results
        key = hash_bytes(dumps_canonical(tree))
        records = [r for p in parts for r in p.records]  # type: ignore[union-attr]
        params = agreed_params(p.bound.params for p in parts)  # type: ignore[union-attr]
        var = "+".join(p.var for p in parts)  # type: ignore[union-attr,misc]
        # each member's own lineage record (var, oid, addr, call), so provenance and gc reach them
        record = {"oid": key, "var": var, "merge": [p.bound.record for p in parts]}  # type: ignore[union-attr]
        members = tuple(MergePart(column, p.records, pinned)  # type: ignore[union-attr,arg-type]
                        for column, p, pinned in zip(spec.columns, parts, pins))
        return Resolved(BoundInput(name, None, key, record, params), records, True, var, members)
    if isinstance(spec, Fixed):
        return _resolve_variable(db, name, spec.variable.__name__, {**combo, **spec.pinned}, as_table,
                                 pinned=spec.pinned)
    if isinstance(spec, PathInput):
        bound = spec.bound(name, combo, file_stats(db), db.root)
        return None if bound is None else Resolved(bound, None, False, None)
    if isinstance(spec, PathOutput):
        bound = spec.bound(name, combo)
        return None if bound is None else Resolved(bound, None, False, None)
    if is_variable(spec):
        return _resolve_variable(db, name, spec.__name__, combo, as_table, addr_key)
    return constant(name, spec)


def constant(name: str, value: Any) -> Resolved:
    """A value passed as it is, the same at every combination (recorded in lineage). One
    that cannot be stored is refused naming its input: the reason alone ("cannot store
    'caf\\udce9'") did not say which of a step's inputs it was."""
    try:
        return Resolved(describe(name, value), None, False, None)
    except UnsupportedValueError as exc:
        raise UnsupportedValueError(f"for_each input {name!r} (inputs={{{name!r}: ...}}, a constant passed to "
                                    f"every call) cannot be recorded: {exc}") from exc


def _resolve_variable(db: Database, name: str, var: str, addr: dict[str, Any], as_table: bool,
                      addr_key: str | None = None, pinned: dict[str, Any] | None = None) -> Resolved | None:
    """Raises AmbiguousVersionError when several version-key variants are there and `addr`
    (a `Fixed` pin) names none of them: the rule `load` follows (`choose_variant`)."""
    index = db.index
    if not index.vkey_names(var):  # the common case, one dict lookup: the newest version here
        versions = index.versions_at(var, addr_key or key_of(addr))
        if versions:  # saved at exactly this address: its address is the combination's own
            return _single(name, var, versions[-1], addr)
    where, vkeys = split_metadata(db, addr)
    records = index.select(var, where, vkeys, {})
    if not records:
        return _coarser(index, name, var, where, vkeys, bool(vkeys or index.vkey_names(var)), pinned)
    here = {k for k, v in where.items() if v is not None}  # (a `Fixed` pin `session=None`: no session)
    exact = [r for r in records if set(r.addr) == here]
    if exact:
        found = _single(name, var, choose_variant(var, exact, schema_keys=db.schema_keys))
        if len(here) < len(where):  # where the run looked, as `_coarser` records it: a value saved
            _record_pins(found, pinned, where)  # at session="post" later serves no session=None pin
        return found
    records.sort(key=lambda r: r.addr_key)
    if not vkeys:  # several variants at one lower address: ambiguous, as at the combination's own
        for _, group in itertools.groupby(records, key=lambda r: r.addr_key):  # (they had all been
            choose_variant(var, list(group), schema_keys=db.schema_keys)  # handed over, mixed, no column to tell)
    return _aggregate(name, var, where, records, as_table)


def _coarser(index: Any, name: str, var: str, addr: dict[str, Any], vkeys: dict[str, Any],
             variants: bool, pinned: dict[str, Any] | None = None) -> Resolved | None:
    """A value saved at a coarser level (a per-subject calibration) serves every finer
    combination below it: the most specific such record wins. A `Fixed` input's pins are
    recorded with it (`pinned`): where the run looked, for `status` to see a finer value
    saved there later (docs/format.md)."""
    for coarse in coarser_addresses(addr):
        records = (index.select(var, coarse, vkeys, {}) if variants
                   else index.versions_at(var, key_of(coarse))[-1:])
        exact = [r for r in records if set(r.addr) == set(coarse)]
        if exact:
            found = _single(name, var, choose_variant(var, exact))
            _record_pins(found, pinned, addr)
            return found
    return None


def _record_pins(found: Resolved, pinned: dict[str, Any] | None, addr: dict[str, Any]) -> None:
    pins = {k: v for k, v in (pinned or {}).items() if k in addr and not is_multi(v)}
    if pins:
        found.bound.record["pinned"] = pins


def _single(name: str, var: str, r: RefRecord, addr: dict[str, Any] | None = None) -> Resolved:
    # the version keys go into the recorded address: status and why compare the same variant
    record = {"oid": r.oid, "var": var, "addr": {**r.addr, **r.vkeys} if addr is None else dict(addr)}
    if r.call:
        record["call"] = r.call
    return Resolved(BoundInput(name, None, r.oid, record, r.params), [r], False, var)


def _aggregate(name: str, var: str, addr: dict[str, Any], records: list[RefRecord], as_table: bool) -> Resolved:
    """Every lower-level record of the address (iterating fewer keys than the schema)."""
    oids = [r.oid for r in records]
    key = hash_bytes(dumps_canonical({"aggregate": oids, "as_table": as_table}))
    params = agreed_params(r.params for r in records)
    record = {"oid": key, "var": var, "addr": addr, "members": oids}
    return Resolved(BoundInput(name, None, key, record, params), records, True, var)


def load_value(store: ObjectStore, resolved: Resolved, schema_keys: list[str], *, as_table: bool,
               lazy: bool = False) -> Any:
    """The plain value the function receives for a resolved input (read from `store`; a
    chunked value unread with `lazy`)."""
    if resolved.records is None:
        return _own_copy(resolved.bound.value)
    if "merge" in resolved.bound.record:
        return _merged_frame(store, resolved, schema_keys)
    get = store.open_value if lazy else store.get_value
    if not resolved.aggregate:
        return get(resolved.records[0].oid)
    values = [get(r.oid) for r in resolved.records]
    if not as_table:
        return values
    import pandas as pd

    rows = [{**{k: r.addr.get(k) for k in schema_keys if k in r.addr}, "data": v}
            for r, v in zip(resolved.records, values)]
    return pd.DataFrame(rows)


def _own_copy(value: Any) -> Any:
    """A constant is hashed once and shared by every combination, so a call must not change it
    in place (the next combinations would get another value under the same key): an array
    comes as a read-only view, a container or table as a copy of its own."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, (list, dict, set)):
        return copy.deepcopy(value)
    if hasattr(value, "copy") and type(value).__module__.split(".")[0] == "pandas":
        return value.copy()
    return value


def _merged_frame(store: ObjectStore, resolved: Resolved, schema_keys: list[str]) -> Any:
    import pandas as pd

    frames = []
    for part in resolved.parts:  # a pinned member's rows leave out the keys it pinned: they
        rows = [{**{k: r.addr.get(k) for k in schema_keys if k in r.addr and k not in part.pinned},
                 part.column: store.get_value(r.oid)} for r in part.records]  # stand beside
        frames.append(pd.DataFrame(rows))  # the combination's rows, whatever their value there
    merged = frames[0]
    for frame in frames[1:]:
        on = [k for k in schema_keys if k in merged.columns and k in frame.columns]
        merged = merged.merge(frame, on=on, how="outer") if on else merged.join(frame, how="outer")
    keys = [k for k in schema_keys if k in merged.columns]
    return merged[keys + [part.column for part in resolved.parts]]
