"""A project path a function reads as a constant (its module's ``__file__``, a path built
from it) is recorded relative to the project's folder: two checkouts of one project at other
absolute paths (a lab's machines, a project moved whole) agree on the function's identity."""

from __future__ import annotations

import shutil
import subprocess
import sys

STEP = '''
import json, pathlib
CFG = pathlib.Path(__file__).parent / "cfg.json"
NAMES = (str(CFG), "/not/in/the/project.json")
def proc(x):
    here = pathlib.Path(__file__).resolve().parent
    assert len(NAMES) == 2
    return x * json.loads((here / "cfg.json").read_text())["k"] + json.loads(CFG.read_text())["k"]
'''
RUN = '''
import sys
sys.path.insert(0, sys.argv[1])
from scistack import BaseVariable, configure_database, for_each, why
from step import proc
class RelX(BaseVariable): pass
class RelY(BaseVariable): pass
db = configure_database(sys.argv[1] + "/gait.duckdb", ["subject"])
if "seed" in sys.argv: RelX.save(3.0, subject=1)
said = None if "seed" in sys.argv else why(RelY, subject=1)
status = "-" if said is None else said.status
done = for_each(proc, inputs={"x": RelX}, outputs=[RelY], subject=[1], progress=False, verbose=False)
print(status, done.ran, done.cached, len(RelY.list_versions(subject=1)), RelY.load(subject=1).data)
for reason in getattr(said, "reasons", ()):
    print("REASON", reason.kind, reason.name, reason.detail, file=sys.stderr)
db.close()
'''


def _run(project, python_env, *args: str) -> tuple[list[str], str]:
    done = subprocess.run([sys.executable, str(project / "run.py"), str(project), *args],
                          cwd=project, env=python_env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), done.stderr


def test_a_project_modules_file_and_paths_built_from_it_are_the_same_in_every_checkout(tmp_path, python_env):
    """`Path(__file__)` read by a project function was recorded as the constant
    ``step.__file__`` by its absolute path (and ``CFG``, a path built from it, too): a second
    checkout of the project at another absolute path ran the call again and saved a new
    version of the same value, its `why` saying "constant step.__file__: value changed". Both
    are recorded relative to the project's folder; the file read through them is still an
    input by its content, and a path outside the project is still recorded as it is."""
    first = tmp_path / "real_a" / "proj"
    first.mkdir(parents=True)
    (first / "step.py").write_text(STEP)
    (first / "cfg.json").write_text('{"k": 2}')
    (first / "run.py").write_text(RUN)
    assert _run(first, python_env, "seed")[0] == ["-", "1", "0", "1", "8.0"]
    second = tmp_path / "real_b" / "proj"
    shutil.copytree(first, second)
    out, err = _run(second, python_env)
    assert out == ["current", "0", "1", "1", "8.0"], err
    (second / "cfg.json").write_text('{"k": 5}')
    out, err = _run(second, python_env)
    assert out == ["stale", "1", "0", "2", "20.0"]
    assert "cfg.json" in err and "__file__" not in err and "CFG" not in err


PKG_INIT = '''
import pathlib
HERE = pathlib.Path(__file__).parent
'''
PKG_MOD = '''
import os
from . import HERE
DATA = HERE / "d.txt"
OUT = "/elsewhere/x"
def f(where=os.path.join(os.path.dirname(__file__), "w")):
    return __file__, DATA, OUT, where
'''
SCRIPT = '''
import sys
sys.path.insert(0, sys.argv[1])
from scistack.codeid.identity import function_identity
from pkg.mod import f
ME = __file__
def g():
    return ME, f()
print(function_identity(f).digest, function_identity(g).digest)
from scistack.codeid.codetree import code_tree, constant_values
print(sorted(constant_values(function_identity(g), code_tree(g, function_identity(g))).items()), file=sys.stderr)
'''


def test_paths_in_a_packages_folder_and_a_scripts_are_recorded_by_their_place_in_it(tmp_path, python_env):
    """A package's module (its folder the one it was imported from: `src/`, not the
    package's own), a package's ``__init__`` and a script (`__main__`: its own folder): the
    same identity in two checkouts at other absolute paths; a path outside the project is
    still recorded as it is (its edit changes the identity)."""
    def digests(project) -> list[str]:
        done = subprocess.run([sys.executable, str(project / "run.py"), str(project / "src")],
                              cwd=tmp_path, env=python_env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        shown.append(done.stderr)
        return done.stdout.split()

    shown: list[str] = []
    first = tmp_path / "real_a" / "proj"
    (first / "src" / "pkg").mkdir(parents=True)
    (first / "src" / "pkg" / "__init__.py").write_text(PKG_INIT)
    (first / "src" / "pkg" / "mod.py").write_text(PKG_MOD)
    (first / "run.py").write_text(SCRIPT)
    second = tmp_path / "elsewhere_b" / "proj"
    shutil.copytree(first, second)
    before = digests(first)
    assert digests(second) == before
    # (what `why` shows of them: "value changed: '/…/proj/run.py' -> '<project>/run.py'")
    assert "('const:__main__.ME', \"'<project>/run.py'\")" in shown[0], shown[0]
    assert "('const:pkg.mod.DATA', \"PosixPath('<project>/pkg/d.txt')\")" in shown[0], shown[0]
    assert "('const:pkg.mod.OUT', \"'/elsewhere/x'\")" in shown[0], shown[0]
    assert "real_a" not in shown[0] and shown[0] == shown[1]
    (second / "src" / "pkg" / "mod.py").write_text(PKG_MOD.replace("/elsewhere/x", "/elsewhere/y"))
    after = digests(second)
    assert after[0] != before[0] and after[1] != before[1]
