"""The completeness view: for each variable and address, is the value done, stale, missing
or failed?

- done: a current record whose code and inputs are what they were when it was computed
  (a raw value, saved without lineage, is done by definition);
- stale: its function's code (or a helper or constant it reads) changed, an input now names
  another value, or an input is itself stale: re-running the pipeline would recompute it;
- unknown: computed by a function this process cannot import (e.g. one defined in a script's
  `__main__`), so its code cannot be compared; its inputs are unchanged;
- failed: the last `for_each` run that covered the address failed there (and nothing was
  saved since);
- missing: no record, although other variables have this address.

Staleness compares digests only; `why` explains one value with a source diff. Each function's
current identity is computed once per call, each call record read once.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field
from typing import Any

from scistack.address import address_order, shown_address
from scistack.codeid.matlab import identity_now, is_matlab_module, recorded_files
from scistack.lineage.calls import relocated
from scistack.lineage.filecheck import changed_inputs
from scistack.database import Database
from scistack.foreach.filestats import file_stats
from scistack.foreach.paths import file_oid
from scistack.htmlrepr import ordered
from scistack.errors import ScistackError, VariableNotFoundError
from scistack.report.levels import cells_across_levels
from scistack.report.history import CallInfo, CallReader, InputInfo, learn_calls
from scistack.index import RefRecord, key_of
from scistack.index.journal import loads_line
from scistack.index.state import decode_keys
from scistack.objects.hashing import hash_bytes
from scistack.records import read_call
from scistack.lineage.function import LineageFunction
from scistack.codeid.identity import function_identity
from scistack.report.why import (WhyReport, why_at, _find_function, not_found_reason, finer_input, newer_record,
                                 script_reasons, split_keys, var_levels, where_looked)

STATUSES = ("done", "stale", "unknown", "failed", "missing")


@dataclass(frozen=True, slots=True)
class StatusCell:
    """One variable at one address."""

    var: str
    addr: dict[str, Any]
    status: str
    version: int | None = None
    reason: str = ""
    run: str | None = None  # a failed cell: the run that failed here (a newer one may have failed elsewhere)


@dataclass(frozen=True, slots=True)
class StatusGrid:
    """Variables (columns) by addresses (rows). `grid[i][j]` is the cell of `variables[j]` in
    row `addresses[i]`: None where the variable is saved only at finer addresses. A variable
    saved at a coarser level (subject only) appears in every row that extends its address."""

    variables: list[str]
    addresses: list[dict[str, Any]]
    grid: list[list[StatusCell | None]]
    empty: dict[str, str] = field(default_factory=dict)  # a variable with no value: what it says instead

    @property
    def cells(self) -> list[StatusCell]:
        """Every distinct cell, once: `_grid` gives each (variable, address) one cell object,
        shared by the rows a coarser one appears in (keying 300k cells again by their
        addresses was half of the web view's first page of a 300k-address grid)."""
        return list({id(c): c for row in self.grid for c in row if c is not None}.values())

    def cell(self, var: str, addr: dict[str, Any]) -> StatusCell | None:
        """The cell of `var` in the row `addr`."""
        key = key_of(addr)
        row = next(i for i, a in enumerate(self.addresses) if key_of(a) == key)
        return self.grid[row][self.variables.index(var)]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per variable: how many distinct cells have each status."""
        out = {var: dict.fromkeys(STATUSES, 0) for var in self.variables}
        for c in self.cells:
            out[c.var][c.status] += 1
        return out


class StalenessChecker:
    """Judges current records; memoised per record, function and call record."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls = CallReader(db)
        self._identity: dict[tuple[str, str], str | None] = {}
        self._bound: dict[tuple[str, str], bool] = {}  # the name finds a partial or bound method
        self._unverifiable: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._memo: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._script: dict[Any, tuple[str, str]] = {}  # function identity -> verdict from its file
        self.no_files: set[str] = set()  # call records known (from the index's facts) to read no file
        self._levels: dict[str, list[frozenset[str]]] = {}  # variable -> its live levels, finest first
        self._newer: dict[str, str | None] = {}  # call -> a later record of it the cache names (`note_newer`)
        # the project's memo of files: a raw file whose whole stat it remembers is not read
        # (every status in a new process had hashed each raw file whole); `save_files` keeps
        # what this report hashed
        self.files = file_stats(db)

    def record_status(self, record: RefRecord) -> tuple[str, str]:
        """(status, reason) of one record: done, stale or unknown."""
        slot = (record.var, record.addr_key, record.vkeys_key)
        if slot in self._memo:
            return self._memo[slot]
        self._memo[slot] = ("done", "")  # a value computed from an earlier version of itself
        self._memo[slot] = verdict = self._judge(record)
        return verdict

    def _judge(self, record: RefRecord, call_oid: str | None = None) -> tuple[str, str]:
        """`call_oid`: a later record of the ref's call to judge instead (see `newer_record`)."""
        call_oid = call_oid or record.call
        if call_oid is None:
            return "done", ""
        call = self.calls.get(call_oid)
        if call is None:
            return "unknown", f"call record {call_oid[:12]} is missing"
        if call_oid == record.call and call_oid not in self.no_files:
            newer = self._relocated(call_oid)  # its raw files where they are now
            if newer is not None:
                return self._judge(record, newer)
        for item in call.inputs:
            reason = self._input_reason(item)
            if not reason:
                reason = self._finer_reason(record, call_oid, item)
            if reason:
                return "stale", reason
        changed = [] if call_oid in self.no_files else \
            changed_inputs(self.db.store, call_oid, self.db, report=True)
        if changed:
            return "stale", f"file {changed[0]} changed"
        return self.function_verdict(call_oid, call.module, call.function, call.identity, call.code_identity)

    def note_newer(self, records: list[RefRecord]) -> None:
        """Learn, in one bulk query, which of these records' calls the call cache has a later
        record of (`_relocated`): a record no run recorded again then costs no lookup."""
        wanted = list({r.call for r in records if r.call and r.call not in self._newer and r.call not in self.no_files})
        entries = self.db.index.cache_entries_of(wanted)
        if entries is None:
            return  # (writes held here: each is looked up where judged)
        for call_oid in wanted:
            entry = entries.get(call_oid)  # (a gc'd one: judged by its own record)
            self._newer[call_oid] = entry if entry not in (None, call_oid) and self.db.store.contains(entry) else None

    def _relocated(self, call_oid: str) -> str | None:
        """The later record of this call that the call cache names (`report.why.newer_record`)
        when it is this one with its raw files read elsewhere under the same shown paths
        (`lineage.calls.relocated`: a moved project, an imported bundle's files put back with
        `raw_to`); None otherwise. Another combination's record of the key (files with the same
        bytes at another address) is never judged for this one."""
        if call_oid not in self._newer:
            self._newer[call_oid] = newer_record(self.db, call_oid)
        newer = self._newer[call_oid]
        if newer is None:
            return None
        try:
            moved = relocated(read_call(self.db.store, call_oid), read_call(self.db.store, newer))
        except ScistackError:
            moved = False  # (unreadable: its own record is judged, and says so)
        if not moved:
            self._newer[call_oid] = None  # (asked once per call)
        return newer if moved else None

    def function_verdict(self, call_oid: str, module: str, function: str, identity: str,
                         code_identity: str | None = None) -> tuple[str, str]:
        """Whether the code that made a call is the code that would run now. A call of a
        partial or a bound method (`code_identity`: its function alone) is judged by that
        function's code when the name finds the plain function (what was bound is not here)."""
        if is_matlab_module(module):  # its .m files are read again, once per identity
            slot = ("matlab", identity)
            if slot not in self._script:
                self._script[slot] = _matlab_verdict(self.db, call_oid, function, identity)
            return self._script[slot]
        now = self.current_identity(module, function)
        if now is None:  # a script's function: judged from its file, once per function identity
            if identity not in self._script:
                self._script[identity] = self._script_verdict(call_oid, module, function)
            return self._script[identity]
        if now != identity and not (code_identity == now and not self._bound.get((module, function))):
            return "stale", f"code, module data or packages of {function} changed"
        unverifiable = self._unverifiable.get((module, function))
        if unverifiable:
            what, detail = unverifiable[0]
            return "unknown", f"{what} cannot be verified ({detail})"
        return "done", ""

    def save_files(self) -> None:
        """Keep in the project's memo of files what this report hashed (nothing: no write)."""
        self.files.save()

    def _script_verdict(self, call_oid: str, module: str, function: str) -> tuple[str, str]:
        try:
            changes = script_reasons(self.db, call_oid)
        except LookupError:  # (the index's facts name a call no record names now: never the report's end)
            return "unknown", f"{function}: its call record {call_oid[:12]} is missing (`scistack fsck` says more)"
        if changes is None:
            return "unknown", not_found_reason(module, function)
        changed = [c for c in changes if c.kind != "unknown"]
        if changed:
            return "stale", f"{changed[0].kind} {changed[0].name}: {changed[0].detail}"
        return ("unknown", f"{function}: {changes[0].detail}") if changes else ("done", "")

    def _input_reason(self, item: Any) -> str:
        if item.raw_file is not None:  # a PathInput: its content hash now against the recorded one
            try:
                now = file_oid(item.raw_file[1], item.raw_file[0], self.files)
            except ScistackError:
                now = None
            return "" if now == item.oid else f"input {item.name}: {item.raw_file[0]} changed"
        if item.var is None:
            return ""
        addr = {k: v for k, v in item.addr.items() if k in self.db.schema_keys}
        if item.merge:  # a Merge: each member is a saved value of its own variable
            now = []
            for member in item.merge:
                current = self._current(member.get("var"), member.get("addr") or {})
                if current is None or current.oid != member.get("oid"):
                    return f"input {item.name} ({member.get('var')}) changed"
                now.append(current)
        elif item.members:
            now = self.db.index.select(item.var, addr, {}, {})
            if sorted(r.oid for r in now) != sorted(item.members):
                return f"input {item.name} ({item.var} at {shown_address(addr, self.db.schema_keys)}) changed"
        else:
            current = self._current(item.var, item.addr)
            if current is None or current.oid != item.oid:
                return f"input {item.name} ({item.var}) changed"
            now = [current]
        for upstream in now:
            if self.record_status(upstream)[0] == "stale":
                return f"input {item.name} ({item.var}) is stale"
        return ""

    def _finer_reason(self, record: RefRecord, call_oid: str, item: Any) -> str:
        """An input found at a coarser address than the value made (a session's value for a
        trial) where the variable now has a finer one: a run takes that (`why.finer_input`)."""
        if item.var is None or item.members or item.merge or item.raw_file is not None:
            return ""
        given = {k: v for k, v in item.addr.items() if k in self.db.schema_keys}
        if not set(given) < set(record.addr):
            return ""  # (most inputs: at the value's own address)
        levels = self._levels.get(item.var)
        if levels is None:
            levels = self._levels[item.var] = var_levels(self.db, item.var)
        if len(levels) < 2:
            return ""  # one level: nothing finer than where the input was found
        vkeys = {k: v for k, v in item.addr.items() if k not in self.db.schema_keys}
        pinned = not given.items() < record.addr.items()  # another value than the output's: a pin
        finer = None if pinned else finer_input(self.db, item.var, given, vkeys, record.addr, levels=levels)
        if finer is not None or pinned:  # (rare: only then is the record read, for its `Split`
            try:  # keys and a `Fixed` input's pins: where the run looked)
                call = read_call(self.db.store, call_oid)
            except ScistackError:
                return ""
            at = where_looked(record.addr, call.arguments.get(item.name))
            finer = finer_input(self.db, item.var, given, vkeys, at, split_keys(call.extra.get("split")), levels)
        return "" if finer is None else f"input {item.name}: {item.var} now has a value at {finer}"

    def _current(self, var: str | None, addr: dict[str, Any]) -> RefRecord | None:
        """The current record a recorded input address names (schema keys, then version keys)."""
        if var is None:
            return None
        where = {k: v for k, v in addr.items() if k in self.db.schema_keys}
        vkeys = {k: v for k, v in addr.items() if k not in self.db.schema_keys}
        return self.db.index.current_at(var, key_of(where), key_of(vkeys))

    def current_identity(self, module: str, name: str) -> str | None:
        """The function's identity digest as its code is now (None: not importable)."""
        if (module, name) not in self._identity:
            fn = _find_function(module, name)
            digest = None
            if fn is not None:
                try:
                    target = fn.fn if isinstance(fn, LineageFunction) else fn
                    pinned = fn.version if isinstance(fn, LineageFunction) else None
                    identity = function_identity(target, version=pinned)
                    digest = identity.digest
                    self._unverifiable[(module, name)] = identity.unverifiable
                    self._bound[(module, name)] = bool(identity.unbound_digest)
                except (ScistackError, TypeError, OSError):
                    digest = None
            self._identity[(module, name)] = digest
        return self._identity[(module, name)]


def _matlab_verdict(db: Database, call_oid: str, function: str, identity: str) -> tuple[str, str]:
    """A MATLAB call: its recorded .m files read and normalised again, identities compared."""
    try:
        function_info = read_call(db.store, call_oid).function
        file, helpers = recorded_files(function_info, db.root, db.project_ids)  # (this checkout's copies)
    except ScistackError as exc:
        return "unknown", f"call record {call_oid[:12]} cannot be read ({exc})"
    if helpers is None:
        return "unknown", f"the helper files of {function} are not recorded"
    now, why = identity_now(file, helpers)
    if now is None:
        return "unknown", why
    if now != identity:
        return "stale", f"code of {function} ({file}) changed"
    return "done", ""


def status_grid(db: Database, variables: list[str] | None = None) -> StatusGrid:
    """The status of every (variable, address) among `variables` (default: all)."""
    known = db.index.variables()
    judging = db.index.judging()
    outputs = _run_outputs(db, judging)
    if outputs is None:  # a run failed somewhere: which cells it covers last needs every item
        run_combos = _last_runs(db, CallReader(db))
        outputs = {v for v, _ in run_combos}
    else:  # no failure anywhere: runs only name variables
        run_combos = {}
    chosen = list(variables) if variables else sorted(set(known) | outputs)
    for var in chosen:
        if var not in known and var not in outputs and not db.index.levels(var):  # (deleted: no values)
            raise VariableNotFoundError(
                f"{var} has no records and no runs; variables: {', '.join(known) or 'none'}"
            )
    checker = StalenessChecker(db)
    _learn_upstream(db, judging, checker, [v for v in chosen if v in known], known, prefill=True)
    by_var: dict[str, dict[str, StatusCell]] = {}
    with db.index.reading_ahead():  # one view of the project, inputs fetched in bulk
        records = {var: db.index.records(var) for var in chosen}
        _read_inputs_ahead(db, checker, [r for rs in records.values() for r in rs])
        checker.note_newer([r for rs in records.values() for r in rs])
        for var in chosen:
            by_var[var] = _var_cells(
                var, records[var], checker, {k: v for (rv, k), v in run_combos.items() if rv == var}
            )
    checker.save_files()
    return _grid(chosen, by_var, db.schema_keys, _empty(db, by_var))


Step = tuple[str, frozenset[str]]  # a use of a function: its name and the variables it reads


def input_variables(call: CallInfo) -> set[str]:
    """The variables a call read (each `Merge` member's): with its function, the step it was."""
    found = set()
    for item in call.inputs:
        if item.merge:
            found |= {str(m["var"]) for m in item.merge if m.get("var")}
        elif item.var:
            found.add(item.var)
    return found


def step_counts(db: Database, steps: dict[Step, tuple[str, ...]]) -> dict[Step, dict[str, int]]:
    """Per step (function, input variables) -> its outputs: how many addresses are in each
    status by that step's own values and failures (`step_cells`), an address once (the worst
    of its outputs there, as a grid row is judged). For outputs that several steps make (two
    uses of a function, an `EachOf`'s alternatives, two functions saving one variable), where
    the variable's own counts would lend one step another's failures."""
    out = {}
    for step, by_var in step_cells(db, steps).items():
        worst: dict[str, int] = {}
        for cells in by_var.values():
            for addr_key, cell in cells.items():
                rank = STATUSES.index(cell.status)
                worst[addr_key] = max(worst.get(addr_key, rank), rank)
        out[step] = dict.fromkeys(STATUSES, 0)
        for rank in worst.values():
            out[step][STATUSES[rank]] += 1
    return out


def step_grid(db: Database, step: Step, outputs: tuple[str, ...]) -> StatusGrid:
    """The grid of one step's own cells (`step_cells`): a row per address where it has one,
    None where an output's cell there is another step's (or none), as its counts
    (`step_counts`) count them. The grid of its outputs had shown every step's cells: a step
    opened beside another making the same variable showed the other's failures."""
    by_var = step_cells(db, {step: outputs})[step]
    live = set(db.index.variables())
    grid = _grid(list(outputs), by_var, db.schema_keys, {
        var: _NOT_ITS_OWN if var in live else no_values(db, var) for var, cells in by_var.items() if not cells})
    # (a step's cells are never missing: a missing one is `_project`'s, where it has none)
    rows = [[None if c is None or c.status == "missing" else c for c in row] for row in grid.grid]
    return StatusGrid(grid.variables, grid.addresses, rows, grid.empty)


_NOT_ITS_OWN = "none of its values is this step's (another step made them)"


def step_cells(db: Database, steps: dict[Step, tuple[str, ...]]) -> dict[Step, dict[str, dict[str, StatusCell]]]:
    """Per step (function, input variables) -> its outputs: each output's cells (by their
    address's `key_of`) that are the step's own, the worst of its variants at an address. A
    value is the step's whose call made it (its function and the variables its call read), a
    failure the step's its run was (the run's recorded inputs; a run journalled before they
    were, each step of its function with that output's); the same rule as `status_grid`
    hides a failure under a newer value. Missing cells belong to no step: there are none."""
    wanted = sorted({v for outs in steps.values() for v in outs})
    of_var: dict[str, list[Step]] = {}
    for step, outs in steps.items():
        for var in outs:
            of_var.setdefault(var, []).append(step)
    run_step: dict[str, tuple[str | None, frozenset[str] | None]] = {
        r.run_id: (r.function, frozenset(r.extra["inputs"]) if "inputs" in r.extra else None)
        for r in db.index.runs() if r.run_id}
    checker = StalenessChecker(db)
    known = db.index.variables()
    keys = db.schema_keys
    present = [v for v in wanted if v in known]
    _learn_upstream(db, db.index.judging(), checker, present, known, prefill=True)
    failures = {k: v for k, v in _last_runs(db, checker.calls).items() if k[0] in of_var}
    cells: dict[Step, dict[str, dict[str, StatusCell]]] = {
        step: {var: {} for var in outs} for step, outs in steps.items()}

    def note(step: Step, addr_key: str, cell: StatusCell) -> None:
        if step in of_var.get(cell.var, ()):
            mine = cells[step][cell.var]
            if addr_key not in mine or STATUSES.index(cell.status) > STATUSES.index(mine[addr_key].status):
                mine[addr_key] = cell

    with db.index.reading_ahead():
        records = {var: db.index.records(var) for var in present}
        _read_inputs_ahead(db, checker, [r for rs in records.values() for r in rs])
        checker.note_newer([r for rs in records.values() for r in rs])
        newest: dict[tuple[str, str], dict[str, str]] = {}  # (var, address) -> version keys -> time
        for var in present:
            current: dict[tuple[str, str], RefRecord] = {}
            for record in records[var]:  # oldest first: the last wins
                current[(record.addr_key, record.vkeys_key)] = record
            for (addr_key, vkeys_key), record in current.items():
                newest.setdefault((var, addr_key), {})[vkeys_key] = record.created_at
                call = checker.calls.get(record.call) if record.call else None
                if call is not None:
                    status, reason = checker.record_status(record)
                    note((call.function, frozenset(input_variables(call))), addr_key,
                         StatusCell(var, ordered(record.addr, keys), status, record.version, reason))
    for (var, addr_key), variants in failures.items():
        saved = newest.get((var, addr_key), {})
        for vkeys_key, (status, t, combo, error, run_id, vkeys) in variants.items():
            since = saved.get(vkeys_key, "") if vkeys else max(saved.values(), default="")
            if status != "failed" or t <= since:
                continue
            function, inputs = run_step.get(run_id or "", (None, None))
            label = shown_address(vkeys)
            failed = StatusCell(var, ordered(combo, keys), "failed", None,
                                f"{label}: {error or ''}" if label else error or "", run_id)
            for step in of_var[var]:
                if step[0] == function and (inputs is None or step[1] == inputs):
                    note(step, addr_key, failed)
    return cells


@dataclass(frozen=True, slots=True)
class StatusSummary:
    """How many cells of each variable have each status, and the first few that are not done
    (`limit` per variable, in address order). `fast`: computed set-at-a-time in the index
    rather than from the whole grid."""

    variables: list[str]
    counts: dict[str, dict[str, int]]
    problems: list[StatusCell]
    fast: bool


def journal_warning(db: Database) -> str | None:
    """What a report says when the index has folded past journal lines no reader can take
    (a write cut short by a crash, another writer's malformed line): what they held is in no
    view, so a value may look missing with no other sign."""
    text = db.index.unreadable_journal_warning()
    return None if text is None else f"warning: {text}"


def status_summary(db: Database, variables: list[str] | None = None, *, limit: int = 20) -> StatusSummary:
    """The status counts of `variables` (default: all), as `status_grid(...).counts()` gives
    them, without building the grid when the project allows: no version-key variants, no
    failed run, no value computed from a coarser value of a variable saved at several levels.
    A million refs then cost a few index scans, not a Python loop over every record."""
    fast = _fast_summary(db, variables, limit)
    if fast is not None:
        return fast
    grid = status_grid(db, variables)
    problems = []
    for var in grid.variables:
        problems += _first(db, [c for c in grid.cells if c.var == var and c.status != "done"], limit)
    return StatusSummary(grid.variables, grid.counts(), problems, fast=False)


def _first(db: Database, cells: list[StatusCell], limit: int) -> list[StatusCell]:
    """The first `limit` (-1: all) of one variable's cells not done, in the order the grid
    lists its rows (`address_order`: by schema key, numbers by value); they had come in the
    order of their addresses' JSON text (`session` before `subject`, 10 before 9)."""
    keys = db.schema_keys
    in_order = sorted(cells, key=lambda c: (address_order(c.addr, keys), key_of(c.addr)))
    return in_order if limit < 0 else in_order[:limit]


def status_cells(db: Database, variables: list[str] | None = None) -> StatusGrid:
    """`status_grid`, judged set-at-a-time in the index where the project allows (as
    `status_summary` is): the web view's grid of 2,000 addresses in ~0.05 s, not ~0.5 s.
    `status_grid` stays the reference the tests hold this to."""
    judged = _judge_fast(db, variables)
    if judged is None:
        return status_grid(db, variables)
    judging, chosen, known = judged
    by_var: dict[str, dict[str, StatusCell]] = {}
    for var in chosen:
        judged = {addr: (status, reason) for addr, _, status, reason in judging.problems(var, -1)}
        by_var[var] = {}
        newest = judging.newest_versions(var)
        addrs = _in_schema_order_many(db, [addr for addr, _ in newest])
        for (addr, version), shown in zip(newest, addrs):
            status, reason = judged.get(addr, ("done", ""))
            by_var[var][addr] = StatusCell(var, shown, status, version, reason)
    return _grid(chosen, by_var, db.schema_keys, _empty(db, by_var))


def _fast_summary(db: Database, variables: list[str] | None, limit: int) -> StatusSummary | None:
    judged = _judge_fast(db, variables)
    if judged is None:
        return None
    judging, chosen, known = judged
    present = [var for var in chosen if var in known]
    if len({level for var in present for level in db.index.levels(var, live=True)}) > 1:
        return _summary_across_levels(db, judging, chosen, present, limit)
    within = None if set(chosen) >= set(known) else present  # the rows: these variables' addresses
    rows = judging.addresses(within)
    counts, problems = {}, []
    for var in chosen:
        if var not in known:  # runs wrote it once; nothing of it is left
            counts[var] = dict.fromkeys(STATUSES, 0)
            continue
        found = judging.counts(var)
        counts[var] = {status: found.get(status, 0) for status in STATUSES}
        counts[var]["missing"] = rows - sum(found.values())
        if not limit:
            continue
        cells = [StatusCell(var, _in_schema_order(db, addr), status, version, reason)
                 for addr, version, status, reason in judging.problems(var, limit, db.schema_keys)]
        if counts[var]["missing"]:
            cells += [StatusCell(var, _in_schema_order(db, addr), "missing")
                      for addr in judging.missing(var, limit, within=within, keys=db.schema_keys)]
        problems += _first(db, cells, limit)
    return StatusSummary(chosen, counts, problems, fast=True)


def _summary_across_levels(db: Database, judging: Any, chosen: list[str], present: list[str], limit: int
                           ) -> StatusSummary | None:
    """`_fast_summary` where the addresses have several sets of keys (a variable saved per
    subject beside others per session, or one variable at both): the cells the grid shows
    (`levels.cells_across_levels`), with the verdicts judged in the index; None where the
    index cannot say (before SQLite 3.38)."""
    levels = {frozenset(level.split(",")) if level else frozenset()
              for var in present for level in db.index.levels(var, live=True)}
    across = cells_across_levels(judging, db.schema_keys, present, levels, limit)
    if across is None:
        return None
    counts, problems = {}, []
    for var in chosen:
        counts[var] = dict.fromkeys(STATUSES, 0)
        if var not in across:  # runs wrote it once; nothing of it is left
            continue
        cells = across[var]
        shown = [p for p in judging.problems(var, -1, db.schema_keys if limit else None)
                 if p[0] not in cells.hidden]  # (a coarser value no row shows is in no count:
        for _, _, status, _ in shown:  # a finer one serves each)
            counts[var][status] += 1
        counts[var]["done"] = cells.used - len(shown)
        counts[var]["missing"] = cells.missing
        found = [StatusCell(var, _in_schema_order(db, addr), status, version, reason)
                 for addr, version, status, reason in (shown if limit < 0 else shown[:limit])]
        found += [StatusCell(var, _in_schema_order(db, addr), "missing") for addr in cells.first_missing]
        problems += _first(db, found, limit)
    return StatusSummary(chosen, counts, problems, fast=True)


def _judge_fast(db: Database, variables: list[str] | None) -> tuple[Any, list[str], list[str]] | None:
    """Judge `variables` and everything upstream set-at-a-time in the index: (the judging,
    the variables chosen, every known variable), or None where the project needs the
    per-record grid (a variable at several levels, version-key variants, a failed run)."""
    known = db.index.variables()
    judging = db.index.judging()
    outputs = _run_outputs(db, judging)
    if outputs is None:
        return None
    chosen = list(variables) if variables else sorted(set(known) | outputs)
    if not known or any(v not in known for v in chosen if not (v in outputs and variables is None)):
        return None  # nothing saved, or a variable with no records: the grid says what to do
    checker = StalenessChecker(db)
    facts: dict[str, tuple[set[str], list]] = {}
    inputs = _learn_upstream(db, judging, checker, [v for v in chosen if v in known], known, facts=facts)
    if any(db.index.vkey_names(v) for v in inputs) or not _levels_judged_alike(db, judging, inputs):
        return None
    sigs: dict[str, str | None] = {}
    touched: dict[str, set[str] | None] = {}  # cells judged again in this report (None: all)
    before: dict[str, str | None] = {}  # the signature each variable's kept judgement had
    for var in _upstream_first(inputs):
        verdicts = {identity: checker.function_verdict(call, module, function, identity)
                    for identity, module, function, call in facts[var][1]}
        judging.set_verdicts(verdicts)
        sigs[var] = sig = _judged_signature(judging, var, facts[var][0], verdicts, sigs)
        prior = judging.kept_state(var)
        before[var] = prior["sig"] if prior else None
        if sig is not None and judging.reuse_judged(var, sig):
            touched[var] = set()
            continue
        state = _judged_state(judging, var, facts[var][0], verdicts, sigs)
        cells = _cells_to_judge_again(judging, prior, state, touched, before) if sig is not None else None
        if cells is None:
            judging.judge(var)
        else:
            judging.judge_again(var, cells)
        # (the records judged again were all that changed: those judged before were aligned)
        state["aligned"] = judging.judged_aligned()
        touched[var] = cells if judging.computed(var) else set()  # a raw variable is done everywhere
        complex_records = judging.complex_records(var)
        if complex_records:  # judged here, by files and members a signature cannot see
            checker.note_newer(complex_records)
            judging.set_judged(var, [(r.addr_key, *checker.record_status(r)) for r in complex_records])
            judging.mark_stale_from_judged(var)
            sigs[var] = touched[var] = None
        elif sig is not None and not judging.has_unknown(var):  # a missing record may turn up
            judging.keep_judged(var, sig, state)
        else:
            sigs[var] = touched[var] = None
    checker.save_files()
    return judging, chosen, known


def _levels_judged_alike(db: Database, judging: Any, inputs: dict[str, set[str]]) -> bool:
    """Whether the index judges every record as the grid would although a variable is saved
    at several levels: no record of a variable that reads it found its value at another
    address. Else a value taken from a coarser address is stale where a finer one has been
    saved since (`StalenessChecker._finer_reason`), which the grid judges per record."""
    several = {v for v in inputs if len(db.index.levels(v, live=True)) > 1}
    return not any(judging.reads_elsewhere(reader, var)
                   for reader, upstream in inputs.items() for var in upstream & several)


def _in_schema_order_many(db: Database, addr_keys: list[str]) -> list[dict[str, Any]]:
    """`_in_schema_order` of many addresses, decoded in one call."""
    return [ordered(addr, db.schema_keys) for addr in decode_keys(addr_keys)]


def _in_schema_order(db: Database, addr_key: str) -> dict[str, Any]:
    """An address key decoded (orjson: `json.loads` was a tenth of a large grid's time), its
    keys in schema order."""
    return ordered(loads_line(addr_key.encode()), db.schema_keys)


def _judged_signature(judging: Any, var: str, input_vars: set[str], verdicts: dict[str, tuple[str, str]],
                      sigs: dict[str, str | None]) -> str | None:
    """What a variable's judged cells depend on, as one hash: its records (change count), each
    input variable's records and judged cells (their signatures), and its functions' verdicts
    on the code as it is now. None when an input's cells could not be signed."""
    upstream = []
    for name in sorted(input_vars):
        if name in sigs and sigs[name] is None:
            return None
        upstream.append((name, judging.changes(name), sigs.get(name)))
    text = json.dumps([var, judging.changes(var), upstream, sorted(verdicts.items())])
    return hash_bytes(text.encode())


def _judged_state(judging: Any, var: str, input_vars: set[str], verdicts: dict[str, tuple[str, str]],
                  sigs: dict[str, str | None]) -> dict[str, Any]:
    """What a variable's judgement is made from, kept beside it so that the next report can
    judge again only the cells a change reached: the change counts of the variable and of
    its inputs (with the inputs' signatures as judged then), its functions' verdicts, and
    (once judged) whether the inputs of its judged records' calls all sit at their record's
    own address."""
    return {"var": var, "changes": judging.changes(var),
            "upstream": {name: [judging.changes(name), sigs.get(name)] for name in sorted(input_vars)},
            "verdicts": hash_bytes(json.dumps(sorted(verdicts.items())).encode())}


def _cells_to_judge_again(judging: Any, kept: dict[str, Any] | None, state: dict[str, Any],
                          touched: dict[str, set[str] | None], before: dict[str, str | None]
                          ) -> set[str] | None:
    """The address keys of `var` whose verdict a change since its kept judgement can have
    reached, or None when everything must be judged (nothing kept, a function's verdict
    changed, another set of inputs, inputs at other addresses, an input judged in full).

    A cell's verdict reads its newest record, the newest values and staleness of its call's
    inputs and its function's verdict; with every input at the cell's own address, it can
    change only where the variable itself changed, where an input's records changed, or
    where an input's cells were judged again. The inputs' cells must have been judged again
    from the very judgement this one saw (a report on an input alone may have judged it
    since): else everything is judged."""
    if (kept is None or not kept.get("aligned") or kept["verdicts"] != state["verdicts"]
            or set(kept["upstream"]) != set(state["upstream"])):
        return None
    cells = judging.changed_cells(state["var"], kept["changes"]) if "var" in state else None
    if cells is None:
        return None
    for name, (since, seen) in kept["upstream"].items():
        again = touched.get(name, set())
        if again is None or before.get(name) != seen:
            return None
        cells |= again | judging.changed_cells(name, since)
    return cells


def _learn_upstream(db: Database, judging: Any, checker: StalenessChecker, chosen: list[str], known: list[str],
                    *, prefill: bool = False, facts: dict[str, tuple[set[str], list]] | None = None
                    ) -> dict[str, set[str]]:
    """Learn the call facts of `chosen` and every variable upstream of them; returns each
    one's input variables (and fills `facts`: each one's input variables, all of them, and
    functions). With `prefill`, the checker reads simple call records from their facts (a few
    bulk queries) instead of parsing each record."""
    inputs: dict[str, set[str]] = {}
    facts = {} if facts is None else facts
    todo = list(chosen)
    while todo:
        var = todo.pop()
        if var in inputs:
            continue
        facts[var] = _var_facts(db, judging, checker, var)
        inputs[var] = facts[var][0] & set(known)
        todo += inputs[var] - inputs.keys()
        if prefill:
            for call_oid, (module, function, identity, rows) in judging.facts(var).items():
                checker.calls.prime(call_oid, _call_from_facts(db, call_oid, module, function, identity, rows))
                checker.no_files.add(call_oid)  # a simple call: it read no file
    return inputs


def _call_from_facts(db: Database, call_oid: str, module: str, function: str, identity: str,
                     rows: list[tuple[str, str, str, str, str]]) -> Any:
    """The parts of a call record a status judgement reads, rebuilt from its facts."""
    inputs = tuple(InputInfo(name, var, oid, {**json.loads(addr), **json.loads(vkeys)}, None)
                   for name, var, addr, vkeys, oid in rows)
    return CallInfo(call_oid, function, module, identity, None, {}, inputs, None, None, None, "", 0.0, None, None)


def _var_facts(db: Database, judging: Any, checker: StalenessChecker, var: str) -> tuple[set[str], list]:
    """(input variables, functions) of `var`'s call records: kept by the index, brought up to
    date from the calls its records first named since (call records parsed once ever).

    After a 100k-combination run that is a read of the 100k new calls, where a read of every
    call of every version took 0.4 s at two versions and grew with the history."""
    changes = judging.changes(var)  # (read first: a call named meanwhile is read again next time)
    kept = judging.kept_facts(var)
    if kept is not None and kept[0] == changes:
        return kept[1], kept[2]
    since = -1 if kept is None else kept[0]
    complete = learn_calls(db, judging, var, since=since)
    inputs, functions = judging.input_vars(var, since), judging.functions(var, since)
    if kept is not None:
        inputs |= kept[1]
        if judging.dead_calls(var, [f[3] for f in kept[2]]):  # a kept call was deleted (gc may
            functions = judging.functions(var)  # remove it): each function's call chosen anew
        else:
            first = {tuple(f[:3]): f[3] for f in kept[2]}  # (identity, module, function) -> a call
            for *key, call in functions:
                first[tuple(key)] = min(call, first.get(tuple(key), call))
            functions = [(*key, call) for key, call in first.items()]
    if complete:  # a missing call record may turn up later
        judging.keep_facts(var, changes, inputs, functions)
    return inputs, functions


def _run_outputs(db: Database, judging: Any) -> set[str] | None:
    """The variables recorded runs wrote to (at one combination or more), or None when a run
    failed somewhere or predates recorded outputs (the grid then answers). Each run's item
    list is counted once ever."""
    runs = [r for r in db.index.runs() if not r.dry_run and r.items]
    known = judging.run_facts([r.items for r in runs])
    learned = {}
    for run in runs:
        if run.items not in known:
            counts = run.counts  # (the item statuses counted as the run wrote them: 1.2 s to read
            if "failed" in counts and all(type(n) is int for n in counts.values()):  # 100k items)
                learned[run.items] = (sum(counts.values()), counts["failed"])
                continue
            try:
                items = db.store.get_value(run.items)
            except LookupError:
                continue
            learned[run.items] = (len(items), sum(1 for item in items if item.get("status") == "failed"))
    if learned:
        judging.learn_runs(learned)
    facts = {**known, **learned}
    outputs: set[str] = set()
    for run in runs:
        total, failed = facts.get(run.items, (0, 0))
        if failed or (total and run.outputs is None):
            return None
        if total:
            outputs |= set(run.outputs)
    return outputs


def _upstream_first(inputs: dict[str, set[str]]) -> list[str]:
    """Variables ordered so that each comes after the variables its inputs name (a variable
    computed from an earlier version of itself is its own input: that edge is ignored)."""
    order: list[str] = []
    placed: set[str] = set()

    def visit(var: str, path: frozenset[str]) -> None:
        if var in placed or var in path:
            return
        for up in sorted(inputs.get(var, ())):
            visit(up, path | {var})
        placed.add(var)
        order.append(var)

    for var in sorted(inputs):
        visit(var, frozenset())
    return order


def _read_inputs_ahead(db: Database, checker: StalenessChecker, records: list[RefRecord]) -> None:
    """Fetch the current records of every input the records' calls name, one query per
    variable: judging then costs no index query per value."""
    wanted: dict[str, set[str]] = {}
    for record in records:
        call = checker.calls.get(record.call)
        for item in call.inputs if call else ():
            if item.var is not None and not item.members:
                addr = {k: v for k, v in item.addr.items() if k in db.schema_keys}
                wanted.setdefault(item.var, set()).add(key_of(addr))
    for var, addr_keys in wanted.items():
        db.index.read_ahead(var, sorted(addr_keys))


def _var_cells(
    var: str,
    records: list[RefRecord],
    checker: StalenessChecker,
    runs: dict[str, dict[str, _RunItem]],
) -> dict[str, StatusCell]:
    cells: dict[str, StatusCell] = {}
    newest: dict[str, dict[str, str]] = {}  # address -> version keys -> its newest record's time
    keys = checker.db.schema_keys
    by_addr: dict[str, list[RefRecord]] = {}
    for record in records:
        by_addr.setdefault(record.addr_key, []).append(record)
    for addr_key, records in by_addr.items():
        current = {r.vkeys_key: r for r in records}  # oldest first: the last wins
        verdicts = [(checker.record_status(r), r) for r in current.values()]
        worst = max(verdicts, key=lambda v: STATUSES.index(v[0][0]))
        (status, reason), record = worst
        cells[addr_key] = StatusCell(var, ordered(record.addr, keys), status, record.version, reason)
        newest[addr_key] = {k: r.created_at for k, r in current.items()}
    for addr_key, variants in runs.items():
        saved = newest.get(addr_key, {})
        for vkeys_key, (status, t, combo, error, run_id, vkeys) in variants.items():
            # an EachOf alternative's failure is hidden only by a newer value of that alternative
            # (another's value there is not its own); a run without one, by any newer value
            since = saved.get(vkeys_key, "") if vkeys else max(saved.values(), default="")
            if status == "failed" and t > since:
                label = shown_address(vkeys)
                why = f"{label}: {error or ''}" if label else error or ""
                cells[addr_key] = StatusCell(var, ordered(combo, keys), "failed", None, why, run_id)
                break
    return cells


# (status, time, combo, error, run id, version keys) of a run's item
_RunItem = tuple[str, str, dict[str, Any], str, str | None, dict[str, str]]


def _last_runs(db: Database, calls: CallReader) -> dict[tuple[str, str], dict[str, _RunItem]]:
    """(variable, address) -> version keys (an `EachOf` alternative's, else none) -> (status,
    time, combo, error, run id, version keys) of the newest run covering it."""
    writers: dict[str, set[str]] = {}  # function name -> variables, for runs that predate "outputs"
    out: dict[tuple[str, str], dict[str, _RunItem]] = {}
    for run in db.index.runs():
        if run.dry_run or not run.items:
            continue
        outputs = run.outputs
        if outputs is None:
            if not writers:
                writers = _writers(db, calls)
            outputs = sorted(writers.get(run.function, ()))
        try:
            items = db.store.get_value(run.items)
        except LookupError:
            continue
        for item in items:
            vkeys = item.get("vkeys") or {}
            entry = (item["status"], run.t, item["combo"], item.get("error"), run.run_id, vkeys)
            addr_key, vkeys_key = key_of(item["combo"]), key_of(vkeys)
            for var in outputs:
                out.setdefault((var, addr_key), {})[vkeys_key] = entry
    return out


def _writers(db: Database, calls: CallReader) -> dict[str, set[str]]:
    writers: dict[str, set[str]] = {}
    for var in db.index.variables():
        record = next((r for r in db.index.records(var) if r.call), None)
        info = calls.get(record.call) if record else None
        if info is not None:
            writers.setdefault(info.function, set()).add(var)
    return writers


def _grid(chosen: list[str], by_var: dict[str, dict[str, StatusCell]], schema_keys: list[str],
          empty: dict[str, str]) -> StatusGrid:
    """The rows (each variable's cells keyed by their address's `key_of`) and every variable's
    cell in each row. The keys the cells already have are used as they are: writing each
    address's key again was a third of a 300k-address grid's time."""
    unique: dict[str, dict[str, Any]] = {}
    for cells in by_var.values():
        for key, c in cells.items():
            unique[key] = c.addr
    rows = _rows(unique, schema_keys)
    levels = {var: _levels(by_var[var]) for var in chosen}
    grid = [[_project(var, by_var[var], levels[var], row, key, schema_keys) for var in chosen] for key, row in rows]
    return StatusGrid(chosen, [row for _, row in rows], grid, empty)


def _empty(db: Database, by_var: dict[str, dict[str, StatusCell]]) -> dict[str, str]:
    return {var: no_values(db, var) for var, cells in by_var.items() if not cells}


_RUN_ITEMS = {"missing": "missing an input", "failed": "failed", "ran": "ran", "cached": "cached"}


def no_values(db: Database, var: str) -> str:
    """What a variable without a single value says instead of counts (all zero, which had
    read as "current"): that every value was deleted (it was saved at some address: its
    levels' names outlive its records), else what its newest run did at its combinations."""
    if db.index.levels(var):  # (before the runs: the last run may have produced them all)
        return f"no values (every one deleted; `scistack undelete {var}` brings them back, until gc)"
    run = next((r for r in reversed(db.index.runs()) if not r.dry_run and var in (r.outputs or ())), None)
    if run is None:
        return "no values (every one deleted)"
    did = {_RUN_ITEMS.get(s, s): n for s, n in run.counts.items() if isinstance(n, int) and n}
    told = ", ".join(f"{n} {word}" for word, n in did.items())
    return f"never produced: the last run of {run.function} had {sum(did.values())} combinations, {told}" \
        if did else f"never produced: the last run of {run.function} had no combinations"


def _rows(unique: dict[str, dict[str, Any]], schema_keys: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Distinct addresses (`key_of` -> address), leaving out one that a finer address extends;
    (key, address) pairs in schema order."""
    levels = {frozenset(a) for a in unique.values()}
    extended = set()
    if len(levels) > 1:
        for a in unique.values():
            for level in levels:
                if level < set(a):
                    extended.add(key_of({k: a[k] for k in level}))
    rows = [(key, a) for key, a in unique.items() if key not in extended]
    if len(levels) == 1:  # one set of keys, each all text or all numbers: their values alone
        order = [k for k in schema_keys if k in next(iter(levels))]  # order the rows (in C)
        if len(order) == len(next(iter(levels))) and all(
                len({isinstance(a[k], str) for _, a in rows}) <= 1 for k in order):
            values = operator.itemgetter(*order)
            return sorted(rows, key=lambda pair: values(pair[1]))
    return sorted(rows, key=lambda pair: address_order(pair[1], schema_keys))


def _levels(cells: dict[str, StatusCell]) -> list[frozenset[str]]:
    """The sets of address keys a variable is saved at, finest first."""
    return sorted({frozenset(c.addr) for c in cells.values()}, key=len, reverse=True)


def _project(
    var: str, cells: dict[str, StatusCell], levels: list[frozenset[str]], row: dict[str, Any], row_key: str,
    schema_keys: list[str],
) -> StatusCell | None:
    """The cell of `var` in `row` (whose `key_of` is `row_key`): its value at the finest level
    of `var` that the row's keys cover and that has one there, as `for_each` finds an input (a
    value saved per session serves each trial of it that has none of its own); "missing" at
    the finest covered level when none has."""
    found = cells.get(row_key)  # most rows: an address of the variable's own (its finest level)
    if found is not None:
        return found
    missing = None
    for level in levels:
        if level <= row.keys():
            addr = {k: row[k] for k in schema_keys if k in level}  # (a set's order varies by run)
            key = row_key if len(level) == len(row) else key_of(addr)
            found = cells.get(key)
            if found is not None and found.status != "missing":
                return found
            if missing is None:
                missing = (key, addr)
    if missing is None:
        return None
    key, addr = missing
    if key not in cells:  # one object per missing cell too (`StatusGrid.cells`)
        cells[key] = StatusCell(var, addr, "missing")
    return cells[key]


def why_value(db: Database, var: str, **address: Any) -> WhyReport:
    """Why the current value of `var` at `address` is current, stale or would be recomputed
    (`report.why.why_at`: the one implementation, Python's `why` included)."""
    return why_at(db, var, **address)
