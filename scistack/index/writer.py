"""DuckDB statements of one sync run in order on a thread of their own.

A sync is half Python (parsing journal lines, building Arrow columns, reading objects) and
half DuckDB (inserts, the shapes query, the commit). DuckDB releases the GIL while it works,
so handing it each step's statements lets the Python of the next step run meanwhile on the
other core (100k refs: ~1.3 s of Python and ~0.9 s of DuckDB, one after the other before).
One connection is used by one thread at a time: the caller touches it only after `call` or
`close`, which wait for everything handed over before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb


class Writer:
    """An ordered queue of work on one DuckDB connection; the first failure is raised to the
    caller at its next `call` or `close`, and nothing handed over after it runs.

    Its own thread, not a `ThreadPoolExecutor`: the exit sync runs in an `atexit` handler,
    after concurrent.futures refuses new work. Where no thread can be started (interpreter
    shutdown), the work runs in the caller's thread, as before."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[Future] = []
        self._failed = False
        self._thread: threading.Thread | None = threading.Thread(
            target=self._serve, name="scistack-duckdb", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            self._thread = None

    def put(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue `fn(con, *args)`; returns its future (its result, when needed, via `call`)."""
        future: Future = Future()
        self._pending.append(future)
        if self._thread is None:
            self._run(future, fn, args)
        else:
            self._queue.put((future, fn, args))
        return future

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._run(*item)

    def _run(self, future: Future, fn: Callable[..., Any], args: tuple) -> None:
        if self._failed:  # an earlier step failed: the transaction is lost, do nothing more
            future.set_result(None)
            return
        try:
            future.set_result(fn(self._con, *args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._failed = True
            future.set_exception(exc)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(con, *args)` after everything queued before it and return its result."""
        future = self.put(fn, *args)
        self.wait()
        return future.result()

    def result(self, future: Future) -> Any:
        """The result of work queued earlier, without waiting for what was queued after it;
        the first failure before it is raised instead."""
        if future.exception() is not None or self._failed:
            self.wait()
        return future.result()

    def wait(self) -> None:
        """Wait for everything queued; raise the first failure among them."""
        pending, self._pending = self._pending, []
        first: BaseException | None = None
        for future in pending:
            exc = future.exception()
            if exc is not None and first is None:
                first = exc
        if first is not None:
            raise first

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for everything queued and end the thread (errors ignored when the caller is
        already failing: its own exception is the one to report)."""
        try:
            if raise_errors:
                self.wait()
            else:
                for future in self._pending:
                    future.exception()
                self._pending = []
        finally:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
