"""`scistack matlab-plan`: resolve every combination to oids and a call key; record nothing."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scistack.address import shown_address
from scistack.database import Database
from scistack.errors import AmbiguousVersionError, InvalidMetadataError, ScistackError
from scistack.foreach.inputs import _resolve_variable, refuse_several_pinned
from scistack.foreach.plan import looped_input
from scistack.foreach.split import check_split_keys, fitting_layout, places
from scistack.index import check_identifier, key_of, utc_now
from scistack.ingest import staged_name, staged_payload
from scistack.lineage.calls import BoundInput, flatten_params, key_from_oids, same_origins
from scistack.matlab_bridge._files import (
    FORMAT,
    INLINE_MAX,
    PLAN_RESULT,
    open_request,
    write_json,
)
from scistack.codeid.matlab import MatlabFunction
from scistack.objects.hashing import hash_object
from scistack.records import read_call


# -- plan ----------------------------------------------------------------------------------
def plan(db: Database, request_path: str | os.PathLike) -> dict[str, Any]:
    """Resolve every combination of a MATLAB for_each; writes and returns `plan-result.json`."""
    request_path = Path(request_path)
    folder = request_path.parent
    req, fn = open_request(db, request_path, "plan")
    outputs = [check_identifier(v, "output variable name") for v in req.get("outputs") or []]
    if not outputs:
        raise InvalidMetadataError(
            "for_each needs at least one output variable, e.g. {FilteredEMG()}"
        )
    # a case twin, a view's name (of the project's or of each other: {Foo(), foo()}): refused
    # now, not at the commit (after MATLAB ran every combination, none of it then kept)
    db.index.check_output_names(outputs, {})
    splits = request_splits(db, req, outputs)
    specs, constants = _inputs(db, folder, req)
    looped = [(name, spec.var) for name, spec in specs.items() if not spec.fixed and spec.var in outputs]
    if looped:
        raise looped_input(looped[0][1], looped[0][0])
    arguments = _arguments(fn, list(req.get("order") or sorted(specs)))
    combos = _combinations(db, specs, req.get("iterate") or [])
    check_split_keys([(f"scistack.Split({v}(), '{by}')", by) for v, by in zip(outputs, splits)], db.schema_keys,
                     [pair[0] for pair in req.get("iterate") or []])
    planned = [_plan_one(db, fn, specs, constants, outputs, splits, combo) for combo in combos]
    _mark_same(planned)
    counts = {s: sum(1 for p in planned if p["status"] == s) for s in ("run", "cached", "missing", "failed")}
    result = {
        "format": FORMAT,
        "planned_at": utc_now(),
        "function": {
            "name": fn.name,
            "module": fn.module,
            "identity": fn.identity,
            "code": fn.main.code,
            "file": fn.main.path,
            "params": list(fn.params),
            "helpers": [
                {"label": h.label, "file": h.path, "identity": h.digest, "code": h.code}
                for h in fn.helpers
            ],
        },
        "arguments": arguments,
        "constants": {n: c.record for n, c in constants.items()},
        "outputs": outputs,
        "splits": list(splits),
        "combos": planned,
        "counts": counts,
    }
    write_json(folder / PLAN_RESULT, result)
    return result


def _mark_same(planned: list[dict[str, Any]]) -> None:
    """A combination to run whose call key an earlier one of this run has (the same values
    at another address) names it (`same`, its index): MATLAB does not call the function for
    it but, once that one ran, is served its result, which the commit records with this
    combination's own inputs, cached (as Python's `_finish_same`); if that one did not run,
    this one runs. Before, both ran: one run computed the same inputs twice."""
    first: dict[str, int] = {}
    for index, combo in enumerate(planned):
        if combo["status"] == "run" and (j := first.setdefault(combo["key"], index)) != index:
            combo["same"] = j


def request_splits(db: Database, req: dict[str, Any], outputs: list[str]) -> tuple[str | None, ...]:
    """Per output, the schema key its `scistack.Split` fills ('' or absent: not split)."""
    given = req.get("splits") or []
    if given and len(given) != len(outputs):
        raise InvalidMetadataError(f"the request names {len(given)} splits for {len(outputs)} outputs")
    return tuple((check_identifier(by, "split key") if by else None) for by in given) or (None,) * len(outputs)


@dataclass(slots=True)
class _Spec:
    var: str
    fixed: dict[str, Any]


def _inputs(
    db: Database, folder: Path, req: dict[str, Any]
) -> tuple[dict[str, _Spec], dict[str, BoundInput]]:
    """Loaded inputs (variable + pins) and constants (their oids from the staged payloads)."""
    staged = staged_oids(folder, req)
    specs: dict[str, _Spec] = {}
    constants: dict[str, BoundInput] = {}
    for name, spec in (req.get("inputs") or {}).items():
        check_identifier(name, "input name")
        if "var" in spec:
            fixed = dict(spec.get("fixed") or {})
            var = check_identifier(spec["var"], "variable name")
            vkeys = db.index.vkey_names(var)  # a version key names a variant, as in Python's Fixed
            unknown = [k for k in fixed if k not in db.schema_keys and k not in vkeys]
            if unknown:
                raise InvalidMetadataError(
                    f"Fixed({spec['var']}, ...) for input {name!r} pins {unknown}, which are neither schema "
                    f"keys nor version keys of {var}; the schema keys are {db.schema_keys}"
                    + (f", its version keys {sorted(vkeys)}" if vkeys else "")
                )
            refuse_several_pinned(spec["var"], fixed)
            specs[name] = _Spec(check_identifier(spec["var"], "variable name"), fixed)
        else:
            constants[name] = constant_input(folder, name, spec, staged)
    return specs, constants


def staged_oids(folder: Path, req: dict[str, Any]) -> dict[str, str]:
    """The oids of a request's staged children (`staged:payload-<n>.bin` -> oid), in order."""
    staged: dict[str, str] = {}
    for child in req.get("children") or []:
        kind, payload = staged_payload(folder, child, staged)
        staged[staged_name(child)] = hash_object(kind, [payload])
    return staged


def constant_input(
    folder: Path, name: str, spec: dict[str, Any], staged: dict[str, str]
) -> BoundInput:
    """A constant MATLAB staged: its oid (hashed, not stored) and its inline value if small."""
    kind, payload = staged_payload(folder, spec, staged)
    oid = hash_object(kind, [payload])
    record: dict[str, Any] = {"oid": oid}
    if kind == "json":
        tree = json.loads(payload)
        if not isinstance(tree, (list, dict)) or len(tree) <= INLINE_MAX:
            record["const"] = tree
    return BoundInput(name, None, oid, record)


def _arguments(fn: MatlabFunction, order: list[str]) -> list[str]:
    """The input names in the order MATLAB passes them (by position)."""
    params = [p for p in fn.params if p != "varargin"]
    varargin = "varargin" in fn.params
    unknown = [n for n in order if n not in params]
    if unknown and not varargin:
        raise InvalidMetadataError(
            f"{fn.name}({', '.join(fn.params)}) has no parameter {', '.join(map(repr, unknown))}; "
            "the inputs struct's field names must be the function's parameter names"
        )
    named = [p for p in params if p in order]
    if named:
        last = params.index(named[-1])
        gaps = [p for p in params[:last] if p not in order and p != "~"]
        if gaps:
            raise InvalidMetadataError(
                f"{fn.name}({', '.join(fn.params)}): the inputs give {named[-1]!r} but not "
                f"{', '.join(map(repr, gaps))}; MATLAB passes arguments by position, so give every "
                "parameter up to the last one used"
            )
    return named + [n for n in order if n not in params]


def _combinations(
    db: Database, specs: dict[str, _Spec], iterate: list[Any]
) -> list[dict[str, Any]]:
    import itertools

    keys, values = [], []
    for pair in iterate:
        key, vals = pair
        keys.append(key)
        vals = vals if isinstance(vals, list) else [vals]
        values.append(vals if vals else _stored_values(db, specs, key))
    if not keys:
        raise InvalidMetadataError(
            "for_each needs at least one schema key to iterate (e.g. 'subject', [1 2 3]): its "
            "outputs are saved at each combination's address"
        )
    unknown = [k for k in keys if k not in db.schema_keys]
    if unknown:
        raise InvalidMetadataError(
            f"for_each iterates schema keys only; {unknown} are not in the schema {db.schema_keys}. "
            "Pass other settings through the inputs struct as constants"
        )
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _stored_values(db: Database, specs: dict[str, _Spec], key: str) -> list[Any]:
    seen: dict[Any, Any] = {}
    for spec in specs.values():
        for record in db.index.records(spec.var):
            if key in record.addr:
                value = record.addr[key]
                seen[(type(value).__name__, value)] = value
    return sorted(seen.values(), key=lambda v: (isinstance(v, str), v))


def _plan_one(
    db: Database,
    fn: MatlabFunction,
    specs: dict[str, _Spec],
    constants: dict[str, BoundInput],
    outputs: list[str],
    splits: tuple[str | None, ...],
    combo: dict[str, Any],
) -> dict[str, Any]:
    bound = dict(constants)
    missing = []
    for name, spec in specs.items():
        try:
            found = _resolve_variable(db, name, spec.var, {**combo, **spec.fixed}, False)
        except AmbiguousVersionError as exc:  # this combination fails (as in Python), in MATLAB's words
            return {
                "combo": combo,
                "status": "failed",
                "error": (f"input {name}: {str(exc).rstrip('.')}. In MATLAB: scistack.Fixed({spec.var}(), "
                          f"'<version key>', <value>) as input {name!r} picks a variant ('<version key>', [] the one "
                          f"saved without it)"),
            }
        if found is None:
            missing.append(name)
        else:
            bound[name] = found.bound
    if missing:
        return {
            "combo": combo,
            "status": "missing",
            "missing": sorted(missing),
            "detail": [
                f"no {specs[n].var} at {_address_text(db, {**combo, **specs[n].fixed})} (input {n})"
                for n in sorted(missing)
            ],
        }
    key = key_from_oids(fn.identity, {n: b.oid for n, b in bound.items()})
    hit = db.index.cached_call(key)
    layout = None if hit is None else fitting_layout(db.store, hit, splits)
    if layout is not None:
        restore = _needs_restore(db, combo, outputs, splits, hit, layout, fn.identity, bound)
        own = None
        if restore:
            names = _names_these_inputs(db, hit, {n: b.record for n, b in bound.items()})
            if names is False and not any(splits):
                # the same values at another address: its result, recorded here with these
                # inputs by the commit (as Python's for_each serves it)
                own = {"inputs": {n: b.record for n, b in sorted(bound.items()) if n in specs},
                       "params": flatten_params(fn.name, bound)}
            elif not names:
                restore = None  # unreadable, or a split call: run here, recorded with its own inputs
        if restore is not None:
            return {
                "combo": combo,
                "status": "cached",
                "call": hit["call"],
                "outs": list(hit["outs"]),
                "layout": [None if labels is None else list(labels) for labels in layout],
                "restore": restore,
                **({"own": own} if own else {}),
            }
    return {
        "combo": combo,
        "status": "run",
        "key": key,
        "inputs": {n: b.record for n, b in sorted(bound.items()) if n in specs},
        "params": flatten_params(fn.name, bound),
    }


def _names_these_inputs(db: Database, hit: dict[str, Any], records: dict[str, dict[str, Any]]) -> bool | None:
    """Whether the cached call's record names these inputs as its own (not the same values
    at another address, or made by another call); None when it cannot be read."""
    try:
        return same_origins(records, read_call(db.store, hit["call"]))
    except ScistackError:
        return None


def _own_record(db: Database, call: str | None, identity: str, bound: dict[str, BoundInput]) -> bool:
    """Whether `call` records this very call (same code, same input values) with these inputs
    as its own: the same values at two addresses, each recorded with its own inputs, share
    one call key and one cache entry, which names only one of them. (Without this the other
    address counted as not current and ran again at every re-run: running it made the entry
    name its record, and the first address ran at the next.)"""
    if call is None:
        return False
    try:
        record = read_call(db.store, call)
    except ScistackError:
        return False
    return (record.function.identity == identity
            and all(n in record.arguments and record.arguments[n].oid == b.oid for n, b in bound.items())
            and same_origins({n: b.record for n, b in bound.items()}, record))


def _address_text(db: Database, addr: dict[str, Any]) -> str:
    return shown_address({k: addr[k] for k in db.schema_keys if k in addr}, db.schema_keys)


def _needs_restore(
    db: Database, combo: dict[str, Any], outputs: list[str], splits: tuple[str | None, ...], hit: dict[str, Any],
    layout: tuple[tuple | None, ...], identity: str, bound: dict[str, BoundInput],
) -> bool | None:
    """False: the cached outputs are the current refs here (a split output's parts at
    theirs), named by the cached call or by this address's own record of the same call;
    True: re-point the refs at them; None: an output object was garbage-collected, so run
    again."""
    restore = False
    for var, _, place_key, oid in places(outputs, splits, combo, key_of(combo), list(hit["outs"]), layout):
        current = db.index.current_at(var, place_key, "{}")
        if current is not None and current.oid == oid and (
                current.call == hit["call"] or _own_record(db, current.call, identity, bound)):
            continue
        if not db.store.contains(oid):
            return None
        restore = True
    return restore


