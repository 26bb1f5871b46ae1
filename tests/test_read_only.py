"""A project on a folder that cannot be written (a read-only mount: an archive, a colleague's
share, a compute node's data mount) opens for reading: loads, load_all, SQL, `ls`, `log`,
`status` and `fsck` answer; a save, a delete, a for_each or a gc is refused with a
`ReadOnlyProjectError` before anything runs, and no byte in the folder changes. It had failed
to open at all: the local index was called damaged and its deletion was attempted.

The read-only mount is real: a bind mount remounted read-only in a private mount namespace
(`unshare`), so nothing outside this test sees it. The reading runs in a process there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scistack import BaseVariable, for_each

ROOT = str(Path(__file__).resolve().parents[1])

# every reader script ends by trying writes: each must be refused (the text kept) or None
REFUSALS = textwrap.dedent('''
    import json
    from scistack.errors import ReadOnlyProjectError

    def refusals(*attempts):
        said = []
        for attempt in attempts:
            try:
                attempt()
                said.append(None)
            except ReadOnlyProjectError as exc:
                said.append(str(exc))
        return said
''')


class RoRaw(BaseVariable):
    pass


class RoOut(BaseVariable):
    pass


class RoScore(BaseVariable):
    pass


PROJECT_READER = REFUSALS + textwrap.dedent('''
    import sys
    import numpy as np
    from scistack import BaseVariable, configure_database, for_each
    from scistack.report.status import status_grid

    class RoRaw(BaseVariable): pass
    class RoOut(BaseVariable): pass
    class RoScore(BaseVariable): pass

    db = configure_database(sys.argv[1] + "/gait.duckdb")
    seen = {"read_only": db.read_only,
            "load": RoRaw.load(subject=2).data.tolist(),
            "out": RoOut.load(subject=2).data.tolist(),
            "load_all": len(RoRaw.load_all()),
            "where": [r.metadata["subject"] for r in RoScore.load_all(subject=[2], where="value < '10'")],
            "asked_duckdb": db.index.value_types("RoScore") is not None,
            "sql": db.sql("SELECT count(*) AS n FROM RoRaw")["n"][0].item(),
            "status": status_grid(db, ["RoOut"]).cell("RoOut", {"subject": 2}).status,
            "refused": refusals(lambda: RoRaw.save(np.arange(9.0), subject=9),
                                lambda: RoRaw.delete(subject=1),
                                lambda: for_each(lambda signal: signal * 3, inputs={"signal": RoRaw},
                                                 outputs=[RoOut], subject=[1, 2]),
                                lambda: db.reindex())}
    db.close()
    print(json.dumps(seen))
''')

DATA_BASE_READER = REFUSALS + textwrap.dedent('''
    import sys
    import scistack

    db = scistack.open(sys.argv[1] + "/sims")
    seen = {"keys": [list(k) if isinstance(k, tuple) else k for k in db.keys()],
            "value": db["simulation", "run_1"],
            "refused": refusals(lambda: db.__setitem__("x", 1), lambda: db.create_sub_db("cell_2"),
                                lambda: scistack.open(sys.argv[1] + "/new"))}
    print(json.dumps(seen))
''')


def _unavailable(why: str) -> None:
    """In CI (the CI variable set) a machine that cannot mount read-only fails the run."""
    if os.environ.get("CI"):
        pytest.fail(why + "; CI must run the read-only project test")
    pytest.skip(why)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _read_mounted(source: Path, script: str, work: Path) -> dict[str, Any]:
    """Run `script` (its argument: the mount point) with `source` mounted read-only, in a
    private mount namespace (as root, or as a user through a user namespace); what it printed,
    after checking that not one byte under `source` changed."""
    unshare = shutil.which("unshare")
    if unshare is None:
        _unavailable("unshare (util-linux) is not installed")
    target, path = work / "mounted", work / "reader.py"
    target.mkdir()
    path.write_text(script)
    before = _snapshot(source)
    inner = (f"mount --bind '{source}' '{target}' && mount -o remount,bind,ro '{target}' && "
             f"'{sys.executable}' '{path}' '{target}'")
    done = subprocess.run([unshare, "-m" if os.geteuid() == 0 else "-rm", "sh", "-c", inner],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "mount" in done.stderr and "Traceback" not in done.stderr:
        _unavailable(f"cannot make a read-only mount here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    assert _snapshot(source) == before  # not one byte written, no file added or removed
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fold", ["kept", "missing"])
def test_a_read_only_project_is_read_and_every_write_refused(project, tmp_path, monkeypatch, fold):
    from tests import foreach_fns as fns

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in [ROOT, os.environ.get("PYTHONPATH")] if p))
    for subject in (1, 2):
        RoRaw.save(np.arange(3.0) + subject, subject=subject)
    for_each(fns.bandpass, inputs={"signal": RoRaw, "low_hz": 2.0}, outputs=[RoOut], subject=[1, 2], progress=False)
    RoScore.save("a", subject=1)
    RoScore.save(2, subject=2)
    project.sync()
    project.close()
    if fold == "missing":  # the local index is caught up from the journal in memory
        for name in os.listdir(tmp_path / ".scistack"):
            if name.startswith("fold"):
                os.unlink(tmp_path / ".scistack" / name)
    work = tmp_path.parent / f"{tmp_path.name}-reader"
    work.mkdir()
    seen = _read_mounted(tmp_path, PROJECT_READER, work)
    assert "read-only file system" in seen["read_only"]
    assert seen["load"] == [2.0, 3.0, 4.0] and seen["out"] == [4.0, 6.0, 8.0]
    assert seen["load_all"] == 2 and seen["sql"] == 2 and seen["status"] == "done"
    # text, as the view ("a" beside 2: '2' sorts after '10'), typed by the file (in step) as it is
    assert seen["where"] == [] and seen["asked_duckdb"]
    assert all(r is not None and "can be read but not written" in r for r in seen["refused"]), seen["refused"]


def test_a_read_only_data_base_is_read_and_every_write_refused(tmp_path, monkeypatch, no_database):
    import scistack

    monkeypatch.setenv("SCISTACK_CONFIG_DIR", str(tmp_path / "config"))
    source = tmp_path / "data"
    db = scistack.open(source / "sims")
    db["simulation", "run_1"] = 5
    db.create_sub_db("cell_1")
    db.close()
    seen = _read_mounted(source, DATA_BASE_READER, tmp_path)
    assert seen["keys"] == ["cell_1", ["simulation", "run_1"]] and seen["value"] == 5
    assert all(r is not None for r in seen["refused"]), seen["refused"]
    assert "give scistack.open a folder you can write" in seen["refused"][2]
