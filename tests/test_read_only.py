"""A project on a folder that cannot be written (a read-only mount: an archive, a colleague's
share, a compute node's data mount) opens for reading: loads, load_all, SQL, `ls`, `log`,
`status` and `fsck` answer; a save, a delete, a for_each or a gc is refused with a
`ReadOnlyProjectError` before anything runs, and no byte in the folder changes. It had failed
to open at all: the local index was called damaged and its deletion was attempted.

The read-only mount is real: a bind mount remounted read-only in a private mount namespace
(`unshare`), so nothing outside this test sees it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scistack import BaseVariable, for_each


ROOT = str(Path(__file__).resolve().parents[1])


class RoRaw(BaseVariable):
    pass


class RoOut(BaseVariable):
    pass


READER = textwrap.dedent('''
    import json, sys
    import numpy as np
    from scistack import BaseVariable, configure_database, for_each
    from scistack.errors import ReadOnlyProjectError
    from scistack.report.status import status_grid

    class RoRaw(BaseVariable): pass
    class RoOut(BaseVariable): pass

    db = configure_database(sys.argv[1])
    seen = {"read_only": db.read_only,
            "load": RoRaw.load(subject=2).data.tolist(),
            "out": RoOut.load(subject=2).data.tolist(),
            "load_all": len(RoRaw.load_all()),
            "sql": db.sql("SELECT count(*) AS n FROM RoRaw")["n"][0].item(),
            "status": status_grid(db, ["RoOut"]).cell("RoOut", {"subject": 2}).status}
    refused = []
    for attempt in (lambda: RoRaw.save(np.arange(9.0), subject=9),
                    lambda: RoRaw.delete(subject=1),
                    lambda: for_each(lambda signal: signal * 3, inputs={"signal": RoRaw}, outputs=[RoOut],
                                     subject=[1, 2]),
                    lambda: db.reindex()):
        try:
            attempt()
            refused.append(None)
        except ReadOnlyProjectError as exc:
            refused.append(str(exc))
    seen["refused"] = refused
    db.close()
    print(json.dumps(seen))
''')


def _mount_read_only(source: Path, target: Path, *command: str) -> subprocess.CompletedProcess:
    """Run `command` with `target` a read-only bind mount of `source`, in a private mount
    namespace (as root, or as a user through a user namespace)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        _unavailable("unshare (util-linux) is not installed")
    inner = (f"mount --bind {source} {target} && mount -o remount,bind,ro {target} && "
             + " ".join(f"'{c}'" for c in command))
    flags = "-m" if os.geteuid() == 0 else "-rm"
    return subprocess.run([unshare, flags, "sh", "-c", inner], capture_output=True, text=True, timeout=120)


def _unavailable(why: str) -> None:
    """In CI (the CI variable set) a machine that cannot mount read-only fails the run."""
    if os.environ.get("CI"):
        pytest.fail(why + "; CI must run the read-only project test")
    pytest.skip(why)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fold", ["kept", "missing"])
def test_a_read_only_project_is_read_and_every_write_refused(project, tmp_path, monkeypatch, fold):
    from tests import foreach_fns as fns

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in [ROOT, os.environ.get("PYTHONPATH")] if p))
    for subject in (1, 2):
        RoRaw.save(np.arange(3.0) + subject, subject=subject)
    for_each(fns.bandpass, inputs={"signal": RoRaw, "low_hz": 2.0}, outputs=[RoOut], subject=[1, 2], progress=False)
    project.sync()
    project.close()
    source = tmp_path
    if fold == "missing":  # the local index is caught up from the journal in memory
        for name in os.listdir(source / ".scistack"):
            if name.startswith("fold"):
                os.unlink(source / ".scistack" / name)
    target = tmp_path.parent / f"{tmp_path.name}-ro"
    target.mkdir()
    (tmp_path.parent / f"{tmp_path.name}-reader.py").write_text(READER)
    before = _snapshot(source)
    done = _mount_read_only(source, target, sys.executable, str(tmp_path.parent / f"{tmp_path.name}-reader.py"),
                            str(target / "gait.duckdb"))
    if done.returncode != 0 and "mount" in done.stderr and "Traceback" not in done.stderr:
        _unavailable(f"cannot make a read-only mount here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "read-only file system" in seen["read_only"]
    assert seen["load"] == [2.0, 3.0, 4.0] and seen["out"] == [4.0, 6.0, 8.0]
    assert seen["load_all"] == 2 and seen["sql"] == 2 and seen["status"] == "done"
    assert all(r is not None and "can be read but not written" in r for r in seen["refused"]), seen["refused"]
    assert _snapshot(source) == before  # not one byte written, no file added or removed


DATA_BASE_READER = textwrap.dedent('''
    import json, sys
    import scistack
    from scistack.errors import ReadOnlyProjectError

    db = scistack.open(sys.argv[1] + "/sims")
    seen = {"keys": [list(k) if isinstance(k, tuple) else k for k in db.keys()],
            "value": db["simulation", "run_1"]}
    refused = []
    for attempt in (lambda: db.__setitem__("x", 1), lambda: db.create_sub_db("cell_2"),
                    lambda: scistack.open(sys.argv[1] + "/new")):
        try:
            attempt()
            refused.append(None)
        except ReadOnlyProjectError as exc:
            refused.append(str(exc))
    seen["refused"] = refused
    print(json.dumps(seen))
''')


def test_a_read_only_data_base_is_read_and_every_write_refused(tmp_path, monkeypatch, no_database):
    import scistack

    monkeypatch.setenv("SCISTACK_CONFIG_DIR", str(tmp_path / "config"))
    source = tmp_path / "data"
    db = scistack.open(source / "sims")
    db["simulation", "run_1"] = 5
    db.create_sub_db("cell_1")
    db.close()
    target = tmp_path / "mounted"
    target.mkdir()
    script = tmp_path / "reader.py"
    script.write_text(DATA_BASE_READER)
    before = _snapshot(source)
    done = _mount_read_only(source, target, sys.executable, str(script), str(target))
    if done.returncode != 0 and "mount" in done.stderr and "Traceback" not in done.stderr:
        _unavailable(f"cannot make a read-only mount here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["keys"] == ["cell_1", ["simulation", "run_1"]] and seen["value"] == 5
    assert all(r is not None for r in seen["refused"]), seen["refused"]
    assert "give scistack.open a folder you can write" in seen["refused"][2]
    assert _snapshot(source) == before
