"""`scistack matlab-thunk` / `matlab-thunk-commit`: one MATLAB `Thunk` call's cache and lineage.

A MATLAB `scistack.Thunk(@fn)` call is keyed exactly as a `for_each` combination of the same
`.m` function is (`key_from_oids(identity, {param: oid})`, the identity from
`scistack.codeid.matlab`), so the two share cache entries, and a Python function (whose
identity hashes its AST, never a `.m` text) never collides with either.

1. `lookup` (one Python start per call): the function's identity, each argument's oid (loaded
   records and earlier results by their oid, constants hashed from the payloads MATLAB
   staged), the key, and the cache entry. A hit answers the output oids and the call; a miss
   answers what the call record will hold. Nothing is recorded.
2. On a miss MATLAB runs the function and stages its outputs; `commit` stores them with the
   code, the constants, the call record and the cache entry in one batch. No ref is written:
   saving the result (`FilteredEMG().save(result, ...)`) names it, with its `call`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scistack.codeid.matlab import MatlabFunction
from scistack.database import Database
from scistack.errors import InvalidMetadataError, ScistackError
from scistack.foreach.inputs import _single
from scistack.ingest import staged_name, store_staged
from scistack.lineage.calls import BoundInput, agreed_params, flatten_params, key_from_oids, same_origins
from scistack.lineage.filecheck import is_split
from scistack.matlab_bridge._files import FORMAT, open_request, write_json
from scistack.matlab_bridge.commit import (code_changed, environment, open_results, record_call,
                                           store_children, store_code)
from scistack.matlab_bridge.plan import constant_input, staged_oids
from scistack.objects.canonical_json import dumps_canonical, from_tree
from scistack.objects.hashing import hash_bytes
from scistack.records import read_call

THUNK_RESULT = "thunk-result.json"
THUNK_COMMIT = "thunk-commit.json"


def lookup(db: Database, request_path: str | os.PathLike) -> dict[str, Any]:
    """Key one Thunk call and look it up; writes and returns `thunk-result.json`."""
    request_path = Path(request_path)
    folder = request_path.parent
    req, fn = open_request(db, request_path, "thunk")
    args = req.get("args") or []
    staged = staged_oids(folder, req)
    names = _names(fn, len(args))
    oids = {name: _arg_oid(folder, name, arg, staged) for name, arg in zip(names, args)}
    key = key_from_oids(fn.identity, oids)
    result: dict[str, Any] = {"format": FORMAT, "key": key, "identity": fn.identity}
    hit = db.index.cached_call(key)
    nargout = int(req.get("nargout") or 1)
    # (a for_each's split call has this key too; its outputs are the parts, not what a call returns)
    stored = hit is not None and not is_split(hit) and all(db.store.contains(o) for o in hit["outs"])
    bound = {name: _bind(db, folder, name, arg, staged) for name, arg in zip(names, args)}
    if stored and len(hit["outs"]) == nargout:
        try:
            record = read_call(db.store, hit["call"])
        except ScistackError:
            record = None  # the call record is gone or damaged: compute again
        if record is not None:
            # as recorded (a NaN or infinity tagged): the result is JSON, which has neither
            call, params = hit["call"], dict(record.params or {})
            if not same_origins({n: b.record for n, b in bound.items()}, record):
                call, params = _own_record(db, fn, record, bound, list(hit["outs"]))
            result.update(status="cached", call=call, outs=list(hit["outs"]), params=params)
            write_json(folder / THUNK_RESULT, result)
            return result
    result.update(status="run", inputs={n: b.record for n, b in sorted(bound.items())},
                  params=flatten_params(fn.name, bound))
    write_json(folder / THUNK_RESULT, result)
    return result


def _own_record(db: Database, fn: MatlabFunction, cached: Any, bound: dict[str, BoundInput],
                outs: list[str]) -> tuple[str, dict[str, Any]]:
    """A record of this call naming these inputs, with the cached result (the same values at
    another address, or made by another call: one key, one cache entry), as Python's
    `LineageFunction._own_record` makes it; the cache entry stays. It had run again here,
    and its commit pointed the entry at its record, so the other address ran at its next
    call: in turn, at every call. (Its bytes are the same at each lookup: one object.)"""
    params = flatten_params(fn.name, bound)
    call = record_call(db, fn, store_code(db, fn), {n: b.record for n, b in sorted(bound.items())}, outs,
                       params, dict(cached.env or {}), cached.started, cached.duration)
    return call, params


def commit(db: Database, results_path: str | os.PathLike) -> dict[str, Any]:
    """Record a Thunk call MATLAB ran (outputs, code, constants, call record, cache entry) in
    one batch; writes and returns `thunk-commit.json` (`call`, `outs`, `params`)."""
    results_path = Path(results_path)
    folder, res, req, planned, fn = open_results(db, results_path, "thunk", THUNK_RESULT)
    if fn.identity != planned["identity"] or planned.get("status") != "run":
        raise code_changed(fn, "the lookup", "Call the Thunk again")
    outputs = res.get("outputs") or []
    if not outputs:
        raise InvalidMetadataError(f"{results_path}: a Thunk call records at least one output")
    env = environment(db, fn, res.get("env") or {})
    # A plain batch, not atomic as the for_each commit's: all it journals is one line, the cache
    # entry, held last (the rest are objects), so it is all or nothing as it is; and no file
    # here says what was recorded (the for_each commit's `committed.json`, which an error
    # flushed half way had put out of step with the journal), so a retry only asks again.
    with db.batch():
        staged = store_children(db, folder, res)
        outs = [store_staged(db, folder, out, staged)[0] for out in outputs]
        code = store_code(db, fn)
        constants: dict[str, str] = {}
        for child in req.get("children") or []:
            constants[staged_name(child)] = store_staged(db, folder, child, constants)[0]
        for arg in req.get("args") or []:
            if "payload" in arg:
                store_staged(db, folder, arg, constants)
        call = record_call(db, fn, code, planned["inputs"], outs, planned["params"], env,
                           res.get("started"), res.get("duration"))
        db.index.put_call(planned["key"], call, fn.identity, outs, multi=len(outs) > 1)
    result = {"format": FORMAT, "call": call, "outs": outs, "params": planned["params"]}
    write_json(folder / THUNK_COMMIT, result)
    return result


def _names(fn: MatlabFunction, n: int) -> list[str]:
    """The parameter each positional argument binds to (`varargin_<k>` past a varargin)."""
    params = [p for p in fn.params if p != "varargin"]
    if n > len(params) and "varargin" not in fn.params:
        raise InvalidMetadataError(
            f"{fn.name}({', '.join(fn.params)}) takes {len(params)} argument(s); the Thunk was "
            f"called with {n}")
    named = params[:n]
    return named + [f"varargin_{k}" for k in range(1, n - len(named) + 1)]


def _arg_oid(folder: Path, name: str, arg: dict[str, Any], staged: dict[str, str]) -> str:
    """An argument's oid alone: all the key needs (and all a cache hit needs)."""
    if "members" in arg:
        return _aggregate_key([m["oid"] for m in arg["members"]])
    if "payload" in arg:
        return constant_input(folder, name, arg, staged).oid
    return _checked_oid(arg.get("oid"), name)


def _bind(
    db: Database, folder: Path, name: str, arg: dict[str, Any], staged: dict[str, str]
) -> BoundInput:
    """An argument as the call record holds it: where a loaded value came from, its call."""
    if "payload" in arg:
        return constant_input(folder, name, arg, staged)
    if "members" in arg:
        parts = [_bind(db, folder, name, m, staged) for m in arg["members"]]
        oids = [p.oid for p in parts]
        record: dict[str, Any] = {"oid": _aggregate_key(oids), "members": oids}
        variables = {p.record.get("var") for p in parts}
        if len(variables) == 1 and None not in variables:
            addrs = [p.record["addr"] for p in parts]
            common = {k: v for k, v in addrs[0].items()
                      if k in db.schema_keys and all(a.get(k) == v for a in addrs)}
            record.update(var=variables.pop(), addr=common)
        return BoundInput(name, None, record["oid"], record, agreed_params(p.params for p in parts))
    oid = _checked_oid(arg.get("oid"), name)
    if arg.get("call"):  # an earlier Thunk result: its call's parameters flow on
        try:
            params = from_tree(read_call(db.store, arg["call"]).params, lambda child: child) or {}
        except ScistackError:
            params = {}
        return BoundInput(name, None, oid, {"oid": oid, "call": arg["call"]}, params)
    metadata = arg.get("metadata") or {}
    # a loaded record names no variable: find the ref by its oid (a scan of the refs, paid on a
    # miss only), the newest version at the record's address
    for ref in sorted(db.index.refs_to(oid), key=lambda r: -r.version):
        if all(metadata.get(k) == v for k, v in {**ref.addr, **ref.vkeys}.items()):
            return _single(name, ref.var, ref).bound
    return BoundInput(name, None, oid, {"oid": oid})  # a value no ref names now


def _aggregate_key(oids: list[str]) -> str:
    """As `for_each` keys a cell of lower-level records (`foreach.inputs._aggregate`)."""
    return hash_bytes(dumps_canonical({"aggregate": oids, "as_table": False}))


def _checked_oid(oid: Any, name: str) -> str:
    if not isinstance(oid, str) or len(oid) != 64:
        raise InvalidMetadataError(f"Thunk argument {name}: {oid!r} is not an oid")
    return oid
