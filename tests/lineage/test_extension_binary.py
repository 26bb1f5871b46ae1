"""A project's own compiled extension module counts by its binary, not by a version.

A lineage function calling into an extension built in the project folder (a ``.so`` from a
C or ``.pyx`` file, imported as project code) had been identified by ``ext==unknown``: the
extension rebuilt with other behaviour was the same identity, and the cache served the old
binary's results. The extensions here are real: a few lines of C compiled by the system's C
compiler against this interpreter's headers (skipped only where there is none).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import blake3
import pytest

from scistack.codeid import _packages, files
from scistack.codeid._packages import binary_build, extension_binary, package_version
from scistack.codeid.identity import function_identity
from tests.helpers import build_extension as build, require_compiler

REPO_ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture(autouse=True)
def _compiler() -> None:
    require_compiler()

def digest(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()[:32]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder on sys.path (an extension module cannot be unloaded: each test's has a
    name of its own)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    files.install()  # (the hook sees the extension's import: its load time)
    return tmp_path


def test_a_function_calling_a_project_extension_is_identified_by_its_binary(folder: Path) -> None:
    name = f"ext_{uuid.uuid4().hex[:10]}"
    binary = build(folder, name, 1)
    (folder / f"use_{name}.py").write_text(textwrap.dedent(f"""
        import {name}
        from {name} import value
        def by_attribute(x):
            return {name}.value() + x
        def by_name(x):
            return value() + x
        def by_type():
            return {name}.Grid()
        def by_module():
            return getattr({name}, "value")()
    """))
    use = __import__(f"use_{name}")
    label = f"{name}==unknown build:so-{digest(binary)}"
    assert function_identity(use.by_attribute).deps == ((f"pkg:{name}.value", label),)
    assert function_identity(use.by_name).deps == ((f"pkg:{name}.value", label),)
    assert function_identity(use.by_type).deps == ((f"pkg:{name}.Grid", label),)  # not a class walked
    assert (f"pkg:{name}", label) in function_identity(use.by_module).deps
    lone = function_identity(sys.modules[name].value)  # the extension's function itself
    assert lone.deps == ((f"pkg:{name}.value", label),)
    assert extension_binary(f"{name}.value") == (name, str(binary), True)
    # imported before the audit hook was installed (no load time), built since this process
    # started: the file this process has mapped is that binary, not a rebuild
    del files._LOADED_AT[str(binary)]
    assert binary_build(str(binary), True) == f"so-{digest(binary)}"
    assert extension_binary("numpy.add") is None and extension_binary("json.dumps") is None


def test_a_binary_not_imported_is_found_by_name_and_hashed_again_once_rebuilt(folder: Path) -> None:
    """`why`/`status` of a script's record look an extension up without importing it; its
    digest is memoised by stat (racy rules as the file inputs'), never stale."""
    name = f"ext_{uuid.uuid4().hex[:10]}"
    package = folder / f"pkg_{name}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    binary = build(package, name, 1)
    dotted = f"pkg_{name}.{name}"
    assert extension_binary(f"{dotted}.value") == (dotted, str(binary), False)
    assert package_version(f"{dotted}.value") == f"{dotted}==unknown build:so-{digest(binary)}"
    assert dotted not in sys.modules and f"pkg_{name}" not in sys.modules
    assert str(binary) not in _packages._BINARIES  # racy: just written, so hashed at each use
    build(package, name, 2)
    assert package_version(f"{dotted}.value") == f"{dotted}==unknown build:so-{digest(binary)}"
    # a stat not racy is kept: an unchanged stat is not hashed again (the sentinel is served),
    # a changed one is
    old = os.stat(binary).st_mtime_ns - 10 * 10**9
    os.utime(binary, ns=(old, old))
    st = os.stat(binary)
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    _packages._BINARIES[str(binary)] = (stamp, "sentinel")
    assert binary_build(str(binary), False) == "so-sentinel"
    os.utime(binary, ns=(old + 10**9, old + 10**9))
    assert binary_build(str(binary), False) == f"so-{digest(binary)}"


def test_a_binary_rebuilt_after_this_process_imported_it_is_not_taken_for_the_code_running(
    folder: Path,
) -> None:
    """Python never loads an extension again: the old binary runs, so its results must not
    be recorded under the new binary's identity."""
    name = f"ext_{uuid.uuid4().hex[:10]}"
    build(folder, name, 1)
    (folder / f"use_{name}.py").write_text(f"import {name}\ndef f(x):\n    return {name}.value() + x\n")
    use = __import__(f"use_{name}")
    binary = build(folder, name, 2)  # rebuilt before the first identity of f
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (label, build_label), = function_identity(use.f).deps
    assert sys.modules[name].value() == 1  # what runs
    assert f"so-{digest(binary)}-changed-after-import-{os.getpid()}." in build_label
    assert any("changed after this process imported it" in str(w.message) for w in caught)
    del files._LOADED_AT[str(binary)]  # imported before the hook: the file mapped is the old one
    assert "-changed-after-import-" in binary_build(str(binary), True)


DRIVER = """
import json, sys
from scistack.codeid import files
files.install()  # (before the extension's import: its load time is known)
import numpy as np
from scistack import BaseVariable, configure_database, for_each, why
from pipeline import run

class Raw(BaseVariable): pass
class Scaled(BaseVariable): pass

db = configure_database("db/project.duckdb", ["subject"])
if sys.argv[1] == "first":
    Raw.save(np.arange(3.0), subject=1)
    Raw.save(np.arange(2.0), subject=2)
told = None if sys.argv[1] == "first" else why(Scaled, subject=1)
report = for_each(run, inputs={"x": Raw}, outputs=[Scaled], subject=[1])
direct = run(Raw.load(subject=2))  # (another input: not for_each's result)
print(json.dumps({"why": None if told is None else told.status, "why_text": str(told),
                  "foreach": report.items[0].status, "value": Scaled.load(subject=1).data.tolist(),
                  "direct_cached": direct.cached, "direct": np.asarray(direct.data).tolist()}))
db.close()
"""


def test_a_rebuilt_project_extension_is_computed_again(tmp_path: Path) -> None:
    """for_each and a direct call in a new process after the extension was rebuilt with
    another return value: computed again (the old binary's results had been served), and
    served from the cache in the next process, the binary unchanged."""
    name = f"fastext_{uuid.uuid4().hex[:8]}"
    build(tmp_path, name, 1)
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(f"""
        import numpy as np
        import {name}
        from scistack import lineage_fcn

        @lineage_fcn
        def run(x):
            return np.asarray(x) * {name}.value()
    """))
    (tmp_path / "driver.py").write_text(DRIVER)

    def phase(which: str) -> dict:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
        done = subprocess.run([sys.executable, "driver.py", which], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        assert "changed after this process imported it" not in done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = phase("first")
    assert first["value"] == [0.0, 1.0, 2.0] and first["foreach"] != "cached"
    assert not first["direct_cached"] and first["direct"] == [0.0, 1.0]
    build(tmp_path, name, 3)
    second = phase("second")
    assert second["why"] == "stale" and f"{name}.value" in second["why_text"], second
    assert second["foreach"] != "cached" and second["value"] == [0.0, 3.0, 6.0], second
    assert not second["direct_cached"] and second["direct"] == [0.0, 3.0]
    third = phase("third")  # the same binary: hits
    assert third["why"] == "current" and third["foreach"] == "cached", third
    assert third["direct_cached"] and third["direct"] == [0.0, 3.0] and third["value"] == [0.0, 3.0, 6.0]
