"""`for_each`: run a function over every combination of metadata, with caching and lineage.

```python
for_each(bandpass, inputs={"signal": RawEMG, "low_hz": 20}, outputs=[FilteredEMG],
         subject=[1, 2, 3], session=["pre", "post"])
```
For each combination the engine resolves inputs to oids (no values read), computes the call
key, and skips the combination when the cache holds the call and its outputs are saved there
(a few dict lookups). Only the remaining combinations load inputs and run, serially, in a
process pool (`workers=`) or on any `concurrent.futures.Executor` (a Dask client's). Refs,
calls and the run report are journalled in batches by this process alone; a killed run
leaves objects without refs at worst, and re-running completes only what is missing.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import inspect
import logging
import multiprocessing
import os
import re
import signal
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scistack._atomic import write_atomic
from scistack.address import shown_address
from scistack.lineage.filecheck import FILES_MARK, SPLIT_MARK, cache_fn, files_here, hit_changed, settled_files
from scistack.database import Database, current_database
from scistack.errors import (
    AmbiguousVersionError,
    ForEachError,
    InputFileError,
    InvalidMetadataError,
    ReadOnlyProjectError,
    ScistackError,
)
from scistack.foreach.execute import (
    Outcome,
    Task,
    chunk_outcomes,
    default_chunk_size,
    WorkerWatch,
    executor_size,
    run_chunk,
    run_task,
    worker_death,
)
from scistack.foreach.filestats import file_stats
from scistack.foreach.paths import PathInput, PathOutput
from scistack.foreach.inputs import EachOf, Fixed, Merge, Resolved, constant, is_loaded_input, is_variable, resolve
from scistack.foreach.plan import (
    check_arguments,
    check_counts,
    check_parameters,
    bind_functions,
    check_workers_can_receive,
    combinations,
    defaults,
)
from scistack.foreach.report import ComboResult, RunReport
from scistack.foreach.scifor import run_table_mode
from scistack.foreach.split import Split, check_splits, fitting_layout, fitting_layouts, places, split_record, unsplit
from scistack.gc import freshen_lineage
from scistack.index import RefRecord, key_of, keys_of, utc_now
from scistack.lineage.calls import (flatten_params, key_maker, own_record, raw_places, record_call_key, same_origins,
                                    same_place, same_raw_names)
from scistack.lineage.function import LineageFunction, lineage_context, pickled_for_workers
from scistack.lineage.running import refuse_run_inside
from scistack.codeid._data import EnvironmentVariable
from scistack.codeid._options import Snapshot, snapshot
from scistack.codeid.files import changed_files
from scistack.codeid.identity import FunctionIdentity
from scistack.records import CallRecord, read_call
from scistack.selection import near_values, unsaved_message
from scistack.summary import summarize

log = logging.getLogger("scistack.foreach")
_FLUSH_EVERY_S = 1.0
_PLAN_CHUNK = 5000  # combinations planned per round of bulk index reads
_NO_WORKERS_S = 60.0  # a Dask cluster that had workers and has had none this long is given up on
_WAIT_S = 2.0  # how often a wait for workers' results asks whether a Dask cluster has workers
_INTERRUPT_WAIT_S = 3.0  # after Ctrl-C, the longest wait for chunks the workers were running to come back
_INTERRUPT_QUIET_S = 1.0  # ... which ends once none has come back for this long
_REFUSED_MOST = 3  # rounds in which a Dask worker's note was refused before what it did not run is given up


def for_each(fn: Any, inputs: dict[str, Any], outputs: Iterable[Any] = (), *, dry_run: bool = False,
             on_error: str = "continue", workers: int | None = None, executor: cf.Executor | None = None,
             progress: bool | None = None, as_table: bool = False, chunk_size: int | None = None,
             verbose: bool | None = None, lazy: bool = False, **iterables: Any) -> Any:
    """Call `fn` for every combination of `iterables`, loading `inputs` and saving `outputs`.

    Parameters
    ----------
    inputs
        Parameter name -> a variable class (loaded at each combination), `Fixed(...)`,
        `Merge(...)`, `PathInput(...)` (a raw file: the function gets its path),
        `PathOutput(...)` (a file the function writes, saved to an output), `EachOf(A, B)`
        (run once per alternative, results tagged by a version key named after the
        parameter), or a constant (recorded in lineage, queryable with `load(name=value)`).
    outputs
        Variable classes receiving the returned value(s) (a tuple maps to several outputs).
    iterables
        Schema key -> values (any iterable; `[]` means every value stored for that key).
        Iterating fewer keys than the schema hands the function every lower-level record of
        the address: a list, or a DataFrame with `as_table=True`.
    dry_run
        Report what would run, be skipped as cached or be skipped as missing; write nothing.
    on_error
        "continue" records a failure with its traceback and goes on; "raise" stops at the
        first failure (after journalling the run) with a `ForEachError`.
    workers, executor
        Run combinations in a local (spawn) process pool, or on any Executor, e.g. a Dask
        client's `client.get_executor()`. The function must then be importable by the workers.
    progress
        A progress bar: None (default) shows one on a terminal or in a notebook only.
    verbose
        Print a one-line summary to stderr when the run ends (counts and time;
        `print(report)` says more). On by default; off with `verbose=False`, or with `progress=False` unless
        `verbose=True`.
    chunk_size
        Combinations per task sent to a worker (default: about four tasks per worker).
    lazy
        Chunked inputs (values above 256 MiB, and dicts or lists holding them) reach the
        function unread, as `Var.load(lazy=True)` gives them: a `LazyArray` or `LazyTable` that
        reads only the chunks it is sliced to (a recording larger than memory, a channel at a
        time). Other inputs load as usual.

    Returns
    -------
    RunReport
        (or, with no database and plain DataFrame inputs, a DataFrame of results).

    Raises
    ------
    InvalidMetadataError
        Arguments that cannot work (unknown keys or parameters, outputs that are not variables).
    ForEachError
        With `on_error="raise"`, when a combination fails (`.failures` lists it).
    """
    db = current_database()
    if not isinstance(inputs, dict):
        raise InvalidMetadataError(
            f"inputs= takes a dict from each parameter of the function to what fills it (a variable, "
            f"Fixed(...), a constant), e.g. inputs={{\"signal\": RawEMG, \"low_hz\": 20}}; got {inputs!r}")
    outputs = _output_list(outputs)
    if on_error not in ("continue", "raise"):
        raise InvalidMetadataError(f"on_error={on_error!r}: use \"continue\" (record and go on) or \"raise\"")
    speak = verbose if verbose is not None else progress is not False
    needs_db = [n for n, s in inputs.items() if isinstance(s, (EachOf, PathInput, PathOutput))]
    if db is None and needs_db:
        raise InvalidMetadataError(
            f"inputs {needs_db} (PathInput, PathOutput, EachOf) need a database to record what ran; "
            "call configure_database(...) first")
    if db is None or (not outputs and not any(is_loaded_input(s) for s in inputs.values())):
        return run_table_mode(fn, inputs, outputs, iterables, as_table=as_table, on_error=on_error,
                              dry_run=dry_run, verbose=speak)
    refuse_run_inside(f"for_each({getattr(fn, '__name__', 'fn')})")
    check_splits(outputs, db.schema_keys, iterables, inputs)
    outputs, splits = unsplit(outputs)
    check_arguments(db, fn, inputs, outputs, on_error, iterables)
    check_counts(workers, chunk_size)
    if db.read_only and not dry_run:  # before anything runs: no result could be kept
        raise ReadOnlyProjectError(db.read_only)
    lf = fn if isinstance(fn, LineageFunction) else LineageFunction(fn)
    check_parameters(lf, inputs)
    lf, inputs = bind_functions(lf, inputs)
    check_workers_can_receive(lf, None if executor is not None else workers)
    combos = combinations(db, inputs, iterables)
    reports, tagged = [], []
    for chosen, vkeys in _alternatives(db, inputs):
        run = _Run(db, lf, chosen, outputs, as_table=as_table, dry_run=dry_run, on_error=on_error, vkeys=vkeys,
                   lazy=lazy, splits=splits)
        reports.append(run.execute(combos, workers, executor, progress, chunk_size, speak and not vkeys))
        if vkeys:  # each item also names its alternative (after the run: a run saves at item.combo)
            tagged += [dataclasses.replace(i, combo={**i.combo, **vkeys}) for i in reports[-1].items]
    if len(reports) == 1:
        return reports[0]
    merged = RunReport(lf.name, tagged, sum(r.duration for r in reports), reports[-1].run_id, dry_run)
    if speak:
        print(merged.headline() + f" ({len(reports)} alternatives of EachOf)", file=sys.stderr, flush=True)
    return merged


def _alternatives(db: Database, inputs: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """The inputs once per combination of `EachOf` alternatives, with the version keys that tag
    each one's results (one run with no tags when there is no EachOf)."""
    each = {n: s for n, s in inputs.items() if isinstance(s, EachOf)}
    clash = [n for n in each if n in db.schema_keys]
    if clash:
        raise InvalidMetadataError(
            f"EachOf input {clash[0]!r} is a schema key: its results are tagged by a version key named "
            "after the parameter, which cannot be a schema key; rename the parameter")
    runs: list[tuple[dict[str, Any], dict[str, str]]] = [(dict(inputs), {})]
    for name, spec in each.items():
        runs = [({**chosen, name: alt}, {**tags, name: label}) for chosen, tags in runs
                for alt, label in zip(spec.alternatives, spec.labels)]
    # a file written per alternative goes where its template names the alternative
    return [({n: s.with_labels(tags) if isinstance(s, PathOutput) else s for n, s in chosen.items()}, tags)
            for chosen, tags in runs]


def _output_list(outputs: Any) -> list[Any]:
    """`outputs=[A, B]`; one variable class alone (`outputs=A`) is accepted as `[A]`."""
    if is_variable(outputs) or isinstance(outputs, Split):
        return [outputs]
    if isinstance(outputs, (str, bytes)) or not isinstance(outputs, Iterable):
        raise InvalidMetadataError(
            f"outputs= takes a list of variable classes, e.g. outputs=[Result], got {outputs!r}")
    return list(outputs)


def _warn_of_names_in_quotes(db: Database, step: str, constants: dict[str, Any]) -> None:
    """`inputs={"x": "Raw"}` (a config file's habit, or MATLAB's) passes the text "Raw" to
    every call, not the variable Raw: a text constant that is a saved variable's name is
    said once a run, with the fix; the run goes on (the text may be meant)."""
    texts = {n: s for n, s in constants.items() if isinstance(s, str) and s.isidentifier()}
    if not texts:
        return
    named = set(db.index.variables())
    for name, text in texts.items():
        if text in named:
            log.warning("for_each(%s): input %s is the text %r, passed as it is to every call; to load the "
                        "variable %s, pass its class: inputs={%r: %s}", step, name, text, text, name, text)


@dataclass(slots=True)
class _Pending:
    """A combination to run: its report item, resolved inputs, call key and address key."""

    item: ComboResult
    resolved: dict[str, Resolved]
    key: str
    addr_key: str
    # (variable, address key) of outputs whose current ref is kept as it is when the call is
    # recorded: a cached call recorded again only to name where its raw files are now
    kept: frozenset[tuple[str, str]] = frozenset()
    # whether its record becomes the cache entry of its key: not when a cached call is recorded
    # again for another address's raw files with the same bytes, the entry's still there
    # (`_Run._takes_entry`)
    entry: bool = True


class _Run:
    def __init__(self, db: Database, lf: LineageFunction, inputs: dict[str, Any], outputs: list[Any], *,
                 as_table: bool, dry_run: bool, on_error: str, vkeys: dict[str, str] | None = None,
                 lazy: bool = False, splits: tuple[str | None, ...] | None = None) -> None:
        self.db, self.lf, self.inputs, self.outputs = db, lf, inputs, outputs
        # per output: None, or the schema key its `Split` fills from the returned dict's keys
        self.splits = splits or (None,) * len(outputs)
        self.split = any(by is not None for by in self.splits)
        # (variable, key) -> combination's address key -> the labels its call gave this run
        self._parts: dict[tuple[str, str], dict[str, set]] = {}
        self.lazy = lazy
        self._files_in_place = False  # a cached call's raw files were found where it read them
        self._plain_agree: bool | None = None  # (`_plain_origins_agree`, once a run)
        self.vkeys = vkeys or {}  # EachOf: which alternative made this run's results
        self.vkeys_key = key_of(self.vkeys)
        self.as_table, self.dry_run, self.on_error = as_table, dry_run, on_error
        self.identity: FunctionIdentity = lf.identity()  # once per run: code does not change mid-run
        self.options: Snapshot | None = None  # (workers: the numeric options the keys were computed under)
        self.environment: dict[str, str | None] = {}  # (workers: the variables the key holds, their values)
        self.cwd: str | None = None  # (workers: the working directory the run's calls mean)
        self.name = lf.name
        self.ctx = lineage_context()
        self.loaded = {n: s for n, s in inputs.items() if n not in lf.ignore and is_loaded_input(s)}
        # constants and defaults are the same at every combination: described (hashed) once
        self.fixed = {n: constant(n, s) for n, s in inputs.items() if n not in lf.ignore and n not in self.loaded}
        self.fixed.update(defaults(lf, inputs))
        _warn_of_names_in_quotes(db, lf.name, {n: s for n, s in inputs.items() if n not in self.loaded})
        self.writes = [n for n, s in self.loaded.items() if isinstance(s, PathOutput)]
        # inputs all plain variable classes and outputs saved without version keys: a
        # combination whose call is cached and whose outputs are already the newest values is
        # recognised from a few bulk queries of plain oids (see `_cached_at_once`)
        self.plain_inputs = ({n: s.__name__ for n, s in self.loaded.items()}
                             if all(isinstance(s, type) and is_variable(s) for s in self.loaded.values())
                             and not self.vkeys and not self.split else None)
        self.items: list[ComboResult] = []
        self.pending: list[_Pending] = []
        self._planned: set[str] = set()  # call keys a dry run plans to run
        self._last_flush = time.monotonic()
        self._fresh: set[str] = set()  # objects made young for gc in this run (a dry run's: found)
        # paths this run's calls wrote, their folders, and the calls recorded once the run
        # ends: each listed a folder the run writes into (`_settle_held`)
        self._written: set[str] = set()
        self._written_in: set[str] = set()
        self._held: list[tuple[_Pending, Outcome]] = []
        # call key -> the saves a recorded-again call left out (`_Pending.kept`): made once
        # another combination's record of that key (same bytes elsewhere) becomes its cache
        # entry (`_takes_entry`: the kept one's files were gone when that combination's
        # hit was read), whose record status and why would otherwise judge those refs by
        self._kept_saves: dict[str, list[tuple]] = {}
        self._kept_files: list[tuple[str, str]] = []  # PathOutput files of cached calls with other bytes (edited)

    def input_variables(self) -> list[str]:
        """The variables this run reads (a `Fixed` one's, each `Merge` member's; a
        `PathInput` reads files): what its call records name as their inputs."""
        names: set[str] = set()
        for spec in self.loaded.values():
            for part in spec.variables if isinstance(spec, Merge) else (spec,):
                part = part.variable if isinstance(part, Fixed) else part
                if is_variable(part):
                    names.add(part.__name__)
        return sorted(names)

    def execute(self, combos: list[dict[str, Any]], workers: int | None, executor: cf.Executor | None,
                progress: bool | None, chunk_size: int | None, verbose: bool = False) -> RunReport:
        t0 = time.perf_counter()
        file_stats(self.db).trust_inputs()  # (file inputs an earlier run verified: no hash again)
        if not combos:
            log.warning("for_each(%s): no combinations to run (an iterable is empty, or [] found no "
                        "stored values)", self.name)
        bar = _progress_bar(len(combos), self.name, progress)
        interrupted: KeyboardInterrupt | None = None
        try:  # an interrupted run still journals (on leaving the batch) what it completed
            with self.db.batch():
                for start in range(0, len(combos), _PLAN_CHUNK):
                    self._plan_chunk(combos[start:start + _PLAN_CHUNK], bar)
                if self.pending and not self.dry_run:
                    try:
                        try:
                            if workers or executor:
                                self._run_parallel(workers, executor, chunk_size, bar)
                            else:
                                self._run_serial(bar)
                        finally:
                            self._settle_held()
                    except KeyboardInterrupt as exc:  # Ctrl-C: the run is recorded as far as it got
                        interrupted = exc
                        for pending in self.pending:
                            if pending.item.status == "pending":
                                pending.item.status = "skipped"
                                pending.item.error = "not run: the run was interrupted (Ctrl-C)"
                report = RunReport(self.name, self.items, time.perf_counter() - t0, uuid.uuid4().hex,
                                   self.dry_run)
                if self._parts:
                    self._warn_leftover_parts()
                if self._kept_files:
                    self._warn_kept_files()
                file_stats(self.db).save()  # (what PathInputs and PathOutputs hashed: nothing, no write)
                if self.items and all(item.status == "missing" for item in self.items):
                    self._warn_mistyped_values()
                if not self.dry_run and (any(item.status != "cached" for item in self.items)
                                         or self._failed_last_time()):
                    # a fully cached re-run changes nothing, so it writes nothing (unless the
                    # last one failed somewhere: `status` and `why` go by the newest run there)
                    items_oid = report.store_items(self.db.store, self.vkeys)
                    self.db.index.put_run(report.to_record(items_oid, utc_now(),
                                                           [v.__name__ for v in self.outputs],
                                                           self.input_variables()))
        finally:
            if bar is not None:
                bar.close()
        log.info("%s", report.summary())
        if verbose:  # scripts and notebooks see the outcome without configuring logging; on
            # stderr (as the progress bar), so a script's own stdout stays its own
            quiet = not (report.failures or report.missing or report.skipped)
            more = "" if quiet else " (print(report) for details)"
            print(report.headline() + more, file=sys.stderr, flush=True)
        if interrupted is not None:  # what ran is saved and in `scistack runs`; a rerun does the rest
            raise interrupted
        if self.on_error == "raise" and report.failures:
            first = report.failures[0]
            raise ForEachError(f"for_each({self.name}) stopped at {first.where}: {first.error}\n{first.traceback}",
                               report.failures)
        return report

    # -- planning --------------------------------------------------------------------------
    def _plan_chunk(self, combos: list[dict[str, Any]], bar: Any) -> None:
        """Plan combinations with a few bulk index reads (inputs, outputs, then call keys)
        instead of several point reads each."""
        index = self.db.index
        with index.reading_ahead():
            addr_keys = keys_of(combos)
            cached = self._cached_at_once(addr_keys)
            first = cached.index(True) if any(cached) else -1
            if first >= 0 and not self._plain_origins_agree(combos[first], addr_keys[first]):
                cached = [False] * len(cached)  # (what differs there differs everywhere)
            rest = [k for k, done in zip(addr_keys, cached) if not done] if any(cached) else addr_keys
            for var in {s.__name__ for s in self.loaded.values() if is_variable(s)}:
                index.read_ahead(var, rest)
            for var in {v.__name__ for v in self.outputs}:
                index.read_ahead(var, rest, call_keys=True)
            planned, debug = [], log.isEnabledFor(logging.DEBUG)
            for combo, addr_key, done in zip(combos, addr_keys, cached):
                if done:
                    self.items.append(ComboResult(combo, "cached"))
                    if debug:
                        log.debug("cached %s at %s", self.name, shown_address(combo))
                    _tick(bar)
                else:
                    planned.append(self._resolve(combo, addr_key, bar))
            planned = [p for p in planned if p is not None]
            index.read_ahead_calls([p[3] for p in planned])
            layouts = self._layouts_ahead(planned) if self.split else {}
            for p in planned:
                self._check_cache(*p, bar, layouts)

    def _plain_origins_agree(self, combo: dict[str, Any], addr_key: str) -> bool:
        """Whether the cached record of a plainly cached combination names its inputs as this
        run reads them (`_cached_at_once` compares oids only). Asked once a run, of its first
        such combination: what differs there differs everywhere (a run given another variable
        holding the same values, `inputs={"x": C}` where it was B). Then the run plans every
        combination the general way, which records each one's own lineage."""
        if self._plain_agree is None:
            resolved: dict[str, Resolved] = dict(self.fixed)
            for name, spec in self.loaded.items():
                found = resolve(self.db, name, spec, combo, as_table=self.as_table, addr_key=addr_key)
                if found is None:
                    return True  # (not plainly cached after all: planned the general way)
                resolved[name] = found
            hit = self.db.index.cached_call(self.lf.key_for({n: r.bound for n, r in resolved.items()}, self.identity))
            self._plain_agree = hit is None or self._origins_differ(
                combo, addr_key, resolved, hit, (None,) * len(self.outputs)) is None
        return self._plain_agree

    def _cached_at_once(self, addr_keys: list[str]) -> list[bool]:
        """Which combinations are plainly cached: every input is the newest value saved at the
        combination's own address, the call under their oids is cached (and read no file),
        and each output's newest value there is that call's. Decided from plain oids in two
        queries per few thousand combinations (`Index.newest_rows`, `Index.call_outputs`)
        and one key hash each; every other combination (missing, coarser or aggregated
        inputs, anything to restore) is planned one by one, as before. A fully cached re-run
        of 100k combinations then costs under two seconds at a million refs."""
        outputs = [v.__name__ for v in self.outputs]
        if self.plain_inputs is None or not addr_keys or not outputs:
            return [False] * len(addr_keys)
        names = list(self.plain_inputs)
        index = self.db.index
        rows = index.newest_rows([self.plain_inputs[n] for n in names], outputs, addr_keys)
        if rows is None:
            return [False] * len(addr_keys)
        template = self.lf._with_defaults({**{n: r.bound for n, r in self.fixed.items()},
                                           **{n: None for n in names}})  # type: ignore[dict-item]
        make_key = key_maker(self.identity.digest, {n: b.oid for n, b in template.items() if n not in names},
                             names)
        n_in = len(names)
        # (address, key, the outputs' oids and calls) where every input and output is there
        keyed = [(row[0], make_key(row[1:1 + n_in]), row[1 + n_in:]) for row in rows
                 if None not in row[1:1 + n_in] and row[1 + n_in] is not None]
        entries = index.call_outputs([k for _, k, _ in keyed])
        if entries is None:
            return [False] * len(addr_keys)
        cached = set()
        for addr_key, key, made in keyed:
            entry = entries.get(key)
            if entry is None or (entry[1] or "").endswith(FILES_MARK) or SPLIT_MARK in (entry[1] or ""):
                continue
            call, outs = entry[0], entry[2]
            if len(made) == 2:
                if made[1] == call and outs == f'["{made[0]}"]':
                    cached.add(addr_key)
            elif all(made[j + 1] == call for j in range(0, len(made), 2)) and \
                    outs == "[" + ", ".join(f'"{made[j]}"' for j in range(0, len(made), 2)) + "]":
                cached.add(addr_key)  # (outs is json.dumps of the cached call's output oids)
        return [k in cached for k in addr_keys]

    def _resolve(self, combo: dict[str, Any], addr_key: str, bar: Any
                 ) -> tuple[dict[str, Any], str, dict[str, Resolved], str, ComboResult] | None:
        resolved: dict[str, Resolved] = dict(self.fixed)
        missing = []
        item = ComboResult(combo, "missing", missing=missing)
        self.items.append(item)
        for name, spec in self.loaded.items():
            try:
                found = resolve(self.db, name, spec, combo, as_table=self.as_table, addr_key=addr_key)
            except (AmbiguousVersionError, InputFileError) as exc:  # the rule load follows: never
                # "the newest wins"; an unreadable raw file fails its combination alone
                item.status, item.error = "failed", f"input {name}: {exc}"
                _tick(bar)
                return None
            if found is None:
                missing.append(name)
            else:
                if "writes" in found.bound.record:  # which output receives the written file
                    found.bound.record["output"] = self.writes.index(name)
                resolved[name] = found
        if missing:
            if log.isEnabledFor(logging.DEBUG):  # (formatted only when shown: a hot path)
                log.debug("missing %s at %s", missing, shown_address(combo))
            _tick(bar)
            return None
        key = self.lf.key_for({n: r.bound for n, r in resolved.items()}, self.identity)
        return combo, addr_key, resolved, key, item

    def _layouts_ahead(self, planned: list[tuple[dict[str, Any], str, dict[str, Resolved], str, ComboResult]]
                       ) -> dict[str, tuple[tuple | None, ...] | None]:
        """Call key -> layout of the cached calls of these combinations (a `Split` run's), from
        one bulk read of their records' labels; and the refs where their parts go, read ahead
        (a fully cached split run read a record and four addresses per combination, one by one)."""
        index = self.db.index
        hits = {p[3]: hit for p in planned if (hit := index.cached_call(p[3])) is not None}
        layouts = dict(zip(hits, fitting_layouts(self.db.store, list(hits.values()), self.splits)))
        wanted: dict[str, list[str]] = {}
        for combo, addr_key, _, key, _ in planned:
            layout = layouts.get(key)
            if layout is not None:
                for var, _, place_key, _ in self._places(combo, addr_key, list(hits[key]["outs"]), layout):
                    wanted.setdefault(var, []).append(place_key)
        for var, keys in wanted.items():  # (their records' call keys are asked only where a ref
            index.read_ahead(var, keys)      # names another record than the cache: rarely)
        return layouts

    def _check_cache(self, combo: dict[str, Any], addr_key: str, resolved: dict[str, Resolved], key: str,
                     item: ComboResult, bar: Any, layouts: dict[str, tuple[tuple | None, ...] | None]) -> None:
        hit = self.db.index.cached_call(key)
        layout = None if hit is None else layouts[key] if key in layouts else self._layout(hit)
        if layout is None:  # (a cached call whose outputs do not fit this run's: run again)
            hit = None
        fresh = hit is not None and not hit_changed(self.db.store, hit, self.db)
        stale = self._stale_places(combo, addr_key, key, resolved, hit, layout) if fresh else []
        # the cached result recorded again (a call record and its cache entry), not computed
        # again, where the cached record names other inputs than this combination's: the same
        # raw files in another place (a moved folder, a colleague's copy), or the same values
        # at another address (or made by another call); `status`, `why` and the lineage
        # parameters then name this combination's own. A dry run takes every one of these
        # decisions as the run does, asking the store what the run asks (`_gone`), and writes
        # nothing: its plan is what the run then does (it had said cached for a moved raw
        # file's call whose output was lost, which the run computed again)
        again = fresh and (
            self._moved_files(combo, addr_key, resolved, hit, layout)
            or (stale and self._lineage_elsewhere(resolved, hit))
            or (not stale and self._origins_differ(combo, addr_key, resolved, hit, layout)))
        if again and self._gone(list(hit["outs"])):
            again = fresh = None  # an output gone (a lab's: from the bucket, and not cached here): run
            # again (not `_restore`d: with no stale place it says cached, naming the lost output)
        if fresh and not self.dry_run and not self._files_put_back(resolved, hit):
            again = fresh = None  # a written file to put back whose stored bytes are gone: run again
        if again:
            if not self.dry_run:
                entry = self._takes_entry(resolved, hit)
                kept = self._kept(combo, addr_key, key, resolved, hit, layout) if entry else frozenset()
                self._finish(_Pending(item, resolved, key, addr_key, kept, entry), Outcome(
                    -1, [(oid, "", "") for oid in hit["outs"]], again.started or utc_now(),
                    again.duration or 0.0, multi=bool(hit.get("multi")), files=files_here(again, self.db),
                    labels=layout if self.split else ()))
            item.status = "cached"
            _tick(bar)
            return
        if fresh and self._restore(addr_key, hit, layout, stale):
            item.status = "cached"
            if log.isEnabledFor(logging.DEBUG):
                log.debug("cached %s at %s", self.name, shown_address(combo))
            _tick(bar)
            return
        item.status = "would_run" if self.dry_run else "pending"
        if self.dry_run:
            if key in self._planned:  # the same call as one planned above: the run serves it
                item.status = "cached"  # what that one makes (it had been counted as run twice)
            self._planned.add(key)
            _tick(bar)
        self.pending.append(_Pending(item, resolved, key, addr_key))

    def _origins_differ(self, combo: dict[str, Any], addr_key: str, resolved: dict[str, Resolved],
                        hit: dict[str, Any], layout: tuple[tuple | None, ...]) -> CallRecord | None:
        """The cached call's record when the outputs already here name inputs from elsewhere
        (a `Fixed` input now read at another address holding the same value, another variable
        of the same values); None otherwise. Known from the entry's digest of its record's
        inputs, unless the outputs here name another record of the same call (the same values
        at two addresses, each recorded with its own inputs): that one is read. An entry with
        no digest counts as the same (its record would be read at every rerun)."""
        bound = {n: r.bound for n, r in resolved.items()}
        if hit.get("origins") is None or hit["origins"] == self.lf.origins(bound):
            return None
        records = {n: b.record for n, b in bound.items()}
        for var, _, place_key, _ in self._places(combo, addr_key, list(hit["outs"]), layout):
            current = self.db.index.current_at(var, place_key, self.vkeys_key)
            if current is None or current.call is None:
                continue
            if current.call == hit["call"]:
                return self._lineage_elsewhere(resolved, hit)  # (None: a digest written otherwise)
            try:
                record = read_call(self.db.store, current.call)
            except ScistackError:
                continue  # (unreadable: fsck's to find)
            if not same_origins(records, record, projects=self.db.project_ids):
                return record
        return None

    def _lineage_elsewhere(self, resolved: dict[str, Resolved], hit: dict[str, Any]) -> CallRecord | None:
        """The cached call's record when it names other saved inputs than this combination's
        (the same values at another address, or made by another call); None otherwise. Asked
        only where its outputs are to be named here: a rerun whose results are current reads
        no record. (`contains` is a cheap first look, which a lab's cache answers: the outputs
        are freshened before they are named, `_check_cache`.)"""
        if not all(self.db.store.contains(o) for o in hit["outs"]):
            return None  # a gc'd output: `_restore` says compute again
        try:
            record = read_call(self.db.store, hit["call"])
        except ScistackError:
            return None  # a gc'd record: likewise
        return None if same_origins({n: r.bound.record for n, r in resolved.items()}, record,
                                    projects=self.db.project_ids) else record

    def _kept(self, combo: dict[str, Any], addr_key: str, key: str, resolved: dict[str, Resolved],
              hit: dict[str, Any], layout: tuple[tuple | None, ...]) -> frozenset[tuple[str, str]]:
        """The outputs of a cached call recorded again (`_check_cache`) whose current ref stays:
        it holds the cached value, made by a record of this call that names the same inputs
        but for where a `PathInput` file is, under the same shown paths (a moved project, the
        raw files of an imported bundle put back in this project). The new record and its cache entry name the files
        where they are now (`status` and `why` judge a ref by it: `report.why.newer_record`);
        a ref saved again had made a new version of every unchanged value (3 values, 6
        versions), noise for `log`, `load(version=)` and views."""
        kept = set()
        records = {n: r.bound.record for n, r in resolved.items()}
        for var, _, place_key, oid in self._places(combo, addr_key, list(hit["outs"]), layout):
            current = self.db.index.current_at(var, place_key, self.vkeys_key)
            if current is None or current.oid != oid or current.call is None or not (
                    current.call == hit["call"] or self._has_key(current.call, key)):
                continue
            try:
                record = read_call(self.db.store, current.call)
            except ScistackError:
                continue  # (unreadable: named again with the new record)
            if same_origins(records, record, files=False) and self._judged_by_new_record(record, resolved):
                kept.add((var, place_key))
        return frozenset(kept)

    @staticmethod
    def _judged_by_new_record(record: CallRecord, resolved: dict[str, Resolved]) -> bool:
        """Whether `status` and `why` will judge a ref naming `record` by the record made now
        of its call (`lineage.calls.relocated`): it names the raw files under the same shown
        paths (a moved project, an imported bundle's files put back with `raw_to`). Else
        (a renamed raw folder, a copy beside the old one) the ref is named again, a new
        version: files with the same bytes at another address share the call key, and a later
        run of that address may make its own record the cache entry (`_takes_entry`: once
        these files are gone), so the ref's record is the only one that surely names its
        files (its files gone: "stale", never another address's "current")."""
        return same_raw_names(raw_places(record), sorted((str(r.bound.record["path"]), str(r.bound.record["file"]))
                                          for r in resolved.values()
                                          if "path" in r.bound.record and "file" in r.bound.record))

    def _takes_entry(self, resolved: dict[str, Resolved], hit: dict[str, Any]) -> bool:
        """Whether a cached call recorded again here (`_check_cache`) makes its record the
        cache entry of its key. Not when the entry's record read raw files under other shown
        paths (another address's files with the same bytes: one call key) that are still
        there: a ref whose record names this combination's files where they were is judged by
        the entry's record when it reads them under the same shown paths elsewhere
        (`report.why.newer_record`: a moved project, an imported bundle's files), and a twin
        run apart that took the entry over left it judged by its first record (its files gone:
        "stale"; the exporter's folder still there: an edit of the copy here "current"). The
        ref here is then named with its own record (`_kept` keeps none), which status and
        `why` judge. A renamed folder's old files are gone: its entry moves with it."""
        try:
            record = read_call(self.db.store, hit["call"])
        except ScistackError:
            return True  # (unreadable: nothing is judged by it)
        theirs = raw_places(record)
        ours = sorted(str(r.bound.record["path"]) for r in resolved.values()
                      if "path" in r.bound.record and "file" in r.bound.record)
        if not theirs or [shown for shown, _ in theirs] == ours:
            return True
        return not any(os.path.exists(file) for _, file in theirs)

    def _own_record_here(self, combo: dict[str, Any], addr_key: str, resolved: dict[str, Resolved],
                         hit: dict[str, Any], layout: tuple[tuple | None, ...] | None) -> bool:
        """Whether every output of a cached call is already the current ref here, named with a
        record of this combination's inputs as they are now, its raw files where they are (a
        twin's: the cache entry names another address's record of the same bytes,
        `_takes_entry`): nothing is recorded again."""
        if layout is None:
            return False
        records = {n: r.bound.record for n, r in resolved.items()}
        for var, _, place_key, oid in self._places(combo, addr_key, list(hit["outs"]), layout):
            current = self.db.index.current_at(var, place_key, self.vkeys_key)
            if current is None or current.oid != oid or current.call is None:
                return False
            try:
                if not same_origins(records, read_call(self.db.store, current.call), projects=self.db.project_ids):
                    return False
            except ScistackError:
                return False
        return True

    def _moved_files(self, combo: dict[str, Any], addr_key: str, resolved: dict[str, Resolved],
                     hit: dict[str, Any], layout: tuple[tuple | None, ...] | None) -> CallRecord | None:
        """The cached call's record when a `PathInput` file it read is now elsewhere, with the
        same content (None otherwise, and at once for calls with no `PathInput`). A folder moves
        whole: when the run's first such hit finds its files in place, the others are not read
        (a record read per hit had doubled a cached rerun's time). A record of another
        address's files with the same bytes (other shown paths) counts as in place when the
        refs here already name this combination's own record (`_own_record_here`): the cache
        entry stays another address's (`_takes_entry`), and recording again at every run had
        named the value again."""
        files = {n: r.bound.record["file"] for n, r in resolved.items()
                 if "file" in r.bound.record and "writes" not in r.bound.record}
        if not files or self._files_in_place:
            return None
        try:
            record = read_call(self.db.store, hit["call"])
        except ScistackError:
            return None  # a gc'd record: `_restore` decides
        own = own_record(record, self.db.project_ids)  # (its files named where its project holds them)
        moved = any(n in record.arguments and record.arguments[n].extra.get("file") not in (None, f) and not same_place(
            (f, resolved[n].bound.record.get("project_path")),
            (record.arguments[n].extra.get("file"), record.arguments[n].extra.get("project_path")), own)
            for n, f in files.items())
        shown = sorted(str(resolved[n].bound.record["path"]) for n in files if "path" in resolved[n].bound.record)
        if moved and [s for s, _ in raw_places(record)] != shown and \
                self._own_record_here(combo, addr_key, resolved, hit, layout):
            return None  # (its own files are where its ref's record read them; says nothing of others')
        self._files_in_place = not moved
        return record if moved else None  # (outputs gone: `_check_cache` runs it again)

    def _layout(self, hit: dict[str, Any]) -> tuple[tuple | None, ...] | None:
        """Per output, None or the labels of its `Split` parts, as the cached call `hit` made
        them; None when they do not fit this run's outputs: it runs again."""
        return fitting_layout(self.db.store, hit, self.splits)

    def _places(self, combo: dict[str, Any], addr_key: str, values: list[Any], layout: tuple[tuple | None, ...]
                ) -> list[tuple[str, dict[str, Any], str, Any]]:
        return places([v.__name__ for v in self.outputs], self.splits, combo, addr_key, values, layout)

    def _files_put_back(self, resolved: dict[str, Resolved], hit: dict[str, Any]) -> bool:
        """A cached call's `PathOutput` files, where the run would have written them: one that is
        missing (deleted, or a new root) is written back from the stored bytes, as the call
        would write it; one that exists with other bytes is the user's now: left as it is and
        named in a warning at the end of the run (`_warn_kept_files`). False when a stored file
        is gone from the store (then the call runs again, writing the file)."""
        for r in resolved.values():
            record = r.bound.record
            if "writes" not in record:
                continue
            path, outs = r.bound.value, list(hit["outs"])
            position = record.get("output")
            if not isinstance(position, int) or position >= len(outs):
                continue
            if os.path.lexists(path):  # judged by its content's oid, by its stat where the
                # project's memo of files vouches for it (`FileStats`): a new process had
                # hashed every file whole; the stored bytes are not read
                try:
                    same = file_stats(self.db).holds(path, outs[position])
                except OSError:  # a link to nothing, unreadable
                    same = False
                if not same:
                    self._kept_files.append((path, self.outputs[position].__name__))
                continue
            try:
                stored = self.db.store.get_value(outs[position])
            except (OSError, ScistackError):  # gone from the store, or damaged
                return False
            if not isinstance(stored, bytes):
                continue
            try:  # (`write_atomic`: a fixed `<path>.scistack-tmp` had two workers putting back
                # one file at once rename each other's half-written bytes into place)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                write_atomic(path, stored, durable=False)  # (the bytes are safe in the store)
            except OSError:  # (a folder not writable, a full disk): the call runs again and its
                return False  # combination fails naming the problem (no temporary file is left)
            log.debug("for_each(%s): wrote %s back from the cached call's stored bytes", self.name, path)
        return True

    def _warn_kept_files(self) -> None:
        """Files of cached calls that differ from what the calls stored: said once per run."""
        shown = "; ".join(f"{path} ({var})" for path, var in self._kept_files[:3])
        log.warning("for_each(%s): %d file(s) a cached call wrote differ from the bytes it stored as its "
                    "output (edited since?): %s%s. Left as they are; delete them and run again to have them "
                    "written back from the store (or `scistack checkout` them to another folder)", self.name,
                    len(self._kept_files), shown, " ..." if len(self._kept_files) > 3 else "")

    def _restore(self, addr_key: str, hit: dict[str, Any], layout: tuple[tuple | None, ...],
                 stale: list[tuple[str, dict[str, Any], str, str]]) -> bool:
        """A cached call: make sure its outputs are the current refs at this combination (a
        `Split` output's parts at theirs): those in `stale` (`_stale_places`) are named again."""
        # (a value that is current is not asked of the store: a lab's costs a request each; a lost
        # object or record is fsck's to find, and `fsck --repair` drops its cache entry)
        # (a dry run asks the same, and stops short of naming: `_check_cache`)
        store = self.db.store
        for _, _, _, oid in stale:
            if not store.contains(oid):
                return False  # garbage-collected output: compute again
        if stale and not store.contains(hit["call"]):
            return False  # the call record was garbage-collected: compute (and record) again
        if stale:
            # naming old objects again: young first, so a gc judging them unreachable right now
            # (their cache entry dropped) keeps them for its grace period
            # (an output's children too: a dict whose array is gone would be named half)
            if self._gone([s[3] for s in stale]) or hit["call"] in self._gone([hit["call"]]):
                return False  # a gc freed them since they were looked for: compute again
            if self.dry_run:
                return True
            for var, address, place_key, oid in stale:
                self._save(var, address, place_key, (oid, "", ""), hit["call"], None)
            # (only where parts changed: a combination all cached leaves nothing new behind,
            # and the check reads every record of the variable)
            self._note_parts(addr_key, layout)
        return True

    def _gone(self, oids: list[str]) -> set[str]:
        """Of `oids` (with their children, a call record's lineage), those gone from the store:
        `freshen_lineage`, which makes the others young for gc before the run names them again;
        a dry run only looks (`contains`), writing nothing, and is told the same."""
        return freshen_lineage(self.db.store, list(oids), self._fresh, look_only=self.dry_run)

    def _stale_places(self, combo: dict[str, Any], addr_key: str, key: str, resolved: dict[str, Resolved],
                      hit: dict[str, Any], layout: tuple[tuple | None, ...]
                      ) -> list[tuple[str, dict[str, Any], str, str]]:
        """(variable, address, address key, oid) of the cached call's outputs that are not
        the current refs here (by this call: its record, or another record of its key that
        does not name other inputs than the record the cache names, `_names_others`)."""
        stale = []
        for var, address, place_key, oid in self._places(combo, addr_key, list(hit["outs"]), layout):
            current = self.db.index.current_at(var, place_key, self.vkeys_key)
            if current is not None and current.oid == oid and (current.call == hit["call"] or (
                    self._has_key(current.call, key) and self.db.store.contains(current.call)
                    and not self._names_others(current.call, resolved, hit))):
                continue
            stale.append((var, address, place_key, oid))
        return stale

    def _names_others(self, call_oid: str, resolved: dict[str, Resolved], hit: dict[str, Any]) -> bool:
        """Whether a ref's record `call_oid`, another record of the cached call's key, names
        other inputs than this combination's while the cache entry's record names them as they
        are (its origins digest: the same raw files at the same places): a twin's files read
        elsewhere (raw files with the same bytes at other addresses share the key, and a twin's
        record of a copy does not take the entry over while the entry's files are still there,
        `_takes_entry`). The ref had kept the copy's record when the run came back to the
        files the entry names, and status and why judged it by the copy: an edit of the file
        read "current", and the copy deleted, "stale" for ever. It is named with the entry's
        record then (`_restore`, a new version once). Not a ref kept with a record of these
        files read under the same shown paths elsewhere (`_kept`, a moved project): it is
        judged by the entry's record (`report.why.newer_record`). Asked only where a ref names
        another record than the cache's (rarely): its record is read then."""
        if hit.get("origins") is None or hit["origins"] != self.lf.origins({n: r.bound for n, r in resolved.items()}):
            return False  # (the entry names other inputs: `_origins_differ` judges the ref's record)
        try:
            record = read_call(self.db.store, call_oid)
        except ScistackError:
            return False  # (unreadable: fsck's to find)
        records = {n: r.bound.record for n, r in resolved.items()}
        if same_origins(records, record, projects=self.db.project_ids):
            return False
        return not (same_origins(records, record, files=False) and self._judged_by_new_record(record, resolved))

    def _note_parts(self, addr_key: str, layout: tuple[tuple | None, ...]) -> None:
        for var, by, labels in zip(self.outputs, self.splits, layout):
            if by is not None:
                self._parts.setdefault((var.__name__, by), {})[addr_key] = set(labels or ())

    def _warn_mistyped_values(self) -> None:
        """Every combination missing its inputs, where an input variable has no records at all
        (never saved: a step not run yet, or a misspelt class), or an iterated value is saved
        only as another type or case (`subject=["1", "2"]` read from text, the subjects saved
        as numbers): said once, naming the fix or the values meant (load's message names them
        too)."""
        names = {n for item in self.items for n in item.missing}
        variables = [s.variable.__name__ if isinstance(s, Fixed) else s.__name__ for n, s in self.loaded.items()
                     if n in names and (isinstance(s, Fixed) or is_variable(s))]
        asked: dict[str, list[Any]] = {}
        for item in self.items:
            for key, value in item.combo.items():
                asked.setdefault(key, []).append(value)
        for var in variables:
            if self.db.index.count(var) == 0:  # nothing to be near: the input itself is the mistake
                log.warning("for_each(%s): every combination was missing its inputs; %s", self.name,
                            unsaved_message(self.db, var))
                return
            saved = self.db.index.newest(var, 200)  # (bounded: a hint on a path that ran nothing)
            meant = [m for key, values in asked.items()
                     for m in near_values(key, list(dict.fromkeys(values)), [r.addr[key] for r in saved if key in r.addr])]
            if meant:
                log.warning("for_each(%s): every combination was missing its inputs; %s has %s: give the "
                            "values as they were saved", self.name, var, ", ".join(meant[:5]))
                return

    def _warn_leftover_parts(self) -> None:
        """Parts an earlier run of a `Split` output saved that this run's calls no longer
        return (a trial dropped by a new threshold) stay saved, with the lineage that made them:
        said once, so they are not taken for this run's results."""
        for (var, by), made in self._parts.items():
            newest: dict[str, RefRecord] = {}  # each address's newest record of this run's version keys
            for r in self.db.index.records(var):
                if by in r.addr and r.vkeys == self.vkeys:
                    at = key_of(r.addr)
                    if at not in newest or r.version > newest[at].version:
                        newest[at] = r
            left = [r for r in newest.values()
                    if (labels := made.get(key_of({k: v for k, v in r.addr.items() if k != by}))) is not None
                    and r.addr[by] not in labels]
            if left:
                def text(addr: dict[str, Any]) -> str:
                    return shown_address(addr, self.db.schema_keys)
                where = "; ".join(text(r.addr) for r in left[:3])
                log.warning("for_each(%s): %d %s value(s) stay from an earlier run, at a %s this run's calls "
                            "no longer return (%s%s); delete them if they no longer belong, e.g. %s.delete(%s)",
                            self.name, len(left), var, by, where, " ..." if len(left) > 3 else "", var,
                            text(left[0].addr))

    def _has_key(self, call_oid: str | None, key: str) -> bool:
        """Whether a ref's call record is a record of the call under `key` (`record_call_key`).

        Identical inputs at two addresses make one call key but two call records (each names
        its own input address); the cache entry keeps the last one. The ref made by the other
        is still this call's result and must not be re-saved on every re-run.
        """
        if call_oid is None:
            return False
        return record_call_key(self.db.index, call_oid, lambda: read_call(self.db.store, call_oid)) == key

    # -- running ---------------------------------------------------------------------------
    def _run_serial(self, bar: Any) -> None:
        fn = self.lf.fn
        passthrough, positional = self._passthrough(), self._positional()
        made: dict[str, Outcome] = {}  # call key -> what this run's call with that key made
        for index, pending in enumerate(self.pending):
            if pending.key in made:
                self._finish_same(pending, made[pending.key])
            else:
                task = Task(index, pending.resolved, passthrough, positional)
                outcome = run_task(fn, self.db.store, task, self.db.schema_keys, self.splits, self.as_table,
                                   self.lazy)
                self._finish(pending, outcome)
                if pending.item.status == "ran":
                    made[pending.key] = outcome
            item = pending.item
            _tick(bar)
            if self.on_error == "raise" and item.status == "failed":
                self._skip_rest(index + 1)
                return

    def _run_parallel(self, workers: int | None, executor: cf.Executor | None, chunk_size: int | None,
                      bar: Any) -> None:
        try:  # the call keys were computed under this thread's numeric options: the workers run under them
            self.options = snapshot(sent=not isinstance(executor, cf.ThreadPoolExecutor))
        except ValueError as exc:  # (np.seterr "call" with a callback no worker can be sent)
            raise ForEachError(f"for_each({self.name}): {exc}") from None
        # ... and the environment variables it reads (a worker whose own differ runs nothing:
        # `execute.run_chunk`), and from this working directory (`_read_elsewhere`)
        self.environment = {v.name: os.environ.get(v.name) for _, v in self.identity.data
                            if isinstance(v, EnvironmentVariable)}
        self.cwd = _cwd()
        pool = _Workers(workers, executor)
        # combinations with the same call key (the same values at several addresses): the first
        # runs, the others are served what it made once it is back (or run, if it did not run)
        first: dict[str, int] = {}
        later = {i: j for i, p in enumerate(self.pending) if (j := first.setdefault(p.key, i)) != i}
        size = chunk_size or default_chunk_size(len(self.pending) - len(later), workers or executor_size(pool.pool))
        # our own pool's workers unpickle the function inside the task: one they cannot find
        # fails its combinations by name instead of killing the pool (BrokenProcessPool)
        fn = pickled_for_workers(self.lf) if pool.own else self.lf
        try:
            made = self._run_tasks(pool, fn, [i for i in range(len(self.pending)) if i not in later], size, bar)
            if made is None:
                return
            again = []
            for i, j in later.items():
                if j in made:
                    self._finish_same(self.pending[i], made[j])
                    _tick(bar)
                else:
                    again.append(i)
            if again:
                self._run_tasks(pool, fn, again, size, bar)
        finally:
            pool.close()

    def _run_tasks(self, pool: _Workers, fn: Any, indices: list[int], size: int, bar: Any
                   ) -> dict[int, Outcome] | None:
        """Run the pending combinations `indices` on `pool`, `size` to a task; the outcome of
        each that ran, or None when on_error="raise" stopped the run.

        A worker that dies breaks the pool and every task it had. The combination it was
        running fails, saying how it died, and is not tried again in this run (it might kill
        every worker it lands on); the others run again in a new pool. A combination whose
        worker's end is unknown (or every worker ended as the pool ended them) is a suspect:
        run alone, it fails if the pool breaks again.

        A Dask cluster is not broken by a death (`_dask_deaths`): what a dead worker was
        running, and what Dask gave up on, is run again; suspects all in one chunk alone on the
        cluster, with a note before each combination (`execute._DaskNote`), so that a death
        names the one that killed, which fails (without a note's window of a few quick
        combinations each would take a round of its own, and the culprit kill once more in each
        round it is in). What Dask gave up on in such a round is run one at a time. What a
        worker did not run because the scheduler refused its note is sent again."""
        passthrough, positional = self._passthrough(), self._positional()
        todo = [Task(i, self.pending[i].resolved, passthrough, positional) for i in indices]
        made: dict[int, Outcome] = {}
        suspects: list[Task] = []
        singles: list[Task] = []  # suspects run one at a time
        together = pool.client is not None  # (on Dask, suspects run in one chunk: see above)
        given_up: set[int] = set()  # combinations of a task Dask gave up on once (KilledWorker)
        blind = 0  # breaks that named no combination (a worker died between them)
        refused = 0  # rounds in which the Dask scheduler refused a worker's note
        while todo or suspects or singles:
            alone = not todo
            if todo:
                batch, todo = todo, []
            elif singles:
                batch = [singles.pop()]
            elif together:
                batch, suspects = suspects, []
            else:
                batch = [suspects.pop()]
            ended = self._run_round(pool, fn, batch, len(batch) if alone else size, made, bar, note_each=alone)
            if ended is None:
                return None
            lost, killed, died, unnoted = ended
            if pool.gone:  # (a Dask cluster without workers: `_Workers.without_workers`)
                self._not_run(todo + suspects + singles + lost + killed + died + unnoted, pool.gone)
                return made
            if unnoted:
                refused += 1
                if refused > _REFUSED_MOST:
                    self._not_run(unnoted, "the Dask scheduler kept refusing the workers' notes of what they run "
                                  "(set_metadata; a worker runs nothing it has not noted: see the scheduler's log)")
                else:
                    (todo if not alone else singles if len(batch) == 1 else suspects).extend(unnoted)
            if (killed or died) and self._dask_deaths(killed, died, alone, todo, suspects, singles, given_up, bar):
                return None
            if not lost:
                continue
            running = {i: code for i, code in pool.after_break().items() if i in {t.index for t in lost}}
            culprits = {i: code for i, code in running.items()
                        if alone or (code is not None and code != -signal.SIGTERM)}
            named = set(culprits) or set(running)  # (nobody to blame: each one running, a suspect)
            for i, code in culprits.items():
                self._finish(self.pending[i], Outcome(i, None, utc_now(), 0.0, self._worker_died(code, pool.own)))
                _tick(bar)
            suspects += [t for t in lost if t.index in named and t.index not in culprits]
            todo += [t for t in lost if t.index not in named]
            blind += not named
            if self.on_error == "raise" and culprits:
                self._stop({})
                return None
            if not pool.own or blind > 2:
                reason = ("its pool cannot be used again" if not pool.own else
                          "workers kept dying between combinations")
                self._not_run(todo + suspects, f"a worker process of the pool died ({reason})")
                return made
        return made

    def _not_run(self, tasks: list[Task], reason: str) -> None:
        for task in tasks:
            item = self.pending[task.index].item
            item.status = "skipped"
            item.error = f"not run: {reason}; run for_each again to run what is missing"

    def _dask_deaths(self, killed: list[Task], died: list[Task], alone: bool, todo: list[Task],
                     suspects: list[Task], singles: list[Task], given_up: set[int], bar: Any) -> bool:
        """A Dask worker died: `died` were running when it did (its task's next attempt did
        not run them again: `execute._DaskNote`), `killed` were in a task Dask gave up on
        (KilledWorker: it had been on that many dead workers, maybe only queued there). A
        combination noted alone (`alone`: suspects in one chunk, a note each, nothing else on
        the cluster) that died fails, and so does one Dask gave up on that was alone in its
        task; the others are run again, those named by a death as suspects (Dask cannot tell a
        combination that kills from one queued next to it). Whether on_error="raise" stops the run."""
        if alone:
            culprits = died + (killed if len(killed) == 1 else [])
            singles += [t for t in killed if t not in culprits]  # (several deaths, each one of them: which?)
            for task in culprits:
                self._finish(self.pending[task.index],
                             Outcome(task.index, None, utc_now(), 0.0, self._dask_killer("when it ran alone on the cluster")))
                _tick(bar)
            if self.on_error == "raise" and culprits:
                self._stop({})
                return True
            return False
        suspects += died
        for task in killed:  # (a second time: with the suspects)
            (suspects if task.index in given_up else todo).append(task)
            given_up.add(task.index)
        return False

    def _dask_killer(self, how: str) -> str:
        return (f"the Dask worker process running {self.name} on this combination died, {how} "
                "(a crash in compiled code, or running out of memory: the out-of-memory "
                "killer, or the nanny's memory limit; the worker logs say which), so nothing was saved here; "
                "it was not tried again in this run (it could kill every worker); the others ran. Run this "
                "combination without executor= to see what ends it, or give each worker more memory "
                "(memory_limit=, fewer threads per worker)")

    def _run_round(self, pool: _Workers, fn: Any, tasks: list[Task], size: int, made: dict[int, Outcome],
                   bar: Any, note_each: bool = False) -> tuple[list[Task], list[Task], list[Task], list[Task]] | None:
        """Run `tasks` on the pool and record what each made (into `made` when it ran). The
        tasks lost to a broken pool, those in a task Dask gave up on (KilledWorker), those
        a Dask worker died running and those it did not run (its note refused); or None when
        on_error="raise" stopped the run. `note_each`: see `execute.run_chunk`."""
        # a shared store (lab mode) is opened by its URL; a local one by its folder
        store_root = getattr(self.db.store, "address", None) or str(self.db.store.root)  # type: ignore[attr-defined]
        chunks: dict[cf.Future, list[Task]] = {}
        lost: list[Task] = []
        killed: list[Task] = []
        died: list[Task] = []
        unnoted: list[Task] = []
        round_id = uuid.uuid4().hex
        by_index = {t.index: t for t in tasks}
        seen: set[cf.Future] = set()
        try:  # (a Ctrl-C as the chunks are handed out cancels those handed out too)
            for start in range(0, len(tasks), size):
                try:
                    future = pool.pool.submit(run_chunk, fn, store_root, tasks[start:start + size], self.db.schema_keys,
                                              self.splits, self.as_table, self.lazy, self.db.chunk_policy(),
                                              pool.watch_folder, round_id, note_each, self.options,
                                              self.environment)
                except cf.BrokenExecutor:  # (it broke while the tasks were handed out)
                    lost += tasks[start:]
                    break
                chunks[future] = tasks[start:start + size]
            ended = self._harvest(pool, chunks, seen, by_index, made, bar, lost, killed, died, unnoted)
        except KeyboardInterrupt:  # Ctrl-C: what finished is saved, the rest stops now
            self._keep_finished(pool, chunks, seen, made, bar)
            raise
        if ended is None:
            return None
        if pool.gone:
            for future in chunks:
                if not future.done():
                    future.cancel()
                    lost += chunks[future]
        return sorted(lost, key=lambda t: t.index), killed, died, unnoted

    def _harvest(self, pool: _Workers, chunks: dict[cf.Future, list[Task]], seen: set[cf.Future],
                 by_index: dict[int, Task], made: dict[int, Outcome], bar: Any, lost: list[Task],
                 killed: list[Task], died: list[Task], unnoted: list[Task]) -> bool | None:
        """Record each chunk's outcomes as it comes back (`_run_round`); None when
        on_error="raise" stopped the run."""
        for future in _completed(chunks, pool):
            if isinstance(future.exception(), cf.BrokenExecutor):
                seen.add(future)
                lost += chunks[future]
                continue
            if type(future.exception()).__name__ == "KilledWorker":  # (Dask's)
                seen.add(future)
                killed += chunks[future]
                continue
            outcomes = chunk_outcomes(future, chunks[future], self.name)
            for outcome in outcomes:
                if outcome.died and not outcome.died_alone:
                    died.append(by_index[outcome.index])
                    continue
                if outcome.unnoted:
                    unnoted.append(by_index[outcome.index])
                    continue
                if outcome.died:  # (the one combination its worker process ran)
                    outcome.error = self._dask_killer("in a worker process that ran nothing else")
                pending = self.pending[outcome.index]
                self._finish(pending, outcome)
                _tick(bar)
                if pending.item.status == "ran":
                    made[outcome.index] = outcome
                if self.on_error == "raise" and pending.item.status == "failed":
                    self._stop(chunks)
                    return None
            # a chunk a Ctrl-C interrupted in its worker returns the calls it finished
            back = {outcome.index for outcome in outcomes}
            self._not_run([t for t in chunks[future] if t.index not in back],
                          "its worker process was interrupted (Ctrl-C)")
            seen.add(future)  # (a Ctrl-C before this: `_keep_finished` records what is not yet)
        return True

    def _keep_finished(self, pool: _Workers, chunks: dict[cf.Future, list[Task]], seen: set[cf.Future],
                       made: dict[int, Outcome], bar: Any) -> None:
        """Ctrl-C during a parallel run: the calls that finished are saved (chunks back, and
        the calls a chunk finished before a terminal's Ctrl-C reached its worker too, which
        returns them: `execute.run_chunk`), what has not is cancelled (on a caller's executor
        too: a Dask cluster would run it all), and our own pool's workers end now (they would
        go on with the chunks queued for them, whose results nobody takes)."""
        pool.interrupted = True
        rest = [f for f in chunks if f not in seen]
        if pool.own:  # (the chunks the workers run come back at once if they were interrupted too)
            running = [f for f in rest if f.running()]
            deadline = time.monotonic() + _INTERRUPT_WAIT_S
            try:
                while running and sum(f.done() for f in running) < (pool.workers or 1):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    back, _ = cf.wait([f for f in running if not f.done()], timeout=min(left, _INTERRUPT_QUIET_S),
                                      return_when=cf.FIRST_COMPLETED)
                    if not back:  # (workers the Ctrl-C did not reach: what they run is not waited for)
                        break
            except KeyboardInterrupt:  # (a second Ctrl-C: keep what is back and stop)
                pass
        for future in rest:
            if not future.done():
                future.cancel()
        for future in rest:
            if not future.done() or future.cancelled() or future.exception() is not None:
                continue
            for outcome in future.result():
                if outcome.died or outcome.unnoted:
                    continue
                pending = self.pending[outcome.index]
                if pending.item.status != "pending":
                    continue
                try:
                    self._finish(pending, outcome)
                except Exception:  # noqa: BLE001 - what could be saved is; the interrupt goes on
                    log.exception("for_each(%s): saving a result after Ctrl-C failed", self.name)
                    continue
                _tick(bar)
                if pending.item.status == "ran":
                    made[outcome.index] = outcome

    def _worker_died(self, code: int | None, own: bool) -> str:
        rest = "the others ran in a new pool" if own else "the others were not run: the pool is broken"
        return (f"the worker process running {self.name} on this combination died ({worker_death(code)}), "
                f"so nothing was saved here; it was not tried again in this run (it could kill every "
                f"worker); {rest}. Run this combination without workers= (or executor=) to "
                "see what ends it (a crash in compiled code, or os._exit, shows there), or give each "
                "worker more memory (fewer workers=)")

    def _finish_same(self, pending: _Pending, outcome: Outcome) -> None:
        """A combination whose call key a call of this run already had (the same values at
        another address): served what that call made, recorded with its own inputs, as a
        cache hit is (it had been run again)."""
        self._finish(pending, outcome)
        pending.item.status, pending.item.duration = "cached", 0.0

    def _stop(self, chunks: dict[cf.Future, list[Task]]) -> None:
        """on_error="raise": cancel what has not started; results still to come are not recorded."""
        for future in chunks:
            future.cancel()
        for pending in self.pending:
            if pending.item.status == "pending":
                pending.item.status = "skipped"

    def _positional(self) -> tuple[str, ...]:
        """Parameters the function takes by position only (a ufunc's `x`, `def f(x, /)`)."""
        return tuple(n for n, p in self.lf.signature.parameters.items()
                     if p.kind is inspect.Parameter.POSITIONAL_ONLY)

    def _passthrough(self) -> dict[str, Any]:
        return {n: v for n, v in self.inputs.items() if n in self.lf.ignore}

    def _finish(self, pending: _Pending, outcome: Outcome) -> None:
        item, resolved = pending.item, pending.resolved
        item.duration = outcome.duration
        if outcome.error is not None:
            item.status, item.error, item.traceback = "failed", outcome.error, outcome.traceback
            log.warning("for_each(%s) failed at %s: %s%s", self.name, item.where, outcome.error,
                        _raised_at(outcome.traceback))
            return
        if outcome.skipped:
            item.status = "skipped"
            item.error = (f"{self.name} returned None, so nothing was saved (return a value, or "
                          "raise to record a failure)")
            return
        elsewhere = self._read_elsewhere(outcome)
        if elsewhere:
            item.status, item.error = "failed", elsewhere
            log.warning("for_each(%s) at %s: %s", self.name, item.where, item.error)
            return
        gone = self._collected_inputs(resolved)
        if gone:
            item.status, item.error = "failed", (
                f"{', '.join(gone)}: deleted and collected by a gc (in another process) while "
                f"{self.name} ran on it, so its result is not saved (its record would name an "
                "input the store no longer has); save the input again and run again")
            log.warning("for_each(%s) at %s: %s", self.name, item.where, item.error)
            return
        self._written.update(outcome.written)
        self._written_in.update(os.path.dirname(p) for p in outcome.written)
        if any(f.seen is not None and f.path in self._written_in for f in outcome.files):
            self._held.append((pending, outcome))
        else:
            outcome.files = tuple(f.bare() for f in outcome.files)
            self._record(pending, outcome)
        item.status = "ran"
        if log.isEnabledFor(logging.DEBUG):
            log.debug("ran %s at %s in %.3f s", self.name, item.where, outcome.duration)

    def _read_elsewhere(self, outcome: Outcome) -> str | None:
        """Why a worker's call is not saved: it read a name relative to its own working
        directory (a Dask worker's, a pool's started before a chdir), which gives another file
        (or none) from this run's. Its record would say it read that name from there, and a
        lookup here, looking from here, would miss it each run; the same content is a hit."""
        if self.cwd is None:
            return None
        moved = [f for f in outcome.files if f.relative is not None and f.cwd != self.cwd]
        if not moved or not changed_files(moved):  # (looked for from here, as a lookup does)
            return None
        first = next(f for f in moved if changed_files([f]))
        return (f"{self.name} read {first.relative!r}, a name relative to the working directory, in a worker "
                f"process working in {first.cwd}; from {self.cwd or 'a removed folder'}, where for_each runs, "
                "that name gives another file (or none), so its result is not saved (a call here would not "
                "have read it); name the file by a path that does not depend on the working directory "
                "(os.path.join of a folder the code knows), start the workers in this folder, or run "
                "without executor=")

    def _settle_held(self) -> None:
        """Record the calls that listed a folder this run wrote into, now that it ended: each
        with the folder as it is now if only the run's own writes changed it since the call
        listed it (so the next run is cached: the calls for the other subjects wrote there
        too), else as the call saw it (another process changed it: the next run recomputes)."""
        now: dict[str, Any] = {}  # each folder listed once
        for pending, outcome in self._held:
            outcome.files = settled_files(outcome.files, self._written, now)
            self._record(pending, outcome)
        self._held.clear()

    def _record(self, pending: _Pending, outcome: Outcome) -> None:
        """Record a call that ran: its call record, cache entry and outputs."""
        item, resolved, key = pending.item, pending.resolved, pending.key
        bound = {n: r.bound for n, r in resolved.items()}
        out_oids = [o[0] for o in outcome.outputs]  # type: ignore[union-attr]
        split = split_record(self.splits, outcome.labels) if outcome.labels else None
        layout = outcome.labels or (None,) * len(self.outputs)
        places = self._places(item.combo, pending.addr_key, outcome.outputs, layout)  # type: ignore[arg-type]
        for var, address, _, _ in places:  # what a save would refuse (a `Split` label that reads like
            self.db.index.check_save(var, address, self.vkeys)  # another's value): before the cache entry
        call_oid = self.lf.record_call(self.db.store, self.identity, bound, out_oids, outcome.started,
                                       outcome.duration, multi=outcome.multi, files=outcome.files, split=split,
                                       root=self.db.root, project=self.db.records_project)
        if pending.entry:
            self.ctx.record(key, call_oid, cache_fn(self.identity.digest, outcome.files, split=bool(split)),
                            out_oids, multi=outcome.multi, origins=self.lf.origins(bound))
            for saved in self._kept_saves.pop(key, ()):
                self._save(*saved)
        params = flatten_params(self.identity.name, bound)
        kept = []
        for var, address, place_key, out in places:
            if (var, place_key) in pending.kept:
                kept.append((var, address, place_key, out, call_oid, params))
            else:
                self._save(var, address, place_key, out, call_oid, params)
        if kept:
            self._kept_saves[key] = kept
        self._note_parts(pending.addr_key, layout)
        if time.monotonic() - self._last_flush > _FLUSH_EVERY_S and not self.db.index.in_atomic_batch:
            self.db.flush()  # bound what a kill can lose to about a second of work (never half
            # of an atomic batch the run is inside: it is journalled whole as the batch ends)
            self._last_flush = time.monotonic()

    def _failed_last_time(self) -> bool:
        """Whether the newest run of this function into these outputs failed somewhere. A fully
        cached rerun is then journalled too: the places it served had stayed FAILED in `status`
        until a run computed there (an input set back to the value that had worked)."""
        outputs = tuple(v.__name__ for v in self.outputs)
        for run in reversed(self.db.index.runs()):
            if run.function == self.name and not run.dry_run and run.outputs in (None, outputs):
                return bool(run.counts.get("failed"))
        return False

    def _collected_inputs(self, resolved: dict[str, Any]) -> list[str]:
        """Inputs whose stored values are gone from the store since they were read: another
        process deleted their records and its gc collected them while the function ran (a
        `contains` of each value read, ~3 us)."""
        contains = self.db.store.contains
        return [f"input {name!r}" + (f" ({r.var})" if r.var else "") for name, r in resolved.items()
                if r.records and not all(contains(record.oid) for record in r.records)]

    def _save(self, var: str, combo: dict[str, Any], addr_key: str, out: tuple[str, str, str], call_oid: str,
              params: dict[str, Any] | None) -> None:
        oid, kind, summary = out
        if params is None or not summary or not kind:
            prior = self.db.index.versions_at(var, addr_key)
            same = next((r for r in reversed(prior) if r.oid == oid and r.vkeys == self.vkeys), None)
            # (no earlier record of this value here: its ref was deleted, the cache restores it;
            # the summary is made from the stored value, a chunked one read lazily)
            summary = summary or (same.summary if same else summarize(self.db.store.open_value(oid)))
            kind = kind or (same.kind if same else self.db.store.get(oid).kind)
            params = params if params is not None else (same.params if same else
                                                        self.db.call_record(call_oid)["params"])
        self.db.index.put_ref(var, dict(combo), self.vkeys, oid, kind, call=call_oid, params=params,
                              summary=summary)

    def _skip_rest(self, start: int) -> None:
        for pending in self.pending[start:]:
            pending.item.status = "skipped"


def _progress_bar(total: int, name: str, progress: bool | None) -> Any:
    if progress is False or (progress is None and not _interactive()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"for_each({name})", unit="combo")


def _interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr is not None and sys.stderr.isatty()


def _completed(chunks: dict[cf.Future, list[Task]], pool: _Workers) -> Iterable[cf.Future]:
    """The chunks' futures as each is done (as `cf.as_completed`), until `pool` is gone: a
    Dask cluster that lost every worker (a LocalCluster closes a worker that is not back
    within its lost-worker-timeout, as one that keeps dying may not be) ran nothing more."""
    waiting = set(chunks)
    while waiting:
        done, waiting = cf.wait(waiting, timeout=_WAIT_S, return_when=cf.FIRST_COMPLETED)
        yield from done
        if not done and pool.without_workers():
            return


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # (removed: a relative name gives nothing from here)
        return ""


def _tick(bar: Any, n: int = 1) -> None:
    if bar is not None:
        bar.update(n)


class _Workers:
    """Where a run's tasks go: its own process pool (a new one after a worker died), or the
    caller's executor (a broken one is not replaced). A local process pool is watched
    (`WorkerWatch`) to name the combination a dead worker was running."""

    def __init__(self, workers: int | None, executor: cf.Executor | None) -> None:
        self.own = executor is None
        self.workers = workers
        self.pool = executor or self._new()
        self.watch = WorkerWatch() if isinstance(self.pool, cf.ProcessPoolExecutor) else None
        self.watch_folder = None if self.watch is None else self.watch.folder
        # a Dask client's executor: its cluster is asked whether it has workers (`without_workers`)
        self.client = getattr(executor, "_client", None) if type(executor).__module__.startswith("distributed") else None
        self.had_workers = False
        self.none_since: float | None = None
        self.gone = ""  # why the pool can run nothing more
        self.interrupted = False  # Ctrl-C: our own pool's workers are ended, not waited for
        self.without_workers()  # (whether it has workers now)

    def without_workers(self) -> bool:
        """Whether a Dask cluster that had workers in this run has had none for `_NO_WORKERS_S`
        (one that never had any may be waiting for its job queue, and is waited for)."""
        if self.client is None:
            return False
        try:
            workers = self.client.nthreads()
        except Exception:  # noqa: BLE001 - the scheduler not answering is waited out like no workers
            workers = {}
        now = time.monotonic()
        if workers:
            self.had_workers, self.none_since = True, None
            return False
        self.none_since = self.none_since or now
        if self.had_workers and now - self.none_since >= _NO_WORKERS_S:
            self.gone = (f"the Dask cluster has had no workers for {now - self.none_since:.0f} s (it may have "
                         "closed workers that kept dying: a LocalCluster closes one not back within "
                         "distributed.deploy.lost-worker-timeout); give it workers (or start a new cluster)")
            return True
        return False

    def _new(self) -> cf.Executor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def after_break(self) -> dict[int, int | None]:
        """The combinations workers were running when the pool broke, with how each worker
        ended (`WorkerWatch.after_break`); our own pool is started again."""
        running = self.watch.after_break(self.pool) if self.watch is not None else {}
        if self.own:
            self.pool = self._new()
        return running

    def close(self) -> None:
        if self.own and self.interrupted:
            # a worker takes the next chunk queued for it even after a Ctrl-C reached it, and
            # a shutdown that waits runs every chunk already in the call queue: they end now
            processes = list((getattr(self.pool, "_processes", None) or {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(timeout=10)
        elif self.own:
            self.pool.shutdown(cancel_futures=True)
        if self.watch is not None:
            self.watch.close()


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def _raised_at(trace: str | None) -> str:
    """Where the user's code raised, from a failed call's traceback: its innermost frame outside
    scistack, the standard library and installed packages (the line to look at first), and
    where the whole traceback is (a warning per failure says no more than one line)."""
    frames = _FRAME.findall(trace or "")
    skip = tuple(os.path.dirname(p) + os.sep for p in (
        os.path.dirname(os.path.abspath(__file__)),)) + tuple(
        os.path.join(p, "") for p in {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")})
    own = [f for f in frames if not os.path.abspath(f[0]).startswith(skip) and not f[0].startswith("<frozen")]
    place = f" (raised at {os.path.basename(own[-1][0])}:{own[-1][1]}, in {own[-1][2]})" if own else ""
    return place + "; its traceback: report.failures, or scistack runs"
