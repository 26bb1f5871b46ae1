"""`scistack status` after a computed value is deleted and gc removes its call record.

A report keeps, per variable, one call record for each function that made it (to read a
script's file from it). That call must be one a live record names: after `rm` and
`gc --prune=now` a deleted one is gone, and status had failed with "object ... is not in the
object store" while fsck found nothing wrong. The pipeline's function lives in a script's
`__main__`, so status reads that kept call record to judge it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PIPELINE = textwrap.dedent('''
    import numpy as np
    from scistack import configure_database, BaseVariable, for_each
    db = configure_database("lab.duckdb", ["subject", "session"])
    class GcRaw(BaseVariable): pass
    class GcFilt(BaseVariable): pass
    def filt(x, k): return x * k
    if __name__ == "__main__":
        for s in (1, 2): GcRaw.save(np.arange(5.0) * s, subject=s, session="pre")
        for_each(filt, inputs={"x": GcRaw, "k": 3}, outputs=[GcFilt], subject=[1, 2], session=["pre"],
                 verbose=False)
''')

CALLS = textwrap.dedent('''
    import json
    from scistack import configure_database
    db = configure_database("lab.duckdb", ["subject", "session"])
    print(json.dumps({r.addr["subject"]: r.call for r in db.index.select("GcFilt", {}, {}, {})}))
''')

LOSE_CALLS = textwrap.dedent('''
    from scistack import configure_database
    db = configure_database("lab.duckdb", ["subject", "session"])
    calls = {r.call for r in db.index.select("GcFilt", {}, {}, {})}
    db.store.delete_many(calls)
    print(sum(not db.store.contains(c) for c in calls))
''')


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("how", [["GcRaw", "--cascade"], ["GcFilt"]])
def test_status_after_deleting_the_kept_call_and_gc(tmp_path, how):
    (tmp_path / "pipe.py").write_text(PIPELINE)
    (tmp_path / "calls.py").write_text(CALLS)
    assert _run(tmp_path, "pipe.py").returncode == 0
    assert _run(tmp_path, "-m", "scistack", "status").returncode == 0  # the report keeps its facts
    calls = json.loads(_run(tmp_path, "calls.py").stdout)
    # the index keeps the smallest call oid of a function: delete exactly that one
    victim = min(calls, key=calls.get)
    name, *flags = how
    done = _run(tmp_path, "-m", "scistack", "rm", name, "--subject", victim, *flags, "--yes")
    assert done.returncode == 0, done.stderr
    assert _run(tmp_path, "-m", "scistack", "gc", "--prune=now").returncode == 0

    status = _run(tmp_path, "-m", "scistack", "status")
    assert status.returncode == 0, status.stderr
    assert "not in the object store" not in status.stdout + status.stderr
    assert _run(tmp_path, "-m", "scistack", "fsck").returncode == 0


def test_status_with_a_live_values_call_record_lost(tmp_path):
    """A call record a live value names, lost from the store (fsck reports it), makes that
    function `unknown` with a reason: never the report's end."""
    (tmp_path / "pipe.py").write_text(PIPELINE)
    (tmp_path / "calls.py").write_text(CALLS)
    assert _run(tmp_path, "pipe.py").returncode == 0
    assert _run(tmp_path, "-m", "scistack", "status").returncode == 0
    (tmp_path / "lose.py").write_text(LOSE_CALLS)
    lost = _run(tmp_path, "lose.py")
    assert lost.returncode == 0 and lost.stdout.split() == ["2"], lost.stderr

    status = _run(tmp_path, "-m", "scistack", "status")
    assert status.returncode == 0, status.stderr
    assert "missing" in status.stdout
