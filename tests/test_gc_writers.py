"""gc with a short grace period beside live writers (issue 16, item 2): a pruning gc never
deletes what another open process has written and not yet named; it keeps an hour instead
and says why. Real processes, a real race: a writer holds large objects unnamed inside a
batch while gc --prune=now runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from scistack import BaseVariable
from scistack.gc import collect_garbage

from .conftest import SCHEMA

WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    from scistack import configure_database, BaseVariable
    class GateValue(BaseVariable): pass
    db = configure_database(sys.argv[1], {schema!r})
    print("open", flush=True)
    for batch in range(int(sys.argv[2])):
        with db.batch():  # large values are written loose at once, named when the batch ends
            for i in range(3):
                GateValue.save(np.full(140_000, batch * 10 + i, dtype=float), subject=batch, session=str(i))
                time.sleep(0.15)
        print(f"acked {{batch}}", flush=True)
    sys.stdin.readline()  # stays open (as a notebook would) until the test is done
    db.close()
""").format(schema=SCHEMA)


class GateValue(BaseVariable):
    pass


def test_prune_now_beside_a_live_writer_keeps_its_unnamed_saves(project, tmp_path, python_env):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(project.path), "4"], env=python_env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        notes, acked = set(), []
        while len(acked) < 4:  # gc --prune=now, over and over, while the writer's batches run
            stats = collect_garbage(project, grace_seconds=0)
            notes.add(stats.grace_note)
            line = writer.stdout.readline().strip() if writer.poll() is None else ""
            if line.startswith("acked"):
                acked.append(int(line.split()[1]))
            assert line or writer.poll() is None, "the writer died"
        assert any("another process that writes to this project is open" in n for n in notes)
        for batch in acked:  # every acknowledged save still loads
            for i in range(3):
                value = GateValue.load(subject=batch, session=str(i)).data
                assert value.shape == (140_000,) and value[0] == batch * 10 + i
    finally:
        writer.communicate("\n", timeout=60)


def test_prune_now_with_no_other_writer_deletes_at_once(project):
    GateValue.save(np.arange(5.0), subject=1, session="a")
    orphan = project.store.put_value(np.arange(9.0))  # written by us, never named
    stats = collect_garbage(project, grace_seconds=0)  # our own saves are all named: alone
    assert stats.grace_note == "" and stats.objects_deleted >= 1
    assert not project.store.contains(orphan)
    GateValue.save(np.arange(6.0), subject=2, session="a")  # writing again after gc works
    assert GateValue.load(subject=1, session="a").data[-1] == 4.0


PRUNE_ELSEWHERE = textwrap.dedent("""
    import sys
    import scistack.gc as gc_module
    from scistack import configure_database
    from scistack.gc import collect_garbage
    gc_module.PRUNE_FLOOR = float(sys.argv[2])  # an hour, scaled down
    db = configure_database(sys.argv[1], {schema!r})
    stats = collect_garbage(db, grace_seconds=0)
    print("deleted", stats.objects_deleted, "note", bool(stats.grace_note), flush=True)
    db.close()
""").format(schema=SCHEMA)


class _Recording(np.ndarray):
    """A large array whose reading of its last block first runs `midway` (once): what a save
    that has run for hours meets while it still writes its later chunks."""

    midway = None

    def __getitem__(self, key):
        block = super().__getitem__(key)
        if type(self).midway is not None and isinstance(key, tuple) and key and isinstance(key[0], slice) \
                and key[0].start and key[0].stop == len(self):
            midway, type(self).midway = type(self).midway, None
            midway()
        return np.asarray(block)


def test_a_chunked_save_longer_than_the_floor_never_names_chunks_a_pruning_gc_deleted(
        project, tmp_path, python_env, monkeypatch):
    """Beside an open writer a pruning gc keeps only what is younger than `PRUNE_FLOOR` (an
    hour): the writers' gate makes it keep the floor, not the writer's whole save. A chunked
    save running longer had its first chunks deleted before its manifest was named, and
    returned naming them (every load failed). The hour is scaled down: the floor 1 s, the
    first chunks older than that, and this process's `_YOUNG_FOR` (how long it trusts what it
    wrote to be there) below it."""
    import scistack.objects.local as local_module
    from scistack.errors import ObjectNotFoundError
    from scistack.objects.chunking import set_chunking

    monkeypatch.setattr(local_module, "_YOUNG_FOR", 0.5)
    set_chunking(threshold=1000, chunk_bytes=2000)  # (before the first save: the project records it)
    GateValue.save(np.arange(3.0), subject=0, session="a")  # this process writes: it holds the gate
    ran = []

    def prune_elsewhere():
        time.sleep(1.5)  # the chunks written so far: older than the floor
        done = subprocess.run([sys.executable, "-c", PRUNE_ELSEWHERE, str(project.path), "1.0"],
                              env=python_env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        ran.append(done.stdout)

    _Recording.midway = prune_elsewhere
    value = np.arange(3000.0).reshape(300, 10).view(_Recording)
    try:
        with pytest.raises(ObjectNotFoundError, match="deleted by a gc"):
            GateValue.save(value, subject=1, session="a")
    finally:
        set_chunking()
    assert ran and ran[0].split()[1] != "0" and ran[0].endswith("note True\n"), ran
    with pytest.raises(LookupError, match="has no record matching subject=1"):
        GateValue.load(subject=1, session="a")  # nothing was named
    GateValue.save(value, subject=1, session="a")  # saved again: whole
    assert np.array_equal(GateValue.load(subject=1, session="a").data, np.arange(3000.0).reshape(300, 10))
