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
directories are library directories. The project's own compiled extension module (a ``.so``
in the project folder) is project code without source: it counts by the digest of its binary
(`extension_binary`, `binary_build`).
"""

from __future__ import annotations

import functools
import itertools
import os
import platform
import sys
import sysconfig
import time
from collections.abc import Iterator
from types import CodeType, FunctionType

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


EXEC_MODULE = "<exec>"  # the module of code made by exec or eval that no module holds


def code_module(name: object, code: CodeType) -> str:
    """The module a Python function's code is identified under: `name` (its globals'
    ``__name__`` or its ``__module__``), or `EXEC_MODULE` for code made by ``exec`` or
    ``eval`` that belongs to no module: globals without ``__name__`` (``exec(text, {})``,
    ``eval("lambda v: v * 2", {"np": np})``: ``__module__`` is None), or a library's
    namespace lent to the text (``eval(formula, vars(math))``: ``__module__`` is "math"). Such
    code is project code, identified by its bytecode: it had been taken for a library
    function of "builtins" (or "math"), identified by name and version, and an edit of the
    text was served from the cache."""
    if not isinstance(name, str):
        return EXEC_MODULE
    if code.co_filename == "<string>" and not is_project_module(name):
        # (exec's and eval's own name for the text; a library's code is compiled from its
        # files, or frozen, and a library's generated wrappers name themselves, e.g.
        # "<decorator-gen-1>", "<argmap compilation 4>": still the library's)
        return EXEC_MODULE
    return name


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
    return _is_library_place(os.path.realpath(path))


def _is_library_place(path: str) -> bool:
    """`_is_library_path` of `path` as written, its links not followed (a real path's; or
    where a path's own place is, as `codeid.files` asks of a project's link into a library)."""
    if _LIBRARY_DIR_NAMES.intersection(path.split(os.sep)):
        return True
    return any(_is_within(path, root) for root in _stdlib_roots())


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


def package_version(module_name: str) -> str:
    """``dist==version build:<digest>`` of the distribution providing `module_name` (cached).

    The build digest tells apart two builds of one version: a hash of the file hashes the
    distribution's ``RECORD`` lists (the installer's own files left out, so pip and uv agree),
    or, for an editable install, of the package's source files as they are now. The standard
    library and builtins answer with the Python version. A module that no installed
    distribution claims answers with its ``__version__`` or ``unknown``. The project's own
    compiled extension module (a ``.so`` built in the project folder: `extension_binary`)
    answers with the digest of its binary, ``ext==unknown build:so-<digest>`` (`binary_build`):
    a rebuild with other code is another identity, where the version alone had served the
    results of the old binary.
    """
    binary = extension_binary(module_name)
    if binary is not None:
        name, path, loaded = binary
        version = getattr(sys.modules.get(name), "__version__", None)
        head = f"{name}=={version if isinstance(version, str) else 'unknown'}"
        return f"{head} build:{binary_build(path, loaded)}"
    return _package_version(module_name)


def extension_binary(module_name: str) -> tuple[str, str, bool] | None:
    """(module name, binary file, imported) of the project's own compiled extension module
    that `module_name` names, or holds (``ext.value``, a C type ``ext.Grid``, ``ext.sub.f``
    of a submodule without a file that the extension made); None for any other module. An
    extension in an installed package or the standard library is a library's (`_is_library_path`).

    The module imported in this process is asked for its ``__file__``; a name no imported
    module holds (`why`/`status` on a `__main__` script's record) is looked for on
    ``sys.path`` as the import system would find it, without importing anything."""
    parts = module_name.split(".")
    for n in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:n]))
        if module is None:
            continue
        path = getattr(module, "__file__", None)
        if path is None:  # (an extension's submodule of C types: its file is its parent's)
            continue
        if isinstance(path, str) and path.endswith(_extension_suffixes()) and not _is_library_path(path):
            return ".".join(parts[:n]), path, True
        return None
    return _unimported_binary(parts)


def _unimported_binary(parts: list[str]) -> tuple[str, str, bool] | None:
    """`extension_binary` of a name whose modules are not imported: the top-level module's
    spec (which imports nothing), then the packages' folders, read by name."""
    if parts[0] in sys.stdlib_module_names or parts[0] in sys.builtin_module_names:
        return None
    import importlib.util

    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    origin, folders = spec.origin, list(spec.submodule_search_locations or ())
    for n in range(1, len(parts) + 1):
        if isinstance(origin, str) and origin.endswith(_extension_suffixes()):
            return (None if _is_library_path(origin) else (".".join(parts[:n]), origin, False))
        if n == len(parts) or not folders:
            return None
        origin, found = None, []
        for folder in folders:
            inner = os.path.join(folder, parts[n])
            if os.path.isdir(inner):
                found.append(inner)
            else:
                origin = origin or next((inner + suffix for suffix in _extension_suffixes()
                                         if os.path.isfile(inner + suffix)), None)
        folders = [] if origin else found
    return None


@functools.lru_cache(maxsize=1)
def _extension_suffixes() -> tuple[str, ...]:
    import importlib.machinery

    return tuple(importlib.machinery.EXTENSION_SUFFIXES)


# binary file -> ((size, mtime, inode, ctime), digest): a binary whose stat is unchanged is
# not hashed again (a stat taken within `files._RACY_NS` of its last change is not kept)
_BINARIES: dict[str, tuple[tuple[int, int, int, int], str]] = {}
_REBUILT_WARNED: set[str] = set()


def binary_build(path: str, loaded: bool) -> str:
    """``so-<digest>`` of the binary at `path`, as ``codeid.files`` checks an input file: its
    content hashed again only when its stat changed or was racy (`files.racy_stat`).

    `loaded`: this process imported it. Python never loads an extension module twice (no
    reload), so the code that runs is the binary as it was at the import: one changed since
    (its stat, or where that was racy its content, not the one `files._LOADED_AT` noted at
    the ``import`` audit event; imported before the hook was installed, its mtime or ctime not
    before this process's start and the file mapped not this one, `_mapped`: `_as_loaded`,
    the rules `files._imports` applies to a ``.py``) is not what runs, and its
    digest would record the old binary's results under the new binary's identity: the build
    is then ``so-<digest>-changed-after-import-<pid>.<when>``, which no other process names
    (the calls of this process re-run in the next, and are stale for `why` at once), with a
    warning."""
    from scistack.codeid import files  # (files imports this module)

    now = time.time_ns()
    try:
        st = files._REAL_STAT(path)
    except OSError:
        return "so-missing"
    stamp = files.stat_stamp(st)
    known = _BINARIES.get(path)
    if known is not None and known[0] == stamp:
        digest = known[1]
    else:
        import blake3

        try:
            digest = blake3.blake3(max_threads=1).update_mmap(path).hexdigest()[:32]
        except (OSError, ValueError):
            return "so-unreadable"
        if files.racy_stat(st, now):
            _BINARIES.pop(path, None)
        else:
            if len(_BINARIES) > 10_000:
                _BINARIES.clear()
            _BINARIES[path] = (stamp, digest)
    if not loaded:
        return f"so-{digest}"
    if _as_loaded(path, stamp, digest, st):
        return f"so-{digest}"
    if path not in _REBUILT_WARNED:
        _REBUILT_WARNED.add(path)
        import warnings

        warnings.warn(
            f"{path} changed after this process imported it: Python cannot load an extension "
            "module again, so its calls run the old binary (their results show as stale, and "
            "run again). Run again in a new Python process", RuntimeWarning, stacklevel=2)
    return f"so-{digest}-changed-after-import-{os.getpid()}.{files._process_start_ns()}"


def _as_loaded(path: str, stamp: tuple[int, int, int, int], digest: str, st: os.stat_result) -> bool:
    """Whether the binary at `path` (its stat and digest now) is the one this process imported:
    its stat as the ``import`` audit event found it (`files._LOADED_AT`), or where that stat
    was racy its content then; imported before the hook was installed, older than this
    process, or the very file mapped (`_mapped`)."""
    from scistack.codeid import files

    loaded = files._LOADED_AT.get(path)
    if loaded is not None:
        then, content = loaded
        return content[:32] == digest if content is not None else then == stamp
    if max(st.st_mtime_ns, st.st_ctime_ns) < files._process_start_ns():
        return True
    return _mapped(path, st.st_ino)  # (built just before the process started)


def _mapped(path: str, inode: int) -> bool:
    """Whether this process has file `path` with this inode mapped (Linux, ``/proc/self/maps``):
    the binary it imported is that very file, not one put in its place since (a linker, and
    setuptools' copy, write a new file; the old one's mapping stays, its inode the old one's).
    For a binary imported before the audit hook was installed, built within a second or so
    before the process started (``make && python pipeline.py``): the process's start alone
    cannot tell it from one rebuilt after the import, and every such first run had been
    recorded stale. Not seen: the binary rewritten in place after the import (``cp`` onto it;
    the process's mapping then shows the new bytes too, and it may crash)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/maps", "rb") as handle:  # (/proc: never an input)
            maps = handle.read()
    except OSError:
        return False
    wanted = os.fsencode(real)
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5] == wanted and fields[4] == str(inode).encode():
            return True
    return False


@functools.lru_cache(maxsize=1024)
def _package_version(module_name: str) -> str:
    """`package_version` of a module that is no project extension (cached)."""
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
