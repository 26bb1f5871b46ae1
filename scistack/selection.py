"""What a user's metadata names: `load(subject=1, low_hz=20)` split into address, version keys
and lineage parameters, matched against the index, with errors that show what does exist.

One implementation, used by `BaseVariable` and by the reporting commands.
"""

from __future__ import annotations

import difflib
import functools
import re
import shlex
from collections.abc import Sequence
from typing import Any

import numpy as np

from scistack.address import (MAX_TEXT, address_value, checked_label, coarser_addresses, query_value, shown,
                              shown_address)
from scistack.database import Database
from scistack.errors import (AmbiguousVersionError, InvalidMetadataError, QueryError, ScistackError,
                             UnknownMetadataKeyError, VariableNotFoundError)
from scistack.index import RefRecord
from scistack.index.state import decode_addresses, is_multi, key_of, newest_per_variant
from scistack.index.views import param_columns, shown_as_text, value_type
from scistack.inline import sql_type
from scistack.where import check_predicate, conjuncts, equal_values, matching_rows, record_columns


def select_records(db: Database, var: str, metadata: dict[str, Any], *, version: int | None = None,
                   all_versions: bool = False, where: str | tuple | None = None,
                   finer: bool = False) -> list[RefRecord]:
    """Records of `var` matching `metadata` (a list value means any of) and the SQL predicate
    `where`; unless `all_versions` (or a `version`), the newest matching one per address and
    version keys. Of the records `metadata` and `where` both select, those saved at exactly
    the address `metadata` names, when there are any, win over the finer ones below it
    (`load(subject=1)`: the per-subject value, not the per-session ones), unless `finer`:
    every one (`load_all`). Raises with what exists when nothing matches."""
    if isinstance(version, float) and version.is_integer():
        version = int(version)  # (MATLAB's numbers are doubles)
    if version is not None and (type(version) is bool or not isinstance(version, (int, np.integer))):
        raise InvalidMetadataError(f"version={version!r}: give a whole number (1 is the first version)")
    if "version" in metadata:  # load_all, list_versions: every newest record, or every version
        raise InvalidMetadataError(
            f"{var}: version= selects one record, with load(..., version=N); load_all gives the "
            "newest of each address and list_versions(...) every version")
    addr, vkeys, params, unknown = {}, {}, {}, []
    vkey_names = param_names = None  # asked for only when a key is not a schema key
    for key, value in metadata.items():
        value = _asked(var, key, value)
        if key in db.schema_keys:
            addr[key] = _label(var, key, value)
            continue
        if vkey_names is None:
            vkey_names, param_names = db.index.vkey_names(var), db.index.param_names(var)
        if key in vkey_names:
            vkeys[key] = _label(var, key, value)
        elif key in param_names or any(p.rsplit(".", 1)[-1] == key for p in param_names):
            params[key] = _param_value(var, key, value)
        elif (named := _param_of_column(key, param_names)) is not None:
            params[named] = _param_value(var, key, value)  # `bandpass_low_hz`, as the views name it
        else:
            unknown.append(key)
    if unknown:  # (a variable never saved has no version keys or parameters yet: that is the news)
        raise UnknownMetadataKeyError(unknown_keys_message(db, var, unknown, vkey_names, param_names)
                                      if db.index.count(var) or db.index.ever_saved(var)
                                      else unsaved_message(db, var, shown_address(metadata)))
    every = all_versions or version is not None or where is not None
    if every and db.index.in_batch:  # held saves are numbered at the flush: version numbers,
        db.index.flush()  # and `_where`'s newest, mean what they will mean after the batch
    only, judged = _addresses_where(db, var, addr, where) if where is not None else (None, False)
    # `where`, version keys and parameters choose among every level (`_own_address_first` then
    # applies load's rule: `load(subject=1, note="recal")` had been the per-subject records
    # with that note or none, VariableNotFoundError beside a per-session one that has it,
    # which `where="note = 'recal'"` found); a whole address has nothing below it (one
    # indexed lookup)
    below = (finer or where is not None or bool(vkeys) or bool(params)) and set(addr) != set(db.schema_keys)
    records = db.index.select(var, addr, vkeys, params, all_versions=every, only=only, finer=below)
    if version is not None:
        records = [r for r in records if r.version == version]
    if where is not None:  # (a `where` the addresses `only` were judged by holds for their records)
        records = _where(db, records, None if judged else where, newest=not (all_versions or version is not None),
                         whole=not (addr or vkeys or params or version is not None))
    if below and not finer:
        records = _own_address_first(records, addr)
    if not records:
        raise VariableNotFoundError(_nearby_message(db, var, metadata, version))
    return records


def _own_address_first(records: list[RefRecord], addr: dict[str, Any]) -> list[RefRecord]:
    """Those of `records` saved at exactly `addr` when it names one value of each of its keys
    and some are (`Index.select`'s rule, applied after `where=`: the address's own records
    had been chosen before it, so `load(subject=1, where="session = 'a'")` found nothing
    beside a per-subject value, or, when most of the variable's addresses did not match,
    ignored the rule); else all of them."""
    if not addr or any(is_multi(v) for v in addr.values()):
        return records
    key = key_of(addr)
    here = [r for r in records if r.addr_key == key]
    return here or records


def label_query(var: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` naming address and version keys only (`undelete`'s query), each value a
    `query_value`, refused as `select_records` refuses it for `load` and `delete` (a NaN, a
    Series, a 2-D array): a NaN had matched nothing, or (in a list) been passed over."""
    query = {}
    for key, value in metadata.items():
        query[key] = _label(var, key, _asked(var, key, value))
    return query


def _asked(var: str, key: str, value: Any) -> Any:
    """`query_value(value)`, refusing what no selection can mean: a 2-D array, and no value
    at all (`subject=[]`, an empty array or range), which had matched nothing, so `load_all`
    answered [] in silence. (`for_each` takes `[]` as every stored value of the key:
    copied here it would have quietly loaded nothing, and "every" would make a
    `delete(subject=[])` from a list that came out empty delete them all.)"""
    value = query_value(value)
    if isinstance(value, np.ndarray):
        raise _array_error(key, value)
    if isinstance(value, (list, range)) and len(value) == 0:
        raise InvalidMetadataError(
            f"{var}: {key}={shown(value)} names no value, so nothing could match; a list means any "
            f"of its values ({key}=[1, 2]). To take every {key}, leave {key}= out ([] means every "
            "stored value only in for_each's iteration)")
    return value


_PARAM_TYPES = (int, float, str, bool, type(None))


def _param_value(var: str, key: str, value: Any) -> Any:
    """`value` (a `query_value`) of a lineage parameter, refused unless one could match: only a
    scalar constant of a call (an int, float, str, bool or None) is a lineage parameter, so a
    dict or a nested list (`k={"lo": 20}`, `k=[[20, 450]]`) had matched nothing, an empty
    answer in silence."""
    for one in value if isinstance(value, list) else (value,):
        if not isinstance(one, _PARAM_TYPES):
            several = " (a list's elements are each a value: [[20, 450]] is not the list [20, 450])" \
                if isinstance(value, list) else ""
            raise InvalidMetadataError(
                f"{var}: {key}={shown(value)} selects by a {type(one).__name__}{several}; a lineage "
                f"parameter is a scalar constant a call was given (an int, float, str, bool or None), "
                f"so only those select by it ({key}=20), and a list of them means any of them "
                f"({key}=[10, 20]). A {type(one).__name__} constant is recorded in the lineage but is "
                "not a parameter to select by: select its records by their address instead")
    return value


def _array_error(key: str, value: np.ndarray) -> InvalidMetadataError:
    return InvalidMetadataError(f"{key}= is a {value.ndim}-D array; give one value, or a list "
                                "(or 1-D array) of values meaning any of them")


def _label(var: str, key: str, value: Any) -> Any:
    """`value` (a `query_value`) of an address or version key, unless no save could have
    used it (a NaN, a Series, a nested list, an int beyond 64 bits): refused as `save` refuses
    it, rather than said to match nothing or failing deep in the index. None passes: the
    records saved without that key (a version key's `note=None`, an address key's
    `session=None`, saved at a coarser level: `where="session IS NULL"`), as the index
    matches it (`state.select_from`)."""
    for one in value if isinstance(value, list) else (value,):
        kind = type(one)  # (a point load's usual labels pass on two comparisons)
        if not ((kind is int and -_INT64 <= one < _INT64) or (kind is str and len(one) <= MAX_TEXT)):
            checked_label(one, f"{var}: {key}", none_ok=True,
                          not_scalar="; to ask for several, give a flat list of them",
                          then=_NONE_HINT.format(key=key) if isinstance(one, float) and one != one else "")
    return value


_INT64 = 2**63
_NONE_HINT = ("; {key}=None selects the records saved without {key} (a missing cell of a frame, "
              "where=\"{key} IS NULL\")")


def _param_of_column(column: str, param_names: set[str]) -> str | None:
    """The lineage parameter the views' column `column` shows (`bandpass_low_hz` ->
    `bandpass.low_hz`), by their one naming rule; None when no parameter has that column."""
    for name, named in param_columns(param_names, lambda _: True):
        if named == column and name != column:
            return name
    return None


_SCALARS = frozenset({int, str, float, bool})


def many_current(db: Database, var: str, metadata: dict[str, Any], version: int | None = None) -> int | None:
    """How many current values `var` has, when asking for one of them with no key at all
    (`scistack show EMG`) matches more than one address: counted by the index, no record
    read (300k records took 1.8 s and 0.5 GB to refuse). None otherwise: select as usual."""
    if metadata or version is not None or db.index.vkey_names(var):  # (variants: load's rule)
        return None
    current = next((n for name, n, *_ in db.index.summaries() if name == var), None)
    return current if current is not None and current > 1 else None


def point_records(db: Database, var: str, metadata: dict[str, Any]) -> list[RefRecord]:
    """The newest record per version-key variant at exactly the address `metadata` names, when
    every key is a schema key with one value and something is saved there: what
    `select_records` answers then, by one indexed lookup and no filtering (a point load).
    Empty when the general path must answer (other keys, a list, nothing there)."""
    schema = db.schema_keys
    addr = {}
    for key, value in metadata.items():
        if key not in schema:
            return []
        if type(value) not in _SCALARS or type(value) is float:
            value = address_value(value)
            if is_multi(value) or isinstance(value, np.ndarray):
                return []
        addr[key] = value
    if not addr:
        return []
    try:
        key = key_of(addr)
    except (TypeError, ValueError):  # a NaN, an object: `select_records` names the problem
        return []
    exact = db.index.versions_here(var, key)
    return newest_per_variant(exact) if exact else exact


def _addresses_where(db: Database, var: str, addr: dict[str, Any],
                     where: str | tuple) -> tuple[list[str] | None, bool]:
    """The live addresses (keys) of `var` matching `addr` where the parts of `where` (its
    top-level ANDs) naming only schema keys hold, judged on the addresses alone, so that only
    their records are read (`load_all(where="subject < 3")` of 300k values built 300k records:
    2.0 -> 0.8 s; `where="subject < 3 AND value > 1"` had read every value, as its `value`
    kept the whole condition from the addresses), and whether that was the whole `where` (its
    records then need no second look: `_where`). None when no part names schema keys alone,
    or they hold for most addresses (`_where` then judges every record)."""
    keys = list(db.schema_keys)  # as `record_columns` lays them
    known = {k.lower() for k in keys}
    try:
        parts = conjuncts(where)  # (a ? miscount raises: `_where` names it)
        taken = [(sql, params) for sql, params, names in parts if names <= known]
        if not taken:
            return None, False
        sql = " AND ".join(f"({sql})" for sql, _ in taken) if len(taken) > 1 else taken[0][0]
        params = [p for _, ps in taken for p in ps]
        check_predicate(sql, keys, params=params)
    except QueryError:  # (`_where` says what is wrong with it)
        return None, False
    kinds: dict[str, frozenset[str]] = {}

    def kinds_of(key: str) -> frozenset[str]:
        if key not in kinds:
            kinds[key] = db.index.key_kinds(var, key)
        return kinds[key]

    equal = _equal_parts(taken, keys, kinds_of)
    looked_up = {**equal, **addr}
    chosen = db.index.live_addresses_matching(var, looked_up)
    if not chosen:
        return [], len(taken) == len(parts)
    columns = {k: [a.get(k) for _, a in chosen] for k in keys}
    if looked_up:  # (some of the addresses: typed by every one's kinds, as the views are)
        _typed_as_view(columns, set().union(*(names for _, _, names in parts if names <= known)), kinds_of)
    try:
        matched = matching_rows(columns, (sql, params), len(chosen))
    except QueryError:  # (`_where` judges the whole condition and says what is wrong with it, as
        return None, False  # written: the message had quoted these parts alone, "(a) AND (b)")
    # most of them: reading every record at once is quicker than looking each address up
    # (unless they were looked up by the condition's own values: then they are not all)
    if len(matched) >= len(chosen) // 2 and not equal.keys() - addr.keys():
        return None, False
    return [chosen[i][0] for i in matched], len(taken) == len(parts)


def _equal_parts(parts: list[tuple[str, list[Any]]], keys: list[str], kinds_of) -> dict[str, list[Any]]:
    """The schema keys that `parts` (top-level AND parts of a `where=`) hold equal to given
    values (`subject = 1`, `subject IN ('a', 'b')`), with those values, for looking up the
    addresses that may hold (`Index.live_addresses_matching`): only where the key's values
    across the variable (`kinds_of`) are all numbers (and the values whole numbers) or all
    text (and the values text), for then SQL's equality is the lookup's (`subject = '1'` over
    numbers is `subject = 1`; over keys of mixed kinds, text in the views, it is no lookup)."""
    named = {k.lower(): k for k in keys}
    found: dict[str, list[Any]] = {}
    for sql, params in parts:
        equal = equal_values(sql, params)
        key = None if equal is None else named.get(equal[0].lower())
        if key is None or key in found:
            continue
        kinds = {"number" if type(v) is int else "text" for v in equal[1]}
        if len(kinds) == 1 and kinds_of(key) == frozenset(kinds):
            found[key] = equal[1]
    return found


def _typed_as_view(columns: dict[str, list[Any]], named: set[str], kinds_of) -> None:
    """The key columns (of some of a variable's addresses) named (in lower case) in `named`
    made text where the key's values across the variable (`kinds_of`) are of several kinds,
    as the views make them (`shown_as_text`): typed by these few values alone, `session =
    'pre'` over the addresses of subject 1, whose sessions are all numbers, had failed to
    cast 'pre' to a number where the view, text beside other subjects' 'pre', answers."""
    for key in [k for k in columns if k.lower() in named]:
        if len(kinds_of(key)) > 1:
            columns[key] = [None if v is None else shown_as_text(v) for v in columns[key]]


def _where(db: Database, records: list[RefRecord], where: str | tuple | None, *, newest: bool,
           whole: bool = False) -> list[RefRecord]:
    """Records for which the predicate holds (all of them for None: already judged); with
    `newest`, the newest of them per address and version keys (as `load(low_hz=20)` picks
    the newest version made with low_hz=20). `whole`: `records` are every live record of their
    variable unless the predicate's own address parts left some out (`select_records`)."""
    if not records:
        return records
    kept = records if where is None else _holding(db, records, where, whole)
    if not newest:
        return kept
    best: dict[tuple[str, str], RefRecord] = {}
    for r in kept:
        key = (r.addr_key, r.vkeys_key)
        if key not in best or r.version > best[key].version:
            best[key] = r
    return list(best.values())


def _holding(db: Database, records: list[RefRecord], where: str | tuple, whole: bool) -> list[RefRecord]:
    """The records for which `where` holds; key columns typed as the views type them, by
    every record of the variable (`_typed_as_view`) when these are not all of them."""
    var = records[0].var
    every = whole and len(records) == db.index.count(var)
    columns = record_columns(db.schema_keys, records, db.store, fn=names_column(where, "fn"))
    if not every:
        try:
            named = set().union(*(names for _, _, names in conjuncts(where)))
        except QueryError:  # (`matching_rows` says what is wrong with it)
            named = set()
        keys = {k: columns[k] for k in db.schema_keys if k in columns}
        _typed_as_view(keys, named, lambda key: db.index.key_kinds(var, key))
        columns.update(keys)
    types = None
    if names_column(where, "value") or names_column(where, "data"):  # as the views' column, or the frame's
        values = _plain_values(db.store.get_values([r.oid for r in records]))
        # typed as the view types it, from every record of the variable, not these alone (when
        # they are all of them, theirs: DuckDB is not asked)
        found = value_types(db, var, dict(zip((r.oid for r in records), values)), every=every)
        _refuse_unlike_view(records, values, found, where)
        columns["value"] = columns["data"] = values
        types = {"value": found, "data": found}
    return [records[i] for i in matching_rows(columns, where, len(records), types=types,
                                              unread=("value", "data", "fn"))]


_SQL_TYPES: dict[str, str | None] = {}  # oid -> its value's inline type (an object never changes)
_VAR_TYPES: dict[tuple[str, str], tuple[int, set[str | None]]] = {}  # (journal, var) -> (its size, types)
_READ_KINDS = ("json", "npy")  # the others' inline types are none the views type a value by


def value_types(db: Database, var: str, known: dict[str, Any] | None = None, *,
                every: bool = False) -> set[str | None]:
    """The inline types (`inline.sql_type`) of the values of every live version of `var`, the
    ones its views type the value column by (`views.value_type`): `where=` types the column
    alike whichever records it compares (load_all(subject=2, where="value = '1'") had compared
    subject 2's number as a number, where the view, text because another record holds text,
    did not find it). Asked of DuckDB, which keeps them per variable (`Index.value_types`,
    synced first: its cost is what changed), with the types of the records a batch holds and
    DuckDB has not seen, read here: a value of the variable is read only then (every value
    had been read: 1M objects for load_all(subject=[5, 7], where="value > 1")). Where DuckDB
    cannot say (a forked child, a read-only project behind its journal, a file held elsewhere,
    deletes held by a batch) every value is read, each once a process; `known` maps oids to
    values already read, and a variable's types are kept until the journal grows. A value
    that cannot be read has no type (the views show it as NULL). `every`: `known` holds the
    value of every live record of `var` (a `where=` on all of them): their types are the
    answer, DuckDB is not asked (nor synced, nor waited for when another process holds it).
    The types read, or found, are kept until the journal grows, asked of no one meanwhile: a
    file held elsewhere had made each where= wait 2 s for DuckDB again."""
    for oid, value in (known or {}).items():
        if oid not in _SQL_TYPES:
            _SQL_TYPES[oid] = sql_type(value)
    if every and known:
        return {_SQL_TYPES[oid] for oid in known}
    memo = (str(db.index.journal_path), var)
    generation = None if db.index.in_batch else db.index.generation()
    if generation is not None and _VAR_TYPES.get(memo, (None,))[0] == generation:
        return _VAR_TYPES[memo][1]  # nothing journalled since: the same records
    synced = db.index.value_types(var)
    if synced is not None:
        found, held = synced
        return {*found, *_read_types(db, held)}
    found = _read_types(db, db.index.records(var))
    if generation is not None:
        _VAR_TYPES[memo] = (generation, found)
    return found


def _read_types(db: Database, records: list[RefRecord]) -> set[str | None]:
    """The inline types of `records`' values, each read once a process (`_SQL_TYPES`)."""
    if not records:
        return set()
    todo = list(dict.fromkeys(r.oid for r in records if r.kind in _READ_KINDS and r.oid not in _SQL_TYPES))
    if len(_SQL_TYPES) + len(todo) > 1_000_000:
        _SQL_TYPES.clear()
        todo = list(dict.fromkeys(r.oid for r in records if r.kind in _READ_KINDS))
    for start in range(0, len(todo), 4096):
        batch = todo[start:start + 4096]
        try:
            values = db.store.get_values(batch)
        except Exception:  # noqa: BLE001 - one damaged: the rest are read one by one
            values = []
            for oid in batch:
                try:
                    values.append(db.store.get_values([oid])[0])
                except Exception:  # noqa: BLE001 - fsck reports it; the view shows NULL
                    values.append(None)
        _SQL_TYPES.update((oid, sql_type(value)) for oid, value in zip(batch, values))
    return {_SQL_TYPES.get(r.oid) for r in records}


def names_column(where: str | tuple, column: str) -> bool:
    """Whether the predicate names `column` outside its 'quoted text' (`fn` reads a call
    record per call, `value` every object: only then)."""
    text = where[0] if isinstance(where, tuple) else where
    if not isinstance(text, str):
        return False
    return re.search(rf'\b{column}\b', _LITERAL.sub("''", text), re.IGNORECASE) is not None


_LITERAL = re.compile(r"'(?:[^']|'')*'")


def _plain_values(values: list[Any]) -> list[Any]:
    """Values as where= compares them: a numpy number as the Python one it holds (a numpy
    time stays, as the inline rows take it)."""
    return [v.item() if isinstance(v, np.generic) and not isinstance(v, (np.datetime64, np.timedelta64))
            else v for v in values]


def _refuse_unlike_view(records: list[RefRecord], values: list[Any], types: set[str | None],
                        where: str | tuple) -> None:
    """A QueryError when a value compared is neither a single value nor part of a JSON value
    column: dicts and lists (a variable's value column is JSON when it holds dicts, or lists
    of mixed types, or these beside other values: `views.value_type`) are compared as the
    view compares them, `value->>'label' = 'a'`; a variable of arrays or of lists of one type
    (a LIST column) or of frames is refused, naming what selects it."""
    if value_type(types) == "JSON":
        return
    for record, value in zip(records, values):
        if value is not None and not isinstance(value, (int, float, str, np.generic)):
            raise QueryError(
                f"where={where!r}: value is a condition on scalar values (and on dicts, a JSON column as "
                f"in the views: value->>'label' = 'a'), but {record.var} at {shown(record.addr)} holds a "
                f"{type(value).__name__}; select by its keys and parameters, or filter the loaded "
                "values in Python")


def unknown_keys_message(db: Database, var: str, unknown: list[str], vkeys: set, params: set | None = None) -> str:
    """Which keys of a query `var` does not have, what it has, and the nearest ones meant.
    Without `params` (`undelete`), `version=` is one a call takes."""
    now = db.schema_keys_now()
    added = [k for k in unknown if k in now and k not in db.schema_keys]
    if added:
        return (f"{shown(added[0], 40)} became a schema key of this project in another session (its keys "
                f"are now {now}); reopen the project (configure_database again) "
                f"to select by it")
    takes_version = params is None
    params = params or set()
    columns = {column for _, column in param_columns(params, lambda _: True)}  # `low_hz`, `bandpass_low_hz`
    known = [*db.schema_keys, *sorted(vkeys), *sorted({p.rsplit(".", 1)[-1] for p in params} | columns)]
    close = [m for k in unknown  # (`version=`, `where=` mistyped land here too)
             for m in difflib.get_close_matches(k, [*known, "version", "where"], n=1, cutoff=0.6) if m != k]
    guess = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    guess += "".join(f"; this call takes no {k}= (select by address keys instead)"
                     for k in unknown if k in ("version", "where"))  # (had said: did you mean 'where'?)
    parameters = "" if takes_version else f", lineage parameters {sorted(params)[:20] or 'none'}"
    return (f"{var} has no metadata key {', '.join(shown(k, 40) for k in unknown)}: its schema keys are "
            f"{db.schema_keys}, version keys {sorted(vkeys) or 'none'}{parameters}{guess}")


_HINT_SAMPLE = 1000


def _deleted_here(db: Database, var: str, metadata: dict[str, Any]) -> str | None:
    """What to say when `metadata` names one full address where `var` was saved and every
    record was deleted since: that, and the undelete that brings it back (the message had
    listed the address's own key values as what the variable has, as if it were a typo)."""
    addr = {k: metadata[k] for k in db.schema_keys if k in metadata}
    if len(addr) != len(metadata) or not addr:
        return None
    try:
        addr_key = key_of({k: _label(var, k, query_value(v)) for k, v in addr.items()})
    except ScistackError:
        return None
    if db.index.versions_at(var, addr_key) or not db.index.highest_version(var, addr_key):
        return None
    if _deleted_values_freed(db, var, addr_key):  # (undelete then brought nothing back: "reclaimed by gc")
        return (". A value saved there was deleted, and `scistack gc` has freed it since: save it "
                "again (or rerun the step that computed it)")
    options = " ".join(cli_option(k, v) for k, v in addr.items())
    where = shown_address(addr)
    return (f". A value saved there was deleted: `scistack undelete {var} {options}` "
            f"({var}.undelete({where})) brings it back until `scistack gc` frees it")


def cli_option(key: str, value: Any) -> str:
    """`--key value` as the command line reads it back: a string that would read as a number
    or a boolean in quotes (`--subject "'1'"`, docs/cli.md), others shell-quoted."""
    if isinstance(value, bool):
        return f"--{key} {str(value).lower()}"
    if isinstance(value, str):
        typed = value.lower() in ("true", "false") or _looks_numeric(value)
        return f"--{key} " + (f"\"'{value}'\"" if typed else shlex.quote(value))
    return f"--{key} {value}"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def close_variable(db: Database, var: str) -> str | None:
    """The saved variable `var` most likely misspells (`PeakFroce`, `rawemg`), if one is near."""
    return _close_name(var, db.index.variables())


def _close_name(var: str, others: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(var, others, n=1, cutoff=0.7) or [
        o for o in others if o.lower() == var.lower()]  # (a typo: `scistack log PeakFroce`, `rawemg`)
    return close[0] if close else None


def unsaved_message(db: Database, var: str, query: str = "") -> str:
    """What to say of `var` when it has no saved value in the project (`load`, `load_all`, a
    `for_each` input): never saved (a step not run yet, or a misspelt class: the name meant,
    the variables that have values, how to save one), or every value deleted (the undelete,
    unless gc has freed them: then it brings nothing back)."""
    asked = f" (asked for {query})" if query else ""
    others = db.index.variables()
    if db.index.ever_saved(var):
        have = _variables_saved(others)
        if _deleted_values_freed(db, var):
            return (f"{var} has no saved values in this project{asked}: every one was deleted, and "
                    f"`scistack gc` has freed them since: save them again (or rerun the step that "
                    f"computes them). {have}")
        return (f"{var} has no saved values in this project{asked}: every one was deleted; "
                f"{var}.undelete() (`scistack undelete {var}`) brings them back until `scistack gc` frees "
                f"them. {have}")
    return _never_saved_message(var, asked, tuple(others), tuple(db.schema_keys))


@functools.lru_cache(maxsize=64)
def _never_saved_message(var: str, asked: str, others: tuple[str, ...], schema_keys: tuple[str, ...]) -> str:
    """(kept: `load_all` of a variable never saved warns at each call, and the close name's
    difflib over a few hundred variables had made a loop of them ~13x slower)"""
    have = _variables_saved(others)
    meant = _close_name(var, others)
    keys = ", ".join(f"{k}=..." for k in schema_keys)
    return (f"{var} has no saved values in this project{asked}: it was never saved here."
            f"{f' Did you mean {meant}?' if meant else ''} {have} Save one with {var}.save(value, {keys}), "
            "or run the step that computes it first.")


def _variables_saved(others: Sequence[str]) -> str:
    listed = ", ".join(others[:20]) + (f", … {len(others) - 20} more" if len(others) > 20 else "")
    return f"Variables with saved values: {listed or 'none yet'}."


def _deleted_values_freed(db: Database, var: str, addr_key: str | None = None) -> bool:
    """Whether gc has freed the values of `var`'s deleted records (at `addr_key`, or all; the
    newest 1,000: an error message's path), so that an undelete would bring none back."""
    try:
        gone = [d.record for d in db.index.deletions(var).get(var, [])
                if addr_key is None or d.record.addr_key == addr_key][-1000:]
        return bool(gone) and not any(db.store.contains(r.oid) for r in gone)
    except (ScistackError, OSError):
        return False


def _nearby_message(db: Database, var: str, metadata: dict[str, Any], version: int | None) -> str:
    query = shown_address(metadata)
    if version is not None:
        query += f"{', ' if query else ''}version={version}"
    total, records = db.index.count(var), db.index.newest(var, _HINT_SAMPLE)  # bounded: an error path
    if not records:
        return unsaved_message(db, var, query)
    hints, meant = [], []
    for key in db.schema_keys:
        values = sorted({shown(r.addr[key], 30) for r in records if key in r.addr})
        if values:
            listed = ", ".join(values[:8]) + (", …" if len(values) > 8 else "")
            hints.append(f"{key} in {{{listed}}}")
        if key in metadata:
            meant += near_values(key, metadata[key], [r.addr[key] for r in records if key in r.addr])
    if version is not None:
        hints.append(f"versions {sorted({r.version for r in records})[:10]}")
    among = "" if total <= len(records) else f" (among its {len(records)} newest)"
    message = f"{var} has no record matching {query}; it has {total} records with{among} " + "; ".join(hints)
    deleted = _deleted_here(db, var, metadata) if version is None else None
    if deleted:
        return message + deleted
    if meant:
        return message + f". Did you mean {', '.join(meant)}?"
    coarser = _covering(db, var, metadata) if version is None else None
    if coarser is not None:
        where = shown_address(coarser)
        return message + (f". A value at {where} covers it (what for_each takes there): "
                          f"{var}.load({where})")
    return message


def _covering(db: Database, var: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The finest coarser address of `var` with a value that covers the address asked for
    (only schema keys, one value each): a subject's calibration for a session."""
    if not metadata or any(k not in db.schema_keys or is_multi(v) for k, v in metadata.items()):
        return None
    asked = {k: query_value(metadata[k]) for k in db.schema_keys if k in metadata}
    return next((a for a in coarser_addresses(asked) if db.index.versions_here(var, key_of(a))), None)


def near_values(key: str, asked: Any, saved: list[Any]) -> list[str]:
    """`subject=1` for an asked `subject="1"` (text read from a file name or a CSV, or a number
    where text was saved), `session="Pre"` for "pre": a saved value that differs only in type
    or case, where the asked one is not saved at all."""
    asked = list(asked) if isinstance(asked, (list, tuple, set, range)) else [asked]
    known = set(saved)
    found = []
    for value in asked:
        if value in known or isinstance(value, bool):
            continue
        near = [v for v in known if not isinstance(v, bool) and type(v) is not type(value)
                and str(v) == str(value)] or [v for v in known if isinstance(v, str) and isinstance(value, str)
                                               and v.lower() == value.lower()]
        found += [f"{key}={shown(v, 30)}" for v in sorted(near, key=str)[:1]]
    return found


def choose_variant(var: str, records: list[RefRecord], *, cli: bool = False,
                   schema_keys: list[str] | None = None) -> RefRecord:
    """The one rule for the current records of one address (newest per version keys, already
    filtered by any version keys asked for): one variant is the answer; several are ambiguous
    (never "the newest wins"). `load`, `for_each` (and MATLAB's plan), `status` and `why` all
    follow it, so a value a run used is the value they compare against. (`cli`: see
    `ambiguous_error`.)"""
    if len(records) > 1:
        raise ambiguous_error(var, records, cli=cli, schema_keys=schema_keys)
    return records[0]


def split_metadata(db: Database, metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(address, version keys) of a recorded or pinned address: schema keys, then the rest."""
    addr = {k: v for k, v in metadata.items() if k in db.schema_keys}
    return addr, {k: v for k, v in metadata.items() if k not in db.schema_keys}


def ambiguous_error(var: str, records: list[RefRecord], *, cli: bool = False,
                    schema_keys: list[str] | None = None) -> AmbiguousVersionError:
    """Several variants at one address (shown with `schema_keys` in order), each named with its
    version keys and the way to pick one: as Python arguments, or (`cli`) as the command line's
    options."""
    def keys(mapping: dict[str, Any], cli: bool = False) -> str:
        if cli:
            return " ".join(f"--{k} {v}" for k, v in mapping.items())
        return ", ".join(f"{k}={shown(v, 30)}" for k, v in mapping.items())

    variants = "; ".join(
        f"{keys(r.vkeys, cli) or '(no version keys)'} -> version {r.version}" for r in records[:10])
    if len(records) > 10:
        variants += f"; … {len(records) - 10} more"
    named = next((r.vkeys for r in records if r.vkeys), {})
    if cli:
        way = "Give one's version keys, or --version N (the one saved without them has no keys to give)"
    else:
        plain = f"; {next(iter(named))}=None for the one saved without it" if any(
            not r.vkeys for r in records) and named else ""
        way = f"Pick one with its version keys (e.g. load(..., {keys(named)}){plain}) or version=N"
    where = shown_address(records[0].addr, schema_keys)
    return AmbiguousVersionError(f"{var} has {len(records)} variants at {where}: {variants}. {way}")


def sort_records(db: Database, records: list[RefRecord]) -> list[RefRecord]:
    """Records in schema-key order (numbers before strings, missing keys last), then version
    keys and version. Columns of one type are sorted by numpy (a `load_all` of 10k records:
    ~2 ms instead of ~12); anything else by tuple keys built a column at a time."""
    addrs = decode_addresses(records)
    columns = [[a.get(key) for a in addrs] for key in db.schema_keys]
    tail = [[r.vkeys_key for r in records], [r.version for r in records]]
    order = _numpy_order([*columns, *tail]) if len(records) > 1 else None
    if order is None:
        ranked = [[(2, "") if v is None else (1, v) if isinstance(v, str) else (0, v) for v in values]
                  for values in columns]
        keys = list(zip(*ranked, *tail))
        order = sorted(range(len(records)), key=keys.__getitem__)
    return [records[i] for i in order]


def _numpy_order(columns: list[list[Any]]) -> list[int] | None:
    """The stable order of rows by `columns` (first column first) when every column is all
    int, all float or all str (numpy compares those as Python does), else None."""
    arrays = []
    for values in columns:
        kinds = set(map(type, values))
        try:
            if kinds == {int}:
                arrays.append(np.array(values, np.int64))
            elif kinds == {float}:
                arrays.append(np.array(values, np.float64))
            elif kinds == {str} and "\x00" not in "".join(values):  # numpy's str drops trailing NULs
                arrays.append(np.array(values, str))
            else:
                return None
        except OverflowError:  # an int beyond 64 bits
            return None
    if any(np.isnan(a).any() for a in arrays if a.dtype == np.float64):
        return None
    return np.lexsort(arrays[::-1]).tolist()
