"""The writers' gate: gc with a short grace period never deletes what a live writer has
written and not yet named.

A save writes its objects first and journals their names last, so for a while an object is
in the store and unreferenced; gc's grace period (two weeks by default) is what protects it.
`gc --prune=now` removes that protection, and beside live writers it deleted saves that had
returned. So every process that writes objects holds this file lock *shared* from its first
write until its store is closed (or the process ends), and a gc whose grace is shorter than
`PRUNE_FLOOR` must take it *exclusively*: it gets it only when no other writer is open
(then nothing unnamed can appear while it sweeps: a writer's first write waits for it), and
otherwise keeps objects younger than the floor and says why.

flock locks belong to an open file description, so a forked child (a for_each worker)
opens its own descriptor rather than sharing, or releasing, its parent's.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from scistack.objects.forks import renew_in_child

PRUNE_FLOOR = 3600.0  # seconds: the grace a gc keeps when it cannot prove no writer is open
DEFAULT_GRACE_SECONDS = 14 * 24 * 3600  # gc's grace unless told (a lab's gc records a shorter one: s3.py)
GATE_NAME = "gc-writers.lock"


class WritersGate:
    """A shared lock held by writers of one objects directory, exclusive for a pruning gc."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / GATE_NAME
        self._fd: int | None = None
        self._pid = 0
        self.left = 0  # times this process left the gate: what it wrote before may be pruned since
        self._lock = threading.Lock()
        _GATES.add(self)

    def enter(self) -> None:
        """Before writing an object: hold the gate shared (cheap once held; waits while a
        pruning gc sweeps)."""
        if self._fd is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._fd, self._pid = fd, os.getpid()  # a forked child's copy is left untouched

    def leave(self) -> None:
        """Release the shared hold (every object this process wrote is named, or abandoned)."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)  # closing our own descriptor releases our lock only
            self._fd = None
            self.left += 1

    @property
    def held(self) -> bool:
        return self._fd is not None and self._pid == os.getpid()

    @contextmanager
    def exclusive(self, wait: float = 2.0) -> Iterator[bool]:
        """Hold the gate exclusively if no writer holds it within `wait` seconds; yields
        whether it did. New writers wait at their first write until the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        got = False
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    got = True
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.05)
            yield got
        finally:
            os.close(fd)


# Gates of this process. A forked child's gate lock is new: a thread of the parent may have held
# it (entering, or waiting for a pruning gc there), and the child's first write waited for ever.
# What it guards stays consistent without waiting at the fork for that thread: the child takes
# nothing of the parent's hold (`_pid` is not its own, so it opens a descriptor of its own).
_GATES: weakref.WeakSet[WritersGate] = weakref.WeakSet()


renew_in_child(lambda: [gate._lock for gate in list(_GATES)])
