"""`why` and `scistack status` judge functions defined in a script's __main__ from its file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from scistack import BaseVariable, configure_database, why
from scistack.cli import main
from scistack.codeid.script_path import script_path
from scistack.records import FunctionInfo
from tests.helpers import build_extension, require_compiler

SCRIPT = '''
import numpy as np
from scistack import configure_database, BaseVariable, lineage_fcn, for_each

GAIN = 2.0

class ScRaw(BaseVariable): pass
class ScOut(BaseVariable): pass

def helper(x):
    return x * GAIN

@lineage_fcn
def process(signal):
    """Scale the signal."""
    return helper(signal) + 1   # a comment

if __name__ == "__main__":
    db = configure_database("p.duckdb", ["subject", "session"])
    ScRaw.save(np.arange(3.0), subject=1, session="pre")
    for_each(process, inputs={"signal": ScRaw}, outputs=[ScOut], subject=[1], session=["pre"],
             progress=False)
    db.close()
'''


class ScRaw(BaseVariable):
    pass


class ScOut(BaseVariable):
    pass


def _run_with_helpers(tmp_path: Path, python_env: dict, monkeypatch, module: str, helpers_text: str,
                      script_text: str) -> tuple[Path, Path]:
    """A helper module beside the script (importable by this process too, as by `scistack
    status`), then the script run: (the module's file, the script's)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    helpers = tmp_path / f"{module}.py"
    helpers.write_text(helpers_text)
    return helpers, _run_script(tmp_path, python_env, script_text)


def _run_script(tmp_path: Path, python_env: dict, text: str = SCRIPT) -> Path:
    """`text` written to pipeline.py in `tmp_path` and run there, as a user runs a script."""
    script = tmp_path / "pipeline.py"
    script.write_text(text)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=python_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return script


def test_script_functions_are_judged_from_their_file(tmp_path, python_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = _run_script(tmp_path, python_env)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    try:
        assert why(ScOut, subject=1, session="pre").status == "current"

        script.write_text(SCRIPT.replace("# a comment", "# reworded comment"))
        assert why(ScOut, subject=1, session="pre").status == "current"

        script.write_text(SCRIPT.replace("return x * GAIN", "return x * GAIN * 3"))
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "stale"
        assert any(r.kind == "helper" and r.name == "helper" and "GAIN * 3" in r.diff for r in report.reasons)

        script.write_text(SCRIPT.replace("GAIN = 2.0", "GAIN = 2.5"))
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "stale"
        assert any(r.kind == "constant" and "2.0 -> 2.5" in r.detail for r in report.reasons)

        status = CliRunner().invoke(main, ["--db", str(tmp_path / "p.duckdb"), "status", "ScOut"])
        assert status.exit_code == 0, status.output
        assert "STALE" in status.output and "?" not in status.output.split("\n\n")[0]
    finally:
        db.close()


@pytest.mark.parametrize("racy", [True, False])
def test_a_same_size_edit_that_kept_the_mtime_is_judged_from_the_new_text(tmp_path, python_env, monkeypatch,
                                                                          racy):
    # the script's parse was remembered by (path, mtime, size): a same-size edit in the same
    # timestamp tick, or a `cp -p` of another version (its mtime set back), was judged from
    # the old text, "current" though the helper now multiplies by 3. A racy stat (the script
    # written within 2 s) is parsed again at every look; an older one is remembered by its
    # whole stat, whose ctime (no copy can set it) tells the versions apart
    from scistack.codeid import files, script_check
    from tests.helpers import same_size_rewrite

    monkeypatch.setattr(files, "_RACY_NS", 3600 * 10**9 if racy else 0)
    monkeypatch.chdir(tmp_path)
    script = _run_script(tmp_path, python_env)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    try:
        assert why(ScOut, subject=1, session="pre").status == "current"
        same_size_rewrite(script, SCRIPT.replace("return x * GAIN", "return x / GAIN"))
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "stale"
        assert any(r.kind == "helper" and r.name == "helper" and "GAIN" in r.diff for r in report.reasons)
        script_check._parse_version.cache_clear()
        assert why(ScOut, subject=1, session="pre").status == "stale"
        assert script_check._parse_version.cache_info().currsize == (0 if racy else 1)  # (racy: not kept)
    finally:
        db.close()


def test_unreadable_script_means_unknown_not_current(tmp_path, python_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = _run_script(tmp_path, python_env)
    script.unlink()
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    try:
        assert why(ScOut, subject=1, session="pre").status == "unknown"
        assert np.array_equal(ScOut.load(subject=1, session="pre").data, np.arange(3.0) * 2 + 1)
    finally:
        db.close()


DATA_SCRIPT = SCRIPT.replace("GAIN = 2.0\n", "GAIN = 2.0\nWEIGHTS = [1, 2]\n").replace(
    "def helper(x):\n    return x * GAIN", "def helper(x, k=GAIN):\n    return x * k * sum(WEIGHTS)"
)


def test_script_module_data_and_defaults_are_judged_from_the_file(tmp_path, python_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = _run_script(tmp_path, python_env, DATA_SCRIPT)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    try:
        assert why(ScOut, subject=1, session="pre").status == "current"

        script.write_text(DATA_SCRIPT.replace("WEIGHTS = [1, 2]", "WEIGHTS = [1, 3]"))
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "stale"
        assert any(r.kind == "data" and "[1, 2] -> [1, 3]" in r.detail for r in report.reasons), report

        script.write_text(DATA_SCRIPT.replace("GAIN = 2.0", "GAIN = 2.5"))
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "stale"
        assert any("<default>.k=GAIN" in r.name and "2.0 -> 2.5" in r.detail for r in report.reasons), report
    finally:
        db.close()


HELPERS = '''
SCALE = 2.0
WEIGHTS = [1.0]

class Gain:
    def __init__(self, k):
        self.k = k

    def apply(self, x):
        return x * self.k * WEIGHTS[0]

def default_offset():
    return 1.0
'''

IMPORTING_SCRIPT = '''
import numpy as np
from scistack import configure_database, BaseVariable, lineage_fcn, for_each
import labhelpers

class ScRaw(BaseVariable): pass
class ScOut(BaseVariable): pass
class ScShifted(BaseVariable): pass

@lineage_fcn
def scale(signal):
    return labhelpers.Gain(labhelpers.SCALE).apply(signal)

@lineage_fcn
def shift(signal, offset=labhelpers.default_offset()):
    return signal + offset

if __name__ == "__main__":
    db = configure_database("p.duckdb", ["subject", "session"])
    ScRaw.save(np.arange(3.0), subject=1, session="pre")
    for fn, out in ((scale, ScOut), (shift, ScShifted)):
        for_each(fn, inputs={"signal": ScRaw}, outputs=[out], subject=[1], session=["pre"], progress=False)
    db.close()
'''


class ScShifted(BaseVariable):
    pass


def test_script_judges_classes_and_constants_of_the_modules_it_imports(tmp_path, python_env, monkeypatch):
    """A script's function using a class and a constant of a helper module beside it is
    judged by importing that module as it is now (it was "unknown"; and a class reading its
    module's data was "stale" unchanged: its identity with that data had been compared with
    the recorded code-only one); a default computed by a
    call (`offset=labhelpers.default_offset()`) is not in the text, so it is "unknown", never
    "current" on a guess (its result changes when the helper does)."""
    helpers, _ = _run_with_helpers(tmp_path, python_env, monkeypatch, "labhelpers", HELPERS,
                                   IMPORTING_SCRIPT)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])

    def judged(variable, helpers_text):
        helpers.write_text(helpers_text)
        sys.modules.pop("labhelpers", None)  # as a fresh `scistack status` imports it
        return why(variable, subject=1, session="pre")

    try:
        assert judged(ScOut, HELPERS).status == "current"
        report = judged(ScOut, HELPERS.replace("return x * self.k", "return x * self.k + 1"))
        assert report.status == "stale"
        assert any(r.kind == "class" and r.name == "labhelpers.Gain" for r in report.reasons), report
        report = judged(ScOut, HELPERS.replace("SCALE = 2.0", "SCALE = 3.0"))
        assert report.status == "stale"
        assert any(r.kind == "constant" and "2.0 -> 3.0" in r.detail for r in report.reasons), report
        report = judged(ScOut, HELPERS.replace("WEIGHTS = [1.0]", "WEIGHTS = [2.0]"))  # the class's
        assert report.status == "stale"  # module data: judged as data, the class's code as code
        assert [(r.kind, r.name) for r in report.reasons] == [("data", "labhelpers.WEIGHTS")], report

        assert judged(ScShifted, HELPERS).status == "unknown"
        assert judged(ScShifted, HELPERS.replace("return 1.0", "return 5.0")).status == "unknown"
    finally:
        sys.modules.pop("labhelpers", None)
        db.close()


NAMES_SCRIPT = '''
import numpy as np
from scistack import configure_database, BaseVariable, lineage_fcn, for_each
from labhelpers import SCALE, TABLE as GAINS

GAIN = 2.0

class ScRaw(BaseVariable): pass
class ScOut(BaseVariable): pass
class ScShifted(BaseVariable): pass
class ScBlock(BaseVariable): pass

@lineage_fcn
def scale(signal):
    return signal * SCALE * GAINS["k"]

@lineage_fcn
def shift(signal):
    return signal + GAIN

if __name__ == "__main__":
    @lineage_fcn
    def in_block(signal):
        return signal - 1

    db = configure_database("p.duckdb", ["subject", "session"])
    ScRaw.save(np.arange(3.0), subject=1, session="pre")
    for fn, out in ((scale, ScOut), (shift, ScShifted), (in_block, ScBlock)):
        for_each(fn, inputs={"signal": ScRaw}, outputs=[out], subject=[1], session=["pre"], progress=False)
    db.close()
'''


class ScBlock(BaseVariable):
    pass


def test_script_names_imported_from_modules_and_names_bound_in_blocks(tmp_path, python_env, monkeypatch):
    """A constant and data imported by name (`from labhelpers import SCALE, TABLE as GAINS`)
    are judged by their module's values now (they were "unknown"). A global bound again
    inside `if __name__ == "__main__":`, and a function defined there, are "unknown": the
    text cannot say which binding ran (the top-level literal had been taken, "current" after
    the block changed the value; the function was "no longer defined", stale)."""
    helpers, script = _run_with_helpers(tmp_path, python_env, monkeypatch, "labhelpers",
                                        HELPERS + "TABLE = {'k': 1.0}\n", NAMES_SCRIPT)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])

    def judged(variable, helpers_text=HELPERS + "TABLE = {'k': 1.0}\n"):
        helpers.write_text(helpers_text)
        sys.modules.pop("labhelpers", None)  # as a fresh `scistack status` imports it
        return why(variable, subject=1, session="pre")

    try:
        assert judged(ScOut).status == "current"
        report = judged(ScOut, HELPERS.replace("SCALE = 2.0", "SCALE = 3.0") + "TABLE = {'k': 1.0}\n")
        assert report.status == "stale"
        assert any(r.kind == "constant" and "2.0 -> 3.0" in r.detail for r in report.reasons), report
        report = judged(ScOut, HELPERS + "TABLE = {'k': 5.0}\n")
        assert report.status == "stale"
        assert any(r.kind == "data" and "5.0" in r.detail for r in report.reasons), report

        assert judged(ScShifted).status == "current"
        script.write_text(NAMES_SCRIPT.replace('    db = configure_database(', '    GAIN = 3.0\n    db = configure_database('))
        assert judged(ScShifted).status == "unknown"
        assert judged(ScBlock).status == "unknown"
    finally:
        sys.modules.pop("labhelpers", None)
        db.close()


# each script's main block: the project, one raw value, one run of `process`
RUN_PROCESS = '''
if __name__ == "__main__":
    db = configure_database("p.duckdb", ["subject", "session"])
    ScRaw.save(np.arange(3.0), subject=1, session="pre")
    for_each(process, inputs={"signal": ScRaw}, outputs=[ScOut], subject=[1], session=["pre"], progress=False)
    db.close()
'''

COMPUTED_SCRIPT = '''
import sys
import numpy as np
from scistack import configure_database, BaseVariable, lineage_fcn, for_each

GAIN = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0

class ScRaw(BaseVariable): pass
class ScOut(BaseVariable): pass

@lineage_fcn
def process(signal):
    return signal * GAIN + 1

''' + RUN_PROCESS


def test_what_the_script_file_cannot_settle_is_named_and_a_change_still_found(tmp_path, python_env,
                                                                              monkeypatch):
    """A global computed when the script runs (`GAIN = float(sys.argv[1])`) makes the value
    "unknown", naming GAIN (it said the function "is not defined in this process; import
    it"); and a change of the function's code beside it is "stale" (it was "unknown" too)."""
    monkeypatch.chdir(tmp_path)
    script = _run_script(tmp_path, python_env, COMPUTED_SCRIPT)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    try:
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "unknown"
        assert [r.kind for r in report.reasons] == ["unknown"]
        assert "pipeline.py: GAIN is not a literal of the script" in report.reasons[0].detail
        status = CliRunner().invoke(main, ["--db", str(tmp_path / "p.duckdb"), "status", "ScOut"])
        assert status.exit_code == 0 and "?" in status.output.split("\n\n")[0], status.output

        script.write_text(COMPUTED_SCRIPT.replace("signal * GAIN + 1", "signal * GAIN + 2"))
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "stale"
        assert [r.kind for r in report.reasons] == ["code", "unknown"]
        status = CliRunner().invoke(main, ["--db", str(tmp_path / "p.duckdb"), "status", "ScOut"])
        assert "STALE" in status.output, status.output
    finally:
        db.close()


STAR_HELPERS = '''
__all__ = ["SETTINGS", "smooth"]
SETTINGS = {"k": 1}
HIDDEN = {"k": 1}

def smooth(x):
    return x * 2
'''

STAR_SCRIPT = '''
import numpy as np
from scistack import configure_database, BaseVariable, lineage_fcn, for_each
from starhelpers import *

class ScRaw(BaseVariable): pass
class ScOut(BaseVariable): pass

@lineage_fcn
def process(signal):
    return smooth(signal) + SETTINGS["k"]

''' + RUN_PROCESS


def test_names_a_script_star_imports_are_judged_by_their_module(tmp_path, python_env, monkeypatch):
    """`from starhelpers import *`: the data it brings (SETTINGS) is judged by the module's
    value now (it was "unknown: not a literal of the script"); a name the script binds
    itself, or one the module does not export, is not taken from it."""
    helpers, _ = _run_with_helpers(tmp_path, python_env, monkeypatch, "starhelpers", STAR_HELPERS,
                                   STAR_SCRIPT)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])

    def judged(helpers_text, script_text=STAR_SCRIPT):
        helpers.write_text(helpers_text)
        (tmp_path / "pipeline.py").write_text(script_text)
        sys.modules.pop("starhelpers", None)  # as a fresh `scistack status` imports it
        return why(ScOut, subject=1, session="pre")

    try:
        assert judged(STAR_HELPERS).status == "current"
        report = judged(STAR_HELPERS.replace('SETTINGS = {"k": 1}', 'SETTINGS = {"k": 2}'))
        assert report.status == "stale" and [r.kind for r in report.reasons] == ["data"], report
        assert judged(STAR_HELPERS.replace('"SETTINGS", ', "")).status == "unknown"  # not exported
        shadowed = STAR_SCRIPT.replace("class ScRaw", "SETTINGS = dict(k=1)\\n\\nclass ScRaw")
        assert judged(STAR_HELPERS, shadowed).status == "unknown"  # the script's own, computed
    finally:
        sys.modules.pop("starhelpers", None)
        db.close()


LAMBDA_HELPERS = '''
SETTINGS = {"k": 1}
OPS = {"dbl": lambda v: v * 2}
TRIPLE = lambda v: v * 3
'''

LAMBDA_SCRIPT = '''
import numpy as np
from scistack import configure_database, BaseVariable, lineage_fcn, for_each
import lambdahelpers as H

class ScRaw(BaseVariable): pass
class ScOut(BaseVariable): pass

@lineage_fcn
def process(signal):
    return H.OPS["dbl"](signal) + H.TRIPLE(signal) + H.SETTINGS["k"]

''' + RUN_PROCESS


def test_lambdas_a_helper_module_holds_are_judged(tmp_path, python_env, monkeypatch):
    """A script function calling lambdas of a helper module (one in a dict, one bound to a
    name) was "unknown" (a lambda has no name to import it by). Each is found in the module
    as it was, so the value is current; the dict's changed lambda is a data change (stale);
    the named one changed is not told from one held elsewhere (unknown, never current)."""
    helpers, _ = _run_with_helpers(tmp_path, python_env, monkeypatch, "lambdahelpers", LAMBDA_HELPERS,
                                   LAMBDA_SCRIPT)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])

    def judged(helpers_text):
        helpers.write_text(helpers_text)
        sys.modules.pop("lambdahelpers", None)  # as a fresh `scistack status` imports it
        return why(ScOut, subject=1, session="pre")

    try:
        assert judged(LAMBDA_HELPERS).status == "current"
        report = judged(LAMBDA_HELPERS.replace("v * 2", "v * 4"))
        assert report.status == "stale"
        assert ("data", "lambdahelpers.OPS") in {(r.kind, r.name) for r in report.reasons}
        assert judged(LAMBDA_HELPERS.replace("v * 3", "v * 5")).status == "unknown"
    finally:
        sys.modules.pop("lambdahelpers", None)
        db.close()


def test_a_copied_project_judges_its_own_copy_of_the_script(tmp_path, python_env, monkeypatch):
    """A second checkout of the project (a copied folder, a colleague's clone) reads its own
    script: the record names it relative to the project's folder, not only by the absolute
    path of the folder that computed the value."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    _run_script(first, python_env)
    shutil.copytree(first, second)
    (second / "pipeline.py").write_text(SCRIPT.replace("return x * GAIN", "return x * GAIN * 3"))
    monkeypatch.chdir(second)
    db = configure_database(second / "p.duckdb", ["subject", "session"])
    try:
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "stale", report
        assert any(r.kind == "helper" and "GAIN * 3" in r.diff for r in report.reasons), report
    finally:
        db.close()
    status = CliRunner().invoke(main, ["--db", str(second / "p.duckdb"), "status", "ScOut"])
    assert status.exit_code == 0, status.output
    assert "STALE" in status.output, status.output

    monkeypatch.chdir(first)
    db = configure_database(first / "p.duckdb", ["subject", "session"])
    try:
        assert why(ScOut, subject=1, session="pre").status == "current"
        (first / "pipeline.py").rename(first / "moved.py")  # the first folder's script gone...
    finally:
        db.close()
    monkeypatch.chdir(second)
    db = configure_database(second / "p.duckdb", ["subject", "session"])
    try:  # ...the copy still judges its own, never the first folder's
        assert why(ScOut, subject=1, session="pre").status == "stale"
    finally:
        db.close()


def test_a_record_without_a_project_path_reads_the_absolute_one(tmp_path):
    """Call records written before `project_file` existed keep their bytes and their meaning."""
    old = {"name": "process", "module": "__main__", "identity": "0" * 64, "file": str(tmp_path / "pipeline.py")}
    info = FunctionInfo.from_value(old)
    assert info.project_file is None and info.to_value() == old
    assert script_path(info, tmp_path / "elsewhere") == str(tmp_path / "pipeline.py")
    moved = FunctionInfo.from_value({**old, "project_file": "code/pipeline.py"})
    assert moved.to_value()["project_file"] == "code/pipeline.py"
    assert script_path(moved, tmp_path / "b") == str(tmp_path / "b" / "code" / "pipeline.py")
    assert script_path(FunctionInfo.from_value({**old, "project_file": "../x.py"}), tmp_path) == old["file"]


def test_a_nul_in_a_recorded_script_path_is_unknown_not_a_crash(tmp_path):
    """A damaged or crafted call record whose `project_file` or `file` holds a NUL byte: os.stat
    raises ValueError, not OSError, and `why`/`status` had crashed with it."""
    import types

    from scistack.codeid.script_check import script_changes

    def reason(kind, name, detail, diff):
        return (kind, name, detail)

    for fields in ({"file": str(tmp_path / "pipeline.py"), "project_file": "pipe\x00line.py"},
                   {"file": str(tmp_path / "pipe\x00line.py")}):
        fn = FunctionInfo.from_value({"name": "process", "module": "__main__", "identity": "0" * 64, **fields})
        found = script_changes(types.SimpleNamespace(root=str(tmp_path)), types.SimpleNamespace(function=fn),
                               None, reason, None)
        assert [r[0] for r in found] == ["unknown"], found
        assert "is not there" in found[0][2]


def test_an_imported_value_is_not_judged_by_the_importing_projects_own_script(tmp_path, python_env, monkeypatch):
    """Project A's script-computed value exported and imported into project B, whose own
    pipeline.py is another script defining `process` too: B judged A's record by B's script
    (`project_file` resolved against B's folder) and called the value stale. The record names
    the project that made it; B reads A's script at its recorded path instead."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _run_script(a, python_env, SCRIPT.replace("    db.close()", "    db.export(ScOut, to='../bundle', subject=1, "
                                                               "session='pre')\n    db.close()"))
    (b / "pipeline.py").write_text("def process(signal):\n    return signal - 100\n")
    monkeypatch.chdir(b)
    db = configure_database(b / "p.duckdb", ["subject", "session"])
    try:
        db.import_bundle(tmp_path / "bundle")
        assert why(ScOut, subject=1, session="pre").status == "current"
        (a / "pipeline.py").write_text(SCRIPT.replace("return x * GAIN", "return x * GAIN * 3"))
        report = why(ScOut, subject=1, session="pre")  # A's script, where A's record says it is
        assert report.status == "stale" and any("GAIN * 3" in r.diff for r in report.reasons), report
    finally:
        db.close()


EXTENSION_SCRIPT = '''
import numpy as np
import {name}
from scistack import configure_database, BaseVariable, lineage_fcn, for_each

class ScRaw(BaseVariable): pass
class ScOut(BaseVariable): pass

@lineage_fcn
def process(signal):
    return signal * {name}.value()

if __name__ == "__main__":
    db = configure_database("p.duckdb", ["subject", "session"])
    ScRaw.save(np.arange(3.0), subject=1, session="pre")
    for_each(process, inputs={{"signal": ScRaw}}, outputs=[ScOut], subject=[1], session=["pre"],
             progress=False)
    db.close()
'''


def test_a_script_calling_the_projects_compiled_extension_is_judged_by_its_binary(tmp_path, python_env,
                                                                                  monkeypatch):
    """The extension is found by name without importing it: the same binary is current, a
    rebuilt one stale (it had been current: `ext==unknown` both times), and one not found
    here unknown (not a change)."""
    require_compiler()
    name = f"extsc_{uuid.uuid4().hex[:8]}"
    build_extension(tmp_path, name, 2)
    monkeypatch.chdir(tmp_path)
    _run_script(tmp_path, python_env, EXTENSION_SCRIPT.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    try:
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "current", report
        build_extension(tmp_path, name, 3)
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "stale", report
        assert [(r.kind, r.name) for r in report.reasons] == [("package", f"{name}.value")], report
        sys.path.remove(str(tmp_path))
        report = why(ScOut, subject=1, session="pre")
        assert report.status == "unknown" and "compiled extension" in str(report), report
        assert name not in sys.modules
    finally:
        db.close()
