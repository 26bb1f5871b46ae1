"""gc with a short grace period beside live writers (issue 16, item 2): a pruning gc never
deletes what another open process has written and not yet named; it keeps an hour instead
and says why. Real processes, a real race: a writer holds large objects unnamed inside a
batch while gc --prune=now runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

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
