"""A pause of the cyclic garbage collector around bulk steps that allocate ~a million small
objects with no cycles (the DuckDB sync of 100k journal entries, `load_all` of 10k records).

CPython starts a collection every 700 net allocations of containers, and each older-generation
pass walks every live object of the process: such a step spent up to half its time there
(and varied 2x with what else the process held). Reference counting still frees everything
at once; the collector is resumed afterwards (only if it was on), so cycles made meanwhile are
collected then.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses: set[object] = set()  # in progress (threads, nesting): the last one out resumes the collector
_resume = False


@contextmanager
def paused() -> Iterator[None]:
    """Run the block with the cyclic collector off; nested and concurrent pauses are fine.
    Begun inside the try that ends it, each pause known by its own token: a Ctrl-C after
    `gc.disable()` and before the try had left the collector off for the session."""
    global _resume
    pause = object()
    try:
        with _lock:
            if not _pauses:
                _resume = gc.isenabled()
                gc.disable()
            _pauses.add(pause)
        yield
    finally:
        with _lock:
            _pauses.discard(pause)
            if not _pauses and _resume:
                _resume = False
                gc.enable()


def _after_fork_in_child() -> None:
    """A forked child: the pauses of the parent's other threads (its background sync) never
    end here, and one may have held the lock; the collector is resumed if they had stopped it."""
    global _lock, _resume
    _lock = threading.Lock()
    _pauses.clear()  # (the forking thread's own pause, if any, ends harmlessly: a discard)
    if _resume:
        _resume = False
        gc.enable()


if hasattr(os, "register_at_fork"):  # (no fork, no need: Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)
