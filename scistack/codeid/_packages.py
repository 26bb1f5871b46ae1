"""Which code is the project's own, and which version identifies everything else.

The project's own code is followed by source, transitively; every other module counts only
by the version of the distribution that ships it. A module is *not* project code when it is
a builtin, or its file lies in the standard library (``sysconfig`` ``stdlib``/``platstdlib``)
or under any ``site-packages``/``dist-packages`` directory. scistack itself also counts as a
library even when installed in editable mode: its internals are not part of a user's analysis.
Code in ``__main__`` (scripts, notebooks) is project code, and so is code whose module cannot
be found at all (``exec``-created functions) or has no file but holds Python code (a module
built with ``types.ModuleType`` and ``exec``). Following such code by source or bytecode is
the safe side: at worst a needless recompute, never a stale result. A module without a file
that holds no Python code is a library's: Cython 3's shared runtime module
(``_cython_3_2_4``, home of the type of every Cython function, ``np.random.seed`` among
them), an extension's submodule of C types; and so is a namespace package all of whose
directories are library directories.
"""

from __future__ import annotations

import functools
import itertools
import os
import platform
import sys
import sysconfig
from collections.abc import Iterator
from types import FunctionType

from scistack.lazy_import import lazy_module

metadata = lazy_module("importlib.metadata", globals(), "metadata")  # ~17 ms, wanted by lineage only

_LIBRARY_TOPS = frozenset({"scistack"})
_LIBRARY_DIR_NAMES = frozenset({"site-packages", "dist-packages"})


def is_project_module(module_name: str | None) -> bool:
    """True if functions of module `module_name` should be identified by their source.

    Parameters
    ----------
    module_name
        A ``__module__`` value; None for code created by ``exec`` without a module name.
    """
    if module_name is None or module_name == "__main__":
        return True
    top = module_name.partition(".")[0]
    if top in _LIBRARY_TOPS or top in sys.builtin_module_names:
        return False
    module = sys.modules.get(module_name) or sys.modules.get(top)
    if module is None:
        return top not in sys.stdlib_module_names
    path = getattr(module, "__file__", None)
    if path is None:  # frozen or builtin stdlib modules, or namespace/dynamic modules
        return top not in sys.stdlib_module_names and _fileless_is_project(module, top)
    return not _is_library_path(path)


def _fileless_is_project(module: object, top: str) -> bool:
    """True for a module without ``__file__`` that holds project code: a namespace package
    with a directory outside the library directories, or a module holding Python functions or
    classes (built by ``exec``), or nothing yet. Cython's shared runtime modules (``_cython_3_2_4``,
    ``cython_runtime``) and modules of C types only are libraries': the type of a Cython
    function (``np.random.seed``) was taken for a project class, and walking it crashed."""
    if top.startswith("_cython_") or top == "cython_runtime":
        return False
    paths = getattr(module, "__path__", None)
    if paths is not None:  # a namespace package: where its directories are
        try:
            entries = [p for p in paths if isinstance(p, str)]
        except Exception:  # noqa: BLE001 - a broken _NamespacePath: the safe side
            return True
        if entries:
            return not all(_is_library_path(p) for p in entries)
    try:
        items = list(vars(module).items())
    except TypeError:  # no __dict__: nothing to tell by, the safe side
        return True
    members = [value for name, value in items if not (name.startswith("__") and name.endswith("__"))]
    return not members or any(_python_code(value) for value in members)


_PLAIN_SIZE = type("_Plain", (), {}).__basicsize__  # an instance with nothing but __dict__


def _python_code(value: object) -> bool:
    """True for a Python function, or a class written in Python (a method that is a Python
    function, or no C fields): not a C type or a builtin."""
    if isinstance(value, FunctionType):
        return True
    if not isinstance(value, type):
        return False
    own = vars(value).values()
    return value.__basicsize__ <= _PLAIN_SIZE or any(isinstance(v, FunctionType) for v in own)


@functools.lru_cache(maxsize=4096)
def _is_library_path(path: str) -> bool:
    """True if `path` lies in the standard library or an installed-packages directory."""
    real = os.path.realpath(path)
    if _LIBRARY_DIR_NAMES.intersection(real.split(os.sep)):
        return True
    return any(_is_within(real, root) for root in _stdlib_roots())


@functools.lru_cache(maxsize=1)
def _stdlib_roots() -> tuple[str, ...]:
    """Real paths of the standard-library directories of this interpreter."""
    paths = sysconfig.get_paths()
    return tuple(sorted({os.path.realpath(paths[key]) for key in ("stdlib", "platstdlib")}))


def _is_within(path: str, root: str) -> bool:
    """True if `path` is `root` or below it."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


def python_version() -> str:
    """The version label of the interpreter, e.g. ``python==3.11.7``."""
    return f"python=={platform.python_version()}"


@functools.lru_cache(maxsize=1024)
def package_version(module_name: str) -> str:
    """``dist==version build:<digest>`` of the distribution providing `module_name` (cached).

    The build digest tells apart two builds of one version: a hash of the file hashes the
    distribution's ``RECORD`` lists (the installer's own files left out, so pip and uv agree),
    or, for an editable install, of the package's source files as they are now. The standard
    library and builtins answer with the Python version. A module that no installed
    distribution claims answers with its ``__version__`` or ``unknown``.
    """
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return python_version()
    # the import name first: the map of every installed distribution's files (~0.2 s a
    # process) is only built for a module whose distribution is named otherwise (yaml: PyYAML)
    for dist in itertools.chain([top], _claimants(top)):
        try:
            found = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        build = _build_digest(found, top)
        return f"{dist}=={found.version}" + (f" build:{build}" if build else "")
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top}=={version}" if isinstance(version, str) else f"{top}==unknown"


def _claimants(top: str) -> Iterator[str]:
    """Distributions that install the import name `top` (the map is built on first use)."""
    yield from sorted(_distributions().get(top, ()))


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    """Top-level import name -> distribution names; scans installed metadata once."""
    return dict(metadata.packages_distributions())


def split_label(label: str) -> tuple[str, str, str]:
    """(dist, version, build digest) of a `package_version` label (build "" when absent)."""
    dist, _, rest = label.partition("==")
    version, _, build = rest.partition(" build:")
    return dist, version, build


def installed_label(dist: str) -> str | None:
    """The `package_version` label of distribution `dist` as installed now (None: not installed)."""
    try:
        found = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None
    build = _build_digest(found, dist)
    return f"{dist}=={found.version}" + (f" build:{build}" if build else "")


def _build_digest(dist: metadata.Distribution, top: str) -> str:
    """Digest of what a distribution installed (RECORD hashes) or, if editable, its source now."""
    import blake3

    record = dist.read_text("RECORD")
    if _is_editable(dist) or not record:  # a development install: its source as it is now
        module = sys.modules.get(top)
        path = getattr(module, "__file__", None)
        if path is None:
            return ""
        root = os.path.dirname(path) if os.path.basename(path) == "__init__.py" else path
        files = [root] if os.path.isfile(root) else sorted(
            os.path.join(d, f) for d, _, names in os.walk(root) for f in names if f.endswith(".py")
        )
        hasher = blake3.blake3()
        for file in files:
            try:
                with open(file, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            name = os.path.relpath(file, root).encode()
            hasher.update(name + b"\0" + blake3.blake3(data).digest())
        return "src-" + hasher.hexdigest()[:16]
    lines = sorted(
        line.strip() for line in record.splitlines()
        if line.count(",") >= 2 and line.split(",")[1] and ".dist-info/" not in line
        and "__pycache__" not in line
    )
    return blake3.blake3("\n".join(lines).encode()).hexdigest()[:16] if lines else ""


def _is_editable(dist: metadata.Distribution) -> bool:
    """True for an editable (development) install (PEP 610 ``direct_url.json``)."""
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        import json

        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except (ValueError, AttributeError):
        return False
