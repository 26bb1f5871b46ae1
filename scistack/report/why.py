"""`why`: is a stored value still what its code and inputs would give today, and if not, why?

The call record names the function's identity, its normalised source, every project helper
it reaches (each with its own source and dependencies, see ``codetree``), the constants and
package versions they read, and each input's oid. Comparing those with the code as it is now
(and with the inputs' current versions) names exactly what changed: the function, a helper
(with a unified diff of its source), a constant, a package, or an input. Inputs that were
never saved (a result passed straight on) are followed into the call that computed them.
"""

from __future__ import annotations

import builtins
import difflib
import functools
import hashlib
import importlib
import importlib.util
import linecache
import os
import sys
import time
from dataclasses import dataclass, field, replace
from types import FunctionType, ModuleType
from typing import Any

from scistack.database import get_database, loaded_record, writes_refused
from scistack.errors import (AmbiguousVersionError, CorruptObjectError, InvalidMetadataError, ObjectNotFoundError,
                             ScistackError, VariableNotFoundError)
from scistack.address import shown_address
from scistack.htmlrepr import ordered
from scistack.index import key_of
from scistack.selection import choose_variant, many_current, select_records
from scistack.codeid._packages import EXEC_MODULE, is_project_module
from scistack.codeid._shapes import sources_named
from scistack.codeid._source import code_now
from scistack.codeid.body_imports import body_imports
from scistack.codeid.matlab import identity_now, is_matlab_module, matlab_source, recorded_files
from scistack.codeid.script_check import script_changes
from scistack.codeid.codetree import code_tree, constant_values
from scistack.codeid.files import _RACY_NS, content_stamp, loaded_file_is_current
from scistack.codeid.lines import assignment_place, changed_lines, describe_location, line_map
from scistack.foreach.filestats import file_stats
from scistack.foreach.paths import file_oid
from scistack.lineage.calls import raw_file_here, raw_places, relocated
from scistack.lineage.filecheck import changed_inputs
from scistack.lineage.function import LineageFunction, registered_function, registry_key
from scistack.codeid.identity import function_identity, normalised_source
from scistack.objects.canonical_json import from_tree
from scistack.records import CallInput, CallRecord, FunctionInfo, read_call


@dataclass(frozen=True, slots=True)
class Reason:
    """One thing that changed since a value was computed."""

    kind: str  # "code", "helper", "class", "constant", "package", "version", "input",
    #                  "superseded", "failed" (the last run here), "unknown"
    name: str
    detail: str
    diff: str = ""


@dataclass(frozen=True, slots=True)
class WhyReport:
    """The verdict on one stored value."""

    variable: str
    address: dict[str, Any]
    status: str  # "current", "stale", "raw" (no lineage), "unknown" (function not importable)
    function: str | None
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        where = shown_address(self.address)
        head = f"{self.variable}({where}) is {self.status}"
        if self.function:
            head += f" (computed by {self.function})"
        lines = [head] + [f"  - {r.kind} {r.name}: {r.detail}" for r in self.reasons]
        lines += [r.diff.rstrip("\n") for r in self.reasons if r.diff]
        return "\n".join(lines)


def why(variable: Any, **metadata: Any) -> WhyReport:
    """Why the value at `metadata` is current, stale, or would be recomputed.

    Parameters
    ----------
    variable
        The variable class (``FilteredEMG``).
    **metadata
        Its address (and version keys, or ``version=`` for an older version).

    Returns
    -------
    WhyReport
        ``status`` is "current" (calling the function on the current inputs would be a cache
        hit), "stale" (it would recompute: `reasons` name the function, helper, constant,
        package or input that changed, with unified diffs of changed code), "raw" (saved
        without lineage) or "unknown" (the function is not importable here).
    """
    db = get_database()
    record = loaded_record(variable, metadata, "why")
    if record is not None:  # a loaded value: that very record, whatever else is there now
        return why_record(db, record.var, record)
    name = variable if isinstance(variable, str) else getattr(variable, "__name__", None)
    if not isinstance(name, str):
        raise InvalidMetadataError(f"why takes a variable class, its name or a loaded value, e.g. "
                                   f"why(FilteredEMG, subject=1); got {variable!r}")
    return why_at(db, name, **metadata)


def why_at(db: Any, var: str, **address: Any) -> WhyReport:
    """`why` for the current value of the variable named `var` at `address` in `db` (what
    `scistack why` and the web view ask): one value, by `load`'s rule for variants."""
    return why_where(db, var, address)


def why_where(db: Any, var: str, address: dict[str, Any], *, cli: bool = False) -> WhyReport:
    """`why_at` with the address as a dict (any key may be a schema key); `cli`: errors say
    how to choose on the command line (`--note recal`, `--version N`), not in Python."""
    address = dict(address)
    version = address.pop("version", None)  # (an older one)
    many = many_current(db, var, address, version)
    try:
        records = [] if many else select_records(db, var, address, version=version)
    except VariableNotFoundError as exc:  # (not a mistyped key: a subclass)
        failed = _no_value_failed(db, var, address) if type(exc) is VariableNotFoundError and version is None else None
        if failed is None:
            raise
        raise VariableNotFoundError(failed) from None
    if len(records) > 1 and len({r.addr_key for r in records}) == 1:
        records = [choose_variant(var, records, cli=cli, schema_keys=db.schema_keys)]  # several variants: load's rule, load's error
    if len(records) != 1:
        keys = ", ".join(f"--{k}" if cli else k for k in db.schema_keys)
        asked = shown_address(address) or "everything"
        raise AmbiguousVersionError(
            f"why needs one value but {many or len(records)} records of {var} match {asked}; give the "
            f"full address ({keys}) and any version keys")
    return why_record(db, var, records[0])


def newer_record(db: Any, call_oid: str) -> str | None:
    """A later record of the same call (same key: function and inputs by content) that the
    call cache names, when the ref's own is not it: a run that found the raw files it reads
    moved records the call again with their new place, and the ref keeps its first record.
    Judged instead only when it is the ref's own with the files elsewhere
    (`lineage.calls.relocated`): files with the same bytes at other addresses share the key,
    and a record of another address taken for the ref's had called an edit of its file
    current."""
    key = db.index.call_key_of(call_oid)
    entry = db.index.cached_call(key) if key else None
    newer = entry.get("call") if entry else None
    return newer if newer and newer != call_oid and db.store.contains(newer) else None


def _newer_as_shown(db: Any, call_oid: str, call: CallRecord) -> str | None:
    """`newer_record` when it is `call` with its raw files read elsewhere under the same shown
    paths (`lineage.calls.relocated`: an imported bundle's files put back with `raw_to`, the
    bundle's records naming the exporting project's folder, which may still be there; a moved
    project); None otherwise, at once for a call that took no raw file."""
    if not raw_places(call):
        return None
    newer = newer_record(db, call_oid)
    if newer is None:
        return None
    try:
        later = read_call(db.store, newer)
    except (ObjectNotFoundError, CorruptObjectError):
        return None
    return newer if relocated(call, later) else None


def why_record(db: Any, name: str, record: Any) -> WhyReport:
    """`why` for one ref record of variable `name` (its value is not loaded)."""
    # as the user names it, not sorted; its version keys too (`signal="Clean"` of an EachOf:
    # which alternative was judged)
    addr = {**ordered(record.addr, db.schema_keys), **record.vkeys}
    if record.call is None:
        return WhyReport(name, addr, "raw", None, (Reason(
            "unknown", "lineage", "saved without lineage (not produced through a lineage function)"),))
    try:
        call, changes = _record_changes(db, record.call, upstream_of=None, seen=set(), at=record.addr)
        file_stats(db).save()  # (what its raw files' checks hashed: nothing, no write)
    except (ObjectNotFoundError, CorruptObjectError) as exc:
        lost = "lost" if isinstance(exc, ObjectNotFoundError) else "damaged"
        return WhyReport(name, addr, "unknown", None, (Reason(
            "unknown", "lineage", f"its call record {record.call[:12]} is {lost}; `scistack fsck --repair`, then "
            "running the step that made it again records its lineage anew"),))
    reasons = _failed_since(db, name, record) + _superseded(db, name, record) + changes
    kinds = {r.kind for r in reasons}
    # A changed input or code makes a value stale even when other parts cannot be judged here.
    status = ("stale" if kinds - {"superseded", "unknown", "failed"} else "unknown" if "unknown" in kinds
              else "current")
    return WhyReport(name, addr, status, call.function.name, tuple(reasons))


def _record_changes(db: Any, call_oid: str, *, upstream_of: str | None,
                    seen: set[str], at: dict[str, Any] | None = None) -> tuple[CallRecord, list[Reason]]:
    """The call a ref names and what changed for it; a later record of the same call (its raw
    files found elsewhere under the same shown paths by a later run: `_newer_as_shown`) is
    judged instead."""
    call, visited = read_call(db.store, call_oid), set(seen)
    newer = _newer_as_shown(db, call_oid, call)  # its raw files where they are now
    if newer is not None:
        call_oid, call = newer, read_call(db.store, newer)
    changes = _call_changes(db, call_oid, call, upstream_of=upstream_of, seen=visited, at=at)
    seen |= visited  # each upstream call is judged once
    return call, changes


def _call_changes(
    db: Any, call_oid: str, call: CallRecord, *, upstream_of: str | None, seen: set[str],
    at: dict[str, Any] | None = None,
) -> list[Reason]:
    """What changed for one call: its code (and helpers), its inputs, and unsaved upstream calls."""
    seen.add(call_oid)
    fn_name = call.function.name
    module = call.function.module
    fn = None if is_matlab_module(module) else _find_function(module, fn_name)
    if is_matlab_module(module):
        static = _matlab_changes(db, call)
    else:
        static = None if fn is not None else _unfound_changes(db, call)
    if static is not None:
        reasons = static
    elif fn is None:
        reasons = [Reason("unknown", fn_name, not_found_reason(module, fn_name))]
    else:
        reasons = _code_changes(db, call, fn)
    raw = _raw_files(db, call)
    reasons += _input_changes(db, call, seen, at) + [
        r for r in _file_changes(db, call_oid) if os.path.abspath(r.name) not in raw]
    if upstream_of is not None:
        reasons = [
            replace(r, detail=f"upstream {fn_name} (feeding {upstream_of}): {r.detail}")
            if not r.detail.startswith("upstream ")
            else r
            for r in reasons
        ]
    return reasons


def _code_changes(db: Any, call: CallRecord, fn: Any) -> list[Reason]:
    recorded = call.function
    target = fn.fn if isinstance(fn, LineageFunction) else fn
    pinned = fn.version if isinstance(fn, LineageFunction) else None
    current = function_identity(target, version=pinned)
    unverifiable = [
        Reason("unknown", what, f"read by {recorded.name} but cannot be verified ({detail}): "
               "a change to it would not be seen")
        for what, detail in current.unverifiable
    ]
    # a partial or a bound method recorded, and the name finds the plain function: what was
    # bound to it is not here to compare, its code is
    code_only = recorded.code_identity is not None and not current.unbound_digest
    if current.digest == (recorded.code_identity if code_only else recorded.identity):
        return unverifiable
    name = recorded.name
    reasons: list[Reason] = []
    if (recorded.version or None) != current.pinned_version:
        reasons.append(
            Reason(
                "version",
                name,
                f"pinned version {recorded.version!r} -> {current.pinned_version!r}",
            )
        )
    if current.pinned_version is None and recorded.version is None:
        diff = _diff(db, recorded.code, current.source or normalised_source(target) or "", name)
        if diff is None:
            reasons.append(
                Reason("code", name, "the function's code changed (its old source is not stored)")
            )
        elif diff:
            where = _where(target, diff)
            reasons.append(Reason("code", name, f"the function's code changed{where}", diff))
        if recorded.has_helpers:
            reasons += _tree_changes(db, recorded, current, code_tree(target, current), code_only)
        else:  # a record from before helper trees were kept: direct dependencies only
            reasons += _leaf_changes(
                dict(map(tuple, recorded.deps)), dict(current.deps), with_helpers=True
            )
    if not reasons:
        reasons.append(Reason("code", name, "the function's identity changed"))
    return reasons + unverifiable


def _matlab_changes(db: Any, call: CallRecord) -> list[Reason]:
    """A MATLAB function: its recorded `.m` file (and helpers) read and normalised again."""
    recorded = call.function
    file, helpers = recorded_files(recorded, getattr(db, "root", None),  # (this checkout's copies)
                                   getattr(db, "project_ids", ()))
    if helpers is None:
        return [Reason("unknown", recorded.name,
                       "the helper files of this MATLAB call are not recorded")]
    now, problem = identity_now(file, helpers)
    if now is None:
        return [Reason("unknown", recorded.name, problem)]
    if now == recorded.identity:
        return []
    reasons = []
    main = matlab_source(file)
    diff = _diff(db, recorded.code, main.text, recorded.name)
    if diff:
        reasons.append(Reason("code", recorded.name, f"the function's code changed ({file})", diff))
    for (label, info), path in zip(sorted(recorded.helpers.items()), helpers):
        if matlab_source(path).digest != info.identity:
            reasons.append(Reason("helper", label, f"the helper's code changed ({path})"))
    return reasons or [Reason("code", recorded.name, "the function's identity changed")]


def _tree_changes(db: Any, recorded: FunctionInfo, current: Any, tree: tuple,
                  code_only: bool = False) -> list[Reason]:
    """Helpers whose own code changed (with diffs), and constants/packages read anywhere
    (`code_only`: not a partial's bound arguments, which are not here to compare)."""
    old_helpers = recorded.helpers
    new_helpers = {n.label: n for n in tree}
    reasons = []
    for label in sorted(set(old_helpers) | set(new_helpers)):
        what = label.partition(":")[2]
        kind = "helper" if label.startswith("helper:") else "class"
        old, new = old_helpers.get(label), new_helpers.get(label)
        if old is None or new is None:
            reasons.append(Reason(kind, what, "now used" if old is None else "no longer used"))
            continue
        if old.identity == new.digest:
            continue
        diff = _diff(db, old.code, new.source or "", what)
        if diff:
            where = _where(new.obj, diff, follow_wrapped=False) if new.obj is not None else ""
            reasons.append(Reason(kind, what, f"its code changed{where}", diff))
    old_leaves = _leaves(recorded.deps, *(h.deps for h in old_helpers.values()), code_only=code_only)
    new_leaves = _leaves(current.deps, *(n.deps for n in tree), code_only=code_only)
    values = (recorded.constants, constant_values(current, tree))
    return reasons + _leaf_changes(old_leaves, new_leaves, with_helpers=False, values=values)


def _leaves(*dep_lists: Any, code_only: bool = False) -> dict[str, str]:
    """Constants, packages and mutable globals read by any function of a tree."""
    out: dict[str, str] = {}
    for deps in dep_lists:
        for label, digest in deps:
            if code_only and (".<partial>." in label or label.startswith("object:")):
                continue  # what was bound to a partial or method: not here to compare
            if label.startswith(("const:", "pkg:", "data:", "object:", "option:")):
                out[label] = digest
    return out


def _leaf_changes(
    old: dict[str, str],
    new: dict[str, str],
    *,
    with_helpers: bool,
    values: tuple[dict[str, str], dict[str, str]] = ({}, {}),
) -> list[Reason]:
    reasons = []
    for label in sorted(set(old) | set(new)):
        if old.get(label) == new.get(label):
            continue
        kind, _, what = label.partition(":")
        if kind not in ("const", "pkg", "data", "object", "option") and not (
            with_helpers and kind in ("helper", "class")
        ):
            continue
        change = (
            "now used" if label not in old else "no longer used" if label not in new else "changed"
        )
        if kind == "pkg" and label in old and label in new:
            change = f"changed: {old[label]} -> {new[label]}"
        elif kind == "option":  # a process-wide option (`codeid._options`), keyed when not the default
            change = (f"process-wide option changed: {old.get(label) or 'the default'} -> "
                      f"{new.get(label) or 'the default'}")
        elif label in values[0] and label in values[1]:
            was, now = values[0][label], values[1][label]
            change = f"changed: {was} -> {now}" if was != now else "changed (the code it holds)"
        reason_kind = {"const": "constant", "pkg": "package"}.get(kind, kind)
        if kind == "data":
            change = f"module data {change}"
        elif kind == "object":  # the object a bound method or callable object was called on
            change = f"its attributes {change}"
        if kind in ("const", "data") and label in new:
            place = assignment_place(what)
            change += f" (at {place})" if place else ""
        reasons.append(Reason(reason_kind, what, f"{'value ' if kind == 'const' else ''}{change}"))
    return reasons


def _where(obj: Any, diff: str, *, follow_wrapped: bool = True) -> str:
    """`` (at pipeline.py, line 5)``: where the diff's new lines are in the file now."""
    path, mapping = line_map(obj, follow_wrapped=follow_wrapped)
    place = describe_location(path, changed_lines(diff, mapping))
    return f" (at {place})" if place else ""


def _diff(db: Any, old_oid: str | None, new_source: str, name: str) -> str | None:
    """Unified diff of recorded vs current source ("" when equal, None when the old is lost)."""
    if not old_oid:
        return None
    try:
        old_source = db.store.get_value(old_oid)
    except ObjectNotFoundError:
        return None
    if old_source == new_source:
        return ""
    return "".join(
        difflib.unified_diff(
            _lines(old_source),
            _lines(new_source),
            fromfile=f"{name} (when computed)",
            tofile=f"{name} (now)",
        )
    )


def _lines(source: str) -> list[str]:
    return [line if line.endswith("\n") else line + "\n" for line in source.splitlines()]


def _input_changes(db: Any, call: CallRecord, seen: set[str], at: dict[str, Any] | None = None) -> list[Reason]:
    """What changed among the call's inputs; `at`: the address of the value it made (the
    combination it ran for, with a `Split` part's key), to see finer inputs for_each takes now."""
    split_by = split_keys(call.extra.get("split"))
    reasons = []
    for param, item in call.inputs.items():
        for path, record in item.records():
            path = path or param
            if record.merge:  # a Merge(A, B): each part a saved value of its own variable
                for part in record.merge:
                    label = f"{path} ({part.var})"
                    reasons += _variable_change(db, label, part) or _stale_input(db, call, label, part, seen)
                continue
            if "path" in record.extra:
                reasons += _raw_file_change(db, param, record, call)
            elif record.var is not None:
                reasons += _variable_change(db, path, record, at, split_by) or _stale_input(db, call, path, record, seen)
            elif record.call and record.call not in seen:
                try:
                    upstream = read_call(db.store, record.call)
                except ObjectNotFoundError:
                    reasons.append(
                        Reason("unknown", path, "the call that computed this input is not stored")
                    )
                    continue
                reasons += _call_changes(
                    db,
                    record.call,
                    upstream,
                    upstream_of=f"{call.function.name}({path})",
                    seen=seen,
                )
    return reasons


def _raw_files(db: Any, call: CallRecord) -> set[str]:
    """The files a call took as `PathInput`s (judged as inputs, not again as files it read),
    where recorded and where this checkout holds them (`raw_file_here`)."""
    root, projects = getattr(db, "root", None), getattr(db, "project_ids", None)
    return {os.path.abspath(p) for item in call.inputs.values() for _, r in item.records() if "path" in r.extra
            for p in (str(r.extra.get("file", "")), raw_file_here(r.extra, call, root, projects))}


def _raw_file_change(db: Any, param: str, record: CallInput, call: CallRecord) -> list[Reason]:
    """A `PathInput` file: "raw/3/s_pre.csv changed" when its content hash moved (not read
    where the project's memo of files remembers its whole stat). Looked for in this checkout
    when the record names its path relative to the project's folder (`raw_file_here`)."""
    shown = str(record.extra["path"])
    full = raw_file_here(record.extra, call, getattr(db, "root", None), getattr(db, "project_ids", None))
    try:
        now = file_oid(full, shown, file_stats(db))
    except ScistackError as exc:
        return [Reason("input", param, str(exc))]
    if now is None:
        return [Reason("input", param, f"{shown} is gone")]
    if now != record.oid:
        return [Reason("input", param, f"{shown} changed")]
    return []


def _file_changes(db: Any, call_oid: str) -> list[Reason]:
    """Files the call read whose content changed since (each named by its path), paths it
    found absent that exist now (or found there, gone or of another type; their size or
    mtime, read by the code), folders it listed whose entries changed."""
    return [
        Reason("file", path, "it changed since the call read it (its content, or whether it exists, "
               "or its type, size or time as the code tested them, or for a folder it listed, its entries, "
               "or for a link whose target it read, that target)")
        for path in changed_inputs(db.store, call_oid, db, report=True)
    ]


def _variable_change(db: Any, param: str, item: CallInput, at: dict[str, Any] | None = None,
                     split_by: frozenset[str] = frozenset()) -> list[Reason]:
    given = from_tree(item.addr or {}, lambda oid: oid)
    addr = {k: v for k, v in given.items() if k in db.schema_keys}
    vkeys = {k: v for k, v in given.items() if k not in db.schema_keys}
    if item.members is not None:  # an aggregate: every record below a partial address
        members = list(item.members)
        now_oids = sorted(r.oid for r in db.index.select(item.var, addr, {}, {}))
        if now_oids == sorted(members):
            return []
        fresh = len(set(now_oids) - set(members))
        return [Reason("input", param, f"{item.var} at {_where_text(db, addr)} changed: {len(members)} -> "
                       f"{len(now_oids)} records, {fresh} new or changed")]
    now = db.index.current_at(item.var, key_of(addr), key_of(vkeys))
    if now is None:
        return [Reason("input", param, _gone_text(db, item.var, addr))]
    if now.oid != item.oid:
        return [
            Reason(
                "input",
                param,
                f"{item.var} at {_where_text(db, addr)} changed: "
                f"{item.oid[:12]} -> {now.oid[:12]} (version {now.version})",
            )
        ]
    finer = finer_input(db, item.var, addr, vkeys, where_looked(at, item), split_by)
    if finer is not None:
        return [Reason("input", param, f"{item.var} now has a value at {_where_text(db, finer)}, which a run "
                       f"takes over the one at {_where_text(db, addr)} it used")]
    return []


def _gone_text(db: Any, var: str, addr: dict[str, Any]) -> str:
    """Why an input a call used is not found now: deleted here (the address held a version),
    or never in this project at all, as when a value was imported without it (an export
    brings the live values only: an input deleted in the source project before the export
    stays out, and "no longer exists" said it had been here)."""
    where = _where_text(db, addr)
    if db.index.highest_version(var, key_of(addr)) > 0:
        return f"{var} at {where} no longer exists"
    return (f"{var} at {where} is not in this project: it was never saved here (a value imported "
            f"from another project names inputs that were not exported with it)")


def _where_text(db: Any, addr: dict[str, Any]) -> str:
    """An input's address as `why`'s head writes one (`subject=3, session='pre'`, schema order)."""
    return shown_address(addr, db.schema_keys) or "every address"


def where_looked(at: dict[str, Any] | None, item: CallInput | None) -> dict[str, Any] | None:
    """The address a run looked for input `item` at, for a value made at `at`: `at` with the
    keys a `Fixed` input pinned (its record's `pinned`, docs/format.md)."""
    pinned = item.extra.get("pinned") if item is not None else None
    return {**at, **pinned} if at and isinstance(pinned, dict) else at


def var_levels(db: Any, var: str) -> list[frozenset[str]]:
    """The sets of schema keys `var` has live records at, finest first."""
    levels = [frozenset(level.split(",")) if level else frozenset() for level in db.index.levels(var, live=True)]
    return sorted(levels, key=len, reverse=True)


def split_keys(split: Any) -> frozenset[str]:
    """The keys a call's `Split` outputs were split by (its record's `split`, docs/format.md)."""
    if not isinstance(split, list):
        return frozenset()
    return frozenset(s["by"] for s in split if isinstance(s, dict) and isinstance(s.get("by"), str))


def finer_input(db: Any, var: str, given: dict[str, Any], vkeys: dict[str, Any], at: dict[str, Any] | None,
                split_by: frozenset[str] = frozenset(), levels: list[frozenset[str]] | None = None
                ) -> dict[str, Any] | None:
    """Where `var` now has a value finer than `given` (the coarser address a call found its
    input at, serving `at`, the address of the value it made) and within `at`: `for_each`
    takes the finest there is, so a value saved per trial after a run used the session's makes
    that run's result stale. A `Split` part's keys (`split_by`) were not the run's to look in.
    `levels`: `var_levels(db, var)`, when the caller asks for many records."""
    if not at or not given.items() < at.items():
        return None
    within = set(at) - (split_by - set(given))
    for keys in (k for k in (levels if levels is not None else var_levels(db, var)) if set(given) < k <= within):
        addr = {k: at[k] for k in db.schema_keys if k in keys}
        if db.index.current_at(var, key_of(addr), key_of(vkeys)) is not None:
            return addr
    return None


def _stale_input(db: Any, call: CallRecord, param: str, item: CallInput, seen: set[str]) -> list[Reason]:
    """What changed upstream of a saved input that is itself unchanged: a value computed from a
    stale one is stale too (as `status` judges it), e.g. "upstream filt (feeding peak(x)):
    input x: Raw at {...} no longer exists"."""
    given = from_tree(item.addr or {}, lambda oid: oid)
    addr = {k: v for k, v in given.items() if k in db.schema_keys}
    vkeys = {k: v for k, v in given.items() if k not in db.schema_keys}
    if item.members is not None:  # an aggregate: each member's own call
        records = db.index.select(item.var, addr, {}, {})
    else:
        now = db.index.current_at(item.var, key_of(addr), key_of(vkeys))
        records = [now] if now is not None else []
    reasons: dict[tuple[str, str, str], Reason] = {}  # one code change met by every member: once
    stale = 0
    for record in records:
        if record.call and record.call not in seen:
            try:
                found = _record_changes(db, record.call, upstream_of=f"{call.function.name}({param})", seen=seen,
                                        at=record.addr)[1]
            except ObjectNotFoundError:
                found = [Reason("unknown", param, f"the call that computed {item.var} is not stored")]
            stale += bool(found)
            for r in found:
                reasons.setdefault((r.kind, r.name, r.detail), r)
    shown = list(reasons.values())[:_REASONS_SHOWN]
    if len(reasons) > len(shown):
        shown.append(Reason(shown[-1].kind, param, f"and {len(reasons) - len(shown)} more changes upstream "
                            f"of {stale} of the {len(records)} {item.var} records it reads"))
    return shown


_REASONS_SHOWN = 5  # changes upstream of an input (an aggregate's members) that `why` lists


def _failed_since(db: Any, name: str, record: Any) -> list[Reason]:
    """The failure of the newest run that covered this value's address since it was saved, if
    that run failed there: what `status` shows as FAILED (`why` had said only "stale", or
    "current" once the input was back). Only runs since the value are read."""
    at = key_of({k: v for k, v in record.addr.items() if k in db.schema_keys})
    run, error = _last_failure(db, name, at, since=record.created_at, vkeys=record.vkeys)
    if run is None:
        return []
    return [Reason("failed", run.function or name, f"the last run here ({run.t[:19].replace('T', ' ')} UTC) "
                   f"failed{': ' + error if error else ''}; this value was saved before it")]


def _last_failure(db: Any, name: str, at: str, since: str = "",
                  vkeys: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The newest run since `since` that covered the address key `at` for `name`, with its
    error's first line, when it failed there; else (None, ""). With `vkeys`, an `EachOf`
    alternative's item counts only for its own version keys (another's failure there is not
    this value's)."""
    for run in reversed(db.index.runs()):
        if run.t <= since:
            break
        if run.dry_run or not run.items or (run.outputs is not None and name not in run.outputs):
            continue
        try:
            items = db.store.get_value(run.items)
        except LookupError:
            continue
        item = next((i for i in items if key_of(i["combo"]) == at
                     and (vkeys is None or not i.get("vkeys") or i["vkeys"] == vkeys)), None)
        if item is None:
            continue
        if item.get("status") != "failed":
            return None, ""
        error = (item.get("error") or "").strip().splitlines()
        return run, (error[0] if error else "")
    return None, ""


def _no_value_failed(db: Any, name: str, address: dict[str, Any]) -> str | None:
    """Why there is no value at `address` when the last run there failed (what `status` shows
    as FAILED): the run, its error's first line and where its traceback is; else None."""
    at = {k: address[k] for k in db.schema_keys if k in address}
    vkeys = {k: v for k, v in address.items() if k not in db.schema_keys} or None
    try:
        run, error = _last_failure(db, name, key_of(at), vkeys=vkeys) if at else (None, "")
    except (TypeError, ValueError):  # a list of values or a value no address holds: not one cell
        return None
    if run is None:
        return None
    where = shown_address(at, db.schema_keys)
    traceback = f"`scistack runs {run.run_id[:12]}` shows its traceback" if run.run_id else "`scistack runs` lists it"
    return (f"{name} has no value at {where}: the last run of {run.function or name} there "
            f"({run.t[:19].replace('T', ' ')} UTC) failed{': ' + error if error else ''}; {traceback}")


def _superseded(db: Any, name: str, record: Any) -> list[Reason]:
    newest = db.index.current_at(name, record.addr_key, record.vkeys_key)
    if newest is not None and newest.version != record.version:
        return [
            Reason(
                "superseded",
                name,
                f"version {record.version} is not the default; version {newest.version} is newer",
            )
        ]
    return []


def script_reasons(db: Any, call_oid: str) -> list[Reason] | None:
    """For a function not found here (`_find_function`): what changed in its file, a
    script's or a module's (None: cannot tell)."""
    return _unfound_changes(db, read_call(db.store, call_oid))


def _unfound_changes(db: Any, call: CallRecord) -> list[Reason] | None:
    """What changed for a function not found here: a script's `__main__` function judged from
    its file (`script_changes`), or a function made inside another whose own code the file no
    longer holds (`_edited_inside`); None: cannot tell."""
    found = script_changes(db, call, _diff, Reason, _find_function)
    return found if found is not None else _edited_inside(db, call)


def _edited_inside(db: Any, call: CallRecord) -> list[Reason] | None:
    """A function made inside another (``run.<locals>.double``) or a lambda that no name of
    its module holds is not found in a fresh copy of the module, and one carrying anything is
    not made again (`_registered_as_now`): its values were "unknown", also after an edit of
    its own code. But the code of that name in the module's file now is what a run would
    call, and its normalised source is part of the identity: when no code of that name in the
    file is the one recorded, a run computes anew, and the value is stale. None (cannot tell,
    "unknown" as before): the file holds it unchanged (what it carries is not known), holds
    none by that name (renamed or removed), cannot be read, or the old code is not stored."""
    recorded = call.function
    name, module = recorded.name, recorded.module
    if "<" not in name or module in ("__main__", EXEC_MODULE) or not recorded.code:
        return None
    held = _import_module(module)  # (its copy as the files are now; the process's own if unedited)
    path = _source_file(held) if isinstance(held, ModuleType) else None
    sources = sources_named(path, name) if path is not None else None
    if not sources:
        return None
    try:
        old = db.store.get_value(recorded.code)
    except (ObjectNotFoundError, CorruptObjectError):
        return None
    if old in sources:
        return None
    diff = _diff(db, recorded.code, sources[0], name) if len(sources) == 1 else ""
    where = os.path.basename(path)
    return [Reason("code", name, f"the function's code changed (no code of {name} in {where} is "
                   "the one recorded)", diff or "")]


def _find_function(module: str, name: str) -> Any:
    edited = module != "__main__" and module in sys.modules \
        and _import_module(module) is not sys.modules[module]
    fn = _made_in(_import_module(module), module, name) if edited else registered_function(module, name)
    if fn is not None:  # (else the plain function, by its name)
        return fn
    if module in ("__main__", EXEC_MODULE):  # (code made by exec or eval: no module to import)
        return None
    target = _import_module(module)
    if target is None:
        return None
    found = _by_name(target, module, name)
    # (a copy holds no function made inside another: the process's own, where the file still
    # holds its code)
    return found if found is not None or not edited else _registered_as_now(target, module, name)


def _by_name(target: Any, module: str, name: str) -> Any:
    """The function of module `target` with qualified name `name` (None: none, or several)."""
    if "<" in name:  # a lambda, or made inside a function: found by the one global holding it
        held = _holders(target, module, name)
        return held[0][1] if len(held) == 1 else None
    try:
        for part in name.split("."):
            target = getattr(target, part)
        return target
    except AttributeError:
        return None


# (module, name) -> (the copy, the registered function, it as the copy would run it)
_AS_NOW: dict[tuple[str, str], tuple[Any, Any, Any]] = {}


def _registered_as_now(copy: Any, module: str, name: str) -> Any:
    """The process's own lineage function `name` of `module` (`registered_function`) as the
    module's copy `copy` (`_as_now`) would run it, when the copy holds none by that name (a
    function made inside another, ``run.<locals>.double``; a lambda no global holds) and its
    code is what the file holds now (`code_now`: the same but for positions): that code with
    the copy's globals, so that the constants and helpers of the module it reads are the
    file's now. A module file only maybe edited (saved again
    unchanged, or dated in the racy window before the process started: pytest's import of a
    test file touched just before) or edited elsewhere had made such a function's values
    "unknown": the copy was searched, the registry skipped. None (as before: not found) when
    its code was edited, its globals are not the module's, it is not a function or a partial
    of one, or it carries anything (`_carries`); a pinned version is itself (its identity is
    the pin, by name)."""
    registered = registered_function(module, name)
    fn = getattr(registered, "fn", None)
    plain = fn.func if isinstance(fn, functools.partial) else fn
    held = sys.modules.get(module)
    if not isinstance(plain, FunctionType) or held is None or plain.__globals__ is not vars(held):
        return None
    known = _AS_NOW.get((module, name))
    if known is not None and known[0] is copy and known[1] is fn:
        return known[2]
    code = code_now(plain)
    if code is None:  # (its code is not the file's now)
        return None
    if registered.version is not None:
        return registered
    if _carries(fn, plain):  # (what it carries was made by the code around it when it ran)
        return None
    now = FunctionType(code, vars(copy), plain.__name__)
    now.__qualname__ = plain.__qualname__
    now.__annotations__ = dict(plain.__annotations__)
    found = functools.partial(now, *fn.args, **fn.keywords) if isinstance(fn, functools.partial) else now
    _AS_NOW[(module, name)] = (copy, fn, found)
    return found


def _carries(fn: Any, plain: Any) -> bool:
    """Whether a function made inside another carries values made when the code around it ran
    (cells, defaults, attributes, a partial's arguments): those are the process's, and the
    file's now only if that code, what it read and what its caller passed would make them
    again, which is not known (a cell holding a helper, a constant of the function it was made
    in, an argument its caller passed, edited since, had been judged current). Made again, it
    would take them from the process; so it is not, and its values are "unknown", as before."""
    return bool(plain.__closure__ or plain.__defaults__ or plain.__kwdefaults__ or vars(plain)
                or (isinstance(fn, functools.partial) and (fn.args or fn.keywords)))


def _made_in(copy: Any, module: str, name: str) -> Any:
    """The one lineage function a module's fresh copy (`_as_now`) holds under that name, as
    the registry knows the process's own: a partial's or an object's bound state is part of
    it (`functools.partial(f, k=3)`, `Scale(3)`), which the plain function found by its name
    lacks (an edit of `k=2` to `k=3` had been judged current). None: none, or several, or no
    copy (`copy` None: its file does not import now, a syntax error mid-edit; `vars(None)` had
    ended `why` and `status` with a TypeError, not the import's failure)."""
    if copy is None:
        return None
    made = {id(v): v for v in vars(copy).values()
            if isinstance(v, LineageFunction) and registry_key(v.fn) == (module, name)}
    return next(iter(made.values())) if len(made) == 1 else None


_IMPORT_FAILED: dict[str, str] = {}  # module -> why importing it failed (this process)


def _import_module(module: str) -> Any:
    """The module, imported to compare its code (None: it cannot be, `import_failure` says
    why). Its top level runs: a save, delete or run there is refused, and the project stays as
    it was (a report had saved data and run a for_each). Whatever it raises (a syntax error
    mid-edit, an exception, `sys.exit`) makes it not importable here, never the report's end.
    A module imported before its file, or the file of a project module it reaches, was edited
    (a UI server, a notebook) is read again from the files, as a fresh `scistack status` would,
    into copies: the process's own modules are untouched."""
    held = sys.modules.get(module)
    if held is not None and not _edits_reached(held):
        return held
    refused = (f"scistack imported {module} to compare its code, and its top level saves, deletes or "
               f"runs: a report never changes the project. Put those steps of {module} under "
               "`if __name__ == \"__main__\":` (or in a script of their own)")
    try:
        with writes_refused(refused):
            found = importlib.import_module(module) if held is None else _as_now(held)
        _IMPORT_FAILED.pop(module, None)
        return found
    except ImportError as exc:
        _IMPORT_FAILED[module] = f"{type(exc).__name__}: {exc}"
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the module's own code failed
        where = f" at line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        _IMPORT_FAILED[module] = f"importing it failed: {type(exc).__name__}{where}: {exc}"
    return None


def _process_started() -> float:
    """When this process started, in epoch seconds, less the stat rule's racy window
    (`codeid.files.racy_stat`, 2 s: a file's times come from a coarse clock, FAT's 2 s or a
    file server's behind this one's, so a write after the start may be dated up to that much
    before it): a module file with a later mtime or ctime may have been written after its
    import (0.0: cannot tell, so any may). The start was taken from /proc/stat's boot time,
    whole seconds, less 1 s: between 1 and 2 s early whatever the rule, so a module written
    just before the start counted as edited by chance, and one whose time a coarse clock
    dated 1.5 s early did not; the boot is now read from CLOCK_BOOTTIME (the clock the
    process's start ticks count on), to a tick."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            ticks = int(stat.read().rpartition(")")[2].split()[19])
        try:  # (the realtime first: the boot it gives is early by the moment between the reads)
            booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        except (AttributeError, OSError):  # (not Linux's clock: btime, whole seconds, 1 s early)
            with open("/proc/stat", encoding="ascii") as boot:
                booted = next(float(line.split()[1]) for line in boot if line.startswith("btime ")) - 1.0
        return booted + ticks / os.sysconf("SC_CLK_TCK") - _RACY_NS / 1e9  # (ticks: rounded down)
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0


_STARTED = _process_started()
_READ_AGAIN: dict[str, tuple[tuple[Any, ...], Any]] = {}  # module -> (edits it reaches, copy)
_READING: dict[str, Any] = {}  # module -> its copy being run (an import cycle finds it, as in Python)


def _edited_since_start(held: Any) -> str | None:
    """The source file of imported module `held` if it was written after its import: the code
    in memory may not be the file's any more (None: it is, or it has no source file). Where
    this process saw the import read the file (`files.loaded_file_is_current`: its whole stat
    then, or its content where that stat was racy), by that; else (imported before scistack
    saw imports) if it was written after this process started (`_STARTED`), by its mtime or
    its ctime, which no copy can set: a ``cp -p`` (or ``touch -r``) of another version sets
    an mtime older than the process back, and its in-memory code had been judged. A module
    written after the start and imported after that had counted as edited for ever: a copy
    of it was run again from its file at each new version of the files it reaches."""
    path = _source_file(held)
    try:
        if path is None:
            return None
        current = loaded_file_is_current(os.path.abspath(path))
        if current is not None:
            return None if current else path
        st = os.stat(path)
        return path if max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > _STARTED else None
    except OSError:
        return None


def _source_file(held: Any) -> str | None:
    """The .py file project module `held` can be run again from (None: none, or a script's
    __main__, judged from its text and never run again: `script_changes`)."""
    path = getattr(held, "__file__", None)
    if held.__name__ == "__main__" or getattr(held, "__spec__", None) is None \
            or not isinstance(path, str) or not path.endswith(".py") \
            or not is_project_module(held.__name__):
        return None
    return path


def _edits_reached(held: Any, seen: set[str] | None = None) -> tuple[tuple[Any, ...], ...]:
    """The versions of the files written after this process started, of module `held` and of
    the project modules its globals reach (modules, and the homes of its functions and
    classes) or its functions import in their bodies, at any depth: the code in memory is the
    files' code when there are none."""
    if _source_file(held) is None:
        return ()
    seen = set() if seen is None else seen
    seen.add(held.__name__)
    path = _edited_since_start(held)
    found = {_file_version(path)} if path is not None else set()
    for value in list(vars(held).values()):
        value = value.fn if isinstance(value, LineageFunction) else value
        home = value.__name__ if isinstance(value, ModuleType) else \
            getattr(value, "__module__", None) if isinstance(value, (FunctionType, type)) else None
        # and what the module's own functions import in their bodies (no global reaches it)
        homes = [home, *(body_imports(value, held.__package__) if home == held.__name__ else ())]
        for home in homes:
            reached = sys.modules.get(home) if isinstance(home, str) and home not in seen else None
            if isinstance(reached, ModuleType) and _source_file(reached) is not None:
                found.update(_edits_reached(reached, seen))
    return tuple(sorted(found))


def _file_version(path: str) -> tuple[Any, ...]:
    """The version of a module file its copy is remembered under (`_READ_AGAIN`): its whole stat
    when that vouches for its content (`content_stamp`), else (a racy stat: written in the last
    2 s) the digest of its content. Keyed by mtime and size alone, a same-size edit in the same
    timestamp tick, or a ``cp -p`` of another version, kept judging the old copy."""
    stamp = content_stamp(path)
    if stamp is not None:
        return path, "stat", *stamp
    with open(path, "rb") as source:
        return path, "blake2b", hashlib.blake2b(source.read()).hexdigest()


def _as_now(held: Any) -> Any:
    """Module `held` as its files are now: itself when neither its file nor a project module
    it reaches was written after this process started, else a copy run from its file's text
    (once per version of those files), left out of `sys.modules`, whose imports of such
    modules bind copies too; compiled from the text, never from a cached .pyc (whose
    one-second mtime can miss an edit)."""
    name = getattr(held, "__name__", None)
    if not isinstance(held, ModuleType) or not isinstance(name, str):
        return held  # (something not a module that was put in sys.modules)
    if name in _READING:
        return _READING[name]
    edits = _edits_reached(held)
    if not edits:
        return held
    known = _READ_AGAIN.get(name)
    if known is not None and known[0] == edits:
        return known[1]
    copy = importlib.util.module_from_spec(held.__spec__)
    copy.__builtins__ = {**vars(builtins), "__import__": _import_as_now}
    _READING[name] = copy
    try:
        # (the code identity finds a function's text in linecache, which checks the file by
        # its size and mtime only: a same-size edit that kept the mtime showed the copy's code
        # against the old text, found no source and called it changed. Read again from here)
        linecache.cache.pop(held.__file__, None)
        with open(held.__file__, "rb") as source:
            code = compile(source.read(), held.__file__, "exec")
        exec(code, copy.__dict__)  # noqa: S102 - as importing it does
    finally:
        del _READING[name]
    _READ_AGAIN[name] = (edits, copy)
    return copy


def _import_as_now(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                   level: int = 0) -> Any:
    """`import` inside a copy made by `_as_now`: imports as Python does (`sys.modules` as it
    is), and binds the project modules written since this process started as copies, as now."""
    found = builtins.__import__(name, globals, locals, fromlist, level)
    if fromlist:  # from found import names: a name may be a submodule
        return _with_members_as_now(found, [n for n in fromlist if n != "*"])
    if level:
        return _as_now(found)
    return _with_members_as_now(found, name.split(".")[1:2], name.split(".")[2:])  # import a.b.c


def _with_members_as_now(module: Any, names: list[str], below: list[str] | None = None) -> Any:
    """Module `module` as now, its submodules `names` as now too (`below`: the dotted path on
    from the first one, as `import a.b.c` binds `a`); a view of it when they differ."""
    now = _as_now(module)
    members = {}
    for member in names:
        sub = getattr(module, member, None)
        if isinstance(sub, ModuleType):
            seen = _with_members_as_now(sub, (below or [])[:1], (below or [])[1:])
            if seen is not getattr(now, member, None):
                members[member] = seen
    if not members:
        return now
    view = ModuleType(now.__name__)
    view.__dict__.update(vars(now))
    view.__dict__.update(members)
    return view


def import_failure(module: str) -> str | None:
    """Why `module` could not be imported to compare its code, if it could not."""
    return _IMPORT_FAILED.get(module)


def _holders(target: Any, module: str, name: str) -> list[tuple[str, Any]]:
    """(global, value) of module `target` for each function of `module` whose qualified name
    is `name` (``proc = make(2)``, ``p1 = lambda x: ...``): a name `getattr` cannot follow."""
    found: dict[int, tuple[str, Any]] = {}
    for attr, value in list(vars(target).items()):
        plain = value.fn if isinstance(value, LineageFunction) else value
        if isinstance(plain, FunctionType) and plain.__qualname__ == name \
                and plain.__module__ == module:
            found.setdefault(id(plain), (attr, value))
    return list(found.values())


def not_found_reason(module: str, name: str) -> str:
    """Why the function that made a value is not found here to compare its code, and what to do."""
    if module == EXEC_MODULE:
        return (f"{name} was made by exec or eval (its globals name no module, or a library's), and "
                "none made so is in use here under that name, so its code cannot be compared: define "
                "it in a module of the project to have its results judged")
    failed = import_failure(module)
    if failed:
        return f"{module}.{name} cannot be imported here ({module}: {failed})"
    if module == "__main__":
        return f"function {module}.{name} is not defined in this process; import it to compare its code"
    if _find_function(module, name) is not None:
        return f"the code of {module}.{name} cannot be identified here"
    if "<" not in name:
        return f"{module} has no {name} now (renamed or removed?), so its code cannot be compared"
    held = [attr for attr, _ in _holders(sys.modules[module], module, name)] \
        if module in sys.modules else []
    if held:
        return (f"{len(held)} functions of {module} are named {name} ({', '.join(held)}): which one "
                "made it cannot be told by its name; give each its own def at module level")
    if name.rpartition(".")[2] == "<lambda>" and ".<locals>." not in name:
        return (f"{module}.{name} is a lambda that no name of {module} holds now, so it cannot be "
                "found by its name; define it with def at module level")
    maker = name.partition(".<locals>.")[0]
    return (f"{module}.{name} was made inside {maker}() (a closure, or a decorator's wrapper "
            f"without functools.wraps) and no name of {module} holds it, so it cannot be found by "
            "its name: define it at module level, or decorate the wrapper with "
            "@functools.wraps(fn)")
