"""Running one combination: load its inputs, call the function, store its outputs.

This runs in the calling process or in a worker (a process pool, a Dask cluster). A worker
touches only the object store, which is safe for concurrent writers (atomic, idempotent
puts), and returns oids; the calling process alone records refs and calls in the index.
Running a combination twice produces the same oids, so retried tasks are harmless.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from scistack.codeid._options import Snapshot, run_under
from scistack.lineage.filecheck import reads_of_call
from scistack.lineage.running import call_running
from scistack.foreach.inputs import Resolved, load_value
from scistack.foreach.paths import written_file
from scistack.foreach.split import split_items
from scistack.index import utc_now
from scistack.lineage.function import LineageFunction
from scistack.objects import LocalObjectStore, ObjectStore
from scistack.objects.s3 import S3ObjectStore
from scistack.objects.chunking import ChunkPolicy, current_policy, pin_policy
from scistack.objects.codec import value_kind
from scistack.summary import summarize


@dataclass(slots=True)
class Task:
    """One combination to run, as sent to a worker."""

    index: int
    inputs: dict[str, Resolved]
    passthrough: dict[str, Any]   # ignored parameters: passed to the function, not in lineage
    positional: tuple[str, ...] = ()  # parameters taken by position only (`np.sqrt(x, /)`), in order


@dataclass(slots=True)
class Outcome:
    """What running a task produced: output (oid, kind, summary) triples, or an error."""

    index: int
    outputs: list[tuple[str, str, str]] | None
    started: str
    duration: float
    error: str | None = None
    traceback: str | None = None
    skipped: bool = False
    multi: bool = False           # the function returned a tuple (a cache hit returns one too)
    files: tuple = ()             # FileRead of every input file the call opened
    written: frozenset = frozenset()  # the paths it wrote (made, removed, renamed)
    labels: tuple = ()            # per output: None, or the labels of a Split one (its values in order)
    died: bool = False            # not run: an earlier attempt at its chunk died running it (Dask)
    died_alone: bool = False      # ... in a worker process running nothing else (one thread)
    unnoted: bool = False         # not run: the Dask scheduler refused the note that it runs (`_DaskNote`)


def run_task(fn: Any, store: ObjectStore, task: Task, schema_keys: list[str], splits: tuple[str | None, ...],
             as_table: bool, lazy: bool = False) -> Outcome:
    """Load, call, store; never raises for an error inside the user's function. `splits`:
    per output variable, None or the schema key a `Split` output's returned dict fills."""
    n_outputs = len(splits)
    started, t0 = utc_now(), time.perf_counter()
    try:
        values = {n: load_value(store, r, schema_keys, as_table=as_table, lazy=lazy) for n, r in task.inputs.items()}
        values.update(task.passthrough)
        writes = [r.bound.value for r in sorted((r for r in task.inputs.values() if "writes" in r.bound.record),
                                                key=lambda r: r.bound.record["output"])]
        for path in writes:  # a stale file from an earlier run must not pass for this run's
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                os.unlink(path)
        given = [r.bound.record["file"] for r in task.inputs.values() if "oid" in r.bound.record
                 and "file" in r.bound.record and "writes" not in r.bound.record]  # PathInputs
        with reads_of_call(store, given, fn) as files:
            args = [values.pop(n) for n in task.positional if n in values]
            result = call_running(getattr(fn, "__name__", "the function"), fn, *args, **values)
        duration = time.perf_counter() - t0
        written = [written_file(path) for path in writes]
        if result is None and not written:
            return Outcome(task.index, None, started, duration, skipped=True)
        name = getattr(fn, "__name__", "function")
        if written and result is not None and n_outputs == len(written):
            raise ValueError(f"{name} returned a value but every output variable receives a written "
                             "file (PathOutput); return None, or add an output variable for the value")
        outputs = written + ([] if result is None else _as_outputs(result, n_outputs - len(written), name))
        stored, labels = [], []
        for value, by in zip(outputs, (*splits, *[None] * (len(outputs) - len(splits)))):  # (outputs=[]: kept)
            if by is None:
                stored.append((store.put_value(value), value_kind(value), summarize(value)))
                labels.append(None)
                continue
            items = [(label, _unwrapped(v)) for label, v in split_items(value, by, name)]
            stored += [(store.put_value(v), value_kind(v), summarize(v)) for _, v in items]
            labels.append(tuple(label for label, _ in items))
        return Outcome(task.index, stored, started, duration, multi=isinstance(result, tuple) and n_outputs != 1,
                       files=tuple(files.read), written=files.written, labels=tuple(labels) if any(by is not None for by in splits) else ())
    except Exception as exc:  # noqa: BLE001 - recorded per combination; the run goes on
        return Outcome(task.index, None, started, time.perf_counter() - t0,
                       f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _as_outputs(result: Any, n_outputs: int, name: str) -> list[Any]:
    if isinstance(result, tuple) and n_outputs == 1 and len(result) != 1:
        raise ValueError(
            f"{name} returned a tuple of {len(result)} values but outputs= names one variable; "
            f"name {len(result)} output variables, or return one value (a list, or a 1-tuple "
            "holding the tuple, to save a tuple as one value)"
        )
    outputs = list(result) if isinstance(result, tuple) else [result]
    if n_outputs and len(outputs) != n_outputs:
        raise ValueError(
            f"{name} returned {len(outputs)} value(s) but outputs= names {n_outputs}; return a tuple "
            "with one value per output variable"
        )
    return [_unwrapped(v) for v in outputs]


def _unwrapped(value: Any) -> Any:
    """A returned loaded variable (or lineage result) saves as the value it holds."""
    return getattr(value, "data", value) if hasattr(value, "__scistack_input__") else value


_worker_stores = threading.local()  # per thread: a store's batch is not shared across threads


WORKERS_HINT = ("{name} must be importable by the workers: define it at the top level of a module, or of "
                "the script outside any function and any `if __name__ == \"__main__\":` block (the "
                "workers import the script again without running that block), or run without "
                "workers=/executor=")


def run_chunk(fn: Any, store_root: str, tasks: list[Task], schema_keys: list[str], splits: tuple[str | None, ...],
              as_table: bool, lazy: bool = False, policy: ChunkPolicy | None = None,
              watch: str | None = None, round_id: str | None = None, note_each: bool = False,
              options: Snapshot | None = None, environment: dict[str, str | None] | None = None
              ) -> list[Outcome]:
    """Worker entry point: run a chunk of tasks against the project's object store.

    `fn` arrives as the LineageFunction (pickled by reference when importable) but the worker
    calls the plain function: lineage is recorded by the calling process, which has the
    database. The chunk's objects go into one pack, written before the oids are returned, so
    the caller never journals a ref to an object that is not on disk. `watch`: the folder of
    a `WorkerWatch`, told which combination this process runs. On a Dask worker the scheduler
    is told instead (`_DaskNote`); `round_id` (new for each round of a run) gives a chunk sent
    again a task key of its own (Dask names a task by its function and arguments: the same
    key would hand back the first attempt's result, or wait on its forgotten task);
    `note_each`: the scheduler is told of each combination before it starts (a window of one:
    a death names its combination), for combinations suspected of killing a worker.
    `options`: the caller's numpy error modes and decimal context (`codeid._options.snapshot`),
    which its call keys were computed under: each call runs under them, not the worker's.
    `environment`: the environment variables the function reads, as the caller has them (its
    call keys hold them); a worker whose own differ (a Dask worker, a pool started before the
    caller set one) runs nothing, its result would be filed under the caller's values.
    """
    # the project's chunking (part of a value's identity), not the worker's; not pinned where it
    # is in force already (a thread pool of the caller's process: pinned, the project's policy
    # had stayed in force for every project the process opened after)
    if policy is not None and current_policy() != policy:
        pin_policy(policy)
    if isinstance(fn, bytes):  # (workers=N) restored here, so that a function the worker cannot
        fn = pickle.loads(fn)  # find fails these combinations, not the whole pool
    plain = fn.fn if isinstance(fn, LineageFunction) else fn
    stores = getattr(_worker_stores, "by_root", None)
    if stores is None:
        stores = _worker_stores.by_root = {}
    store = stores.get(store_root)
    if store is None:
        store = stores[store_root] = (S3ObjectStore.for_worker(store_root) if store_root.startswith("s3://")
                                      else LocalObjectStore(store_root))
    note = _note(watch, note_each)
    try:  # (begun inside: a Ctrl-C just before the try had left this worker's store batching)
        store.begin_batch()
        outcomes = []
        for position, task in enumerate(tasks):
            if task.index in note.died:
                outcomes.append(_died(task, note.died))
                continue
            if not note.running(tasks, position):  # (not run under a note that does not name it)
                outcomes += [_died(t, note.died) if t.index in note.died else
                             Outcome(t.index, None, utc_now(), 0.0, "not run: the Dask scheduler refused the note "
                                     "that it runs", unnoted=True) for t in tasks[position:]]
                break
            differs = _other_environment(environment, getattr(plain, "__name__", "the function"))
            if differs:
                outcomes.append(Outcome(task.index, None, utc_now(), 0.0, differs))
                continue
            try:
                with run_under(options):
                    outcomes.append(run_task(plain, store, task, schema_keys, splits, as_table, lazy))
            except KeyboardInterrupt:  # a terminal's Ctrl-C reaches the workers too: the calls
                break  # finished are returned (their pack written), the caller saves them
        note.idle()  # (a death while the pack is written names no combination)
        return outcomes
    finally:
        store.end_batch()
        note.close()


def _other_environment(environment: dict[str, str | None] | None, name: str) -> str | None:
    """Why a call is not run in this worker: an environment variable it reads differs here."""
    for key, value in (environment or {}).items():
        here = os.environ.get(key)
        if here != value:
            def shown(text: str | None) -> str:
                return "unset" if text is None else repr(text)

            return (f"{name} reads the environment variable {key}, which is {shown(here)} in this worker process "
                    f"but {shown(value)} where for_each runs: not run here (its result would be saved as made "
                    f"with {shown(value)}); start the workers with the same value (a pool or cluster started "
                    "before the variable was set has the old one), or run without executor=")
    return None


def _died(task: Task, died: dict[int, bool]) -> Outcome:
    return Outcome(task.index, None, utc_now(), 0.0, "its worker process died running it", died=True,
                   died_alone=died[task.index])


def _note(watch: str | None, each: bool = False) -> _RunningNote | _DaskNote:
    """Where this worker says which combination it runs: a `WorkerWatch` folder, or on a
    Dask worker its scheduler (`each`: before every combination)."""
    if watch is None and "distributed" in sys.modules:
        try:
            return _DaskNote(each)
        except Exception:  # noqa: BLE001 - not inside a Dask worker's task (ValueError), or no scheduler
            pass
    return _RunningNote(watch)


_NOTE_EVERY_S = 0.1  # a Dask worker tells the scheduler what it runs at most about this often
_NOTE_MOST = 64  # ... naming at most this many combinations (run again if it dies: `note_each`)
_NOTE_RETRY_S = (0.05, 0.25)  # a refused note is sent again after these pauses, then given up


class _DaskNote:
    """On a Dask worker: which combinations each attempt at this task (chunk) may be running,
    kept in the scheduler's metadata under the task's key (it outlives the worker, and goes
    when the task is forgotten). Dask runs a task whose worker died again elsewhere, up to its
    allowed-failures, so a combination that kills its worker killed four, and everything
    queued on those workers failed with it (KilledWorker). An attempt that finds what an
    earlier one died running does not run it again (`Outcome.died`): one worker dies.

    A note is a round trip to the scheduler (3-14 ms on a busy machine), too dear before
    every cheap combination: it names a window, the chunk's combinations from the next one
    on, sent before the first of them starts. A new note is sent when the window is used up
    or `_NOTE_EVERY_S` after the last one (the combinations begun since then have ended:
    they are cleared), and each window is sized to last about that long (at most
    `_NOTE_MOST`; a chunk starts with one). A death names the window: one combination in a
    one-thread worker is the culprit; more are suspects, which the engine runs again in one
    chunk with `each` (a note before every combination: the next death names the culprit).

    A combination is never run under a note that does not name it: a refused note (the
    scheduler busy or unreachable) is sent again, and if it still fails the chunk runs no
    more (`Outcome.unnoted`: the engine sends them again). Run under the previous note, a
    death would have named the combinations that had ended, blaming one that did not kill."""

    def __init__(self, each: bool = False) -> None:
        from distributed import get_client, get_worker

        worker = get_worker()  # (ValueError outside a worker)
        self.client = get_client()
        self.keys = [worker.get_current_task(), "scistack-running"]
        self.alone = worker.state.nthreads == 1  # (a death then names the one combination it ran)
        earlier = self.client.get_metadata(self.keys, default=None) or {}
        # each earlier attempt: [the combinations it may have been running ([]: none), whether alone in its process]
        self.died: dict[int, bool] = {}
        for window, alone in earlier.values():
            for index in window:
                self.died[index] = self.died.get(index, False) or (bool(alone) and len(window) == 1)
        if self.died and _deaths_counted(self.client, self.keys[0]) == 0:
            self.died = {}  # (each worker it ran on was closed on purpose: scale down, retirement)
        self.attempt = os.urandom(8).hex()
        self.each = each
        self.size = 1  # combinations the next window names
        self.end = 0  # the current window: positions up to (not including) `end`, noted at `noted`
        self.start = 0
        self.noted = float("-inf")

    def running(self, tasks: list[Task], position: int) -> bool:
        """Before the combination at `position` in the chunk starts: a note unless the last one
        names it and is recent (or `each`: a note naming it alone). Whether it may run: False
        when the note was refused and the last one does not name it."""
        now = time.monotonic()
        if position < self.end and (self.each or now - self.noted < _NOTE_EVERY_S):
            return True
        took = now - self.noted
        if self.each:
            self.size = 1
        elif position >= self.end and took < _NOTE_EVERY_S / 2:  # (a window used up quickly: a longer one)
            self.size = min(2 * self.size, _NOTE_MOST)
        elif position < self.end or took > _NOTE_EVERY_S:  # (one that outlasted the interval: a shorter one)
            self.size = max(1, min(self.size, position - self.start))
        window = [t.index for t in tasks[position:position + self.size] if t.index not in self.died]
        if self._send(window, retry=position >= self.end):
            self.start, self.end, self.noted = position, position + self.size, time.monotonic()
            return True
        return position < self.end  # (the last window still names it: sent again next time)

    def idle(self) -> None:
        self._send([], retry=True)

    def _send(self, window: list[int], retry: bool) -> bool:  # (a round trip to the scheduler)
        for pause in (*_NOTE_RETRY_S, None) if retry else (None,):
            try:
                self.client.set_metadata([*self.keys, self.attempt], [window, self.alone])
                return True
            except Exception:  # noqa: BLE001 - refused: sent again, else nothing more runs under the last note
                if pause is not None:
                    time.sleep(pause)
        return False

    def close(self) -> None:
        pass


def _deaths_counted(client: Any, key: str) -> int | None:
    """How many deaths of workers it was on Dask counts against task `key` (a worker the
    cluster closed on purpose is not counted), or None if the scheduler does not say."""

    def suspicious(dask_scheduler: Any) -> int | None:  # (sent by value: the scheduler needs no scistack)
        task = dask_scheduler.tasks.get(key)
        return None if task is None else task.suspicious

    try:
        return client.run_on_scheduler(suspicious)
    except Exception:  # noqa: BLE001 - unknown: every earlier attempt's death counts
        return None


class _RunningNote:
    """A worker's file in a `WorkerWatch` folder: the index of the combination it runs."""

    died: dict[int, bool] = {}

    def __init__(self, folder: str | None) -> None:
        self.path = None if folder is None else os.path.join(folder, str(os.getpid()))
        self.fd = -1
        if self.path is not None:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            except OSError:  # (a folder this machine does not have: nothing is watched)
                self.path = None

    def running(self, tasks: list[Task], position: int) -> bool:
        self._write(tasks[position].index)
        return True

    def idle(self) -> None:
        self._write(-1)

    def _write(self, index: int) -> None:
        if self.fd >= 0:
            os.lseek(self.fd, 0, os.SEEK_SET)
            os.write(self.fd, f"{index:>20}".encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            os.unlink(self.path)  # type: ignore[arg-type]
            self.fd = -1


class WorkerWatch:
    """Which combination each worker process of a local pool runs, and how the ones that died
    ended. A worker that dies (a crash in compiled code, the out-of-memory killer, os._exit)
    breaks a ProcessPoolExecutor, which fails every task it had with one BrokenProcessPool
    that names neither the combination nor the cause: innocent combinations were reported as
    failures like the one that killed it."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="scistack-workers-")

    def after_break(self, pool: cf.Executor) -> dict[int, int | None]:
        """Shut a broken process pool down and say, for each combination a worker was running
        when it broke, how that worker ended: its exit code (negative: the signal that killed
        it; -SIGTERM: the pool ended it because another one died), or None if unknown."""
        processes = list((getattr(pool, "_processes", None) or {}).values())  # (shutdown drops them)
        pool.shutdown(wait=True)  # (a broken pool ends and waits for each worker)
        codes = {p.pid: p.exitcode for p in processes}
        running = {}
        for name in os.listdir(self.folder):
            path = os.path.join(self.folder, name)
            with open(path, "rb") as f:
                text = f.read().strip()
            os.unlink(path)
            if text and int(text) >= 0:
                running[int(text)] = codes.get(int(name))
        return running

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def worker_death(code: int | None) -> str:
    """How a worker process ended, with what usually ends one that way."""
    if code is None:
        return "how it ended is unknown"
    if code < 0:
        name = _signal_name(-code)
        return f"killed by signal {-code} ({name}){_DEATHS.get(name, '')}"
    if code > 128 and _signal_name(code - 128) in _DEATHS:  # (a shell's way to say a signal)
        return f"exit code {code} (128 + {code - 128}: as if by {_signal_name(code - 128)})"
    return f"exit code {code}"


_DEATHS = {"SIGKILL": ": out of memory? (the out-of-memory killer sends it)",
           "SIGSEGV": ": a crash in compiled code", "SIGBUS": ": a crash in compiled code",
           "SIGABRT": ": compiled code aborted"}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "?"


def default_chunk_size(pending: int, workers: int) -> int:
    """About four chunks per worker (load balance), at most 256 combinations a chunk."""
    return max(1, min(256, -(-pending // (workers * 4))))


def executor_size(pool: cf.Executor) -> int:
    """How many tasks an executor runs at once (a Dask client's executor: its threads)."""
    client = getattr(pool, "_client", None)
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a guess for chunking only
            return 2
    return getattr(pool, "_max_workers", None) or 2


def chunk_outcomes(future: cf.Future, tasks: list[Task], name: str) -> list[Outcome]:
    """A chunk's outcomes; a chunk that failed as a whole fails each of its combinations."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a lost worker or an unpicklable function: recorded
        hint = ""
        if isinstance(exc, (pickle.PicklingError, AttributeError, ImportError, TypeError)):
            hint = f" ({WORKERS_HINT.format(name=name)})"
        error = f"{type(exc).__name__}: {exc}{hint}"
        trace = "".join(traceback.format_exception(exc))
        return [Outcome(task.index, None, utc_now(), 0.0, error, trace) for task in tasks]

