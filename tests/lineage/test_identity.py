"""Function identity: every edit that can change a result changes the digest, nothing else does.

Fixture code is written as real files into a throwaway package under ``tmp_path`` and imported;
"editing between runs" means rewriting the file and importing the package afresh, as a new
process would. No mocks: identity reads real source files, real globals and real closures.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import linecache
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scistack.errors import LineageError
from scistack.codeid._packages import package_version
from scistack.codeid.identity import FunctionIdentity, function_identity, normalised_source

REPO_ROOT = Path(__file__).resolve().parents[2]
NUMPY_LABEL = package_version("numpy")  # numpy==<version> build:<digest of its RECORD hashes>
_STAMPS = itertools.count(1)  # every write gets a later mtime than any before it


class Project:
    """A throwaway package on ``sys.path`` whose modules a test writes, edits and re-imports."""

    def __init__(self, root: Path, name: str | None = None) -> None:
        self.name = name or f"proj_{uuid.uuid4().hex[:12]}"
        self.dir = root / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "__init__.py").write_text("")

    def write(self, module: str, source: str) -> None:
        """Write `module`.py; give it a fresh mtime so linecache and importlib notice the edit."""
        path = self.dir / f"{module}.py"
        path.write_text(textwrap.dedent(source))
        stamp = time.time_ns() + next(_STAMPS) * 2_000_000_000
        os.utime(path, ns=(stamp, stamp))

    def load(self, module: str) -> ModuleType:
        """Import `module` from a fresh copy of the whole package."""
        self.purge()
        importlib.invalidate_caches()
        return importlib.import_module(f"{self.name}.{module}")

    def purge(self) -> None:
        """Forget every imported module of this package."""
        for key in [k for k in sys.modules if k == self.name or k.startswith(self.name + ".")]:
            del sys.modules[key]

    def identity(
        self, source: str, fn: str = "f", module: str = "mod", **kwargs: str
    ) -> FunctionIdentity:
        """Write `source` as `module`, import it afresh and identify its function `fn`."""
        self.write(module, source)
        return function_identity(getattr(self.load(module), fn), **kwargs)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    proj = Project(tmp_path)
    yield proj
    proj.purge()


# --- edits that must change the identity -------------------------------------------------


BASE = """
    def f(x, y=2):
        total = x + y
        return total * 3
"""


def test_identity_shape(project: Project) -> None:
    ident = project.identity(BASE)
    assert len(ident.digest) == 64 and ident.digest == ident.digest.lower()
    assert ident.name == "f" and ident.module == f"{project.name}.mod"
    assert ident.has_source and ident.pinned_version is None
    assert ident.source == "def f(x, y=2):\n    total = x + y\n    return total * 3"
    assert "normalised source" in ident.note


def test_body_edit_changes_digest(project: Project) -> None:
    before = project.identity(BASE)
    after = project.identity(BASE.replace("total * 3", "total * 4"))
    assert before.digest != after.digest


def test_helper_edit_two_levels_deep_in_another_module_changes_digest(project: Project) -> None:
    project.write("a", "from . import b\n\ndef top(x):\n    return b.middle(x) + 1\n")
    project.write("b", "from .c import leaf\n\ndef middle(x):\n    return leaf(x) * 2\n")
    project.write("c", "def leaf(x):\n    return x - 1\n")
    before = function_identity(project.load("a").top)
    assert (
        f"helper:{project.name}.b.middle",
        function_identity(sys.modules[f"{project.name}.b"].middle).digest,
    ) in before.deps
    project.write("c", "def leaf(x):\n    return x - 2\n")
    after = function_identity(project.load("a").top)
    assert before.digest != after.digest


def test_module_constant_edit_changes_digest(project: Project) -> None:
    source = "THRESHOLD = 3\n\ndef f(x):\n    return x > THRESHOLD\n"
    before = project.identity(source)
    after = project.identity(source.replace("= 3", "= 4"))
    assert before.digest != after.digest
    assert any(label == f"const:{project.name}.mod.THRESHOLD" for label, _ in after.deps)


def test_helpers_imported_inside_the_body_count(project: Project) -> None:
    project.write("helpers", "SCALE = 2\n\ndef smooth(x):\n    return x\n")
    source = """
        def f(x):
            import numpy as np
            from . import helpers
            from .helpers import SCALE as k
            return np.asarray(helpers.smooth(x)) * k
    """
    before = project.identity(source)
    assert dict(before.deps)["pkg:numpy.asarray"] == NUMPY_LABEL
    project.write("helpers", "SCALE = 2\n\ndef smooth(x):\n    return -x\n")
    after_helper = project.identity(source)
    project.write("helpers", "SCALE = 3\n\ndef smooth(x):\n    return -x\n")
    after_constant = project.identity(source)
    assert len({before.digest, after_helper.digest, after_constant.digest}) == 3


def test_constant_read_through_module_attribute_counts(project: Project) -> None:
    project.write("settings", "CUTOFF = 0.5\n")
    source = "from . import settings\n\ndef f(x):\n    return x * settings.CUTOFF\n"
    before = project.identity(source)
    project.write("settings", "CUTOFF = 0.25\n")
    after = project.identity(source)
    assert before.digest != after.digest


def test_rebinding_a_constant_at_runtime_invalidates_the_memo(project: Project) -> None:
    project.write("mod", "THRESHOLD = 3\n\ndef f(x):\n    return x > THRESHOLD\n")
    mod = project.load("mod")
    first = function_identity(mod.f)
    mod.THRESHOLD = 4
    assert function_identity(mod.f).digest != first.digest
    mod.THRESHOLD = 3
    assert function_identity(mod.f).digest == first.digest


def test_rebinding_a_helper_at_runtime_invalidates_the_memo(project: Project) -> None:
    project.write(
        "mod", "def g(x):\n    return x\n\ndef h(x):\n    return -x\n\ndef f(x):\n    return g(x)\n"
    )
    mod = project.load("mod")
    first = function_identity(mod.f)
    mod.g = mod.h  # a notebook re-definition of the helper
    assert function_identity(mod.f).digest != first.digest


def test_reload_of_helper_module_is_seen_through_attribute_chain(project: Project) -> None:
    project.write("helpers", "def smooth(x):\n    return x\n")
    project.write("mod", "from . import helpers\n\ndef f(x):\n    return helpers.smooth(x)\n")
    mod = project.load("mod")
    first = function_identity(mod.f)
    project.write("helpers", "def smooth(x):\n    return x / 2\n")
    importlib.reload(mod.helpers)
    assert function_identity(mod.f).digest != first.digest


def test_a_project_submodule_named_by_attribute_before_its_import_is_read_not_run(
    project: Project,
) -> None:
    """``pkg.sub.g(x)`` with only ``import pkg``: the identity had nothing of ``sub`` until
    some code imported it (a helper called first), so such a call was recorded without ``g``
    and an edit of ``g`` served from the cache. The submodule's source file is now an input of
    the call by its content; it is found, never imported by the walk (its top level is the
    project's code: here it would exit the process)."""
    project.write("sub", "raise SystemExit('imported by the walk')\ndef g(x):\n    return x + 1\n")
    project.identity(f"import {project.name}\n\ndef f(x):\n    return {project.name}.sub.g(x)\n")
    from scistack.codeid.identity import reached_modules
    mod = sys.modules[f"{project.name}.mod"]
    assert f"{project.name}.sub" not in sys.modules
    assert reached_modules(mod.f) == (str(project.dir / "sub.py"),)
    # a name that is no submodule names no file
    project.identity(f"import {project.name}\n\ndef f(x):\n    return {project.name}.nothere(x)\n")
    assert reached_modules(sys.modules[f"{project.name}.mod"].f) == ()


def test_closure_captured_constant_counts_by_value(project: Project) -> None:
    project.write(
        "mod",
        """
        def make(k):
            def scaled(x):
                return x * k
            return scaled
    """,
    )
    mod = project.load("mod")
    two, three, two_again = mod.make(2), mod.make(3), mod.make(2)
    assert function_identity(two).digest != function_identity(three).digest
    assert function_identity(two).digest == function_identity(two_again).digest


def test_closure_captured_function_counts_by_identity(project: Project) -> None:
    project.write(
        "mod",
        """
        def double(x):
            return 2 * x

        def triple(x):
            return 3 * x

        def compose(inner):
            def outer(x):
                return inner(x) + 1
            return outer
    """,
    )
    mod = project.load("mod")
    assert (
        function_identity(mod.compose(mod.double)).digest
        != function_identity(mod.compose(mod.triple)).digest
    )


def test_renamed_local_variable_is_an_edit(project: Project) -> None:
    """Documented choice: renaming a local counts (simple and safe)."""
    assert (
        project.identity(BASE).digest != project.identity(BASE.replace("total", "subtotal")).digest
    )


def test_method_identity_covers_self_calls(project: Project) -> None:
    source = """
        class Filter:
            def run(self, x):
                return self.scale(x) + 1

            def scale(self, x):
                return x * 2
    """
    before = project.identity(source, fn="Filter")
    project.write("mod", textwrap.dedent(source))
    method_before = function_identity(project.load("mod").Filter.run)
    edited = source.replace("x * 2", "x * 5")
    assert project.identity(edited, fn="Filter").digest != before.digest
    assert (
        function_identity(sys.modules[f"{project.name}.mod"].Filter.run).digest
        != method_before.digest
    )


def test_function_using_a_class_depends_on_its_methods(project: Project) -> None:
    source = """
        class Window:
            def apply(self, x):
                return x[:3]

        def f(x):
            return Window().apply(x)
    """
    before = project.identity(source)
    assert project.identity(source.replace("x[:3]", "x[:4]")).digest != before.digest


def test_dataclass_field_default_edit_changes_digest(project: Project) -> None:
    source = """
        import dataclasses

        @dataclasses.dataclass(frozen=True)
        class Params:
            order: int = 4

        def f(x):
            return x * Params().order
    """
    before = project.identity(source)
    assert before.has_source and any(label.startswith("class:") for label, _ in before.deps)
    assert project.identity(source.replace("= 4", "= 5")).digest != before.digest


# --- edits that must not change the identity ---------------------------------------------

PRELUDE = "def lineage_fcn(fn):\n    return fn\n\ndef thunk(fn):\n    return fn\n\n"
BODY = "    total = x + y\n    return total * 3\n"
COSMETIC = {
    "comment": "def f(x, y=2):\n    # add them up\n    total = x + y  # sum\n    return total*3\n",
    "docstring": 'def f(x, y=2):\n    """Add, then triple."""\n' + BODY,
    "whitespace": "def f( x,y = 2 ):\n    total=x+y\n    return (total *3)\n",
    "blank lines": "def f(x, y=2):\n\n    total = x + y\n\n\n    return total * 3\n",
    "decorator": "@lineage_fcn\ndef f(x, y=2):\n" + BODY,
    "decorators": "@thunk\n@lineage_fcn\ndef f(x, y=2):\n" + BODY,
    "nested docstring": (
        "def f(x, y=2):\n    def add(a, b):\n        'doc'\n        return a + b\n"
        "    total = add(x, y)\n    return total * 3\n"
    ),
}


@pytest.mark.parametrize("variant", sorted(COSMETIC))
def test_cosmetic_edit_keeps_digest(project: Project, variant: str) -> None:
    plain = (
        COSMETIC["nested docstring"].replace("        'doc'\n", "")
        if variant == "nested docstring"
        else BASE
    )
    base = project.identity(PRELUDE + textwrap.dedent(plain))
    edited = project.identity(PRELUDE + COSMETIC[variant])
    assert edited.digest == base.digest
    assert edited.source == base.source


def test_normalised_source_drops_decorators_docstrings_and_comments(project: Project) -> None:
    project.write(
        "mod", PRELUDE + '@lineage_fcn\ndef f(x):\n    """Doc."""\n    return x  # comment\n'
    )
    assert normalised_source(project.load("mod").f) == "def f(x):\n    return x"


def test_mutating_a_global_counter_keeps_digest(project: Project) -> None:
    project.write(
        "mod",
        "CALLS = []\nCACHE = {}\n\n"
        "def f(x):\n    CALLS.append(x)\n    CACHE[x] = x\n    return x\n",
    )
    mod = project.load("mod")
    first = function_identity(mod.f)
    mod.f(1)
    mod.f(2)
    assert mod.CALLS == [1, 2]
    again = function_identity(mod.f)
    assert again is first  # memo hit: in-place mutation fails no guard
    assert (f"mutable:{project.name}.mod.CALLS", "mutable") in again.deps
    assert (f"mutable:{project.name}.mod.CACHE", "mutable") in again.deps


def test_unrelated_module_edit_keeps_digest(project: Project) -> None:
    base = textwrap.dedent(BASE)
    before = project.identity(base + "\nOTHER = 1\n")
    assert (
        project.identity(base + "\nOTHER = 2\n\ndef g():\n    return OTHER\n").digest
        == before.digest
    )


# --- recursion -----------------------------------------------------------------------------

RECURSIVE = """
    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    def is_even(n):
        return True if n == 0 else is_odd(n - 1)

    def is_odd(n):
        return False if n == 0 else is_even(n - 1)
"""


def test_recursive_function(project: Project) -> None:
    ident = project.identity(RECURSIVE, fn="fact")
    assert ident.has_source
    assert (f"helper:{project.name}.mod.fact", "recursive") in ident.deps
    assert project.identity(RECURSIVE, fn="fact").digest == ident.digest


def test_mutual_recursion_is_deterministic_whatever_is_asked_first(project: Project) -> None:
    project.write("mod", RECURSIVE)
    mod = project.load("mod")
    even_first = function_identity(mod.is_even), function_identity(mod.is_odd)
    mod = project.load("mod")
    odd_first = function_identity(mod.is_odd), function_identity(mod.is_even)
    assert (even_first[0].digest, even_first[1].digest) == (
        odd_first[1].digest,
        odd_first[0].digest,
    )
    assert even_first[0].digest != even_first[1].digest


def test_edit_to_one_member_of_a_cycle_changes_every_member(project: Project) -> None:
    even = project.identity(RECURSIVE, fn="is_even")
    edited = RECURSIVE.replace("False if n == 0", "n < 0 if n == 0")
    assert project.identity(edited, fn="is_even").digest != even.digest


# --- code without source, library code, lambdas ----------------------------------------------


def test_builtin_c_and_stdlib_functions() -> None:
    for fn in (len, np.add, json.dumps):
        ident = function_identity(fn)
        assert not ident.has_source and ident.source is None
        assert len(ident.digest) == 64
    assert function_identity(len).note.startswith(
        "no source available: identified by builtins.len @ python 3."
    )
    assert function_identity(np.add).deps == (("pkg:numpy.add", NUMPY_LABEL),)
    assert "json.dumps @ python" in function_identity(json.dumps).note
    assert len({function_identity(fn).digest for fn in (len, np.add, np.subtract, json.dumps)}) == 4


def test_package_label_names_version_and_build() -> None:
    assert NUMPY_LABEL.startswith(f"numpy=={np.__version__} build:")
    assert len(NUMPY_LABEL.rpartition("build:")[2]) == 16


def test_library_references_count_by_name_and_version(project: Project) -> None:
    ident = project.identity(
        "import json\nimport numpy as np\n\n"
        "def f(x):\n    return json.dumps(np.add(x, 1).tolist())\n"
    )
    deps = dict(ident.deps)
    assert deps["pkg:json.dumps"].startswith("python==")
    assert deps["pkg:numpy.add"] == NUMPY_LABEL


def test_lambda_with_source(project: Project) -> None:
    ident = project.identity("f = lambda x: x + 1  # inc\n")
    assert ident.has_source and ident.source == "lambda x: x + 1"
    assert project.identity("f = lambda x: x + 2\n").digest != ident.digest
    assert project.identity("f = (lambda x:   x+1)\n").digest == ident.digest


def test_several_lambdas_on_one_line_fall_back_to_bytecode(project: Project) -> None:
    project.write("mod", "f, g = (lambda x: x + 1), (lambda x: x + 2)\n")
    mod = project.load("mod")
    f, g = function_identity(mod.f), function_identity(mod.g)
    assert not f.has_source and "several lambdas" in f.note
    assert f.digest != g.digest


def test_repl_lambdas_without_source_are_told_apart() -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile("inc = lambda x: x + 1\ndec = lambda x: x - 1\n", "<stdin>", "exec"), namespace)
    inc, dec = function_identity(namespace["inc"]), function_identity(namespace["dec"])  # type: ignore[arg-type]
    assert not inc.has_source and inc.source is None and "bytecode" in inc.note
    assert inc.digest != dec.digest


def test_file_edited_after_import_is_not_trusted(project: Project) -> None:
    """Hashing the new text for the old running code would cause stale hits later."""
    project.write("mod", BASE)
    old_f = project.load("mod").f
    new = project.identity(BASE.replace("* 3", "* 4"))
    stale = function_identity(old_f)
    assert not stale.has_source and "edited after import" in stale.note
    assert stale.digest != new.digest


def test_a_class_identified_without_its_source_counts_its_bases(project: Project) -> None:
    """Its text names no bases then: the bases in memory count instead."""
    source = (
        "class A:\n    def k(self):\n        return 2\n\n"
        "class B:\n    def k(self):\n        return 3\n\n"
        "class Sc(A):\n    def f(self, x):\n        return x * self.k()\n\n"
        "def f(x):\n    return Sc().f(x)\n"
    )
    project.write("mod", source)
    on_a = project.load("mod").f
    project.write("mod", source.replace("class Sc(A)", "class Sc(B)"))
    on_b = project.load("mod").f
    project.write("mod", source.replace("self.k()", "self.k() + 0"))  # neither runs this text
    assert function_identity(on_a).digest != function_identity(on_b).digest


def test_notebook_cell_with_magics_uses_the_cell_text() -> None:
    """IPython keeps cell text in linecache; magics make it unparsable as a whole."""
    digests = []
    for cell in (
        "%matplotlib inline\ndef f(x):\n    return x + 1\n",
        "%time\ndef f(x):\n    # same code, new cell\n    return x + 1\n",
        "%time\ndef f(x):\n    return x + 2\n",
    ):
        filename = f"<ipython-input-{uuid.uuid4().hex}>"
        linecache.cache[filename] = (len(cell), None, cell.splitlines(True), filename)
        namespace: dict[str, object] = {"__name__": "__main__"}
        try:
            exec(
                compile("get_ipython = None\n" + cell.split("\n", 1)[1], filename, "exec"),
                namespace,
            )
            ident = function_identity(namespace["f"])  # type: ignore[arg-type]
        finally:
            del linecache.cache[filename]
        assert (
            ident.has_source and ident.source is not None and ident.source.startswith("def f(x):")
        )
        digests.append(ident.digest)
    assert digests[0] == digests[1] != digests[2]


def test_assigning_code_invalidates_the_memo(project: Project) -> None:
    project.write("mod", "def f(x):\n    return x\n\ndef g(x):\n    return -x\n")
    mod = project.load("mod")
    first = function_identity(mod.f)
    mod.f.__code__ = mod.g.__code__
    assert function_identity(mod.f).digest != first.digest


HOT_HELPERS = """
    class Helper:
        def scale(self, x):
            return x * 2

        def unused(self):
            return 0
"""

HOT_PIPE = """
    from .helpers import Helper

    def run(x):
        return Helper().scale(x)

    def of(helper, x):
        return helper.scale(x)
"""


def test_a_methods_code_set_in_place_as_autoreload_does_invalidates_the_memo(project: Project) -> None:
    # IPython's %autoreload reloads an edited module and sets the new code on the old class's
    # methods in place (update_class, update_function); a module that imported the class
    # still holds the old one, and its guards (the class slot) hold: a class node had read its
    # methods' code without guarding it, and its shape was memoised on the class alone, so
    # `run` kept its old identity (a stale hit)
    project.write("helpers", HOT_HELPERS)
    project.write("pipe", HOT_PIPE)
    pipe = project.load("pipe")
    old = pipe.Helper
    first = function_identity(pipe.run)
    assert function_identity(pipe.run) is first
    instance = function_identity(old().scale)
    project.write("helpers", HOT_HELPERS.replace("x * 2", "x * 3"))
    helpers = importlib.reload(sys.modules[f"{project.name}.helpers"])
    for name in ("scale", "unused"):  # (what update_function does to each method)
        getattr(old, name).__code__ = getattr(helpers.Helper, name).__code__
    assert pipe.run(2) == 6
    after = function_identity(pipe.run)
    assert after.digest != first.digest
    assert function_identity(old().scale).digest != instance.digest
    assert after.digest == function_identity(project.load("pipe").run).digest  # as if new


HOT_DEFAULTS = """
    import functools


    def logged(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)
        return wrapper


    class Helper:
        def scale(self, x, k=2, *, offset=0):
            return x * k + offset

        @logged
        def wrapped(self, x, k=2):
            return x * k

        class Inner:
            def shift(self, x, by=1):
                return x + by
"""

HOT_DEFAULTS_PIPE = """
    from .helpers import Helper

    def run(x):
        return Helper().scale(x)

    def inner(x):
        return Helper.Inner().shift(x)

    def through(x):
        return Helper().wrapped(x)
"""


@pytest.mark.parametrize("what", ["defaults", "kwdefaults", "nested", "wrapped"])
def test_a_methods_defaults_set_in_place_invalidate_the_memo_of_a_function_using_its_class(
        project: Project, what: str) -> None:
    # a function using a class (``Helper().scale(x)``) is a class node: its methods' code was
    # guarded (autoreload) but not their defaults, and the digest was made from the class's
    # text alone, so ``Helper.scale.__defaults__ = (3,)`` kept the old identity: a stale hit
    project.write("helpers", HOT_DEFAULTS)
    project.write("pipe", HOT_DEFAULTS_PIPE)
    pipe = project.load("pipe")
    fn = {"nested": pipe.inner, "wrapped": pipe.through}.get(what, pipe.run)
    first = function_identity(fn)
    assert function_identity(fn) is first
    if what == "defaults":
        pipe.Helper.scale.__defaults__ = (3,)
    elif what == "kwdefaults":
        pipe.Helper.scale.__kwdefaults__ = {"offset": 1}
    elif what == "nested":
        pipe.Helper.Inner.shift.__defaults__ = (5,)
    else:  # (the method behind a functools.wraps layer: its defaults are what runs)
        pipe.Helper.wrapped.__wrapped__.__defaults__ = (5,)
    after = function_identity(fn)
    assert after.digest != first.digest
    assert function_identity(fn) is after  # (memoised again)
    if what == "defaults":  # set back to an equal value: the old identity (by value, not object)
        pipe.Helper.scale.__defaults__ = tuple([2])
        assert function_identity(fn).digest == first.digest


def test_a_memoised_identity_does_not_keep_its_function_alive(project: Project) -> None:
    # a notebook redefining a function keeps every old one (and its memo) while the memo's
    # guards hold it: `_remember`'s weak reference never fired
    import gc
    import weakref

    from scistack.codeid.identity import _IDENTITIES

    project.write("mod", """
        import functools

        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)
            return wrapper

        def f(x, k=2):
            return x + k

        def r(n):
            return 1 if n < 1 else n * r(n - 1)

        @logged
        def d(n):
            return 0 if n < 1 else d(n - 1)
    """)
    mod = project.load("mod")
    refs = []
    for name in ("f", "r", "d"):
        fn = getattr(mod, name)
        assert function_identity(fn) is function_identity(fn)  # (memoised: a hit)
        refs.append(weakref.ref(fn))
    before = len(_IDENTITIES)
    del fn, mod.f, mod.r, mod.d
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]
    assert len(_IDENTITIES) < before


LEAKY = """
    class Helper:
        __slots__ = ("k",)

        def __init__(self, k=2):
            self.k = k

        def scale(self, x):
            return self.shift(x) * self.k

        def shift(self, x):
            return x + 1

        class Inner:
            def deep(self, n):
                return 0 if n < 1 else self.deep(n - 1)


    def use(x):
        return Helper().scale(x)


    def outer():
        def rec(n):
            return 0 if n < 1 else rec(n - 1)
        return rec
"""


def test_a_memoised_identity_does_not_keep_a_class_a_method_or_a_nested_function_alive(
        project: Project) -> None:
    # 9bfb805 left three memos holding what they are of: a Skeleton (in a weak-keyed memo)
    # held its class, a method's memo held its class's namespace (which holds the method),
    # a nested recursive function's memo held the cell holding it. A notebook defining the
    # class again (a cell run again) or making the function again kept every old one
    import gc
    import weakref

    from scistack.codeid import _shapes

    project.write("mod", LEAKY)
    mod = project.load("mod")
    old, rec = mod.Helper, mod.outer()
    for fn in (mod.use, old.scale, old.Inner.deep, rec):
        assert function_identity(fn) is function_identity(fn)  # (memoised: a hit)
    assert old in _shapes._SKELETONS
    scale = function_identity(old.scale)
    old.shift = lambda self, x: x + 2  # (a guard of the method's class still holds: a miss)
    assert function_identity(old.scale).digest != scale.digest
    refs = [weakref.ref(each) for each in (old, old.scale, old.Inner.deep, rec)]
    exec(compile("class Helper:\n    def scale(self, x):\n        return x\n", "<cell>", "exec"),
         vars(mod))  # (the class defined again, as a notebook's cell run again)
    assert mod.Helper is not old
    function_identity(mod.use)  # (its memo walks the new class)
    del old, rec, fn
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None, None]


# --- partials and wrappers ------------------------------------------------------------------

WRAPPED = """
    import functools

    def logged(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)
        return wrapper

    def f(x, scale):
        return x * scale

    @logged
    def g(x, scale):
        return x * scale
"""


def test_partial_counts_func_and_bound_constants(project: Project) -> None:
    project.write("mod", WRAPPED)
    f = project.load("mod").f
    two, three = functools.partial(f, scale=2), functools.partial(f, scale=3)
    assert function_identity(two).digest == function_identity(functools.partial(f, scale=2)).digest
    assert function_identity(two).digest != function_identity(three).digest
    assert function_identity(two).digest != function_identity(f).digest
    with pytest.raises(LineageError, match="call argument"):
        function_identity(functools.partial(f, scale=np.arange(3)))


def test_wraps_wrapper_counts_the_wrapped_function_and_the_wrapper_body(project: Project) -> None:
    project.write("mod", WRAPPED)
    mod = project.load("mod")
    assert (
        function_identity(mod.g).source
        == normalised_source(mod.g)
        == "def g(x, scale):\n    return x * scale"
    )
    wrapped = function_identity(mod.g)
    assert wrapped.digest != function_identity(mod.g.__wrapped__).digest  # the wrapper runs too
    assert any(label.endswith(".logged.<locals>.wrapper") for label, _ in wrapped.deps)
    project.write("mod", WRAPPED.replace("return fn(*args, **kwargs)", "return 2 * fn(*args, **kwargs)"))
    edited = function_identity(project.load("mod").g)
    assert edited.digest != wrapped.digest
    assert edited.source == wrapped.source  # the function itself is unchanged


# --- pinned versions, errors ----------------------------------------------------------------


def test_version_pin_ignores_source(project: Project) -> None:
    pinned = project.identity(BASE, version="2")
    edited = project.identity(BASE.replace("* 3", "* 4"), version="2")
    assert pinned.digest == edited.digest
    assert edited.pinned_version == "2" and edited.source is not None and "* 4" in edited.source
    assert project.identity(BASE, version="3").digest != pinned.digest
    assert project.identity(BASE).digest != pinned.digest


def test_bad_arguments_raise_lineage_error(project: Project) -> None:
    with pytest.raises(LineageError):
        function_identity(len, version=2)  # type: ignore[arg-type]
    with pytest.raises(LineageError):
        function_identity(42)  # type: ignore[arg-type]


SCALER = """
class Scaler:
    def __init__(self, k):
        self.k = k
    def __call__(self, x):
        return x * self.k
    def apply(self, x):
        return x * self.k
"""


def test_a_bound_method_or_callable_object_counts_its_object(project: Project) -> None:
    # `Scaler(2).apply` and `Scaler(3).apply` were one identity (the method's): a result made
    # with k=2 was served for k=3. A callable object was refused.
    project.write("mod", SCALER)
    Scaler = project.load("mod").Scaler
    for method, of in ((Scaler.apply, lambda s: s.apply), (Scaler.__call__, lambda s: s)):
        two, three = function_identity(of(Scaler(2))), function_identity(of(Scaler(3)))
        assert two.digest != three.digest and two.digest == function_identity(of(Scaler(2))).digest
        # what `status` in another process compares: the method alone, found by its name
        assert two.unbound_digest == three.unbound_digest == function_identity(method).digest
        scaler = Scaler(2)
        before = function_identity(of(scaler)).digest
        scaler.k = 5  # changed in place: the same object, another state
        assert function_identity(of(scaler)).digest != before
    project.write("mod", SCALER.replace("return x * self.k\n    def apply", "return x * self.k + 1\n    def apply"))
    edited = project.load("mod").Scaler
    assert function_identity(edited(2)).digest != function_identity(Scaler(2)).digest  # its code


# --- constants -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("1", "1.0"),
        ("1", "True"),
        ("0.0", "-0.0"),
        ("'1'", "b'1'"),
        ("(1, 2)", "(2, 1)"),
        ("frozenset({1, 2})", "frozenset({1, 3})"),
        ("np.float32(1)", "np.float64(1)"),
        ("None", "0"),
        ("1j", "2j"),
        ("(1, (2, 'a'))", "(1, (2, 'b'))"),
    ],
)
def test_distinct_constant_values_give_distinct_digests(
    project: Project, first: str, second: str
) -> None:
    source = "import numpy as np\nVALUE = {}\n\ndef f():\n    return VALUE\n"
    assert (
        project.identity(source.format(first)).digest
        != project.identity(source.format(second)).digest
    )


# --- determinism, golden value, speed ---------------------------------------------------------

GOLDEN_SOURCE = """
    NAMES = frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "zeta"})
    SCALE = 2.5
    CALLS = []

    def helper(x):
        return x * SCALE

    def countdown(n):
        return [] if n <= 0 else [n, *countdown(n - 1)]

    def analysis(x):
        CALLS.append(x)
        return sorted(NAMES), helper(x), countdown(3)
"""
# Pinned when first written. Never regenerate silently: a new value here means every user's
# cached results are invalidated by an upgrade. ast.dump output is Python-minor specific.
GOLDEN_DIGEST_PY311 = "e7ffa41dbbb8dc0ed13d3248f24c83d474f0049dd10c8912c75e947d72d8e99b"
SCRIPT = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import importlib
from scistack.codeid.identity import function_identity
print(function_identity(importlib.import_module("golden_pkg.fixture").analysis).digest)
"""

SCRIPT_TAIL = """
from scistack.codeid.identity import function_identity
print(function_identity(analysis).digest)
"""


def test_digest_is_identical_across_processes_and_hash_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    golden = Project(tmp_path, name="golden_pkg")
    golden.write("fixture", GOLDEN_SOURCE)
    try:
        here = function_identity(golden.load("fixture").analysis).digest
    finally:
        golden.purge()
    digests = set()
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path), str(REPO_ROOT)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(result.stdout.strip())
    assert digests == {here}
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(GOLDEN_SOURCE) + "\n" + SCRIPT_TAIL)
    main_digests = set()
    for seed in ("1", "999"):
        env = {
            **os.environ,
            "PYTHONHASHSEED": seed,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(REPO_ROOT),
        }
        result = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
        )
        main_digests.add(result.stdout.strip())
    assert len(main_digests) == 1 and main_digests != {
        here
    }  # __main__.analysis is another function
    if sys.version_info[:2] == (3, 11):
        assert here == GOLDEN_DIGEST_PY311


def test_repeated_identity_is_memoised(project: Project) -> None:
    project.write("mod", GOLDEN_SOURCE)
    fn = project.load("mod").analysis
    first = function_identity(fn)
    assert all(function_identity(fn) is first for _ in range(100))


# --- property: noise that cannot change behaviour never changes the digest --------------------

TEMPLATE = [
    "def f(data, k=3):",
    "    out = []",
    "    for i, v in enumerate(data):",
    "        if v > k:",
    "            out.append((i, v * 2))",
    "    return out",
]


@st.composite
def noisy_sources(draw: st.DrawFn) -> str:
    """The TEMPLATE with random comment lines, blank lines, trailing comments and spacing."""
    lines: list[str] = []
    comment = st.text(alphabet="abc xyz#'\"", max_size=12)
    for line in TEMPLATE:
        for _ in range(draw(st.integers(0, 2))):
            indent = " " * draw(st.integers(0, 12))
            lines.append(draw(st.sampled_from(["", indent, indent + "# " + draw(comment)])))
        if line != TEMPLATE[0] and draw(st.booleans()):
            line = line.replace(" > ", draw(st.sampled_from([">", "  >  ", " >"])) + " ").replace(
                ", ", ","
            )
        if draw(st.booleans()):
            line += " " * draw(st.integers(0, 3)) + "  # " + draw(comment)
        lines.append(line)
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None)
@given(source=noisy_sources())
def test_comment_and_whitespace_noise_never_changes_digest(
    tmp_path_factory: pytest.TempPathFactory, source: str
) -> None:
    root = tmp_path_factory.getbasetemp() / "noise"
    noise = Project(root, name="noise_pkg")
    sys.path.insert(0, str(root))
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        plain = noise_identity(noise, "\n".join(TEMPLATE) + "\n")
        assert noise_identity(noise, source).digest == plain.digest
    finally:
        sys.dont_write_bytecode = saved
        sys.path.remove(str(root))
        noise.purge()


def noise_identity(noise: Project, source: str) -> FunctionIdentity:
    """Identity of `f` in `source`, written to the noise package and imported afresh."""
    noise.write("mod", source)
    return function_identity(noise.load("mod").f)


# --- module data read at call time (issue 15) -------------------------------------------------


def test_module_data_counts_by_content_at_call_time(project: Project) -> None:
    project.write(
        "mod",
        "import numpy as np\nWEIGHTS = [1, 2]\nKERNEL = np.array([1.0, 2.0])\n\n"
        "def f(x):\n    return sum(WEIGHTS) * x + KERNEL.sum()\n",
    )
    mod = project.load("mod")
    first = function_identity(mod.f)
    assert first.code_digest and first.code_digest != first.digest
    assert {label for label, _ in first.deps} >= {
        f"data:{project.name}.mod.WEIGHTS", f"data:{project.name}.mod.KERNEL"
    }
    mod.WEIGHTS.append(3)  # in place: no guard fails, the content does
    assert function_identity(mod.f).digest != first.digest
    mod.WEIGHTS.pop()
    assert function_identity(mod.f).digest == first.digest
    mod.KERNEL[0] = 5.0
    assert function_identity(mod.f).digest != first.digest


def test_state_written_by_a_helper_is_not_an_input(project: Project) -> None:
    project.write(
        "mod",
        "SEEN = []\nMEMO = {}\n\ndef note(x):\n    SEEN.append(x)\n    MEMO[x] = x\n\n"
        "def f(x):\n    note(x)\n    return len(SEEN) + len(MEMO) * 0 + x\n",
    )
    mod = project.load("mod")
    first = function_identity(mod.f)
    mod.f(1)
    mod.f(2)
    assert function_identity(mod.f).digest == first.digest
    assert not [label for label, _ in first.deps if label.startswith("data:")]


def test_unencodable_module_value_is_named_unverifiable(project: Project) -> None:
    project.write("mod", "import array\nSCALE = array.array('d', [2.0])\n\ndef f(x):\n    return x * SCALE[0]\n")
    identity = function_identity(project.load("mod").f)
    assert identity.unverifiable == ((f"{project.name}.mod.SCALE", "a array.array"),)


def test_data_digests_are_canonical() -> None:
    from scistack.codeid._data import Unverifiable, data_digest

    def code_of(fn: object) -> str:
        return "fn"

    assert data_digest([1, 2], code_of) != data_digest([1.0, 2], code_of) != data_digest((1, 2), code_of)
    assert data_digest({"a": 1, "b": 2}, code_of) != data_digest({"b": 2, "a": 1}, code_of)  # order runs
    assert data_digest({"x", "y", "z"}, code_of) == data_digest({"z", "y", "x"}, code_of)
    assert data_digest(np.arange(3.0), code_of) != data_digest(np.arange(3), code_of)
    assert data_digest(np.arange(3.0), code_of) == data_digest(np.arange(3.0).astype(">f8"), code_of)
    loop: list = []
    loop.append(loop)
    with pytest.raises(Unverifiable):
        data_digest(loop, code_of)


def test_reading_files_records_inputs_only(tmp_path: Path) -> None:
    from scistack.codeid.files import changed_files, files_read, recording_reads

    data, scratch = tmp_path / "calib.txt", tmp_path / "scratch.txt"
    data.write_text("2")
    with recording_reads() as recording:
        data.read_text()
        scratch.write_text("tmp")  # written by the call itself: output, not input
        scratch.read_text()
        json.__file__ and open(json.__file__).close()  # the standard library: not an input
    files = files_read(recording)
    assert [f.path for f in files] == [str(data)]
    assert changed_files(files) == []
    os.utime(data, ns=(1, 1))  # touched, same content: still unchanged
    assert changed_files(files) == []
    data.write_text("3")
    assert changed_files(files) == [str(data)]


def test_singledispatch_function_counts_its_registered_implementations(project: Project) -> None:
    source = (
        "import functools\n\n@functools.singledispatch\ndef p(v):\n    return v\n\n"
        "@p.register\ndef _(v: int):\n    return v + 1\n"
    )
    project.write("mod", source)
    first = function_identity(project.load("mod").p)
    assert f"registered:{project.name}.mod._" in dict(first.deps)
    project.write("mod", source.replace("v + 1", "v + 2"))
    assert function_identity(project.load("mod").p).digest != first.digest
    project.write("mod", source.replace("v: int", "v: float"))  # dispatches other types
    assert function_identity(project.load("mod").p).digest != first.digest


def test_method_depends_on_the_methods_it_reaches_not_on_its_whole_class(project: Project) -> None:
    source = (
        "class Model:\n    K = 2\n\n    @classmethod\n    def a(cls, v):\n        return cls.b(v) * cls.K\n\n"
        "    @classmethod\n    def b(cls, v):\n        return v + 1\n\n    def other(self, v):\n        return v * 9\n\n"
        "    @classmethod\n    def escapes(cls, v):\n        return cls().a(v)\n"
    )
    project.write("mod", source)
    mod = project.load("mod")
    a, escapes = function_identity(mod.Model.a), function_identity(mod.Model.escapes)
    project.write("mod", source.replace("v * 9", "v * 7"))  # a method nobody named
    mod = project.load("mod")
    assert function_identity(mod.Model.a).digest == a.digest
    assert function_identity(mod.Model.escapes).digest != escapes.digest  # cls() escapes
    project.write("mod", source.replace("v + 1", "v + 2"))  # a method `a` reaches
    assert function_identity(project.load("mod").Model.a).digest != a.digest
    project.write("mod", source.replace("K = 2", "K = 3"))  # the class body
    assert function_identity(project.load("mod").Model.a).digest != a.digest


def test_editable_install_counts_by_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from scistack.codeid._packages import _build_digest

    site, source = tmp_path / "site-packages", tmp_path / "src"
    info = site / "fked-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fked\nVersion: 1.0\n")
    (info / "RECORD").write_text("__editable__.fked-1.0.pth,sha256=abc,10\n")
    (info / "direct_url.json").write_text('{"url": "file:///x", "dir_info": {"editable": true}}')
    (source / "fked").mkdir(parents=True)
    (source / "fked" / "__init__.py").write_text("def f(v):\n    return v\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(source))
    importlib.invalidate_caches()
    import fked  # noqa: F401

    try:
        dist = importlib.metadata.distribution("fked")
        before = _build_digest(dist, "fked")
        assert before.startswith("src-")
        (source / "fked" / "__init__.py").write_text("def f(v):\n    return 2 * v\n")
        assert _build_digest(dist, "fked") != before
    finally:
        sys.modules.pop("fked", None)


def test_environment_variables_count_by_name_not_the_whole_environment(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(
        "mod",
        "import os\n\ndef f(x):\n    return x * float(os.environ.get('FR_GAIN', '1')) + len(os.getenv('FR_TAG', ''))\n\n"
        "def g(x):\n    return x * len(dict(os.environ))\n",
    )
    mod = project.load("mod")
    monkeypatch.setenv("FR_GAIN", "2")
    first = function_identity(mod.f)
    assert {"data:os.environ['FR_GAIN']", "data:os.environ['FR_TAG']"} <= set(dict(first.deps))
    monkeypatch.setenv("FR_UNRELATED", "x")  # another variable: the same inputs
    assert function_identity(mod.f).digest == first.digest
    monkeypatch.setenv("FR_GAIN", "3")
    assert function_identity(mod.f).digest != first.digest
    assert function_identity(mod.g).unverifiable[0][0] == "os.environ"  # the whole environment


def test_stateless_sentinels_are_not_unverifiable_but_c_state_is(project: Project) -> None:
    project.write(
        "mod",
        "import array, dataclasses\n\n@dataclasses.dataclass\nclass Cfg:\n    gain: float = 2.0\n"
        "    items: list = dataclasses.field(default_factory=list)\n\n    @classmethod\n"
        "    def make(cls, v):\n        return v * 2\n\nclass Buffer(array.array):\n    pass\n\n"
        "BUF = Buffer('d', [1.0])\n\ndef f(x):\n    return Cfg.make(x)\n\ndef g(x):\n    return BUF[0] * x\n",
    )
    mod = project.load("mod")
    assert function_identity(mod.f).unverifiable == ()  # dataclass sentinels have no state
    assert function_identity(mod.g).unverifiable == ((f"{project.name}.mod.BUF", f"a {project.name}.mod.Buffer"),)


def test_ufuncs_and_c_functions_are_code_not_data(project: Project) -> None:
    project.write(
        "mod",
        "import math\nimport numpy as np\n\ndef f(x):\n    return np.sqrt(np.add(x, 1)) + math.sqrt(2) + np.zeros(1)\n",
    )
    identity = function_identity(project.load("mod").f)
    assert identity.unverifiable == ()
    assert not [label for label, _ in identity.deps if label.startswith("data:")]
    assert dict(identity.deps)["pkg:numpy.sqrt"] == NUMPY_LABEL


def test_a_loaded_variable_read_as_module_data_counts_by_its_stored_value(project: Project, tmp_path: Path) -> None:
    """Its attributes are this process's bookkeeping (the store it was loaded from, what a use
    as an input remembered): the digest is its value's, the same in any project and before or
    after such a use; another value changes it."""
    import scistack.database as database_module
    from scistack import configure_database

    project.write("mod", """
        import numpy as np
        from scistack import BaseVariable

        class IdCal(BaseVariable):
            pass

        CAL = None

        def f(x):
            return x * float(CAL.data[0])
    """)
    mod = project.load("mod")
    digests = []
    try:
        for name, value in (("a", 2.0), ("b", 2.0), ("c", 3.0)):
            db = configure_database(tmp_path / name / "p.duckdb", ["subject"])
            try:
                mod.IdCal.save(np.array([value]), subject=0)
                mod.CAL = mod.IdCal.load(subject=0)
                digests.append(function_identity(mod.f).digest)
                mod.CAL.__scistack_input__()  # (what a use as an input does)
                digests.append(function_identity(mod.f).digest)
            finally:
                db.close()
    finally:
        database_module._current = None
    assert len(set(digests[:4])) == 1 and digests[4] == digests[5] != digests[0]


HALF_IMPORTED = """
import dataclasses, importlib, json, sys, threading
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from scistack.codeid.identity import function_identity
import gate, half_mod
sys.path.insert(0, sys.argv[3])  # where the slow library is
first = threading.Thread(target=importlib.import_module, args=("pandas",), daemon=True)
first.start()
assert gate.started.wait(60), "the library never started importing"
during = [function_identity(half_mod.Scale(2).apply), function_identity(half_mod.run)]
gate.release.set()
first.join(60)
after = [function_identity(half_mod.Scale(2).apply), function_identity(half_mod.run)]
print(json.dumps([[i.digest, i.unverifiable] for i in during + after]))
"""


def test_a_library_another_thread_is_still_importing_does_not_make_data_unverifiable(
    tmp_path: Path,
) -> None:
    # The background DuckDB sync imports pandas (seconds on a busy machine) while the main
    # thread digests module data and bound objects: `sys.modules["pandas"]` was half built,
    # `pandas.Index` raised AttributeError, and a dataclass or a bound method's object became
    # "unverifiable (reading it failed: AttributeError)" at random (test_one_edit under load).
    code, lib = tmp_path / "code", tmp_path / "lib"
    (lib / "pandas").mkdir(parents=True)
    code.mkdir()
    (code / "gate.py").write_text("import threading\nstarted, release = threading.Event(), threading.Event()\n")
    (lib / "pandas" / "__init__.py").write_text(
        "import gate\ngate.started.set()\ngate.release.wait(60)\n\n"
        "class Index:\n    pass\n\nclass CategoricalDtype:\n    pass\n"
    )
    (code / "half_mod.py").write_text(textwrap.dedent("""
        import dataclasses

        @dataclasses.dataclass
        class Cfg:
            gain: float = 1.0

        CFG = Cfg(2.0)

        class Scale:
            def __init__(self, k):
                self.k = k

            def apply(self, x):
                return x * self.k

        def run(x):
            return x * CFG.gain
    """))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", HALF_IMPORTED, str(REPO_ROOT), str(code), str(lib)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert [unverifiable for _, unverifiable in seen] == [[], [], [], []]
    assert [digest for digest, _ in seen[:2]] == [digest for digest, _ in seen[2:]]


# --- Cython functions, C functions, library submodules imported later ------------------------


def test_cython_and_c_functions_are_library_code(project: Project) -> None:
    """np.random.seed and default_rng are Cython functions: their type lives in Cython 3's
    shared module ``_cython_3_x_y``, which has no file. It was taken for project code: the type
    became a project class node, and the call tree crashed on its ``__code__`` (a descriptor)."""
    import pandas as pd

    from scistack.codeid._packages import is_project_module
    from scistack.codeid.codetree import code_tree

    assert not is_project_module(type(np.random.seed).__module__)
    assert not is_project_module(type(pd.api.types.is_scalar).__module__)  # (pandas' Cython)
    project.write("mod", """
        import math
        import numpy as np
        import pandas as pd

        def f(x):
            np.random.seed(0)
            rng = np.random.default_rng(0)
            return math.sqrt(x) + np.add.reduce([x, rng.normal()]) + pd.api.types.is_scalar(x)
    """)
    fn = project.load("mod").f
    identity = function_identity(fn)
    deps = dict(identity.deps)
    assert deps["pkg:numpy.random.seed"] == NUMPY_LABEL
    assert deps["pkg:numpy.random.default_rng"] == NUMPY_LABEL
    assert deps["pkg:math.sqrt"].startswith("python==")
    assert not [label for label in deps if label.startswith(("class:", "data:"))]
    assert identity.unverifiable == ()
    assert code_tree(fn, identity) == ()  # (it reaches no project helper)
    for library in (np.random.seed, np.random.default_rng, pd.api.types.is_scalar, np.add.reduce):
        assert not function_identity(library).has_source  # was: "its class has no Python __call__"


def test_a_project_class_whose_code_attribute_is_no_code_object_has_a_call_tree(project: Project) -> None:
    from scistack.codeid.codetree import code_tree

    project.write("mod", """
        class Odd:
            __code__ = "not a code object"

            def scale(self):
                return 2

        def f(x):
            return x * Odd().scale()
    """)
    fn = project.load("mod").f
    tree = code_tree(fn, function_identity(fn))
    odd = [node for node in tree if node.label == f"class:{project.name}.mod.Odd"]
    assert odd and odd[0].file == str(project.dir / "mod.py")


@pytest.fixture
def site_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two libraries in a ``site-packages`` directory: ``lazylib`` loads its submodule ``rnd``
    by a PEP 562 ``__getattr__`` (as numpy loads numpy.random), ``plainlib`` has a submodule
    ``sub`` that only an import makes an attribute (as scipy's old ``scipy.special``)."""
    site = tmp_path / "site-packages"
    for lib, sub in (("lazylib", "rnd"), ("plainlib", "sub")):
        (site / lib).mkdir(parents=True)
        (site / lib / f"{sub}.py").write_text("def draw(seed):\n    return seed * 2\n")
    (site / "lazylib" / "__init__.py").write_text(
        "import importlib\n\ndef __getattr__(name):\n"
        "    if name == 'rnd':\n        return importlib.import_module('lazylib.rnd')\n"
        "    raise AttributeError(name)\n"
    )
    (site / "plainlib" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    yield site
    for key in [k for k in sys.modules if k.partition(".")[0] in ("lazylib", "plainlib")]:
        del sys.modules[key]


def test_a_library_submodule_imported_after_the_first_identity_keeps_it(
    project: Project, site_library: Path
) -> None:
    """``np.random.default_rng(0)`` after a bare ``import numpy``: numpy.random was not an
    attribute of numpy before the first call imported it. The identity read ``numpy`` then
    and ``numpy.random.default_rng`` after: the second call in a process was a
    miss, and the first of every new process too."""
    from scistack.codeid.identity import _IDENTITIES

    project.write("mod", """
        import lazylib
        import plainlib

        def f(x):
            return lazylib.rnd.draw(x) + plainlib.sub.draw(x)
    """)
    fn = project.load("mod").f
    before = function_identity(fn)
    assert dict(before.deps)["pkg:lazylib.rnd.draw"] == "lazylib==unknown"
    assert dict(before.deps)["pkg:plainlib.sub.draw"] == "plainlib==unknown"
    assert fn(1) == 4  # (it runs: the submodules are loaded now)
    assert function_identity(fn) is before  # its guards still hold
    _IDENTITIES.clear()
    assert function_identity(fn).digest == before.digest


def test_a_module_without_a_file_is_the_project_s_only_when_it_holds_python_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scistack.codeid._packages import is_project_module

    made = ModuleType("scratch_exec_mod")  # built by exec: the project's
    exec("def f(x):\n    return x\n", vars(made))
    c_types = ModuleType("scratch_c_types")  # an extension's submodule of C types: a library's
    c_types.Function = type(np.random.seed)
    c_types.Generator = np.random.Generator
    library_ns, project_ns = tmp_path / "site-packages" / "nslib", tmp_path / "code" / "nsproj"
    for directory in (library_ns, project_ns):
        directory.mkdir(parents=True)
        (directory / "mod.py").write_text("X = 1\n")
        monkeypatch.syspath_prepend(str(directory.parent))
    for module in (made, c_types):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    for name in ("nslib", "nsproj"):
        monkeypatch.setitem(sys.modules, name, importlib.import_module(name))
    assert is_project_module("scratch_exec_mod") and is_project_module("nsproj")
    assert not is_project_module("scratch_c_types") and not is_project_module("nslib")
    monkeypatch.setitem(sys.modules, "_cython_9_9_9", ModuleType("_cython_9_9_9"))  # by its name
    assert not is_project_module("_cython_9_9_9") and not is_project_module("cython_runtime")


def test_a_class_attribute_computed_at_import_counts_by_value_and_a_class_memo_is_state(project: Project) -> None:
    """``K = load_k()`` in a class body holds what the call read (a file): its value counts, as
    a module's does, so another file gives another digest; a memo the class's own methods fill
    (``self.cache[x] = ...``) is state and keeps the digest (a needless miss otherwise)."""
    (project.dir / "k.txt").write_text("2")
    source = """
        import collections, os

        def load_k():
            with open(os.path.join(os.path.dirname(__file__), "k.txt")) as f:
                return float(f.read())

        class Model:
            K = load_k()
            cache = collections.defaultdict(list)

            def apply(self, x):
                self.cache[x].append(1)
                return x * self.K

        def f(x):
            return Model().apply(x)
    """
    first = project.identity(source)
    assert not [label for label, _ in first.data if label.endswith("Model.cache")]
    mod = sys.modules[f"{project.name}.mod"]
    mod.Model().apply(3)  # fills the memo: the same inputs
    assert function_identity(mod.f).digest == first.digest
    (project.dir / "k.txt").write_text("3")
    assert project.identity(source).digest != first.digest
