"""`scistack matlab-commit`: record a MATLAB run's outputs, calls, refs and report in one batch."""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from pathlib import Path
from typing import Any

from scistack.database import Database
from scistack.errors import InvalidMetadataError, LineageError
from scistack.foreach.report import ComboResult, RunReport
from scistack.address import address_value
from scistack.foreach.split import places, split_record
from scistack.gc import freshen_lineage
from scistack.index import key_of, utc_now
from scistack.lineage.filecheck import cache_fn
from scistack.ingest import staged_name, store_staged
from scistack.lineage.calls import CALL_FORMAT
from scistack.codeid.env import capture_env
from scistack.matlab_bridge._files import (
    COMMIT_RESULT,
    ENV_KEYS,
    FORMAT,
    PLAN_RESULT,
    open_request,
    read_json,
    write_json,
)
from scistack.codeid.matlab import MatlabFunction
from scistack.codeid.script_path import project_relative
from scistack.objects.canonical_json import from_tree
from scistack.records import CallInput, CallRecord, FunctionInfo, HelperInfo, read_call
from scistack.summary import summarize
from scistack.version import __version__


# -- commit --------------------------------------------------------------------------------
def commit(db: Database, results_path: str | os.PathLike) -> dict[str, Any]:
    """Record what MATLAB ran (one batch); writes and returns `commit-result.json`.

    MATLAB commits as its loop goes (`"partial": true`: what finished so far, no run report)
    and once at the end or when interrupted, each time with every result so far: the
    combinations an earlier commit recorded (`committed.json` in the folder) are not recorded
    again, and the final commit's report counts them. A run stopped by Ctrl-C or a kill so
    keeps what its last commit recorded. A commit killed after its batch reached the journal
    but before `committed.json` said so left its intent (`INTENT`): the next commit learns
    from the journal what of it was recorded and does not record that again. A commit that
    fails (a payload that does not decode, a Ctrl-C) records nothing (an atomic batch): flushed
    on the error, its earlier results had been journalled with nothing saying so, and the
    retry recorded them again, over a value saved at the address meanwhile."""
    results_path = Path(results_path)
    folder, res, req, planned, fn = open_results(db, results_path, "plan", PLAN_RESULT)
    partial = bool(res.get("partial"))
    if not partial and (folder / COMMIT_RESULT).is_file():  # the final commit landed already: a
        # Ctrl-C as it returned made MATLAB's cleanup commit again (a second run had been journalled)
        return read_json(folder / COMMIT_RESULT, "commit result")
    done, landed_run = recover_intent(db, folder, read_committed(folder))
    if fn.identity != planned["function"]["identity"]:
        raise code_changed(fn, "the plan", "Run for_each again")
    combos = planned["combos"]
    outputs = planned["outputs"]
    splits = tuple(by or None for by in planned.get("splits") or [None] * len(outputs))
    by_index = {int(r["index"]): r for r in res.get("results") or []}
    for index in by_index:
        if not 0 <= index < len(combos) or combos[index]["status"] != "run":
            raise InvalidMetadataError(
                f"{results_path}: result {index} is not a planned combination to run"
            )
    items: list[ComboResult] = []
    out_oids: list[list[str] | None] = [None] * len(combos)
    call_oids: list[str | None] = [None] * len(combos)
    env = environment(db, fn, res.get("env") or {})
    keys: dict[str, str] = {}  # index -> call key, of the combinations this commit records
    gone = set(done.get("gone") or ())  # restores an earlier commit of this run found gone
    with db.batch(atomic=True):  # an error (a bad payload, a Ctrl-C) journals nothing of it
        staged = store_children(db, folder, res)
        code = store_code(db, fn)
        _store_constants(db, folder, req)
        for index, combo in enumerate(combos):
            item = ComboResult(combo["combo"], combo["status"], missing=combo.get("missing", []),
                               error=combo.get("error"))  # a plan's "failed": an ambiguous input
            items.append(item)
            if combo["status"] == "cached":
                out_oids[index], call_oids[index] = combo["outs"], combo["call"]
                if combo.get("restore") and not done["restored"]:
                    call_oids[index] = _restore(db, outputs, splits, combo, fn, planned["constants"])
                    if call_oids[index] is None:
                        gone.add(str(index))
                if str(index) in gone:
                    out_oids[index] = call_oids[index] = None
                    item.status, item.error = "failed", _GONE
                continue
            if combo["status"] != "run":
                continue
            result = by_index.get(index, {"status": "skipped", "error": _STOPPED})
            made = _served(results_path, index, combo, by_index) if result.get("status") == "cached" else result
            item.status = result.get("status", "skipped")
            item.duration = float(result.get("duration") or 0.0)
            if str(index) in done["ran"]:  # recorded by an earlier (partial) commit of this run
                item.status = "ran" if made is result else "cached"
                out_oids[index], call_oids[index] = done["ran"][str(index)]
                continue
            if item.status == "failed":
                item.error, item.traceback = result.get("error"), result.get("traceback")
                continue
            if item.status not in ("ran", "cached"):
                item.status, item.error = "skipped", result.get("error")
                continue
            stored = [store_staged(db, folder, out, staged) for out in made["outputs"]]
            layout = _layout(results_path, index, splits, made, len(stored))
            oids = [oid for oid, _ in stored]
            split = split_record(splits, layout)
            call = _record_call(db, fn, code, planned, combo, oids, env, made, split)
            db.index.put_call(combo["key"], call, cache_fn(fn.identity, (), split=bool(split)), oids,
                              multi=len(outputs) > 1)
            parts = list(zip(made["outputs"], stored))
            address = dict(combo["combo"])
            for var, where, _, (out, (oid, value)) in places(outputs, splits, address, key_of(address), parts, layout):
                db.index.put_ref(var, dict(where), {}, oid, out["kind"], call=call, params=combo["params"],
                                 summary=summarize(value))
            out_oids[index], call_oids[index] = oids, call
            done["ran"][str(index)] = [oids, call]
            keys[str(index)] = combo["key"]
        if not partial:
            run_id = landed_run or uuid.uuid4().hex
            report = RunReport(fn.name, items, float(res.get("duration") or 0.0), run_id)
            if not landed_run:
                items_oid = db.store.put_value(report.items_tree())
                db.index.put_run(report.to_record(items_oid, utc_now(), outputs, run_inputs(req)))
        # what this batch records, before it reaches the journal (it does as the block ends)
        done = dict(done, restored=True, gone=sorted(gone, key=int))
        write_json(folder / INTENT, {"format": FORMAT, "done": done, "keys": keys,
                                     "run_id": None if partial else report.run_id})
    write_json(folder / COMMITTED, done)  # (once the batch is in the journal)
    if partial:
        ran = sum(1 for item in items if item.status == "ran")
        (folder / INTENT).unlink()
        return {"format": FORMAT, "partial": True, "outputs": out_oids, "calls": call_oids,
                "summary": f"for_each({fn.name}): {ran} ran so far, recorded"}
    result = {
        "format": FORMAT,
        "run_id": report.run_id,
        "counts": report.counts,
        "summary": report.summary(),
        "outputs": out_oids,
        "calls": call_oids,
    }
    write_json(folder / COMMIT_RESULT, result)
    (folder / INTENT).unlink()
    return result


def run_inputs(req: dict[str, Any]) -> list[str]:
    """The variables a MATLAB run read (each input naming a variable, `Fixed` or not; a
    constant names none), sorted: its run entry's `inputs`, as Python's for_each writes them,
    which tell the graph which step of a function the run was (without them a run of
    `f(Y)` lent its failures to `f(X)`, the old matching by function and output)."""
    return sorted({str(spec["var"]) for spec in (req.get("inputs") or {}).values()
                   if isinstance(spec, dict) and "var" in spec})


_STOPPED = "not run: the run stopped before it (Ctrl-C, or on_error='raise')"
_GONE = ("its cached result is gone from the store since the plan (collected by gc, or lost), so "
         "nothing was recorded for it; run again to compute it")

COMMITTED = "committed.json"
"""What the commits of a run recorded so far: `ran` (index -> [outputs, call]), `restored`
(the first commit restored the cached results the plan named), `gone` (the indices of those it
found freed by a gc since the plan: failed in every later commit too, never named cached)."""


INTENT = "committing.json"
"""Written inside a commit's batch, before it is journalled, removed once `committed.json`
(and the final commit's `commit-result.json`) say what it did: `done` (`committed.json` as it
will be), `keys` (index -> call key of each combination it records), `run_id` (its report's,
or None)."""


def read_committed(folder: Path) -> dict[str, Any]:
    path = folder / COMMITTED
    if not path.is_file():
        return {"format": FORMAT, "ran": {}, "restored": False, "gone": []}
    return read_json(path, "commit state")


def recover_intent(db: Database, folder: Path, done: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """`done` with what a commit killed before it said so had recorded, learned from the
    journal: a combination when its call record was cached under its key, the run report
    when its run id was journalled (returned, so that it is not journalled twice). Without
    this the next commit recorded them again: a value saved at the address meanwhile was
    buried under a second version of the old one, and the run counted twice."""
    path = folder / INTENT
    if not path.is_file():
        return done, None
    intent = read_json(path, "commit intent")
    done = {**done, "ran": dict(done["ran"])}
    for index, (oids, call) in intent["done"]["ran"].items():
        key = intent["keys"].get(index)
        if index not in done["ran"] and key is not None and db.index.call_key_of(call) == key:
            done["ran"][index] = [oids, call]
    run_id = intent.get("run_id")
    if run_id and not any(run.run_id == run_id for run in db.index.runs()):
        run_id = None
    if run_id or intent["keys"] and set(intent["keys"]) <= set(done["ran"]):
        if intent["done"]["restored"] and not done["restored"]:  # (it did the restores)
            done["restored"], done["gone"] = True, list(intent["done"].get("gone") or ())
    return done, run_id


def open_results(db: Database, results_path: Path, request: str, answer_file: str
                 ) -> tuple[Path, dict[str, Any], dict[str, Any], dict[str, Any], MatlabFunction]:
    """What a commit reads (for_each's and a Thunk's alike): the folder, MATLAB's results,
    the request (`<request>.json`, checked against the project's schema keys), what the
    plan or lookup answered, and the function as its files are now."""
    folder = results_path.parent
    res = read_json(results_path, f"{request} results" if request != "plan" else "results")
    req, fn = open_request(db, folder / f"{request}.json", request)
    answer = read_json(folder / answer_file, f"{request} result")
    return folder, res, req, answer, fn


def code_changed(fn: MatlabFunction, since: str, again: str) -> LineageError:
    """The function's files changed after `since`: recording would name the wrong code."""
    return LineageError(
        f"{fn.main.path} (or a helper) changed between {since} and the commit, so the results "
        f"would be recorded under the wrong code; nothing was recorded. {again}")


def store_children(db: Database, folder: Path, res: dict[str, Any]) -> dict[str, str]:
    """Store the children MATLAB staged for its results (parts of container values); returns
    staged name -> oid."""
    staged: dict[str, str] = {}
    for child in res.get("children") or []:
        staged[staged_name(child)] = store_staged(db, folder, child, staged)[0]
    return staged


def store_code(db: Database, fn: MatlabFunction) -> str:
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


def _served(results_path: Path, index: int, combo: dict[str, Any], by_index: dict[int, dict[str, Any]]
            ) -> dict[str, Any]:
    """The result a combination MATLAB calls "cached" was served: that of the combination of
    this run with its call key (the plan's `same`), which ran. It is recorded here with this
    combination's own inputs and parameters (a call record of its own, as Python's
    `_finish_same` records it); its outputs, labels, start and duration are that call's."""
    same = combo.get("same")
    made = by_index.get(same) if isinstance(same, int) else None
    if made is None or made.get("status") != "ran":
        raise InvalidMetadataError(
            f"{results_path}: result {index} is \"cached\", served the result of the combination of "
            "this run with its call key, but "
            + ("the plan names none" if not isinstance(same, int) else f"result {same} did not run")
            + "; run for_each again")
    return made


def _layout(results_path: Path, index: int, splits: tuple[str | None, ...], result: dict[str, Any],
            n_stored: int) -> tuple[tuple | None, ...]:
    """Per output, None or the labels of a split output's parts (MATLAB's `labels`, one list
    per output), checked against the values staged."""
    given = result.get("labels") or []
    layout = tuple(None if by is None else tuple(address_value(v) for v in (given[j] if j < len(given) else []))
                   for j, by in enumerate(splits))
    expected = sum(1 if labels is None else len(labels) for labels in layout)
    if n_stored != expected:
        raise InvalidMetadataError(
            f"{results_path}: result {index} has {n_stored} outputs for {expected} values of "
            f"{len(splits)} variables")
    return layout


def _restore(db: Database, outputs: list[str], splits: tuple[str | None, ...], combo: dict[str, Any],
             fn: MatlabFunction, constants: dict[str, Any]) -> str | None:
    """A cached call whose outputs are not the current refs here: point the refs at them (a
    split output's parts at theirs), named by its call; or, when the plan found the call made
    with the same values elsewhere (`own`), by a record of it naming this combination's
    inputs (the cache entry stays, as Python's `_own_record` leaves it). Returns the call, or
    None when an output or the record is gone (nothing named).

    The outputs and the record are freshened first, as Python's `_restore` does: a gc may be
    judging them unreachable (their cache entry dropped), and a lab's puts this machine's cached
    copies back in the bucket: the plan asked `contains`, which a lab's cache answers first, and
    the outputs had been named with no copy there, for no colleague to load."""
    done: set[str] = set()
    if freshen_lineage(db.store, list(combo["outs"]), done):  # (an output or a child of one)
        return None
    if combo["call"] in freshen_lineage(db.store, [combo["call"]], done):  # (its lineage is fsck's)
        return None
    cached = read_call(db.store, combo["call"])
    call, params = combo["call"], from_tree(cached.params, lambda oid: oid)
    if combo.get("own"):
        params = combo["own"]["params"]
        call = record_call(db, fn, store_code(db, fn), {**constants, **combo["own"]["inputs"]},
                           list(combo["outs"]), params, dict(cached.env or {}), cached.started,
                           cached.duration)
    layout = tuple(None if labels is None else tuple(labels)
                   for labels in combo.get("layout") or [None] * len(outputs))
    address = dict(combo["combo"])
    for var, where, _, oid in places(outputs, splits, address, key_of(address), list(combo["outs"]), layout):
        db.index.put_ref(var, dict(where), {}, oid, db.store.get(oid).kind, call=call,
                         params=params or {}, summary=summarize(db.store.get_value(oid)))
    return call


def environment(db: Database, fn: MatlabFunction, given: dict[str, Any]) -> dict[str, Any]:
    env = {k: str(given[k]) for k in ENV_KEYS if k in given}
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
    split: list | None = None,
) -> str:
    inputs = {**planned["constants"], **combo["inputs"]}
    return record_call(db, fn, code, inputs, outs, combo["params"], env,
                       result.get("started"), result.get("duration"), split)


def record_call(
    db: Database,
    fn: MatlabFunction,
    code: str,
    inputs: dict[str, Any],
    outs: list[str],
    params: dict[str, Any],
    env: dict[str, Any],
    started: Any,
    duration: Any,
    split: list | None = None,
) -> str:
    """Store the call record of one MATLAB call (a for_each combination or a Thunk call).

    `file` is the `.m` file and each helper's `file` its path, so `status` and `why` can read
    them again and compare the identity (`scistack.codeid.matlab.identity_now`); each is also
    named relative to the project's folder (`project_file`) when inside it, so that another
    checkout of the project reads its own copy (`scistack.codeid.matlab.recorded_files`), and
    then the record names the project that made it (`function.project`, as a Python record
    does): a project that imports it reads the exporter's files, not its own of that name."""
    root = db.root
    project_file = project_relative(fn.main.path, root)
    helpers = {f"helper:matlab:{h.label}": HelperInfo(h.digest, h.code, (), _helper_paths(h.path, root))
               for h in fn.helpers}
    inside = project_file is not None or any("project_file" in h.extra for h in helpers.values())
    record = CallRecord(
        function=FunctionInfo(
            name=fn.name,
            module=fn.module,
            identity=fn.identity,
            code=code,
            has_source=True,
            version=None,
            deps=tuple(tuple(d) for d in fn.deps()),
            helpers=helpers,
            constants={},
            note=f"MATLAB function: identity from the normalised text of {fn.main.label}"
            + (f" and {len(fn.helpers)} helper file(s)" if fn.helpers else ""),
            file=fn.main.path,
            project_file=project_file,
            project=db.records_project() if inside else None,
        ),
        arguments={n: CallInput.from_value(item) for n, item in sorted(inputs.items())},
        outputs=tuple(outs),
        multi=len(outs) > 1,
        params=params,
        env=env,
        started=_iso(started),
        duration=round(float(duration or 0.0), 6),
        format=CALL_FORMAT,
        extra={"split": split} if split else {},
    )
    return db.store.put("call", record.to_bytes())


def _helper_paths(path: str, root: Path) -> dict[str, str]:
    """A helper's `file` (absolute) and, inside the project's folder, its `project_file`."""
    rel = project_relative(path, root)
    return {"file": path} if rel is None else {"file": path, "project_file": rel}


def _iso(unix_seconds: Any) -> str:
    """MATLAB reports start times as Unix seconds (UTC); the record keeps ISO 8601 (a time
    that is ISO 8601 already, a cached record's, stays as it is)."""
    if isinstance(unix_seconds, str):
        return unix_seconds
    if not isinstance(unix_seconds, (int, float)):
        return utc_now()
    stamp = _dt.datetime.fromtimestamp(float(unix_seconds), _dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
