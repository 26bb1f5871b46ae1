"""The pinned one-edit suite: after each single edit, the cache re-runs exactly when it must.

Every case is a small package ``c_<case>`` written under ``tmp_path`` with a lineage function
``run(x)``. One fresh process computes every case (through ``for_each`` and a direct call);
then each case's one edit is applied, bytecode caches are deleted (and never written), and a
second fresh process asks ``why`` and ``status``, runs both again and computes the truth by
calling the plain function without the cache. Running all cases in the same two processes
keeps the suite fast; each case has its own package, variables and files, so they cannot
see each other's edits.

Expectations: "rerun" (the result must change to the truth, `why` says stale and names the
change), "hit" (nothing that can change the result changed: served from the cache, `why`
says current) and "unknown" (an input that cannot be verified: served, but `why` and
`status` say ``?`` and name it).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("one_edit_driver.py")


def _npy(values: list[float]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values))
    return buffer.getvalue()


@dataclass(frozen=True)
class Case:
    """Files of one package (path -> text or bytes), the edit (path -> (old, new)) and the verdict."""

    name: str
    files: dict[str, str | bytes]
    edit: dict[str, tuple[str | bytes, str | bytes]] = field(default_factory=dict)
    expect: str = "rerun"  # "rerun", "hit" or "unknown"
    why: tuple[str, ...] = ()  # text `why` must contain after the edit


def _case(name: str, pipeline: str, edit: dict, expect: str = "rerun", why: tuple = (), **more: str | bytes) -> Case:
    files: dict[str, str | bytes] = {"pipeline.py": pipeline}
    files.update({k.replace("__", "."): v for k, v in more.items()})
    return Case(name, files, edit, expect, why)


HEAD = "import numpy as np\nfrom scistack import lineage_fcn\n"
SCALE = ("class Scale:\n    def __init__(self, k):\n        self.k = k\n\n    def __repr__(self):\n"
         "        return f'Scale(k={self.k})'\n\n    def apply(self, x):\n        return x.sum() * self.k\n\n"
         "    def __call__(self, x):\n        return x.sum() * self.k\n\n")

CASES = [
    # -- today's right answers ------------------------------------------------------------------
    _case("body", HEAD + "@lineage_fcn\ndef run(x):\n    y = x * 2\n    return y.sum()\n",
          {"pipeline.py": ("x * 2", "x * 3")}, why=("code run", "pipeline.py", "line 5")),
    _case("helper_deep", HEAD + "from . import helpers\n@lineage_fcn\ndef run(x):\n    return helpers.outer(x)\n",
          {"helpers.py": ("v + 1", "v + 2")}, why=("helper", "inner", "helpers.py"),
          helpers__py="def inner(v):\n    return v + 1\n\ndef outer(v):\n    return inner(v).sum()\n"),
    _case("constant", HEAD + "FACTOR = 2\n@lineage_fcn\ndef run(x):\n    return (x * FACTOR).sum()\n",
          {"pipeline.py": ("FACTOR = 2", "FACTOR = 3")}, why=("FACTOR", "2 -> 3", "pipeline.py, line 3")),
    _case("cosmetic", HEAD + "@lineage_fcn\ndef run(x):\n    return x.sum()\n",
          {"pipeline.py": ("def run(x):\n", 'def run(x):\n    """Doc."""\n    # a comment\n\n')},
          expect="hit"),
    _case("unrelated", HEAD + "from . import helpers\n@lineage_fcn\ndef run(x):\n    return helpers.used(x)\n",
          {"helpers.py": ("return 1", "return 2")}, expect="hit",
          helpers__py="def used(v):\n    return v.sum()\n\ndef other():\n    return 1\n"),
    _case("counter", HEAD + "CALLS = []\nSEEN = {}\nN = 0\n@lineage_fcn\ndef run(x):\n    global N\n"
          "    N += 1\n    CALLS.append(1)\n    SEEN[len(CALLS)] = True\n    return x.sum()\n",
          {}, expect="hit"),
    # -- 1. module-level data, by content ----------------------------------------------------------
    _case("list_data", HEAD + "WEIGHTS = [1, 2, 3]\n@lineage_fcn\ndef run(x):\n    return float(sum(WEIGHTS)) * x.sum()\n",
          {"pipeline.py": ("[1, 2, 3]", "[1, 2, 4]")}, why=("WEIGHTS", "[1, 2, 3] -> [1, 2, 4]", "pipeline.py, line 3")),
    _case("dict_data", HEAD + "CONFIG = {'gain': 2, 'offset': 0}\n@lineage_fcn\ndef run(x):\n"
          "    return x.sum() * CONFIG['gain'] + CONFIG['offset']\n",
          {"pipeline.py": ("'gain': 2", "'gain': 3")}, why=("CONFIG",)),
    _case("set_data", HEAD + "KEEP = {0, 1}\n@lineage_fcn\ndef run(x):\n    return float(sum(x[i] for i in sorted(KEEP)))\n",
          {"pipeline.py": ("{0, 1}", "{0, 2}")}, why=("KEEP",)),
    _case("array_data", HEAD + "KERNEL = np.array([1.0, 2.0])\n@lineage_fcn\ndef run(x):\n"
          "    return float(np.convolve(x, KERNEL).sum())\n",
          {"pipeline.py": ("[1.0, 2.0]", "[1.0, 3.0]")}, why=("KERNEL",)),
    _case("dataclass_config", HEAD + "import dataclasses\n@dataclasses.dataclass\nclass Cfg:\n    gain: float = 1.0\n"
          "CFG = Cfg(gain=2.0)\n@lineage_fcn\ndef run(x):\n    return x.sum() * CFG.gain\n",
          {"pipeline.py": ("gain=2.0", "gain=3.0")}, why=("CFG",)),
    _case("json_config", HEAD + "import json, os\nwith open(os.path.join(os.path.dirname(__file__), 'config.json')) as f:\n"
          "    CONFIG = json.load(f)\n@lineage_fcn\ndef run(x):\n    return x.sum() * CONFIG['gain']\n",
          {"config.json": ('{"gain": 2}', '{"gain": 5}')}, why=("CONFIG",), config__json='{"gain": 2}'),
    _case("helper_data", HEAD + "from . import helpers\n@lineage_fcn\ndef run(x):\n    return helpers.apply(x)\n",
          {"helpers.py": ("'a': 2", "'a': 7")}, why=("TABLE",),
          helpers__py="TABLE = {'a': 2}\n\ndef apply(v):\n    return v.sum() * TABLE['a']\n"),
    _case("regex_and_path", HEAD + "import re, pathlib\nPATTERN = re.compile('a+')\nBASE = pathlib.PurePosixPath('/data/raw')\n"
          "@lineage_fcn\ndef run(x):\n    return x.sum() + len(PATTERN.findall('aaa-a')) + len(BASE.name)\n",
          {"pipeline.py": ("'a+'", "'a'")}, why=("PATTERN",)),
    _case("namespace_config", HEAD + "import types\nCFG = types.SimpleNamespace(gain=2)\n@lineage_fcn\ndef run(x):\n"
          "    return x.sum() * CFG.gain\n", {"pipeline.py": ("gain=2", "gain=3")}, why=("CFG",)),
    _case("unverifiable", HEAD + "import array\nSCALE = array.array('d', [2.0])\n@lineage_fcn\ndef run(x):\n"
          "    return x.sum() * SCALE[0]\n", {}, expect="unknown", why=("SCALE", "cannot be verified")),
    # -- 2. code reached indirectly ----------------------------------------------------------------
    # a dataclass's defaults name module constants and helpers: its generated __repr__ (a
    # functools.wraps wrapper written in dataclasses.py) had been taken for its own method, and
    # the class body's names looked up in dataclasses' module, where none is: served stale
    _case("dataclass_default", HEAD + "import dataclasses\nGAIN = 2\n@dataclasses.dataclass\nclass Cfg:\n"
          "    g: float = GAIN\n\n    def scaled(self, v):\n        return v.sum() * self.g\n\n"
          "@lineage_fcn\ndef run(x):\n    return Cfg().scaled(x)\n",
          {"pipeline.py": ("GAIN = 2", "GAIN = 3")}, why=("GAIN", "2 -> 3")),
    _case("dataclass_factory", HEAD + "import dataclasses\nfrom . import helpers\n@dataclasses.dataclass\nclass Cfg:\n"
          "    w: list = dataclasses.field(default_factory=helpers.weights)\n\n"
          "@lineage_fcn\ndef run(x):\n    return x.sum() * sum(Cfg().w)\n",
          {"helpers.py": ("[1, 2]", "[1, 5]")}, why=("weights", "helpers.py"),
          helpers__py="def weights():\n    return [1, 2]\n"),
    # a lambda the class body makes (a default_factory) is kept on no class attribute: what
    # it reads had been no part of the class
    _case("dataclass_factory_lambda", HEAD + "import dataclasses\nfrom . import helpers\n@dataclasses.dataclass\n"
          "class Cfg:\n    ops: dict = dataclasses.field(default_factory=lambda: {'a': helpers.scale})\n\n"
          "@lineage_fcn\ndef run(x):\n    return Cfg().ops['a'](x).sum()\n",
          {"helpers.py": ("v * 2", "v * 3")}, why=("scale", "helpers.py"),
          helpers__py="def scale(v):\n    return v * 2\n"),
    _case("namedtuple_default", HEAD + "from typing import NamedTuple\nGAIN = 2\nclass P(NamedTuple):\n"
          "    k: int = GAIN\n\n@lineage_fcn\ndef run(x):\n    return x.sum() * P().k\n",
          {"pipeline.py": ("GAIN = 2", "GAIN = 3")}, why=("GAIN", "2 -> 3")),
    # a class attribute computed at import (from a file): known by its text alone, it had kept
    # the class's digest when the file changed (a module's K = load_k() is read by value)
    _case("class_attribute_computed", HEAD + "import os\nHERE = os.path.dirname(__file__)\n\n"
          "def load_k():\n    with open(os.path.join(HERE, 'k.txt')) as f:\n        return float(f.read())\n\n"
          "class Model:\n    K = load_k()\n\n    @classmethod\n    def apply(cls, v):\n        return v.sum() * cls.K\n\n"
          "@lineage_fcn\ndef run(x):\n    return Model.apply(x)\n",
          {"k.txt": ("2", "3")}, why=("Model.K", "2.0 -> 3.0"), k__txt="2"),
    # a method behind a project decorator's functools.wraps wrapper: the names its own body
    # reads (GAIN) had been no part of its class's references
    _case("decorated_method", HEAD + "from .helpers import logged\nGAIN = 2\nclass Model:\n    @logged\n"
          "    def apply(self, v):\n        return v.sum() * GAIN\n\n"
          "@lineage_fcn\ndef run(x):\n    return Model().apply(x)\n",
          {"pipeline.py": ("GAIN = 2", "GAIN = 3")}, why=("GAIN", "2 -> 3"),
          helpers__py="import functools\n\ndef logged(fn):\n    @functools.wraps(fn)\n    def wrapper(*a, **k):\n"
          "        return fn(*a, **k)\n    return wrapper\n"),
    _case("default_fn", HEAD + "from . import helpers\n@lineage_fcn\ndef run(x, fn=helpers.scale):\n    return fn(x).sum()\n",
          {"helpers.py": ("v * 2", "v * 3")}, why=("scale",), helpers__py="def scale(v):\n    return v * 2\n"),
    _case("default_const", HEAD + "from . import helpers\n@lineage_fcn\ndef run(x):\n    return helpers.scale(x).sum()\n",
          {"helpers.py": ("FACTOR = 2", "FACTOR = 3")}, why=("scale.<default>.k=FACTOR", "2 -> 3"),
          helpers__py="FACTOR = 2\n\ndef scale(v, k=FACTOR):\n    return v * k\n"),
    _case("dict_lambda", HEAD + "OPS = {'sq': lambda v: v ** 2}\n@lineage_fcn\ndef run(x):\n    return OPS['sq'](x).sum()\n",
          {"pipeline.py": ("v ** 2", "v ** 3")}, why=("OPS",)),
    _case("registry", HEAD + "from . import helpers\n@lineage_fcn\ndef run(x):\n    return helpers.OPS['double'](x).sum()\n",
          {"helpers.py": ("v * 2", "v * 4")}, why=("double",),
          helpers__py="OPS = {}\n\ndef register(fn):\n    OPS[fn.__name__] = fn\n    return fn\n\n"
          "@register\ndef double(v):\n    return v * 2\n"),
    _case("getattr_literal", HEAD + "from . import helpers\n@lineage_fcn\ndef run(x):\n    return getattr(helpers, 'scale')(x).sum()\n",
          {"helpers.py": ("v * 2", "v * 5")}, why=("scale",), helpers__py="def scale(v):\n    return v * 2\n"),
    _case("vectorize", HEAD + "from . import helpers\nBUMP = np.vectorize(helpers.bump)\n@lineage_fcn\ndef run(x):\n"
          "    return float(BUMP(x).sum())\n",
          {"helpers.py": ("v + 1", "v + 2")}, why=("bump",), helpers__py="def bump(v):\n    return v + 1\n"),
    _case("singledispatch", HEAD + "from . import helpers\n@lineage_fcn\ndef run(x):\n    return float(helpers.process(x))\n",
          {"helpers.py": ("v.sum() * 2", "v.sum() * 3")}, why=("helpers.py",),
          helpers__py="import functools\nimport numpy as np\n\n@functools.singledispatch\ndef process(v):\n    return v\n\n"
          "@process.register\ndef _(v: np.ndarray):\n    return v.sum() * 2\n"),
    _case("wraps_wrapper", HEAD + "from . import helpers\n@lineage_fcn\n@helpers.doubled\ndef run(x):\n    return x.sum()\n",
          {"helpers.py": ("2 * fn", "3 * fn")}, why=("wrapper", "helpers.py, line 6"),
          helpers__py="import functools\n\ndef doubled(fn):\n    @functools.wraps(fn)\n    def wrapper(*a, **k):\n"
          "        return 2 * fn(*a, **k)\n    return wrapper\n"),
    _case("closure_value", HEAD + "def make(k):\n    def scaled(x):\n        return x.sum() * k\n    return scaled\n"
          "run = lineage_fcn(make(2))\n", {"pipeline.py": ("make(2)", "make(3)")}, why=("<closure>.k", "2 -> 3")),
    _case("partial_value", HEAD + "import functools\ndef scaled(x, k):\n    return x.sum() * k\n"
          "run = lineage_fcn(functools.partial(scaled, k=2))\n", {"pipeline.py": ("k=2", "k=3")}, why=("2 -> 3",)),
    # a bound method counts its object: Scale(2).apply and Scale(3).apply were one function
    _case("bound_method_object", HEAD + SCALE + "run = lineage_fcn(Scale(2).apply)\n",
          {"pipeline.py": ("Scale(2)", "Scale(3)")}, why=("Scale", "changed: Scale(k=2) -> Scale(k=3)")),
    _case("callable_object", HEAD + SCALE + "run = lineage_fcn(Scale(2))\n",
          {"pipeline.py": ("Scale(2)", "Scale(3)")}, why=("Scale", "2) -> Scale(k=3)")),
    _case("bound_method_code", HEAD + SCALE + "run = lineage_fcn(Scale(2).apply)\n",
          {"pipeline.py": ("x.sum() * self.k\n\n    def __call__", "x.sum() * self.k + 1\n\n    def __call__")},
          why=("Scale.apply", "pipeline.py")),
    # -- 3. files read during the call -------------------------------------------------------------
    _case("file_open", HEAD + "import os\nHERE = os.path.dirname(__file__)\n@lineage_fcn\ndef run(x):\n"
          "    with open(os.path.join(HERE, 'calib.txt')) as f:\n        return x.sum() * float(f.read())\n",
          {"calib.txt": ("2", "3")}, why=("calib.txt",), calib__txt="2"),
    _case("file_npload", HEAD + "import os\nHERE = os.path.dirname(__file__)\n@lineage_fcn\ndef run(x):\n"
          "    return float((x[:2] * np.load(os.path.join(HERE, 'calib.npy'))).sum())\n",
          {"calib.npy": (_npy([1.0, 2.0]), _npy([1.0, 4.0]))}, why=("calib.npy",), calib__npy=_npy([1.0, 2.0])),
    _case("file_touched", HEAD + "import os\nHERE = os.path.dirname(__file__)\n@lineage_fcn\ndef run(x):\n"
          "    with open(os.path.join(HERE, 'calib.txt')) as f:\n        return x.sum() * float(f.read())\n",
          {"calib.txt": ("2", "2")}, expect="hit", calib__txt="2"),
    # -- 4. installed code rebuilt at the same version ----------------------------------------------
    _case("installed_rebuilt", HEAD + "import fakelib_ie\n@lineage_fcn\ndef run(x):\n    return fakelib_ie.scale(x).sum()\n",
          {"../../site-packages/fakelib_ie/__init__.py": ("v * 2", "v * 3")}, why=("package", "fakelib_ie")),
    _case("library_object", HEAD + "import fakelib_obj\nSCALE = fakelib_obj.Scale(2)\n@lineage_fcn\ndef run(x):\n"
          "    return SCALE(x).sum()\n", {"pipeline.py": ("Scale(2)", "Scale(3)")}, why=("SCALE",)),
    # -- needless re-runs ---------------------------------------------------------------------------
    _case("type_hints", HEAD + "@lineage_fcn\ndef run(x):\n    y = x * 2\n    return y.sum()\n",
          {"pipeline.py": ("def run(x):\n    y = x * 2", "def run(x: np.ndarray) -> float:\n    y: np.ndarray = x * 2")},
          expect="hit"),
    _case("unrelated_method", HEAD + "class Model:\n    K = 2\n\n    @classmethod\n    def a(cls, v):\n        return v * cls.K\n\n"
          "    def b(self, v):\n        return v * 9\n\n@lineage_fcn\ndef run(x):\n    return Model.a(x).sum()\n",
          {"pipeline.py": ("v * 9", "v * 7")}, expect="hit"),
    _case("related_method", HEAD + "class Model:\n    @classmethod\n    def a(cls, v):\n        return cls.b(v) * 2\n\n"
          "    @staticmethod\n    def b(v):\n        return v * 9\n\n@lineage_fcn\ndef run(x):\n    return Model.a(x).sum()\n",
          {"pipeline.py": ("v * 9", "v * 7")}, why=("Model.b", "pipeline.py, line 10")),
    _case("class_attribute", HEAD + "class Model:\n    K = 2\n\n    @classmethod\n    def a(cls, v):\n        return v * cls.K\n\n"
          "    def b(self, v):\n        return v * 9\n\n@lineage_fcn\ndef run(x):\n    return Model.a(x).sum()\n",
          {"pipeline.py": ("K = 2", "K = 3")}, why=("Model",)),
    _case("instance_method", HEAD + "class Model:\n    def a(self, v):\n        return v * 2\n\n    def b(self, v):\n"
          "        return v * 9\n\n@lineage_fcn\ndef run(x):\n    return Model().a(x).sum()\n",
          {"pipeline.py": ("v * 2", "v * 3")}, why=("Model",)),
]
BY_NAME = {c.name: c for c in CASES}
LIBRARY_OBJECT = (  # a callable object of an installed library, holding its own data
    "class Scale:\n    def __init__(self, k):\n        self.k = k\n\n"
    "    def __call__(self, v):\n        return v * self.k\n"
)


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def _write_fakelib(site: Path, source: str, name: str = "fakelib_ie") -> None:
    """An installed distribution `name` 1.0 whose RECORD lists its file's hash."""
    package, info = site / name, site / f"{name}-1.0.dist-info"
    package.mkdir(parents=True, exist_ok=True)
    info.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(source)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    record = _record_line(f"{name}/__init__.py", source.encode())
    (info / "RECORD").write_text(record + f"{name}-1.0.dist-info/RECORD,,\n")


def _write(root: Path, case: Case) -> None:
    package = root / "src" / f"c_{case.name}"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for rel, content in case.files.items():
        path = package / rel
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))


def _apply(root: Path, case: Case) -> None:
    package = root / "src" / f"c_{case.name}"
    for rel, (old, new) in case.edit.items():
        path = package / rel
        if isinstance(old, bytes):
            assert path.read_bytes() == old
            path.write_bytes(new)  # type: ignore[arg-type]
        else:
            text = path.read_text()
            assert old in text, (case.name, rel, old)
            path.write_text(text.replace(old, new, 1))  # type: ignore[arg-type]
        if rel.endswith("fakelib_ie/__init__.py"):  # rebuilt: RECORD names the new hash
            _write_fakelib(path.parents[1], path.read_text())
        stamp = os.stat(path).st_mtime_ns + 2_000_000_000  # unlike a re-save within one second
        os.utime(path, ns=(stamp, stamp))


def _run(root: Path, phase: str) -> dict:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    code_root = os.environ.get("SCISTACK_ONE_EDIT_CODE", str(REPO_ROOT))  # to check old code
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(root / "site-packages"), code_root])
    names = ",".join(c.name for c in CASES)
    done = subprocess.run(
        [sys.executable, str(DRIVER), phase, names], cwd=root, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    root = tmp_path_factory.mktemp("one_edit")
    _write_fakelib(root / "site-packages", "def scale(v):\n    return v * 2\n")
    _write_fakelib(root / "site-packages", LIBRARY_OBJECT, "fakelib_obj")
    for case in CASES:
        _write(root, case)
    before = _run(root, "before")
    for case in CASES:
        _apply(root, case)
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache)
    after = _run(root, "after")
    return {name: (before[name], after[name]) for name in BY_NAME}


@pytest.mark.parametrize("name", list(BY_NAME))
def test_one_edit(outcomes: dict[str, tuple[dict, dict]], name: str) -> None:
    case = BY_NAME[name]
    before, after = outcomes[name]
    assert before["foreach"] == "ran", before["error"]
    assert after["error"] is None
    # Whatever the verdict, the values served are what the code computes today.
    assert after["value"] == after["truth"]
    assert after["direct_value"] == after["direct_truth"]
    if case.expect == "rerun":
        assert after["truth"] != before["value"], "the edit must change the result to test anything"
        assert after["why"] == "stale", after["why_text"]
        assert after["status"] == "stale", after["status_reason"]
        assert after["foreach"] == "ran"
        assert after["direct_cached"] is False
    else:
        assert after["foreach"] == "cached", after
        assert after["direct_cached"] is True, after
        assert after["why"] == ("current" if case.expect == "hit" else "unknown"), after["why_text"]
        assert after["status"] == ("done" if case.expect == "hit" else "unknown"), after["status_reason"]
    for text in case.why:
        assert text in after["why_text"], after["why_text"]
