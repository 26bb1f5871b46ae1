"""Files a function reads while it runs: inputs the call key cannot see in advance.

``np.load("calib.npy")``, ``open(path)`` or ``pd.read_csv(...)`` inside a lineage function make
the file's content an input. Which files a call reads is only known once it has run, so they
are recorded with the call (path, size, mtime, inode and a blake3 digest of the content) and
checked on every cache hit: a stat that still matches costs one ``os.stat`` (as DVC's state
does); a changed stat re-hashes the file, and only a changed *content* makes the hit a miss.

How reads are seen: a Python audit hook (PEP 578, installed on first use and never removed:
hooks cannot be) receives every ``open`` event, from ``open()``, ``io.open``, ``os.open`` and
the libraries built on them (numpy, pandas' default engine, json, csv). While a recording is
active in the thread, paths opened read-only are kept, except the interpreter's own trees,
installed packages (``site-packages``), Python source and bytecode, ``/proc``, ``/dev``,
``/sys`` and directories the caller excludes (scistack's own store). A file the call itself
writes is output, not input. Not seen: files opened by C code that bypasses Python's ``open``
(HDF5/netCDF C libraries, pyarrow's Parquet reader), files read by other threads or processes
the function starts, and network reads.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import blake3

from scistack.codeid._packages import _is_library_path

_SKIP_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so", ".dylib", ".dll", ".pth")
# System and per-user caches/configuration read by libraries (fonts, time zones, certificates).
_SKIP_ROOTS = ("/proc/", "/dev/", "/sys/", "/etc/", "/usr/share/", "/usr/lib/", "/run/")
_LOCAL = threading.local()
_HOOK_LOCK = threading.Lock()
_HOOKED = False
_STAT_OK: dict[tuple[str, int, int, int], str] = {}  # stat -> digest verified in this process


@dataclass(frozen=True, slots=True)
class FileRead:
    """One file a call read: where, its stat when read, and its content digest."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    digest: str

    def to_value(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "inode": self.inode,
            "blake3": self.digest,
        }

    @classmethod
    def from_value(cls, value: dict) -> FileRead:
        return cls(
            str(value["path"]),
            int(value["size"]),
            int(value["mtime_ns"]),
            int(value.get("inode", 0)),
            str(value["blake3"]),
        )


class _Recording:
    """Paths opened for reading (and for writing) while it is active in this thread."""

    def __init__(self, exclude: tuple[str, ...]) -> None:
        self.exclude = exclude
        self.read: dict[str, None] = {}
        self.written: set[str] = set()


def _hook(event: str, args: tuple) -> None:
    """The audit hook: cheap when nothing records (one comparison and one attribute read)."""
    if event != "open":
        return
    stack = getattr(_LOCAL, "stack", None)
    if not stack or len(args) != 3:  # an exception here would abort the caller's open()
        return
    path, mode, flags = args
    if isinstance(path, bytes):
        try:
            path = os.fsdecode(path)
        except UnicodeDecodeError:
            return
    if not isinstance(path, str):
        return  # a file descriptor or a path-like object the library resolves itself
    if isinstance(mode, str):
        reading = "r" in mode and "+" not in mode
    else:
        reading = (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC) == 0
    path = os.path.abspath(path)  # now: the function may change directory later
    for recording in stack:
        if reading:
            recording.read[path] = None
        else:
            recording.written.add(path)


def _install() -> None:
    global _HOOKED
    with _HOOK_LOCK:
        if not _HOOKED:
            try:
                sys.addaudithook(_hook)
            except RuntimeError as exc:  # another audit hook refused ours: say so, once
                warnings.warn(
                    f"scistack cannot see the files lineage functions read ({exc}); a changed "
                    "input file will not re-run a cached call",
                    RuntimeWarning,
                    stacklevel=3,
                )
            _HOOKED = True


@contextmanager
def recording_reads(exclude: tuple[str, ...] = ()) -> Iterator[_Recording]:
    """Record the files opened for reading inside the block (nested blocks all record)."""
    _install()
    recording = _Recording(exclude)
    stack = _LOCAL.__dict__.setdefault("stack", [])
    stack.append(recording)
    try:
        yield recording
    finally:
        stack.remove(recording)


def files_read(recording: _Recording) -> list[FileRead]:
    """The input files of a finished recording, hashed now (sorted by path)."""
    found: dict[str, FileRead] = {}
    if not recording.read:
        return []
    exclude = tuple(os.path.realpath(e) for e in recording.exclude)
    for path in recording.read:
        if path in recording.written or path in found or not _is_input_file(path, exclude):
            continue
        entry = _hashed(path)
        if entry is not None:
            found[path] = entry
    return [found[p] for p in sorted(found)]


def changed_files(files: list[FileRead]) -> list[str]:
    """Paths whose content differs from when they were read (a missing file has changed)."""
    changed = []
    for f in files:
        try:
            st = os.stat(f.path)
        except OSError:
            changed.append(f.path)
            continue
        stamp = (f.path, st.st_size, st.st_mtime_ns, st.st_ino)
        if stamp[1:] == (f.size, f.mtime_ns, f.inode) or _STAT_OK.get(stamp) == f.digest:
            continue  # the cheap check: same size, mtime and inode
        now = _hashed(f.path)
        if now is None or now.digest != f.digest:
            changed.append(f.path)
        else:
            if len(_STAT_OK) > 100_000:
                _STAT_OK.clear()
            _STAT_OK[stamp] = f.digest  # touched, not changed: hash it once per process
    return changed


def _is_input_file(path: str, exclude: tuple[str, ...]) -> bool:
    if path.endswith(_SKIP_SUFFIXES) or path.startswith(_SKIP_ROOTS):
        return False
    if not os.path.isfile(path):
        return False  # directories (os.scandir), sockets, pipes
    real = os.path.realpath(path)
    if _is_library_path(real) or any(_under(real, root) for root in _interpreter_roots()):
        return False
    return not any(_under(real, root) for root in exclude)


@functools.lru_cache(maxsize=1)
def _interpreter_roots() -> tuple[str, ...]:
    """The interpreter's trees and the user's cache directory (matplotlib's font list...)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    roots = (sys.prefix, sys.base_prefix, sys.exec_prefix, cache)
    return tuple(sorted({os.path.realpath(p) for p in roots}))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _hashed(path: str) -> FileRead | None:
    """Stat and blake3 of a file, stat taken before reading (a write during it shows later)."""
    try:
        st = os.stat(path)
        hasher = blake3.blake3()
        with open(path, "rb") as handle:  # no recording is active here: not an input
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    except OSError:
        return None
    return FileRead(path, st.st_size, st.st_mtime_ns, st.st_ino, hasher.hexdigest())
