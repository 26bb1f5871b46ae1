"""`for_each` for MATLAB functions: plan in Python, run in MATLAB, commit in Python.

MATLAB cannot hash with blake3 or write the index, and the index must keep one writer, so
`scistack.for_each` in MATLAB makes exactly two calls of the `scistack` command, however many
combinations there are (the contract is in `matlab/README.md`):

1. `scistack matlab-plan <staging>/plan.json` (:func:`plan`): the function's identity (from
   its normalised `.m` text), the constants' oids (from the canonical JSON / npy payloads
   MATLAB staged), every combination's inputs resolved to oids, its call key, and whether it
   is cached, missing or must run. Nothing is recorded; the plan is written beside the
   request as `plan-result.json`.
2. MATLAB loads the inputs of the combinations to run (by oid), calls the function and stages
   the outputs as payload files.
3. `scistack matlab-commit <staging>/results.json` (:func:`commit`): in one batch, stores the
   outputs, the code and the constants, one call record per combination (docs/format.md
   §1.5, module ``matlab:<file>``, env ``language: matlab``), the call-cache entries and the
   refs (with ``call`` and ``params``), and a ``run`` report; writes `commit-result.json`.

Identity of a MATLAB function: the blake3 hex digest of the UTF-8 bytes of its `.m` file
normalised by :func:`normalise_matlab_source` (comments, block comments, blank lines and
trailing whitespace removed). With helper files (``'helpers'`` in MATLAB) it is
``blake3(canonical {"deps": [["helper:matlab:<file>", <digest>], ...], "source": <digest>})``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scistack.version import __version__
from scistack.database import Database
from scistack.errors import InvalidMetadataError, LineageError, SchemaMismatchError
from scistack.foreach.inputs import _resolve_variable
from scistack.foreach.report import ComboResult, RunReport
from scistack.index import check_identifier, key_of, utc_now
from scistack.ingest import staged_name, staged_payload, store_staged
from scistack.lineage.calls import CALL_FORMAT, BoundInput, flatten_params, key_from_oids
from scistack.lineage.env import capture_env
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.hashing import hash_bytes, hash_object
from scistack.summary import summarize

FORMAT = 1
PLAN_RESULT = "plan-result.json"
COMMIT_RESULT = "commit-result.json"
_INLINE_MAX = 16  # like Python constants: scalars and containers of <= 16 items inline
_ENV_KEYS = ("language", "matlab", "octave")


# -- the function: normalised source and identity -----------------------------------------
def normalise_matlab_source(text: str) -> str:
    """The text a MATLAB function's identity is computed from.

    Removes `%` (and Octave `#`) comments outside strings, the text after a `...`
    continuation, `%{ ... %}` block comments (nested, each marker alone on its line), blank
    lines and trailing whitespace; line ends become `\\n`. Indentation and everything else
    count. A string delimiter the scanner cannot classify keeps the rest of its line, so an
    uncertain case changes identity (a re-run) rather than hiding an edit.
    """
    out = []
    depth = 0
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        marker = line.strip()
        if marker in ("%{", "#{"):
            depth += 1
            continue
        if depth:
            if marker in ("%}", "#}"):
                depth -= 1
            continue
        code = _strip_comment(line).rstrip()
        if code.strip():
            out.append(code)
    return "".join(line + "\n" for line in out)


def _strip_comment(line: str) -> str:
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                if line[i + 1 : i + 2] == quote:
                    i += 2
                    continue
                quote = ""
        elif c in "%#":
            return line[:i]
        elif c == "." and line.startswith("...", i):
            return line[: i + 3]
        elif c == '"':
            quote = c
        elif c == "'":
            prev = line[i - 1] if i else ""
            if not (prev.isalnum() or prev in "_)]}.'"):  # else: the transpose operator
                quote = c
        i += 1
    return line


@dataclass(frozen=True, slots=True)
class MatlabSource:
    """One `.m` file: its label (`+pkg/name.m`), normalised text, digest and code oid."""

    label: str
    path: str
    text: str
    digest: str
    code: str


@dataclass(frozen=True, slots=True)
class MatlabFunction:
    """A MATLAB function as lineage sees it."""

    name: str
    main: MatlabSource
    helpers: tuple[MatlabSource, ...]
    identity: str
    params: tuple[str, ...]

    @property
    def module(self) -> str:
        return f"matlab:{self.main.label}"

    def deps(self) -> list[list[str]]:
        return sorted([f"helper:matlab:{h.label}", h.digest] for h in self.helpers)


def matlab_source(path: str | os.PathLike) -> MatlabSource:
    """Read and normalise one `.m` file."""
    file = Path(path)
    if file.suffix != ".m":
        raise LineageError(
            f"{file} is not a MATLAB .m file; for_each needs a function defined in a .m file"
        )
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise LineageError(f"cannot read the MATLAB function file {file}: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # MATLAB's default on many systems
    normal = normalise_matlab_source(text)
    data = normal.encode("utf-8")
    return MatlabSource(
        _label(file), str(file), normal, hash_bytes(data), hash_object("code", [data])
    )


def _label(file: Path) -> str:
    """`bandpass.m`, or `+lab/bandpass.m` / `@Filter/apply.m` inside package/class folders."""
    parts = [file.name]
    for parent in file.parents:
        if parent.name.startswith(("+", "@")):
            parts.insert(0, parent.name)
        else:
            break
    return "/".join(parts)


def matlab_function(
    file: str | os.PathLike, helpers: list[str] | tuple[str, ...] = ()
) -> MatlabFunction:
    """The identity of the function in `file` (and the helper files it depends on)."""
    main = matlab_source(file)
    deps = tuple(sorted((matlab_source(h) for h in helpers), key=lambda s: s.label))
    if deps:
        identity = hash_bytes(
            dumps_canonical(
                {
                    "deps": sorted([f"helper:matlab:{h.label}", h.digest] for h in deps),
                    "source": main.digest,
                }
            )
        )
    else:
        identity = main.digest
    name, params = _signature(main)
    return MatlabFunction(name, main, deps, identity, params)


_FUNCTION_LINE = re.compile(
    r"^\s*function\b\s*(?:(?:\[[^\]]*\]|[A-Za-z]\w*)\s*=\s*)?([A-Za-z][\w.]*)\s*(?:\(([^)]*)\))?"
)


def _signature(source: MatlabSource) -> tuple[str, tuple[str, ...]]:
    """Function name and parameter names, from the first `function` line of the file."""
    joined = re.sub(r"\.\.\.\n", " ", source.text)
    for line in joined.split("\n"):
        match = _FUNCTION_LINE.match(line)
        if match:
            params = tuple(p.strip() for p in (match.group(2) or "").split(",") if p.strip())
            return match.group(1), params
        if line.strip():
            break
    raise LineageError(
        f"{source.path} is not a function file (its first statement is not `function ...`): "
        "for_each runs functions; wrap a script in a function"
    )


# -- plan ----------------------------------------------------------------------------------
def plan(db: Database, request_path: str | os.PathLike) -> dict[str, Any]:
    """Resolve every combination of a MATLAB for_each; writes and returns `plan-result.json`."""
    request_path = Path(request_path)
    folder = request_path.parent
    req = _read(request_path, "plan")
    _check_schema(db, req, request_path)
    fn = matlab_function(req["function"]["file"], req["function"].get("helpers") or [])
    outputs = [check_identifier(v, "output variable name") for v in req.get("outputs") or []]
    if not outputs:
        raise InvalidMetadataError(
            "for_each needs at least one output variable, e.g. {FilteredEMG()}"
        )
    specs, constants = _inputs(db, folder, req)
    arguments = _arguments(fn, list(req.get("order") or sorted(specs)))
    db.index.refresh()
    combos = _combinations(db, specs, req.get("iterate") or [])
    planned = [_plan_one(db, fn, specs, constants, outputs, combo) for combo in combos]
    counts = {s: sum(1 for p in planned if p["status"] == s) for s in ("run", "cached", "missing")}
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
        "combos": planned,
        "counts": counts,
    }
    _write(folder / PLAN_RESULT, result)
    return result


@dataclass(slots=True)
class _Spec:
    var: str
    fixed: dict[str, Any]


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidMetadataError(f"cannot read the MATLAB {what} request {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidMetadataError(
            f"{path}: format {data.get('format') if isinstance(data, dict) else None!r}; this scistack "
            f"reads {FORMAT} (update the MATLAB client or scistack so that they match)"
        )
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(dumps_canonical(data) + b"\n")
    os.replace(temp, path)


def _check_schema(db: Database, req: dict[str, Any], path: Path) -> None:
    if list(req.get("schema_keys") or []) != db.schema_keys:
        raise SchemaMismatchError(
            f"{path} was written for schema keys {req.get('schema_keys')}, but the project has "
            f"{db.schema_keys}; configure MATLAB with scistack.configure_database(path, {db.schema_keys})"
        )


def _inputs(
    db: Database, folder: Path, req: dict[str, Any]
) -> tuple[dict[str, _Spec], dict[str, BoundInput]]:
    """Loaded inputs (variable + pins) and constants (their oids from the staged payloads)."""
    staged: dict[str, str] = {}
    for child in req.get("children") or []:
        kind, payload = staged_payload(folder, child, staged)
        staged[staged_name(child)] = hash_object(kind, [payload])
    specs: dict[str, _Spec] = {}
    constants: dict[str, BoundInput] = {}
    for name, spec in (req.get("inputs") or {}).items():
        check_identifier(name, "input name")
        if "var" in spec:
            fixed = dict(spec.get("fixed") or {})
            unknown = [k for k in fixed if k not in db.schema_keys]
            if unknown:
                raise InvalidMetadataError(
                    f"Fixed({spec['var']}, ...) for input {name!r} pins {unknown}, which are not schema "
                    f"keys; the schema keys are {db.schema_keys}"
                )
            specs[name] = _Spec(check_identifier(spec["var"], "variable name"), fixed)
        else:
            kind, payload = staged_payload(folder, spec, staged)
            oid = hash_object(kind, [payload])
            record: dict[str, Any] = {"oid": oid}
            if kind == "json":
                tree = json.loads(payload)
                if not isinstance(tree, (list, dict)) or len(tree) <= _INLINE_MAX:
                    record["const"] = tree
            constants[name] = BoundInput(name, None, oid, record)
    return specs, constants


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
        for record in db.index.state.records(spec.var):
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
    combo: dict[str, Any],
) -> dict[str, Any]:
    bound = dict(constants)
    missing = []
    for name, spec in specs.items():
        found = _resolve_variable(db, name, spec.var, {**combo, **spec.fixed}, False)
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
    hit = db.index.state.calls.get(key)
    if hit is not None and len(hit["outs"]) == len(outputs):
        restore = _needs_restore(db, combo, outputs, hit)
        if restore is not None:
            return {
                "combo": combo,
                "status": "cached",
                "call": hit["call"],
                "outs": list(hit["outs"]),
                "restore": restore,
            }
    return {
        "combo": combo,
        "status": "run",
        "key": key,
        "inputs": {n: b.record for n, b in sorted(bound.items()) if n in specs},
        "params": flatten_params(fn.name, bound),
    }


def _address_text(db: Database, addr: dict[str, Any]) -> str:
    keys = [k for k in db.schema_keys if k in addr]
    return ", ".join(f"{k}={addr[k]!r}" for k in keys)


def _needs_restore(
    db: Database, combo: dict[str, Any], outputs: list[str], hit: dict[str, Any]
) -> bool | None:
    """False: the cached outputs are the current refs here; True: re-point the refs at them;
    None: an output object was garbage-collected, so run again."""
    restore = False
    for var, oid in zip(outputs, hit["outs"]):
        current = db.index.state.current_at(var, key_of(combo), "{}")
        if current is not None and current.oid == oid and current.call == hit["call"]:
            continue
        if not db.store.contains(oid):
            return None
        restore = True
    return restore


# -- commit --------------------------------------------------------------------------------
def commit(db: Database, results_path: str | os.PathLike) -> dict[str, Any]:
    """Record what MATLAB ran (one batch); writes and returns `commit-result.json`."""
    results_path = Path(results_path)
    folder = results_path.parent
    res = _read(results_path, "results")
    req = _read(folder / "plan.json", "plan")
    planned = _read(folder / PLAN_RESULT, "plan result")
    _check_schema(db, req, folder / "plan.json")
    fn = matlab_function(req["function"]["file"], req["function"].get("helpers") or [])
    if fn.identity != planned["function"]["identity"]:
        raise LineageError(
            f"{fn.main.path} (or a helper) changed between the plan and the commit, so the results "
            "would be recorded under the wrong code; nothing was recorded. Run for_each again"
        )
    combos = planned["combos"]
    outputs = planned["outputs"]
    by_index = {int(r["index"]): r for r in res.get("results") or []}
    for index in by_index:
        if not 0 <= index < len(combos) or combos[index]["status"] != "run":
            raise InvalidMetadataError(
                f"{results_path}: result {index} is not a planned combination to run"
            )
    items: list[ComboResult] = []
    out_oids: list[list[str] | None] = [None] * len(combos)
    call_oids: list[str | None] = [None] * len(combos)
    env = _environment(db, fn, res.get("env") or {})
    with db.batch():
        db.index.refresh()
        staged: dict[str, str] = {}
        for child in res.get("children") or []:
            staged[staged_name(child)] = store_staged(db, folder, child, staged)[0]
        code = _store_code(db, fn)
        _store_constants(db, folder, req)
        for index, combo in enumerate(combos):
            item = ComboResult(combo["combo"], combo["status"], missing=combo.get("missing", []))
            items.append(item)
            if combo["status"] == "cached":
                out_oids[index], call_oids[index] = combo["outs"], combo["call"]
                if combo.get("restore"):
                    _restore(db, outputs, combo)
                continue
            if combo["status"] != "run":
                continue
            result = by_index.get(index, {"status": "skipped"})
            item.status = result.get("status", "skipped")
            item.duration = float(result.get("duration") or 0.0)
            if item.status == "failed":
                item.error, item.traceback = result.get("error"), result.get("traceback")
                continue
            if item.status != "ran":
                item.status = "skipped"
                continue
            stored = [store_staged(db, folder, out, staged) for out in result["outputs"]]
            if len(stored) != len(outputs):
                raise InvalidMetadataError(
                    f"{results_path}: result {index} has {len(stored)} outputs for {len(outputs)} variables"
                )
            oids = [oid for oid, _ in stored]
            call = _record_call(db, fn, code, planned, combo, oids, env, result)
            db.index.put_call(combo["key"], call, fn.identity, oids, multi=len(oids) > 1)
            for var, out, (oid, value) in zip(outputs, result["outputs"], stored):
                db.index.put_ref(
                    var,
                    dict(combo["combo"]),
                    {},
                    oid,
                    out["kind"],
                    call=call,
                    params=combo["params"],
                    summary=summarize(value),
                )
            out_oids[index], call_oids[index] = oids, call
        report = RunReport(fn.name, items, float(res.get("duration") or 0.0), uuid.uuid4().hex)
        items_oid = db.store.put_value(report.items_tree())
        db.index.put_entry({**report.to_entry(items_oid), "t": utc_now(), "outputs": outputs})
    result = {
        "format": FORMAT,
        "run_id": report.run_id,
        "counts": report.counts,
        "summary": report.summary(),
        "outputs": out_oids,
        "calls": call_oids,
    }
    _write(folder / COMMIT_RESULT, result)
    return result


def _store_code(db: Database, fn: MatlabFunction) -> str:
    for source in (fn.main, *fn.helpers):
        db.store.put("code", source.text.encode("utf-8"))
    return fn.main.code


def _store_constants(db: Database, folder: Path, req: dict[str, Any]) -> None:
    """Constants are stored for provenance (children first), as Python's for_each does."""
    staged: dict[str, str] = {}
    for child in req.get("children") or []:
        staged[staged_name(child)] = store_staged(db, folder, child, staged)[0]
    for spec in (req.get("inputs") or {}).values():
        if "var" not in spec:
            store_staged(db, folder, spec, staged)


def _restore(db: Database, outputs: list[str], combo: dict[str, Any]) -> None:
    """A cached call whose outputs are not the current refs here: point the refs at them."""
    call = db.store.get_value(combo["call"])
    for var, oid in zip(outputs, combo["outs"]):
        kind = db.store.get(oid).kind
        db.index.put_ref(
            var,
            dict(combo["combo"]),
            {},
            oid,
            kind,
            call=combo["call"],
            params=call.get("params") or {},
            summary=summarize(db.store.get_value(oid)),
        )


def _environment(db: Database, fn: MatlabFunction, given: dict[str, Any]) -> dict[str, Any]:
    env = {k: str(given[k]) for k in _ENV_KEYS if k in given}
    env["language"] = "matlab"
    base = capture_env(
        fn.main.path,
        [],
        lambda diff: db.store.put("bytes", diff),
        files=[fn.main.path, *(h.path for h in fn.helpers)],
    )
    for key in ("host", "user", "platform", "git"):
        if key in base:
            env[key] = base[key]
    env["ingester"] = f"scistack {__version__}"
    return env


def _record_call(
    db: Database,
    fn: MatlabFunction,
    code: str,
    planned: dict[str, Any],
    combo: dict[str, Any],
    outs: list[str],
    env: dict[str, Any],
    result: dict[str, Any],
) -> str:
    inputs = {**planned["constants"], **combo["inputs"]}
    record = {
        "type": "call",
        "format": CALL_FORMAT,
        "function": {
            "name": fn.name,
            "module": fn.module,
            "identity": fn.identity,
            "code": code,
            "has_source": True,
            "version": None,
            "deps": fn.deps(),
            "helpers": {
                f"helper:matlab:{h.label}": {"identity": h.digest, "code": h.code, "deps": []}
                for h in fn.helpers
            },
            "constants": {},
            "note": f"MATLAB function: identity from the normalised text of {fn.main.label}"
            + (f" and {len(fn.helpers)} helper file(s)" if fn.helpers else ""),
        },
        "inputs": dict(sorted(inputs.items())),
        "outputs": outs,
        "multi": len(outs) > 1,
        "params": combo["params"],
        "env": env,
        "started": _iso(result.get("started")),
        "duration": round(float(result.get("duration") or 0.0), 6),
    }
    return db.store.put("call", dumps_canonical(record))


def _iso(unix_seconds: Any) -> str:
    """MATLAB reports start times as Unix seconds (UTC); the record keeps ISO 8601."""
    if not isinstance(unix_seconds, (int, float)):
        return utc_now()
    stamp = _dt.datetime.fromtimestamp(float(unix_seconds), _dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
