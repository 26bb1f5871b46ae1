"""`why`: is a stored value still what its code and inputs would give today, and if not, why?

The call record names the function's identity, the digest of every project helper and
module constant that went into it, the normalised source, and each input's oid. Comparing
those with the function as it is now (and with the inputs' current versions) names exactly
what changed, with a unified diff when the code did.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

from scistack.database import get_database
from scistack.errors import LineageError, ScistackError
from scistack.index import key_of
from scistack.lineage.function import LineageFunction, registered_function
from scistack.lineage.identity import function_identity, normalised_source


@dataclass(frozen=True, slots=True)
class Reason:
    """One thing that changed since a value was computed."""

    kind: str        # "code", "helper", "constant", "version", "input", "superseded", "unknown"
    name: str
    detail: str
    diff: str = ""


@dataclass(frozen=True, slots=True)
class WhyReport:
    """The verdict on one stored value."""

    variable: str
    address: dict[str, Any]
    status: str      # "current", "stale", "raw" (no lineage), "unknown" (function not importable)
    function: str | None
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        where = ", ".join(f"{k}={v!r}" for k, v in self.address.items())
        head = f"{self.variable}({where}) is {self.status}"
        if self.function:
            head += f" (computed by {self.function})"
        lines = [head] + [f"  - {r.kind} {r.name}: {r.detail}" for r in self.reasons]
        lines += [r.diff for r in self.reasons if r.diff]
        return "\n".join(lines)


def why(variable: Any, **metadata: Any) -> WhyReport:
    """Why the value at `metadata` is current, stale, or would be recomputed."""
    db = get_database()
    found = variable.load(**metadata)
    if isinstance(found, list):
        if len(found) != 1:
            raise LineageError(f"why() needs one value; {len(found)} records of {variable.__name__} match "
                               f"{metadata}: give the full address")
        found = found[0]
    name = variable.__name__ if isinstance(variable, type) else str(variable)
    return why_record(db, name, found.record)


def why_record(db: Any, name: str, record: Any) -> WhyReport:
    """`why` for one ref record of variable `name` (its value is not loaded)."""
    if record.call is None:
        return WhyReport(name, record.addr, "raw", None, (Reason(
            "unknown", "lineage", "saved without lineage (not produced through a lineage function)"),))
    call = db.call_record(record.call)
    reasons = _superseded(db, name, record) + _input_changes(db, call)
    fn = _find_function(call["module"] if "module" in call else call["function"]["module"], call["function_name"])
    if fn is None:
        reasons.append(Reason("unknown", call["function_name"],
                              f"function {call['module']}.{call['function_name']} is not defined in this "
                              "process; import it to compare its code"))
        # A changed input makes the value stale whatever its code: only code is unknown here.
        status = "stale" if any(r.kind == "input" for r in reasons) else "unknown"
        return WhyReport(name, record.addr, status, call["function_name"], tuple(reasons))
    reasons = _code_changes(db, call, fn) + reasons
    status = "stale" if any(r.kind != "superseded" for r in reasons) else "current"
    return WhyReport(name, record.addr, status, call["function_name"], tuple(reasons))


def _code_changes(db: Any, call: dict[str, Any], fn: Any) -> list[Reason]:
    recorded = call["function"]
    target = fn.fn if isinstance(fn, LineageFunction) else fn
    pinned = fn.version if isinstance(fn, LineageFunction) else None
    current = function_identity(target, version=pinned)
    if current.digest == recorded["identity"]:
        return []
    reasons = []
    if (recorded.get("version") or None) != current.pinned_version:
        reasons.append(Reason("version", call["function_name"],
                              f"pinned version {recorded.get('version')!r} -> {current.pinned_version!r}"))
    old_source = db.store.get_value(recorded["code"]) if recorded.get("code") else ""
    new_source = normalised_source(target) or ""
    if old_source != new_source and current.pinned_version is None:
        diff = "".join(difflib.unified_diff(
            old_source.splitlines(keepends=True), new_source.splitlines(keepends=True),
            fromfile=f"{call['function_name']} (when computed)", tofile=f"{call['function_name']} (now)"))
        reasons.append(Reason("code", call["function_name"], "the function's code changed", diff))
    old_deps, new_deps = dict(map(tuple, recorded.get("deps", []))), dict(current.deps)
    for label in sorted(set(old_deps) | set(new_deps)):
        if old_deps.get(label) != new_deps.get(label):
            kind, _, what = label.partition(":")
            change = "added" if label not in old_deps else "removed" if label not in new_deps else "changed"
            reasons.append(Reason("constant" if kind == "const" else "helper" if kind != "pkg" else "package",
                                  what or label, change))
    if not reasons:
        reasons.append(Reason("code", call["function_name"], "the function's identity changed"))
    return reasons


def _input_changes(db: Any, call: dict[str, Any]) -> list[Reason]:
    reasons = []
    raw_inputs = db.store.get_value(call["call"])["inputs"]  # call_record() drops "members"
    for param, item in raw_inputs.items():
        if "var" not in item:
            continue
        db.index.refresh()
        addr = {k: v for k, v in item.get("addr", {}).items() if k in db.schema_keys}
        vkeys = {k: v for k, v in item.get("addr", {}).items() if k not in db.schema_keys}
        if "members" in item:  # an aggregate: every record below a partial address
            now_oids = sorted(r.oid for r in db.index.state.select(item["var"], addr, {}, {}))
            if now_oids != sorted(item["members"]):
                reasons.append(Reason("input", param, f"{item['var']} at {addr} changed: "
                                      f"{len(item['members'])} -> {len(now_oids)} records, "
                                      f"{len(set(now_oids) - set(item['members']))} new or changed"))
            continue
        now = db.index.state.current_at(item["var"], key_of(addr), key_of(vkeys))
        if now is None:
            reasons.append(Reason("input", param, f"{item['var']} at {addr} no longer exists"))
        elif now.oid != item["oid"]:
            reasons.append(Reason("input", param, f"{item['var']} at {addr} changed: "
                                  f"{item['oid'][:12]} -> {now.oid[:12]} (version {now.version})"))
    return reasons


def _superseded(db: Any, name: str, record: Any) -> list[Reason]:
    newest = db.index.state.current_at(name, record.addr_key, record.vkeys_key)
    if newest is not None and newest.version != record.version:
        return [Reason("superseded", name, f"version {record.version} is not the default; "
                       f"version {newest.version} is newer")]
    return []


def _find_function(module: str, name: str) -> Any:
    fn = registered_function(module, name)
    if fn is not None:
        return fn
    try:
        return getattr(importlib.import_module(module), name, None) if module != "__main__" else None
    except (ImportError, ScistackError):
        return None
