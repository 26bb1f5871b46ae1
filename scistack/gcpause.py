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
