"""The pipeline as a graph: variables and functions as nodes, edges from inputs to outputs,
each node with the status counts `status_grid` computed for it. A function used on other
inputs (`scale(Force) -> Force2`, `scale(Force2) -> Force6`) is a node per use, named by its
inputs (`fn:scale(Force2)`); one node had drawn a cycle through Force2.

Edges come from the lineage records: which function computed a variable, and which
variables it read. They are read from the call records of a variable's newest records (at
most three call records a variable, not one per value: the graph must stay cheap for
projects of 100k values), and from the run reports, which name each run's outputs and
inputs (so a step whose every call failed, or whose every value was deleted, still appears
with its input edges; a run journalled before runs named their inputs adds its outputs to a
use of its function that made them, else to a node of its own without input edges). A
function that made only old values of a variable, none among its 20 newest, and has no such
run is therefore not drawn for it.
A `PathInput` is a source node of its own, "raw files: raw/{subject}/s_{session}.csv" (the
path a sampled call read, each address value in it written back as its key: the call
records the file, not the template), with an edge to each function that read such files
(it had been drawn with no inputs). States are never judged here: a variable's counts are
`status_summary`'s, as `scistack status` prints them; a function's are its own step's
(`_own_counts`), an address once, judged by `status` too, and its grid (`node_grid`) shows
the cells they count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from scistack.database import Database
from scistack.report.history import CallInfo, CallReader
from scistack.report.status import (STATUSES, Step, StatusGrid, input_variables, no_values, status_cells,
                                    status_summary, step_counts, step_grid)

# A node's state, worst first: what its colour says.
STATES = ("failed", "stale", "missing", "unknown", "current")
_STATE_OF = {"failed": "failed", "stale": "stale", "missing": "missing", "unknown": "unknown"}


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A variable or a function, with how many of its values are in each status."""

    id: str  # "var:<name>", "fn:<name>" or "raw:<pattern>": the kinds may share a name
    kind: str  # "variable", "function" or "raw" (files a `PathInput` read: no status, no grid)
    name: str
    state: str  # one of STATES ("" for a "raw" node: files are not judged here)
    counts: dict[str, int]
    module: str = ""  # a function's module
    outputs: tuple[str, ...] = ()  # a function's output variables
    note: str = ""  # no value at all: what it says instead of counts (`status.no_values`)


@dataclass(frozen=True, slots=True)
class PipelineGraph:
    """Nodes and (source id, target id) edges, inputs to outputs."""

    nodes: list[GraphNode]
    edges: list[tuple[str, str]]
    # a function node's id -> its step, its outputs, and whether another step makes one of them
    # (then its counts and grid are its own step's cells, `status.step_cells`)
    steps: dict[str, tuple[Step, tuple[str, ...], bool]] = field(default_factory=dict)

    def node(self, node_id: str) -> GraphNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)


def state_of(counts: dict[str, int]) -> str:
    """The worst status present: failed, stale, missing, unknown, else current; missing when
    there is no value at all (nothing is current)."""
    if not any(counts.values()):
        return "missing"
    return next((_STATE_OF[s] for s in ("failed", "stale", "missing", "unknown") if counts.get(s)), "current")


def pipeline_graph(db: Database, counts: dict[str, dict[str, int]] | None = None) -> PipelineGraph:
    """The graph of every variable and the functions between them, coloured by `counts`
    (variable -> status -> number of values; default: `status_summary(db).counts`, which
    judges a large project set-at-a-time in the index)."""
    counts = counts if counts is not None else status_summary(db, limit=0).counts
    reader = CallReader(db)
    # (function name, its input variables) -> module, outputs: one node per use of a function,
    # so `scale(Force) -> Force2` then `scale(Force2) -> Force6` is a chain, not one node with
    # Force2 both in and out (a cycle)
    uses: dict[tuple[str, frozenset[str]], dict[str, Any]] = {}
    for var in counts:
        for call, addr in _sample_calls(db, reader, var):
            use = uses.setdefault((call.function, frozenset(input_variables(call))),
                                  {"module": call.module, "outputs": set(), "raw": set()})
            use["outputs"].add(var)
            use["raw"] |= {raw_pattern(item.raw_file[0], addr, db.schema_keys)
                           for item in call.inputs if item.raw_file}
    from_runs: set[tuple[str, frozenset[str]]] = set()  # steps only a run names (no value's call)
    for run in db.index.runs():  # (a run names its inputs, or, journalled before they were,
        # outputs only: then a use that made them, else its own)
        if run.function and run.outputs and not run.dry_run:
            outputs = set(run.outputs)
            if not _made_any(run):  # (every combination missed an input): drawn as the maker only
                # of an output with no value at all, which says what its last run did; one with
                # values (saved directly, or by another function) was not made by it
                outputs = {v for v in outputs if not any((counts.get(v) or {}).values())}
                if not outputs:
                    continue
            if "inputs" in run.extra:  # its own step, drawn with its inputs though none of its
                # values is left (all deleted, or every call failed)
                step = (run.function, frozenset(run.extra["inputs"]))
                if step not in uses:
                    from_runs.add(step)
                uses.setdefault(step, {"module": "", "outputs": set(), "raw": set()})["outputs"] |= outputs
                continue
            known = [u for (name, _), u in uses.items() if name == run.function and u["outputs"] & outputs]
            for use in known or [uses.setdefault((run.function, frozenset()),
                                                 {"module": "", "outputs": set(), "raw": set()})]:
                use["outputs"] |= outputs if not known else set()
    names = set(counts) | {v for (_, inputs), use in uses.items() for v in inputs | use["outputs"]}
    notes = {var: no_values(db, var) for var in names if not any((counts.get(var) or {}).values())}
    nodes = [_variable_node(var, counts.get(var), notes.get(var, "")) for var in sorted(names)]
    edges: list[tuple[str, str]] = []
    patterns = sorted({p for use in uses.values() for p in use["raw"]})
    nodes += [GraphNode(f"raw:{p}", "raw", f"raw files: {p}", "", dict.fromkeys(STATUSES, 0),
                        note="files read by PathInput") for p in patterns]
    own = _own_counts(db, {step: tuple(sorted(use["outputs"])) for step, use in uses.items()}, counts)
    replaced = {step for step in from_runs if not any(own[step].values())
                and any(any((counts.get(v) or {}).values()) for v in uses[step]["outputs"])}
    if replaced:  # a step run before, whose outputs another step makes now (its inputs switched,
        # an EachOf alternative dropped): nothing of its own is left to draw, not even a failure
        for step in replaced:
            del uses[step]
        own = _own_counts(db, {step: tuple(sorted(use["outputs"])) for step, use in uses.items()}, counts)
    used = [name for name, _ in uses]
    shared = _shared({step: tuple(use["outputs"]) for step, use in uses.items()})
    steps: dict[str, tuple[Step, tuple[str, ...], bool]] = {}
    for (name, inputs), use in sorted(uses.items(), key=lambda item: (item[0][0], sorted(item[0][1]))):
        outputs = sorted(use["outputs"])
        node = f"fn:{name}" if used.count(name) == 1 else f"fn:{name}({', '.join(sorted(inputs))})"
        total = own[(name, inputs)]
        note = "; ".join(dict.fromkeys(notes[v] for v in outputs if v in notes)) if not any(total.values()) else ""
        nodes.append(GraphNode(node, "function", name, state_of(total), total, use["module"], tuple(outputs), note))
        steps[node] = ((name, inputs), tuple(outputs), (name, inputs) in shared)
        edges += [(f"raw:{p}", node) for p in sorted(use["raw"])]
        edges += [(f"var:{v}", node) for v in sorted(inputs)]
        edges += [(node, f"var:{v}") for v in outputs]
    return PipelineGraph(nodes, edges, steps)


def node_grid(db: Database, node_id: str) -> StatusGrid | None:
    """The grid a node opens (None: no such node): a variable's (`status_cells`); a function's,
    its own step's cells, as its counts count them: its outputs' grid where it alone makes
    them, else the values its calls made and the failures its runs had (`status.step_grid`).
    A step's grid had shown every cell of its outputs: opened beside another step making the
    same variable, it showed that step's values and failures, which its counts did not."""
    kind, _, name = node_id.partition(":")
    if kind == "var":
        return status_cells(db, [name])
    found = pipeline_graph(db).steps.get(node_id) if kind == "fn" else None
    if found is None:
        return None
    step, outputs, shared = found
    return step_grid(db, step, outputs) if shared else status_cells(db, list(outputs))


def _own_counts(db: Database, steps: dict[tuple[str, frozenset[str]], tuple[str, ...]],
                counts: dict[str, dict[str, int]]) -> dict[tuple[str, frozenset[str]], dict[str, int]]:
    """Each step's counts, an address once: its output's counts where it alone makes one
    variable; the worst of its outputs per grid row where it alone makes several (a failure
    at one combination is one failed, not one per output); where another step makes one of
    its outputs too, its own values and failures only (`status.step_counts`). Adding up its
    outputs' counts had lent a step every other step's failures in a variable they share."""
    shared = {step: steps[step] for step in _shared(steps)}
    own = step_counts(db, shared) if shared else {}
    for step, outputs in steps.items():
        if step in own:
            continue
        if len(outputs) == 1:
            own[step] = {**dict.fromkeys(STATUSES, 0), **(counts.get(outputs[0]) or {})}
            continue
        own[step] = dict.fromkeys(STATUSES, 0)
        present = [v for v in outputs if any((counts.get(v) or {}).values())]
        if present:
            grid = status_cells(db, present)
            for row in grid.grid:
                cells = [c.status for c in row if c is not None]
                if cells:
                    own[step][max(cells, key=STATUSES.index)] += 1
    return own


def _shared(steps: dict[Step, tuple[str, ...]]) -> set[Step]:
    """The steps another step shares an output variable with."""
    makers: dict[str, int] = {}
    for outputs in steps.values():
        for var in outputs:
            makers[var] = makers.get(var, 0) + 1
    return {step for step, outs in steps.items() if any(makers[v] > 1 for v in outs)}


def _made_any(run: Any) -> bool:
    """Whether a run computed, failed or served from the cache at one combination or more (a
    run whose counts are not known is taken to have)."""
    counts = run.counts or {}
    told = [counts.get(s) for s in ("ran", "failed", "cached")]
    return not all(type(n) is int for n in told) or any(told)


def _variable_node(var: str, counts: dict[str, int] | None, note: str) -> GraphNode:
    counts = counts or dict.fromkeys(STATUSES, 0)
    return GraphNode(f"var:{var}", "variable", var, state_of(counts), counts, note=note)


def _sample_calls(db: Database, reader: CallReader, var: str) -> list[tuple[CallInfo, dict[str, Any]]]:
    """The call records of up to 3 of the variable's 20 newest records (one indexed query),
    each with the address of the record it made."""
    picked: dict[str, dict[str, Any]] = {}
    for record in db.index.newest(var, 20):
        if record.call and record.call not in picked:
            picked[record.call] = record.addr
    found = [(reader.get(oid), addr) for oid, addr in list(picked.items())[:3]]
    return [(call, addr) for call, addr in found if call is not None]


def raw_pattern(path: str, addr: dict[str, Any], schema_keys: list[str]) -> str:
    """The path a `PathInput` read with the address's values written back as their keys:
    "raw/s3/pre.csv" at subject=3, session='pre' -> "raw/s{subject}/{session}.csv". A value
    counts where it is a whole run of letters and digits, or a number a whole run of digits
    (the 3 of "s3", not of "13"), the first key in schema order taking a value two keys
    share; a value not found stays as read."""
    values: dict[str, str] = {}
    for key in schema_keys:
        if key in addr:
            values.setdefault(str(addr[key]), key)

    def named(text: str) -> str | None:
        return "{" + values[text] + "}" if text in values else None

    def token(match: re.Match[str]) -> str:
        text = match.group()
        return named(text) or re.sub(r"\d+", lambda m: named(m.group()) or m.group(), text)
    return re.sub(r"[A-Za-z0-9]+", token, path)
