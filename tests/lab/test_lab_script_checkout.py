"""A colleague's checkout judges a script-defined function from its own copy of the script,
not from the path of the checkout that computed the value (shared filesystem or not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import WRITER_PASSWORD

PIPE = '''
import sys
import numpy as np
from scistack import BaseVariable, configure_database, for_each
class LabScriptRaw(BaseVariable): pass
class LabScriptScaled(BaseVariable): pass
def scale(signal, k):
    return signal * k
if __name__ == "__main__":
    db = configure_database("gait.duckdb", ["subject"], shared=sys.argv[1], objects=sys.argv[2])
    if "seed" in sys.argv: LabScriptRaw.save(np.arange(3.0), subject=1)
    for_each(scale, inputs={"signal": LabScriptRaw, "k": 2}, outputs=[LabScriptScaled], subject=[1],
             verbose=False, progress=False)
    db.close()
'''


def _run(folder: Path, env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_colleagues_checkout_judges_its_own_script(tmp_path, pg_url, bucket_url, s3_env, python_env):
    env = python_env | s3_env | {"PGPASSWORD": WRITER_PASSWORD}  # (later opens: the project keeps no password)
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "pipeline.py").write_text(PIPE)
    _run(first, env, "pipeline.py", pg_url, bucket_url, "seed")
    _run(second, env, "pipeline.py", pg_url, bucket_url)
    why = ["-m", "scistack", "why", "LabScriptScaled", "subject=1"]
    assert "current" in _run(second, env, *why).lower()

    (second / "pipeline.py").write_text(PIPE.replace("return signal * k", "return signal * k + 1"))
    assert "stale" in _run(second, env, *why).lower()
    assert "current" in _run(first, env, *why).lower()
    (first / "pipeline.py").rename(first / "moved.py")  # as on another machine: the first folder's file absent
    out = _run(second, env, *why).lower()
    assert "stale" in out and "is not there" not in out


def test_a_lab_project_shared_from_a_laptop_judges_the_laptops_records_by_its_own_script(
        tmp_path, pg_url, bucket_url, s3_env, python_env):
    """Call records name the project that made them beside `project_file` (an imported record's
    names another project's script); `share` makes the laptop's id the lab project's too, so
    the lab checkout still reads its own copy of the script for the laptop's records."""
    env = python_env | s3_env | {"PGPASSWORD": WRITER_PASSWORD}
    laptop, lab = tmp_path / "laptop", tmp_path / "lab"
    laptop.mkdir()
    (laptop / "pipeline.py").write_text(PIPE.replace(", shared=sys.argv[1], objects=sys.argv[2]", ""))
    _run(laptop, env, "pipeline.py", "seed")
    _run(laptop, env, "-c", "from scistack import configure_database\n"
         f"db = configure_database('gait.duckdb')\ndb.share(to={str(lab)!r}, shared={pg_url!r}, "
         f"objects={bucket_url!r})\ndb.close()")
    (lab / "pipeline.py").write_text(PIPE)
    why = ["-m", "scistack", "why", "LabScriptScaled", "subject=1"]
    assert "current" in _run(lab, env, *why).lower()
    (lab / "pipeline.py").write_text(PIPE.replace("return signal * k", "return signal * k + 1"))
    assert "stale" in _run(lab, env, *why).lower()  # (the laptop's own script is unchanged)


FILE_PIPE = '''
import json
import sys
import numpy as np
from scistack import BaseVariable, configure_database, for_each, lineage_fcn
class LabFileRaw(BaseVariable): pass
class LabFileScaled(BaseVariable): pass
class LabFileShifted(BaseVariable): pass
def scale(signal):
    print("ran scale")
    with open("cfg.json") as f:
        return signal * json.load(f)["k"]
@lineage_fcn
def shift(signal):
    print("ran shift")
    with open("cfg.json") as f:
        return signal + json.load(f)["k"]
if __name__ == "__main__":
    db = configure_database("gait.duckdb", ["subject"], shared=sys.argv[1], objects=sys.argv[2])
    if "seed" in sys.argv: LabFileRaw.save(np.arange(3.0), subject=1)
    for_each(scale, inputs={"signal": LabFileRaw}, outputs=[LabFileScaled], subject=[1],
             verbose=False, progress=False)
    LabFileShifted.save(shift(LabFileRaw.load(subject=1)), subject=1)
    db.close()
'''


def test_a_colleagues_checkout_checks_its_own_copy_of_the_files_a_call_read(
        tmp_path, pg_url, bucket_url, s3_env, python_env):
    """Checkouts a and b (other absolute paths) of one lab project: b's run of a call that read
    the project's cfg.json is a cache hit of a's call, and b's `why` says current, since a
    record of the project looks for the file in the reader's checkout (`project_path`). b
    looked for a's absolute path: on another machine gone, so b ran every call again on every
    run (saving no version) and `why` said stale for ever. An edit of b's copy is seen."""
    env = python_env | s3_env | {"PGPASSWORD": WRITER_PASSWORD}
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "pipeline.py").write_text(FILE_PIPE)
        (folder / "cfg.json").write_text('{"k": 2}')
    assert _run(first, env, "pipeline.py", pg_url, bucket_url, "seed").split() == ["ran", "scale", "ran", "shift"]
    (first / "cfg.json").rename(first / "cfg-moved.json")  # as on another machine: a's file absent
    why = [["-m", "scistack", "why", var, "subject=1"] for var in ("LabFileScaled", "LabFileShifted")]
    for _ in range(2):
        assert _run(second, env, "pipeline.py", pg_url, bucket_url) == ""  # cache hits
        for asked in why:
            assert "current" in _run(second, env, *asked).lower()

    (second / "cfg.json").write_text('{"k": 3}')
    for asked in why:
        out = "".join(_run(second, env, *asked).split())  # (its lines wrapped)
        assert "stale" in out and str(second / "cfg.json") in out
    assert _run(second, env, "pipeline.py", pg_url, bucket_url).split() == ["ran", "scale", "ran", "shift"]
    for asked in why:
        assert "current" in _run(second, env, *asked).lower()
