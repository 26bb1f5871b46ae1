"""Thread locks across a fork (the multiprocessing fork start method, a user's `os.fork`).

A forked child has only the thread that forked: a lock another thread of the parent held at
that instant stays held for ever in the child, whose first use of it waits for ever. Each
kind of object that guards its state with a lock registers its locks here once, by one of two
rules (docs/architecture.md, "A Database used in a forked child"):

- `hold_across_fork`: what the lock guards must be whole in the child (a pack half written,
  a transaction half made), so the fork waits until no thread is inside it: the forking thread
  takes each lock before the fork and releases it on both sides after, so a hold of its own
  (an RLock re-entered) stays its own in the child;
- `renew_in_child`: what it guards is whole at every instant (one assignment or dict
  operation), so the fork does not wait and the child gets the lock new.

`os.register_at_fork` runs `before` hooks in the reverse of their registration order: a
module registered later takes its locks first (objects/local.py's buffer lock before
objects/pack.py's, the order a flush nests them in).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterable

Locks = Callable[[], Iterable[Any]]


def hold_across_fork(locks: Locks, in_child: Callable[[], None] | None = None) -> None:
    """`locks()`: the locks to hold (read at each fork); `in_child`: run in the child after.

    In the child, a lock of `locks()` that the fork did not take (one made while the fork
    waited for another of these locks, and held then by a thread the child does not have) is
    made new. What each forking thread took is its own (two threads forking at once)."""
    held: dict[int, list[Any]] = {}

    def before() -> None:
        mine = held.setdefault(threading.get_ident(), [])
        for lock in locks():
            lock.acquire()
            mine.append(lock)

    def release() -> list[Any]:
        mine = held.pop(threading.get_ident(), [])
        for lock in reversed(mine):
            lock.release()
        return mine

    def child() -> None:
        taken = {id(lock) for lock in release()}
        held.clear()  # (other threads' forks are the parent's)
        for lock in locks():
            if id(lock) not in taken:
                lock._at_fork_reinit()
        if in_child is not None:
            in_child()

    _register(before=before, after_in_parent=release, after_in_child=child)


def renew_in_child(locks: Locks) -> None:
    """Each of `locks()` is new in a forked child, as if never taken."""

    def child() -> None:
        for lock in locks():
            lock._at_fork_reinit()

    _register(after_in_child=child)


def _register(**hooks: Callable[[], None]) -> None:
    if hasattr(os, "register_at_fork"):  # (no fork, no need: Windows)
        os.register_at_fork(**hooks)
