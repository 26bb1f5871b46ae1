"""The journal and the object store are swappable behind the index: the layers above use only
their interfaces (lab mode plugs PostgreSQL and S3 in the same way)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from scistack import BaseVariable, configure_database, for_each, lineage_fcn
from scistack.objects import MemoryObjectStore
from scistack.objects.canonical_json import dumps_canonical


class ListJournal:
    """A journal held in memory: entries as canonical lines, addressed by byte offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped_lines = 0
        self._data = bytearray()
        self._lock = threading.RLock()

    def size(self) -> int:
        return len(self._data)

    @contextmanager
    def locked(self):
        with self._lock:
            yield

    def append(self, entries: list[dict]) -> int:
        with self._lock:
            self._data += b"".join(dumps_canonical(e) + b"\n" for e in entries)
            return len(self._data)

    def read_from(self, offset: int, limit: int | None = None, *,
                  containing: tuple[bytes, ...] = ()) -> tuple[list[dict], int]:
        stop = len(self._data) if limit is None else offset + limit
        newline = self._data.find(b"\n", stop - 1) if stop <= len(self._data) else -1
        data = bytes(self._data[offset : max(stop, newline + 1)])
        end = data.rfind(b"\n") + 1
        return [json.loads(line) for line in data[:end].splitlines()
                if line and (not containing or any(n in line for n in containing))], offset + end

    def close(self) -> None:
        pass


class SwapRaw(BaseVariable):
    pass


class SwapOut(BaseVariable):
    pass


@lineage_fcn
def swap_scale(x, k):
    return x * k


def test_saves_loads_lineage_and_for_each_run_on_other_backends(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    journal, store = ListJournal(tmp_path / "memory.log"), MemoryObjectStore()
    db = configure_database(tmp_path / "swap.duckdb", ["subject"], journal=journal, store=store)
    try:
        for subject in (1, 2):
            SwapRaw.save(np.arange(3.0) * subject, subject=subject)
        first = for_each(swap_scale, inputs={"x": SwapRaw, "k": 2}, outputs=[SwapOut], subject=[1, 2],
                         progress=False)
        again = for_each(swap_scale, inputs={"x": SwapRaw, "k": 2}, outputs=[SwapOut], subject=[1, 2],
                         progress=False)
        assert (first.ran, again.cached) == (2, 2)
        assert SwapOut.load(subject=2).data.tolist() == [0.0, 4.0, 8.0]
        assert SwapOut.load(k=2, subject=1).data.tolist() == [0.0, 2.0, 4.0]
        SwapRaw.delete(subject=1)
        assert [v.metadata["subject"] for v in SwapRaw.load_all()] == [2]
        assert journal.size() > 0 and len(list(store.iter_oids())) >= 6
        assert not (tmp_path / ".scistack" / "refs.log").exists()
        assert not any((tmp_path / ".scistack" / "objects").glob("??/*"))
    finally:
        db.close()
