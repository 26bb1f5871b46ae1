"""DuckDB statements of one sync run in order on a thread of their own.

A sync is half Python (parsing journal lines, building Arrow columns, reading objects) and
half DuckDB (inserts, the shapes query, the commit). DuckDB releases the GIL while it works,
so handing it each step's statements lets the Python of the next step run meanwhile on the
other core (100k refs: ~1.3 s of Python and ~0.9 s of DuckDB, one after the other before).
One connection is used by one thread at a time: the caller touches it only after `call` or
`close`, which wait for everything handed over before.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import duckdb


class Writer:
    """An ordered queue of work on one DuckDB connection; the first failure is raised to the
    caller at its next `call` or `close`, and nothing handed over after it runs."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scistack-duckdb")
        self._pending: list[Future] = []
        self._failed = False

    def put(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue `fn(con, *args)`; returns its future (its result, when needed, via `call`)."""
        future = self._pool.submit(self._run, fn, args)
        self._pending.append(future)
        return future

    def _run(self, fn: Callable[..., Any], args: tuple) -> Any:
        if self._failed:  # an earlier step failed: the transaction is lost, do nothing more
            return None
        try:
            return fn(self._con, *args)
        except BaseException:
            self._failed = True
            raise

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(con, *args)` after everything queued before it and return its result."""
        future = self.put(fn, *args)
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
            self._pool.shutdown(wait=True)
