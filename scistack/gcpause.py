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
_depth = 0  # pauses in progress (threads, nesting): the last one out resumes the collector
_resume = False


@contextmanager
def paused() -> Iterator[None]:
    """Run the block with the cyclic collector off; nested and concurrent pauses are fine."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
