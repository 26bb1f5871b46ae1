"""Which save a thread writes for. A store that uploads in the background (lab mode) raises a
failed upload to each save that relies on it (`S3ObjectStore.wait_uploads`), and to no other:
a save is known by its thread. A chunked save writes its chunks on helper threads (its own
pool, or dask's), which write for the thread that saves and then names them (`for_this_save`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_HELPING = threading.local()


def save_owner() -> Any:
    """The save this thread writes for: the thread's own, or the one it helps."""
    return getattr(_HELPING, "owner", None) or threading.current_thread()


def for_this_save(fn: Callable) -> Callable:
    """`fn`, run on any thread as a helper of the calling thread's save."""
    owner = save_owner()

    def helping(*args: Any, **kwargs: Any) -> Any:
        before = getattr(_HELPING, "owner", None)
        _HELPING.owner = owner
        try:
            return fn(*args, **kwargs)
        finally:
            _HELPING.owner = before

    return helping
