"""Files a function reads while it runs: inputs the call key cannot see in advance.

``np.load("calib.npy")``, ``open(path)`` or ``pd.read_csv(...)`` inside a lineage function make
the file's content an input. Which files a call reads is only known once it has run, so they
are recorded with the call (path, size, mtime, inode, ctime and a blake3 digest of the content)
and checked on every cache hit: a stat that still matches costs one ``os.stat`` (as DVC's state
does); a changed stat re-hashes the file, and only a changed *content* makes the hit a miss.
The ctime is in the stat as in git's index: ``cp -p``, ``shutil.copy2``, ``rsync -t --inplace``
or an unzip put other bytes of the same size into the same inode and set the old mtime back,
which only the ctime (no copy can set it) shows; a chmod alone costs a hash. A record written
before the ctime was kept has none: its stat never matches, its files are hashed again.

Racy stats (git's "racily clean" entries): timestamps come from a coarse clock (the kernel's
tick, 1-10 ms: ramfs, and ext4, XFS, btrfs, tmpfs before Linux 6.13; FAT: 2 s; NFS/SMB: the
server's), and a write through a shared mapping (``np.memmap``) to a page already dirty sets no time at all
until the page is written back, so a file rewritten with its size kept just after a call read
it (step A writes, step B reads at once, A rewrites) kept its whole stat, and B's hit was
served with the old content. A file's or listed folder's stat taken when its mtime or ctime
was within `_RACY_NS` (2 s) of the moment (``time.time_ns()`` just before the stat) is
recorded ``racy``: its hits hash the content (list the folder) whatever the stat says. The
record is immutable; `_STAT_OK` remembers the content for the rest of the process once
verified by a stat that is no longer racy (a racy one is never remembered), and a
``for_each`` run keeps those verifications in the project's memo (`verified_stats`,
`foreach.filestats.FileStats`), which later runs take back (`trust_verified`): git's
promotion of a racily clean entry at its next index write. A file read within 2 s of its
last write (the steps of a pipeline) thus costs one hash more, correctness first (one per
process where no run kept it: a lineage call outside ``for_each``); one older costs a stat. Not covered: a mapped page rewritten later than that, still dirty (its
mtime set at its first write only: ``flush()`` the mapping), and a server's clock more than
2 s behind this one.

A file is hashed when the call ends, not when the function read it: the stat at its first
``open`` in the call (a module's source: at its import) is kept (one ``os.stat`` more per file
a call opens), and a file whose stat differs at the end (another process or thread rewrote it
meanwhile; it appeared after an open that failed) is recorded with a digest no content has
(`CHANGED_WHILE_READ`): the next run misses, where the new content had been recorded as the
input of a result computed from the old. A rewrite that keeps the stat (in the tick of the file's last change) is not seen.
So with what the code looked for: a path it did not find that is there at the end is so
recorded, and a path whose stat it read (``getsize``, ``os.stat``) is recorded with an mtime
no file has (-1) when that stat differs at the end from the first one the code read.

How reads are seen: a Python audit hook (PEP 578, installed on first use and never removed:
hooks cannot be) receives every ``open`` event, from ``open()``, ``io.open``, ``os.open`` and
the libraries built on them (numpy, pandas' default engine, json, csv; a name opened in a
folder's descriptor, ``os.open(name, flags, dir_fd=d)``, whose event lacks the ``dir_fd``: the
wrapped ``os.open`` tells it, `_opener`, and the path is in that folder, the working directory
for ``AT_FDCWD``, *unseen* where its path is not found), and every
``os.listdir``/``os.scandir`` (``glob``, ``pathlib``'s ``iterdir``/``glob``, ``os.walk``; by a
descriptor, ``os.fwalk``, ``os.listdir(fd)``: the folder's path from ``/proc/self/fd`` or
``F_GETPATH``, and where none is found, an *unseen* entry that no hit passes), and
the glob events (``Path.glob``/``rglob``, ``glob.glob``): the folders a glob tests names in
without listing them (`codeid.globs`: where it starts, absent or not, and each folder a name
after a wildcard is tested in) count as listed.
While a recording is active in the thread, paths opened read-only are kept, except the
interpreter's own trees, installed packages (``site-packages``), tools' own folders in the
user's cache folder (`_TOOL_CACHES`: not the data downloaded there), Python source and bytecode (but a
project ``.py`` read by content, below),
``/proc``, ``/dev``, ``/sys`` and directories the caller excludes (scistack's own store). A
file the call itself writes is output, not input.

What the function's own code looked for is an input too, when the code that asked is the
project's (the nearest caller, past ``pathlib``/``io``/``glob``/``os`` and the like, is not a
library nor the import system, which probe and list directories all the time):

* a path it tried to open that does not exist (``try: open("override.json") except
  FileNotFoundError``) is recorded *absent*: the hit misses once the file appears; so is one
  it only looked for (``os.path.exists``/``isfile``/``isdir``, ``Path.exists``/``is_dir``/
  ``is_file``, ``os.access``): these raise no audit event, so `_install` wraps ``os.stat``,
  ``os.lstat`` and ``os.access`` (they all end there), which note a path not found
  (``FileNotFoundError``/``NotADirectoryError``, ``access`` False) while a call records;
* a path they find is recorded too, by what the code asked of it (the outermost wrapper it
  called, `_note_probe`): only tested (``exists``/``isfile``/``isdir``/``islink``,
  ``is_dir``/``is_file``/``is_symlink``, ``os.access``), *present* with its type (a file, a
  folder): the hit misses once it goes or changes type (a path found by an ``lstat``,
  ``islink``/``lexists``/``is_symlink``/``follow_symlinks=False``, is recorded and checked by
  one, its type ``link`` when it is one: a link replaced by a file of its name, or a dangling
  link removed, misses; a path also followed, ``islink(p)`` then ``getsize(p)``, has both
  entries; a dangling link ``exists`` did not find is absent); its stat read (``os.stat``,
  ``Path.stat``, ``os.path.getsize``/``getmtime``/``getatime``/``getctime``), *stat*: a
  changed size or mtime misses (a touch too; the content is not read, so not hashed), and a
  changed ctime (a chmod) where the code could read it (``os.stat``, ``Path.stat``,
  ``getctime``: `_WHOLE_STAT`; not a ``getsize``); a stat by a name in a folder's
  descriptor (``os.stat(name, dir_fd=d)``) is of the path in that folder (`_dir_fd_path`;
  *unseen* where none is found). A path
  the call also opened (by content) or whose folder it listed (names) has no such entry, nor
  one a wrapper stats on its own account (``os.makedirs``' parents, ``realpath``/``resolve``,
  ``shutil``'s copies, a glob's tests: those are not inputs of the result);
* a link whose target it read (``os.readlink``, also with ``dir_fd``, ``Path.readlink``:
  ``_install`` wraps ``os.readlink``, which raises no event) is recorded by a digest of that
  target's text (*link*, `_link`): the hit misses once the link is re-pointed or is no link;
  a path it found no link there (``EINVAL``) is *present* by an lstat (a link put there
  misses). So is each link ``realpath``/``resolve`` read for the project's code: the path they
  give is made of the links' targets, and a file opened by that path is recorded by it alone
  (the link re-pointed to another file kept the hit); their own stats are not inputs, nor a
  path they found missing on the way (a dangling link's target: its appearing changes
  nothing they give). A path read (opened, listed, probed) whose real place is a library's
  (a project's link into ``site-packages``) is no input, but the links on its way whose own
  place is the project's are, by their targets (`_links_out`): the link re-pointed to
  another package's file misses;
* a directory it listed is recorded by a digest of its sorted entry names, a folder's marked
  (database write-ahead logs left out): a file added, removed or renamed there misses the
  hit, and so does a file replaced by a folder of its name (``DirEntry.is_dir()``). The names
  are taken when the code first lists the folder; the call's own writes there (``open`` for
  writing, ``os.rename``/``replace``, ``os.remove``, ``os.mkdir``) are its output, so the
  record keeps the listing as it is at the end of the call when those writes are the only
  change (`settled_listing`), and the listing as seen otherwise (another process added a file
  meanwhile: the next run misses). ``for_each`` settles again at the end of the step with the
  writes of all its calls (each subject writing its figure into the folder every call lists).

Names relative to the working directory (``open("cfg.json")``, ``glob.glob("*.csv")``,
``os.listdir()``, ``Path("flag").exists()``, a library given such a name): the entry keeps the
name and the working directory the call began in (`FileRead.relative`, `_note_name`), and a
hit from another working directory checks what the name gives there (`changed_files`): run
from b/, the code reads b/'s cfg.json, and a/'s, unchanged, had served a/'s result (the same
bytes there: a hit). A name given after the call went into a folder by a relative name
(``os.chdir("data")``: its audit event) is relative to the first through it; a path also named
absolute in the call, or a name given after an ``os.chdir`` to an absolute path, is its absolute path.

Modules: a project module the call imports (``importlib.import_module(name)`` with a name
computed at run time, which the code identity cannot follow) is an input by its source file:
the import system's ``open`` of its ``.py`` (or ``__pycache__`` bytecode) while a call records
names it (`_module_source`; the ``.py`` ``linecache`` opens to format a traceback or a
warning is read by no import: not an input, `_shows_source`; any other open of a project
``.py``, ``runpy.run_path`` or ``exec(open(p).read())``, reads it by content: a file input). ``sys.modules`` is a memo, so later calls of the same lineage
function in the process, which find it imported, name it too, as it was imported
(`_imports`: a file edited since makes them stale at once, with a warning). A module
imported already (at the top of the script) opens no file: `_install` wraps
``importlib.import_module``, which names the project module the project's code asks for while
a call records (`_note_module`): by its file as it is, unless the file is not the one the
module's import read (`_loaded_as`: the whole stat when the import system last opened it,
`_LOADED_AT`, or where that stat was racy the content then, hashed at the import; "newer than
the import" had let a same-size save in the import's timestamp tick and a ``cp -p`` through;
imported before the hook was installed: a ctime later than the install, or other than the source mtime and size its ``__pycache__`` bytecode, written
before the process started, holds, which the import checked, `_validated`; without such bytecode, newer than the process's
start): the old code runs, so that call is stale at once, with the warning. A module imported
during the call whose file is not the one its import read is recorded as `CHANGED_WHILE_READ`. ``getattr(module, name)`` with a computed name is the code
identity's (every code member of the module counts), and the module's source file is an input
as an ``import_module``'s is (`_note_reached_modules`: its data values are no part of the
identity). Not seen: ``__import__(name)``, and
``from importlib import import_module`` bound before the first lineage function was made.

Memos: a file read once per process behind a memo (``functools.lru_cache``/``cache``, a module
global assigned under ``global``, a module-level dict or list filled in place) is opened only by
the first call that needs it; later calls use the memo's value without opening anything. So a
read whose callers (project code between the ``open`` and the lineage function) include such a
memoising function is also remembered for this process under that function's code, with the
digest of that first read, and added to every later call record of a lineage function whose
code identity reaches that function (or that saw it fill the memo before): its hits then check
the file as well. A helper that does not memoise (a per-subject loader) stays its own call's
input only. A memo keyed by argument (``lru_cache`` over per-subject files) makes later calls
of the process name the files it has cached so far (needless re-runs, never stale ones), up to
`_MEMO_FILES`: past that it is a cache per item, whose files are its own calls' alone (a later
call served an item from it without reading is then not seen: the limit of a per-item memo).
A memo's file edited while the process runs leaves the memo's old value: before a call, an
``lru_cache`` whose files changed is emptied (it fills again from the files as they are);
another such memo (a global, a dict) cannot be: a warning names it and the file (the calls
are recorded with the file as it was read, so their results are stale at once; a new process
computes them from the file as it is). Failing those calls instead would fail every subject
of a per-subject dict memo when one subject's file changed.

A memo filled outside any recorded call (by the user's code before the loop, or at import
once a lineage function exists) is remembered too, when it is an ``lru_cache`` or assigns a
global, or changes a module-level object in place (a dict memo: its function's code is
analysed then, once, if no identity walk has reached it yet).

Not seen: a memo filled before the first lineage function is made (a module-level value
loaded at import is module data, which the code identity digests instead), memos kept in
object attributes or closures; C code that calls ``stat`` itself (not through ``os.stat``); the mtime of a file the call also read by content
(a touch alone keeps the hit); missing paths and listings asked for by
library code (a ``pd.read_csv`` of a missing file inside ``try``); files opened by C code that
bypasses Python's ``open`` (HDF5/netCDF C libraries, pyarrow's Parquet reader), files read by
other threads or processes the function starts, and network reads.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import importlib.util
import os
import stat
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from opcode import opmap
from types import CodeType
from typing import Any

import blake3

from scistack.codeid import _codesets
from scistack.codeid._codesets import note_set as note_code_set
from scistack.codeid._packages import _is_library_path, _is_library_place
from scistack.codeid.globs import glob_looks
from scistack.objects.forks import hold_across_fork

_SKIP_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so", ".dylib", ".dll", ".pth")
# System and per-user caches/configuration read by libraries (fonts, time zones, certificates).
_SKIP_ROOTS = ("/proc/", "/dev/", "/sys/", "/etc/", "/usr/share/", "/usr/lib/", "/run/")
_LOOKS = frozenset({"open", "os.listdir", "os.scandir"})
# events of a path made, removed or renamed: which of their arguments name the paths changed
_WRITES = {"os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.link": (1,),
           "os.symlink": (1,)}
# globs test some names with is_dir/exists/lexists, which raise no event (`codeid.globs`)
_GLOBS = frozenset({"pathlib.Path.glob", "pathlib.Path.rglob", "glob.glob/2"})
_CODE_SETS = _codesets.EVENTS
_EVENTS = _LOOKS | frozenset(_WRITES) | _GLOBS | {"import", "os.chdir"} | _codesets.EVENTS
# the modules whose ``open`` of a ``.py``/``.pyc`` is an import (``SourceLoader.get_data``; the
# frozen module is renamed once ``importlib`` is imported)
_IMPORT_SYSTEM = frozenset({"importlib._bootstrap_external", "_frozen_importlib_external"})
# standard-library modules that only open or list what their caller names: a path they look
# for is the caller's (``Path(p).read_text()``, ``glob.glob``, ``os.walk``, ``configparser.read``)
_WRAPPERS = frozenset({"pathlib", "io", "_pyio", "codecs", "gzip", "bz2", "lzma", "configparser",
                       "fileinput", "glob", "fnmatch", "os", "posixpath", "ntpath", "genericpath",
                       "shutil", "tarfile", "zipfile"})
_USER, _WRAPPER, _LIBRARY, _OWN = range(4)  # what a frame's module is (`_module_kind`)


class _Local(threading.local):
    stack: list | tuple = ()  # a thread's recordings, innermost last (a list once it records)


_LOCAL = _Local()
_HOOK_LOCK = threading.RLock()


# A fork waits until no thread is installing the hooks (`_install`), and holds the lock across
# it: a child forked meanwhile inherited the lock held for ever (its first lineage function
# waited at `install`), and hooks half installed (os.stat wrapped, `_HOOKED` not yet set: the
# child's install wrapped them again). An RLock: a fork from inside `_install` (an audit hook's)
# re-enters it, and both sides release the forking thread's extra hold. Nothing is taken under it.
hold_across_fork(lambda: [_HOOK_LOCK])

_HOOKED = False
# (path, size, mtime, inode, ctime) -> the digest its content had, verified in this process
# by a stat that was not racy (`racy_stat`)
_STAT_OK: dict[tuple[str, int, int, int, int], str] = {}
_VERIFIED: dict[tuple[str, int, int, int, int], str] = {}  # those of them not yet kept (`verified_stats`)
# How close to the moment of a stat a file's mtime or ctime makes that stat *racy* (git's
# "racily clean"): timestamps come from a coarse clock (the kernel's tick, 1-10 ms: ramfs,
# and ext4, XFS, btrfs, tmpfs before Linux 6.13; the server's on NFS/SMB; FAT keeps 2 s), so a file
# rewritten with its size kept within the tick of its last change keeps its whole stat, and
# the stat cannot tell the old content from the new. 2 s: FAT's granularity, the coarsest in
# use, which also covers a network server's clock behind this one's by up to that much.
_RACY_NS = 2 * 10**9
_GLOBAL_WRITES = frozenset({opmap["STORE_GLOBAL"], opmap["DELETE_GLOBAL"]})
_KINDS: dict[object, int] = {}  # module name -> _USER, _WRAPPER, _LIBRARY or _OWN
# Code objects are keyed by id (equal code in another module, or a reloaded one, is another
# function), and kept alive beside their entries so that the id is not reused.
_MEMOISES: dict[int, tuple[CodeType, bool, bool]] = {}  # (code, memoises, changes a global)
# this process's memos: a memoising function's code -> what the reads made under it read, as
# first read; and a lineage function's code -> the memos its calls filled
_MEMO_READS: dict[int, tuple[CodeType, dict, dict[str, FileRead]]] = {}  # (code, its globals, reads)
_FILLED_BY: dict[int, tuple[CodeType, set[int]]] = {}
_WARNED: set[tuple[int, str]] = set()  # (memo, file) whose change this process warned of


@dataclass(frozen=True, slots=True)
class FileRead:
    """One input a call read: a file (its stat when read and content digest); a path it
    looked for that was absent (``kind="absent"``); one it found by a stat (``"present"``:
    `digest` its type, file, folder or other; ``"stat"``: and its size and mtime, which the
    code read, and its ctime if it could read that: else -1); or a directory it listed
    (``kind="listing"``: its stat and the digest of its sorted entry names); or one it listed
    through a descriptor whose path could not be found, or read or stat'ed a name in such a
    folder (``"unseen"``, `path` describing it: never a hit). `seen`: a
    listing's names when the call first listed the folder, until the call is recorded (not
    saved: `settled_listing` compares them with the folder at the end of the call or step)."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    digest: str
    kind: str = "file"
    seen: tuple[str, ...] | None = dataclasses.field(default=None, compare=False, repr=False)
    follow: bool = True  # a probed path: found by a stat following links; else by an lstat
    # (``islink``/``lexists``/``follow_symlinks=False``: checked so, its type may be ``link``)
    ctime_ns: int = -1  # a file's or listing's inode change time (-1: not known, a record
    # written before it was kept: its stat never matches, so the content is hashed again)
    racy: bool = False  # a file's or listing's stat was taken within `_RACY_NS` of its mtime
    # or ctime (`racy_stat`): a rewrite of the same size may have kept it, so it vouches for nothing
    relative: str | None = None  # the code named it relative to the working directory (`cwd`,
    # where the call began): a hit checks what this names in the working directory then
    # (`changed_files`), not `path` (run from another folder, it read that folder's file)
    cwd: str | None = None

    def bare(self) -> FileRead:
        """This entry without the names a listing saw (kept only until the call is recorded)."""
        return self if self.seen is None else dataclasses.replace(self, seen=None)

    def to_value(self) -> dict[str, object]:
        value = self._value()
        return value if self.relative is None else {**value, "relative": self.relative, "cwd": self.cwd}

    def _value(self) -> dict[str, object]:
        if self.kind in ("absent", "unseen"):
            return {"path": self.path, "kind": self.kind}
        if self.kind == "link":
            return {"path": self.path, "kind": "link", "blake3": self.digest}
        if self.kind == "present":
            found = {"path": self.path, "kind": "present", "type": self.digest}
            return found if self.follow else {**found, "lstat": True}
        if self.kind == "stat":
            found = {"path": self.path, "kind": "stat", "type": self.digest, "size": self.size,
                     "mtime_ns": self.mtime_ns}
            if self.ctime_ns != -1:  # (the code read the whole stat: `os.stat`, `getctime`)
                found["ctime_ns"] = self.ctime_ns
            return found if self.follow else {**found, "lstat": True}
        value: dict[str, object] = {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "inode": self.inode,
            "ctime_ns": self.ctime_ns,
            "blake3": self.digest,
        }
        if self.racy:  # (absent: not racy, as every record written before it was kept)
            value["racy"] = True
        return value if self.kind == "file" else {**value, "kind": self.kind}

    @classmethod
    def from_value(cls, value: dict) -> FileRead:
        entry = cls._from_value(value)
        relative, cwd = value.get("relative"), value.get("cwd")
        if isinstance(relative, str) and isinstance(cwd, str) and entry.kind != "unseen":
            return dataclasses.replace(entry, relative=relative, cwd=cwd)
        return entry

    @classmethod
    def _from_value(cls, value: dict) -> FileRead:
        kind = str(value.get("kind", "file"))
        if kind in ("absent", "unseen"):
            return cls(str(value["path"]), -1, -1, 0, "", kind)
        if kind == "link":
            return cls(str(value["path"]), -1, -1, 0, str(value["blake3"]), kind, follow=False)
        follow = not value.get("lstat", False)
        if kind == "present":
            return cls(str(value["path"]), -1, -1, 0, str(value["type"]), kind, follow=follow)
        if kind == "stat":
            return cls(str(value["path"]), int(value["size"]), int(value["mtime_ns"]), 0, str(value["type"]), kind,
                       follow=follow, ctime_ns=int(value.get("ctime_ns", -1)))
        if kind not in ("file", "listing"):
            raise ValueError(f"unknown kind of file input {kind!r}")
        return cls(
            str(value["path"]),
            int(value["size"]),
            int(value["mtime_ns"]),
            int(value.get("inode", 0)),
            str(value["blake3"]),
            kind,
            ctime_ns=int(value.get("ctime_ns", -1)),
            racy=bool(value.get("racy", False)),
        )


class _Recording:
    """What was opened and listed while it is active in this thread."""

    __slots__ = ("exclude", "root", "read", "opened", "written", "listed", "probed", "unfollowed", "links", "stats",
                 "callers", "codes", "modules", "reused", "unseen", "reached", "cwd", "relative", "moved")

    def __init__(self, exclude: tuple[str, ...], root: Callable | None) -> None:
        self.exclude = exclude
        self.root = root  # the lineage function whose call this records
        self.reached: tuple[str, ...] = ()  # `_note_reached_modules`, as the call began
        self.read: dict[str, bool] = {}  # path -> the project's own code looked for it
        self.opened: dict[str, tuple[int, int, int, int] | None] = {}  # path -> its stat when
        # first opened (`_stamp`; None: not there): one that differs at the end of the call
        # changed while the call ran (`files_read`)
        self.written: set[str] = set()
        self.listed: dict[str, FileRead | None] = {}  # directories the project's own code
        # listed, as first listed (None: could not be listed)
        self.probed: dict[str, int] = {}  # paths the project's code found by a stat: what it
        # asked of them (`_TESTED`, `_SIZE_MTIME`, `_WHOLE_STAT`)
        self.unfollowed: dict[str, int] = {}  # the same, of those found by a stat not
        # following links (islink, lexists, lstat): a path probed both ways is in both
        self.links: set[str] = set()  # links whose target the project's code read (readlink)
        self.stats: dict[tuple[str, bool], tuple[int, int, int]] = {}  # (path, followed) ->
        # (size, mtime, ctime) the code's first stat of it read (`files_read` compares)
        self.callers: dict[str, set[int]] = {}  # path -> project code on the stack below (ids)
        self.codes: dict[int, tuple[CodeType, dict]] = {}  # that code, and its module globals
        self.modules: set[str] = set()  # source files of the project modules imported meanwhile
        self.reused: set[str] = set()  # and of those `importlib.import_module` gave (`_note_module`)
        self.unseen: set[str] = set()  # folders the project's code listed whose path could not
        # be found (through a descriptor: `_fd_path`), described: the call is never served
        self.cwd: str | None = None  # the working directory as the call began (`recording_reads`)
        self.relative: dict[str, str | None] = {}  # path -> the name relative to `cwd` the code
        # gave it by (None: named absolute too, or in another working directory: `_note_name`)
        self.moved = 0  # how the call changed directory in this thread: 0 not, 1 by relative
        # names only (a name given then is relative to `cwd` through them), 2 otherwise


def _note_name(stack: list[_Recording], given: str, path: str) -> None:
    """The code named `path` (absolute) by `given`: where `given` is relative and the working
    directory is the one the call began in, the recordings keep the name relative to it, so
    that a hit from another folder checks the file the name gives there (`changed_files`);
    named by an absolute path too (or after a ``chdir`` in the call), the path itself."""
    cwd = None
    if not os.path.isabs(given):
        try:
            cwd = os.getcwd()
        except OSError:  # (the working directory removed)
            pass
    for recording in stack:  # (a call that went into a folder by a relative name, os.chdir("data"),
        # goes into that folder of the working directory at the next run too)
        if cwd is None or cwd != recording.cwd and recording.moved != 1 or recording.cwd is None:
            recording.relative[path] = None
        elif recording.relative.setdefault(path, "") == "":  # ("": not named yet)
            recording.relative[path] = os.path.relpath(path, recording.cwd)


def _hook(event: str, args: tuple) -> None:
    """The audit hook: cheap when nothing records (a set lookup and one attribute read; an
    ``open`` of a data file also walks the stack, for the memos it may fill)."""
    if event not in _EVENTS:
        return
    if event in _CODE_SETS:  # a function's code or defaults set (`_codesets`)
        note_code_set(args)
        return
    if event == "import":  # an extension module's binary loaded (its path: the event's 2nd
        if len(args) > 1 and isinstance(args[1], str) and not _is_library_path(args[1]):
            _note_loaded(args[1])  # (`_packages.binary_build`: the code that runs is its bytes
            # now; the 2nd argument is None for any other import)
        return
    stack = _LOCAL.stack
    if not args:
        return
    try:  # an exception here would abort the caller's open()
        if stack:
            _note(event, args, stack)
        elif event == "open":
            _note_memo_fill(args)
    except Exception:  # noqa: BLE001 - never fail the function's own open or listdir
        pass


def _note(event: str, args: tuple, stack: list[_Recording]) -> None:
    if event == "os.chdir":  # (a name given after it is relative to the folder it went to)
        named = os.fspath(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else None
        named = os.fsdecode(named) if named is not None else None
        moved = 1 if named is not None and not os.path.isabs(named) else 2  # (by fd: os.fchdir)
        for recording in stack:
            recording.moved = max(recording.moved, moved)
        return
    if event in _GLOBS:
        _note_glob(event, args, stack)
        return
    if event not in _LOOKS:
        _note_write(event, args, stack)
        return
    opener = _opener_frame(sys._getframe(2))  # (0: here, 1: the hook, 2: who opened or listed)
    pending = _in_progress(opener) if event == "open" else []  # (`open()` calls under way)
    if _by_rmtree(opener):
        return  # shutil.rmtree's own listings and opens of what it removes: a write, no input
    path = args[0]
    if path is None and event != "open":
        path = "."  # os.listdir() lists the working directory
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if isinstance(path, int) and event != "open":  # a folder listed through a descriptor
        path = _fd_path(path)  # (os.fwalk, os.listdir(fd), os.scandir(fd)): as its path
        if path is None:  # (no /proc, the folder removed): never served, nor silently missed
            if _callers(opener)[0]:
                for recording in stack:
                    recording.unseen.add(f"<a folder listed through file descriptor {args[0]}, "
                                         "whose path could not be found>")
            return
    if not isinstance(path, str):
        return  # open(fd): the os.open that made it was seen; a path-like a library resolves
    given = path  # (as the code named it: relative to the working directory, `_note_name`)
    if event == "open" and args[1] is None and not os.path.isabs(path) and _by_fwalk(opener):
        return  # os.fwalk opening a subfolder by its name in its parent (dir_fd, which the event
        # lacks: it named a path in the working directory); its listing is seen, by descriptor
    dir_fd = getattr(_DIR_FD, "fd", None) if event == "open" and args[1] is None else None
    if dir_fd is not None and not os.path.isabs(path):  # os.open(name, flags, dir_fd=d)
        for i in range(len(pending) - 1, -1, -1):  # open(name, opener=lambda p, f: os.open(p, f,
            if pending[i][:2] == (args[0], args[2]):  # dir_fd=d)): the event of that open() itself
                _, _, _, _, noted_path, noted = pending.pop(i)  # (the innermost one under way), before
                for names in noted:  # its opener's, named `name` in the working directory: not read
                    names.pop(noted_path, None) if isinstance(names, dict) else names.discard(noted_path)
                break  # (a wrong input, hashed) nor written (a file there read later, taken for output)
        folder = _dir_fd_path(dir_fd)  # the event names `name` alone; it is in the folder of `d`
        if folder is None:  # (no /proc, the folder removed): never served, nor a wrong path
            if _for_reading(args) and _callers(opener)[0]:
                for recording in stack:
                    recording.unseen.add(f"<{path} opened in the folder of file descriptor {dir_fd}, "
                                         "whose path could not be found>")
            return
        path = given = os.path.join(folder, path)
    path = os.path.abspath(path)  # now: the function may change directory later
    source_read = False  # a project .py read by content (runpy.run_path, exec(open(...).read()))
    if event == "open" and path.endswith((".py", ".pyc")):
        if not _for_reading(args):  # (code the call generates: its output)
            for recording in stack:
                recording.written.add(path)
            return
        if opener.f_globals.get("__name__") in _IMPORT_SYSTEM:
            _note_loaded(path)
            source = _module_source(path)
            stamp = _stamp(source) if source is not None else None  # (as `opened` below)
            for recording in stack if source is not None else ():
                recording.modules.add(source)
                recording.opened.setdefault(source, stamp)
            return
        if path.endswith(".pyc") or _shows_source(opener):
            return  # (linecache's read for a traceback or a warning, scistack's own: no input)
        source_read = True
    if (not source_read and path.endswith(_SKIP_SUFFIXES)) or path.startswith(_SKIP_ROOTS):
        return  # never an input
    relative = event == "open" and args[1] is not None and not os.path.isabs(args[0])  # (`open()`'s
    # own event, of a name its `opener` may open in a folder's descriptor next: `_PENDING`)
    if event == "open":
        if not _for_reading(args):
            if relative:
                _pend(pending, args, opener, path,
                      [recording.written for recording in stack if path not in recording.written])
            for recording in stack:
                recording.written.add(path)
            return
    own, callers = _callers(opener)
    if own or str(opener.f_globals.get("__name__")).partition(".")[0] != "scistack":
        _note_name(stack, given, path)  # (not scistack's own listing of a folder the code named)
    first: list[FileRead | None] = []  # the folder as the code lists it now, listed once
    if relative:
        _pend(pending, args, opener, path, [recording.read for recording in stack if path not in recording.read])
    stamp = _stamp(path) if event == "open" and any(path not in r.opened for r in stack) else None
    for recording in stack:
        if event == "open":
            recording.read[path] = own or recording.read.get(path, False)
            if path not in recording.opened:
                recording.opened[path] = stamp
        elif own and path not in recording.listed:
            if not first:  # (our own listdir raises an event too: scistack's, so not `own`)
                first.append(_listing(path, keep_names=True) or _absent_folder(path))
            recording.listed[path] = first[0]
        if callers:
            recording.callers.setdefault(path, set()).update(callers)
            recording.codes.update(callers)


# `io`: the ``open`` events of ``open()`` itself (not ``os.open``) of a relative name in this
# thread whose call may still be under way, innermost last: (the name, its flags, who opened
# (the frame's id, and its instruction then), the path noted, the recordings' `read` or
# `written` it was new to): its ``opener`` may open the name in a folder's descriptor (dir_fd),
# the event of which names the file really read (`_note`). Its opener may open or stat other
# files first (a link, a lock, a relative name of its own): the entry outlives their events.
_PENDING = threading.local()


def _in_progress(frame: Any) -> list:
    """The `_PENDING` ``open()`` calls still under way at an ``open`` event raised by `frame`,
    those left dropped: the one whose frame is `frame` or among its 8 callers (an ``opener``
    runs below the ``open()`` calling it; a C one, ``functools.partial(os.open, dir_fd=d)``, in
    its frame) and is still at the instruction of that call (`f_lasti`: once it returned, an
    ``os.open`` of the same name by a helper the frame calls next is another read). Frame ids
    are unique among the frames alive."""
    pending = _PENDING.__dict__.get("io")
    if not pending:
        return []
    under_way = []
    for entry in pending:
        caller, depth = frame, 9
        while caller is not None and depth > 0:
            if id(caller) == entry[2]:
                if caller.f_lasti == entry[3]:
                    under_way.append(entry)
                break
            caller, depth = caller.f_back, depth - 1
    pending[:] = under_way
    return pending


def _pend(pending: list, args: tuple, opener: Any, path: str, noted: list) -> None:
    """Note the event of ``open()`` of a relative name (see `_PENDING`): a call of that frame
    noted before has returned (a frame makes one call at a time)."""
    pending[:] = [entry for entry in pending if entry[2] != id(opener)][-7:]
    pending.append((args[0], args[2], id(opener), opener.f_lasti, path, noted))
    _PENDING.io = pending


_FWALK = getattr(getattr(os, "_fwalk", None), "__code__", None)  # (os.fwalk's own walk)


def _by_fwalk(frame: Any) -> bool:
    """Whether `frame` (an ``os.open``'s caller, of a relative path) is ``os.fwalk`` opening a
    folder by its name in its parent's descriptor (its module first: reading a frame's code
    raises an audit event). Python 3.13's walk opens the top folder there too, by the path
    given, with the caller's ``dir_fd``: in the working directory when that is None."""
    if frame.f_globals.get("__name__") != "os" or frame.f_code is not _FWALK:
        return False
    return "stack" not in _FWALK.co_varnames or frame.f_locals.get("dirfd") is not None


def _by_rmtree(frame: Any) -> bool:
    """Whether `frame` (who listed or opened) is ``shutil.rmtree`` walking what it removes (its
    module first: reading a frame's code raises an audit event). On Linux it lists each folder
    through a descriptor: recorded as inputs, a scratch folder a call made and removed was
    found changed (gone) at every hit, so the call was never served again."""
    return frame.f_globals.get("__name__") == "shutil" and frame.f_code.co_name.startswith(_RMTREE)


_RMTREE = ("rmtree", "_rmtree")


# the dir_fd meaning "relative to the working directory" (Linux and the BSDs: -100; macOS: -2;
# Python names it nowhere): a name in it is a path in the working directory, as with no dir_fd
_AT_FDCWD = -2 if sys.platform == "darwin" else -100 if sys.platform.startswith(("linux", "freebsd")) else None


def _dir_fd_path(dir_fd: Any) -> str | None:
    """The folder a name given with `dir_fd` is in: the working directory for ``AT_FDCWD``
    (it had no path in ``/proc/self/fd``: *unseen*, a call reading ``os.open(name, flags,
    dir_fd=AT_FDCWD)`` was never served), else the folder open at that descriptor (`_fd_path`)."""
    if dir_fd == _AT_FDCWD:
        try:
            return os.getcwd()
        except OSError:  # (the working directory removed)
            return None
    return _fd_path(dir_fd)


def _fd_path(fd: int) -> str | None:
    """The path of the folder open at descriptor `fd` (Linux's ``/proc/self/fd``, macOS's
    ``F_GETPATH``), checked to name that folder (its device and inode: a folder renamed or
    removed since it was opened names another or none); None where it cannot be found."""
    try:
        if sys.platform == "darwin":
            import fcntl

            found = os.fsdecode(fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).split(b"\0", 1)[0])
        else:
            found = os.readlink(f"/proc/self/fd/{fd}")
        there, here = os.stat(found), os.fstat(fd)
    except (OSError, AttributeError, ValueError):
        return None
    if not os.path.isabs(found) or (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino):
        return None
    return found


# modules that open a project's .py to show its lines (a traceback, a warning, logging.exception,
# inspect.getsource): not a read of its content by the code (the code identity has that)
_SHOWS_SOURCE = frozenset({"linecache", "tokenize", "traceback", "warnings"})


def _shows_source(frame: Any) -> bool:
    """Whether the ``open`` of a project .py made at `frame` is to show its lines
    (`_SHOWS_SOURCE`, past the file wrappers) or scistack's own (the code identity's): any
    other reader (``runpy.run_path``, ``exec(open(p).read())``, ``Path(p).read_text()``) reads
    its content, an input as any file's is."""
    while frame is not None:
        namespace = frame.f_globals
        name = namespace.get("__name__")
        kind = _KINDS.get(name)
        if kind is None:
            kind = _KINDS[name] = _module_kind(name, namespace)
        if kind != _WRAPPER:
            return kind == _OWN or name in _SHOWS_SOURCE
        frame = frame.f_back
    return False


def _excluded(path: str, exclude: tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    return any(_under(real, root) for root in exclude)


def _module_source(path: str) -> str | None:
    """The source file of a project module whose code (or its ``__pycache__`` bytecode) is
    opened, None for the interpreter's, an installed package's or scistack's own."""
    if path.endswith(".pyc"):
        try:
            path = importlib.util.source_from_cache(path)
        except ValueError:  # (not a __pycache__ file)
            return None
    real = os.path.realpath(path)
    if _is_library_path(real) or _under(real, _OWN_DIR) or any(_under(real, r) for r in _interpreter_roots()):
        return None
    return path


_OWN_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # scistack's package
_GLOBALS = globals()


def _note_glob(event: str, args: tuple, stack: list[_Recording]) -> None:
    """A glob the project's code asked for: the folders it tests names in without listing
    them (`codeid.globs`), noted as listed, so that such a name appearing or going later
    misses the hit (it had been served)."""
    own, callers = _callers(sys._getframe(3))  # (0: here, 1: _note, 2: the hook, 3: who globbed)
    if not own:
        return
    for given in glob_looks(event, args):
        path = os.path.abspath(given)
        if path.endswith(_SKIP_SUFFIXES) or path.startswith(_SKIP_ROOTS):
            continue
        _note_name(stack, given, path)
        listed: list[FileRead | None] = []
        for recording in stack:
            if path not in recording.listed:
                if not listed:
                    listed.append(_listing(path, keep_names=True) or _absent_folder(path))
                recording.listed[path] = listed[0]
            if callers:
                recording.callers.setdefault(path, set()).update(callers)
                recording.codes.update(callers)


# project functions looked at outside a call, nearest the open first: a memo further from the
# open (past more helpers) is not seen filling (each costs an audit event: ~1 us per open)
_FILL_DEPTH = 4


def _note_memo_fill(args: tuple) -> None:
    """A file read outside any lineage call (a memo filled by the script before its loop, or
    at import): remembered, as it was then, under the memoising project functions that asked
    (the later calls reaching them use its content without opening it)."""
    opener = _opener_frame(sys._getframe(2))  # (0: here, 1: the hook, 2: who opened)
    path = args[0]
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    source_read = False  # (a project .py read by content, as in `_note`)
    if isinstance(path, str) and path.endswith((".py", ".pyc")):
        if opener.f_globals.get("__name__") in _IMPORT_SYSTEM:
            _note_loaded(os.path.abspath(path))
            return
        if path.endswith(".pyc") or _shows_source(opener):
            return
        source_read = True
    if not isinstance(path, str) or (not source_read and path.endswith(_SKIP_SUFFIXES)) or path.startswith(
            _SKIP_ROOTS):
        return
    if not _for_reading(args):
        return
    _, callers = _callers(opener, _FILL_DEPTH)
    memos = [(key, code, namespace) for key, (code, namespace) in callers.items()
             if _memoises(code, namespace, in_place=True)
             and len(_MEMO_READS.get(key, (code, namespace, {}))[2]) <= _MEMO_FILES]  # (past it:
    # a cache per item, whose files no later call names: not hashed again for nothing)
    if not memos:
        return
    path = os.path.abspath(path)
    entry = _hashed(path) if os.path.isfile(path) and _is_input_path(path, (), source=True) else None
    for key, code, namespace in memos if entry is not None else ():
        _MEMO_READS.setdefault(key, (code, namespace, {}))[2][path] = entry


def _for_reading(args: tuple) -> bool:
    """Whether an ``open`` event's mode (or ``os.open`` flags) only reads."""
    mode, flags = args[1], args[2]
    if isinstance(mode, str):
        return "r" in mode and "+" not in mode
    return (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC) == 0


def _note_write(event: str, args: tuple, stack: list[_Recording]) -> None:
    """A path the call creates, removes or renames: output, and a change it made itself to
    the folder holding it."""
    for position in _WRITES[event]:
        path = args[position] if position < len(args) else None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, str):
            path = os.path.abspath(path)
            for recording in stack:
                recording.written.add(path)


def _callers(frame: object, most: int = -1) -> tuple[bool, dict[int, tuple[CodeType, dict]]]:
    """Whether the project's own code asked (the nearest caller past the wrappers), and the
    project code on the stack from there down to scistack's (the lineage call), with globals
    (those of the `most` nearest frames, if not -1). Frames are told apart by their module's name: reading
    ``f_code`` raises an audit event, so only the project's frames pay for it."""
    own: bool | None = None
    callers: dict[int, tuple[CodeType, dict]] = {}
    while frame is not None and most != 0:
        namespace = frame.f_globals  # type: ignore[attr-defined]
        name = namespace.get("__name__")
        kind = _KINDS.get(name)
        if kind is None:
            kind = _KINDS[name] = _module_kind(name, namespace)
        if kind == _OWN:
            break
        if kind == _USER:
            code = frame.f_code  # type: ignore[attr-defined]
            callers[id(code)] = (code, namespace)
            own = True if own is None else own
            most -= 1
        elif kind == _LIBRARY and own is None:
            own = False
        frame = frame.f_back  # type: ignore[attr-defined]
    return bool(own), callers


def _module_kind(name: object, namespace: dict) -> int:
    """Whether module `name` is the project's, scistack's, a library's or a file wrapper's."""
    if not isinstance(name, str) or name == "__main__":
        return _USER  # a script, a notebook, code exec'd in a namespace of its own
    top = name.partition(".")[0]
    if top == "scistack":
        return _OWN
    path = namespace.get("__file__")
    if top in sys.stdlib_module_names and (not isinstance(path, str) or _is_library_path(path)):
        return _WRAPPER if top in _WRAPPERS else _LIBRARY  # (frozen ones have no file)
    if not isinstance(path, str):
        return _USER  # a module made at run time
    real = os.path.realpath(path)
    if _is_library_path(real) or any(_under(real, root) for root in _interpreter_roots()):
        return _LIBRARY
    return _USER


def install() -> None:
    """Start seeing reads (done when a lineage function is made: the memos a script fills
    before its first call are seen too)."""
    _install()


def _install() -> None:
    global _HOOKED, _HOOKED_NS
    with _HOOK_LOCK:
        if not _HOOKED:
            os.stat, os.lstat, os.access = _probe(os.stat), _probe(os.lstat), _probe(os.access)
            os.readlink = _probe(os.readlink)
            os.open = _opener(os.open)
            importlib.import_module = _importer(importlib.import_module)
            _same_support(os.stat, os.lstat, os.access, os.readlink, os.open)
            try:
                sys.addaudithook(_hook)
                _codesets.watching()
            except RuntimeError as exc:  # another audit hook refused ours: say so, once
                warnings.warn(
                    f"scistack cannot see the files lineage functions read ({exc}); a changed "
                    "input file will not re-run a cached call",
                    RuntimeWarning,
                    stacklevel=3,
                )
            _HOOKED = True
            _HOOKED_NS = time.time_ns()


_PROBING = threading.local()  # (a probe noted inside `_note_probe`'s own stats is not noted)


def _probe(real: Callable[..., Any]) -> Callable[..., Any]:
    """`os.stat`, `os.lstat` or `os.access`, seeing a path the project's code looks for and
    does not find (``os.path.exists``/``isfile``/``isdir``, ``Path.exists``/``is_dir``/
    ``is_file``, ``os.access(p, F_OK)``: no audit event is raised for them): recorded
    *absent*, as a missing path it tried to open is. Outside a recording: one thread-local
    read more per call."""

    @functools.wraps(real)
    def probe(path: Any, *args: Any, **kwargs: Any) -> Any:
        if not _LOCAL.stack:
            return real(path, *args, **kwargs)
        try:
            result = real(path, *args, **kwargs)
        except (FileNotFoundError, NotADirectoryError):
            _note_probe(path, kwargs, real.__name__, False)
            raise
        except OSError as exc:  # readlink of a path that is not a link: found, of its type
            if exc.errno == errno.EINVAL and real.__name__ == "readlink":
                _note_probe(path, kwargs, "readlink", True)
            raise
        # os.access False: absent, or not allowed (`files_read` tells them apart)
        _note_probe(path, kwargs, real.__name__, result is not False, result)
        return result

    probe.__module__ = "os"  # (pickle finds a function by module and name: posix.stat is not it)
    return probe


_DIR_FD = threading.local()  # `fd`: the dir_fd of the os.open in progress in this thread


def _opener(real: Callable[..., Any]) -> Callable[..., Any]:
    """`os.open`, telling the audit hook the folder a relative path is opened in
    (``os.open("cal.txt", flags, dir_fd=d)``: the ``open`` event carries no ``dir_fd``, and the
    path was taken for one in the working directory, so the file really read was never
    checked). Outside a recording, or without ``dir_fd``: ~0.1 us more per call (one Python call). Its
    frame is skipped where the hook looks for who opened (`_opener_frame`)."""

    @functools.wraps(real)
    def open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs or kwargs.get("dir_fd") is None or not _LOCAL.stack:
            return real(path, *args, **kwargs)
        _DIR_FD.fd = kwargs["dir_fd"]
        try:
            return real(path, *args, **kwargs)
        finally:
            _DIR_FD.fd = None

    open.__module__ = "os"  # (pickle finds a function by module and name: posix.open is not it)
    return open


_OPEN_CODE = _opener(os.open).__code__  # (every wrapper `_opener` makes runs this code)


def _opener_frame(frame: Any) -> Any:
    """Who opened, the frame that raised an ``open`` event, past `_opener`'s wrapper (only a
    frame of this module pays for reading ``f_code``, which raises an audit event)."""
    if frame.f_globals is _GLOBALS and frame.f_code is _OPEN_CODE:
        return frame.f_back
    return frame


def _importer(real: Callable[..., Any]) -> Callable[..., Any]:
    """`importlib.import_module`, seeing a project module the project's code asks for by a
    computed name while a call records, also one imported already (no file is opened then:
    imported at the top of the script, it had never been an input). Outside a recording:
    one thread-local read more per call."""

    @functools.wraps(real)
    def import_module(name: str, package: str | None = None) -> Any:
        module = real(name, package)
        if _LOCAL.stack:
            _note_module(module)
        return module

    import_module.__module__ = "importlib"  # (pickle finds it by module and name)
    return import_module


# a module's source file -> its stat (size, mtime, inode, ctime) when the import system last
# opened it (or its bytecode) in this process, and the digest of its content then when that
# stat was racy (`racy_stat`), else None: its code in memory is the file's as it was then (an
# extension module's binary: as it was loaded, from the ``import`` audit event)
_LOADED_AT: dict[str, tuple[tuple[int, int, int, int], str | None]] = {}


def _note_loaded(path: str) -> None:
    if path.endswith(".pyc"):
        try:
            path = importlib.util.source_from_cache(path)
        except ValueError:  # (not a __pycache__ file)
            return
    if len(_LOADED_AT) > 100_000:
        _LOADED_AT.clear()
    now_ns = time.time_ns()
    try:
        st = _REAL_STAT(path)
    except (OSError, ValueError):
        _LOADED_AT.pop(path, None)
        return
    stamp = stat_stamp(st)
    digest = None
    if racy_stat(st, now_ns):  # (written in the last 2 s: a same-size rewrite in its tick would
        hashed = _hashed(path)  # keep this stat, so the content is what tells; this open of a
        # project .py is scistack's own, no input: `_shows_source`)
        same = hashed is not None and (hashed.size, hashed.mtime_ns, hashed.inode, hashed.ctime_ns) == stamp
        digest = hashed.digest if same else CHANGED_WHILE_READ  # (rewritten meanwhile: not known)
    _LOADED_AT[path] = (stamp, digest)


def _loaded_as(entry: FileRead) -> bool | None:
    """Whether module source `entry` (hashed now) is the file as its import in this process read
    it (None: no import of it seen since the hook was installed). Its whole stat then, when
    that vouches for the content, else the content then: "its mtime is older than the import"
    had counted a same-size edit just after the import (its mtime, from the kernel's coarse
    clock, still older than the fine-grained time of the import) and one whose mtime ``cp -p``
    or ``touch -r`` set back as the file loaded, and the old code's result was recorded
    under the new file (a new process served it)."""
    loaded = _LOADED_AT.get(entry.path)
    if loaded is None:
        return None
    stamp, digest = loaded
    if digest is not None:
        return entry.digest == digest
    return (entry.size, entry.mtime_ns, entry.inode, entry.ctime_ns) == stamp


def loaded_file_is_current(path: str) -> bool | None:
    """Whether project module source `path` is now the file its last import in this process
    read (`_LOADED_AT`: the file's whole stat then, or where that stat was racy, its content
    then); None where this process saw no import read it (imported before the hook was
    installed, or not imported). `why` asks it of a module it may have to read again."""
    loaded = _LOADED_AT.get(path)
    if loaded is None:
        return None
    stamp, digest = loaded
    if digest is None:
        try:
            st = _REAL_STAT(path)
        except (OSError, ValueError):
            return False
        return stat_stamp(st) == stamp
    hashed = _hashed(path)
    return hashed is not None and hashed.digest == digest


@functools.lru_cache(maxsize=1)
def _process_start_ns() -> int:
    """When this process started (Linux: from /proc, to a clock tick), else when scistack's
    file code was imported, less the racy window (`_RACY_NS`, as `racy_stat`: a file's times
    come from a coarse clock, FAT's 2 s or a server's behind this one's, so a file written
    after the start may be dated up to that much before it, and `_validated` had taken such
    a module for the one loaded). The start had been /proc/stat's whole-second boot time less
    1 s: 1 to 2 s early by chance (the boot's fraction), inside the window or not. The boot is
    read from CLOCK_BOOTTIME, the clock /proc's start ticks count on (btime less 1 s where there
    is none)."""
    try:
        with open("/proc/self/stat") as handle:  # (/proc: never an input)
            ticks = int(handle.read().rpartition(")")[2].split()[19])  # field 22, starttime
        try:  # (the realtime first: the boot it gives is early by the moment between the reads)
            boot_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        except (AttributeError, OSError):
            with open("/proc/stat") as handle:
                boot_ns = (next(int(line.split()[1]) for line in handle if line.startswith("btime ")) - 1) * 10**9
        return boot_ns + ticks * 10**9 // os.sysconf("SC_CLK_TCK") - _RACY_NS
    except (OSError, ValueError, IndexError, StopIteration):
        return _FILES_IMPORTED_NS - _RACY_NS


_FILES_IMPORTED_NS = time.time_ns()
_HOOKED_NS = 0  # when `_install` installed the hook: imports since are in `_LOADED_AT`


def _note_module(module: Any) -> None:
    stack = _LOCAL.stack
    try:
        path = getattr(module, "__file__", None)
        if not stack or not isinstance(path, str) or not path.endswith(".py"):
            return
        frame = sys._getframe(2)  # (0: here, 1: the wrapper, 2: who asked)
        name = frame.f_globals.get("__name__")
        kind = _KINDS.get(name)
        if kind is None:
            kind = _KINDS[name] = _module_kind(name, frame.f_globals)
        source = _module_source(os.path.abspath(path)) if kind == _USER else None
        for recording in stack if source is not None else ():
            recording.reused.add(source)
    except Exception:  # noqa: BLE001 - never fail the function's own import
        pass


def _same_support(*probes: Callable[..., Any]) -> None:
    """Each probe in the `os.supports_*` sets its function is in: code asks them whether a
    call takes `dir_fd`, a file descriptor or `follow_symlinks` (`os.stat in
    os.supports_dir_fd`), and a wrapper not in them read as a platform without those (a
    library then takes its slower or less safe path)."""
    for probe in probes:
        real = probe.__wrapped__
        for supports in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks,
                         os.supports_effective_ids):
            if real in supports:
                supports.add(probe)


# What the project's code asked when a stat found the path, by the outermost function of the
# wrappers it called (or the function itself, called directly): whether the path is there (and
# a file or a folder), or its size and times too. Any other (``os.makedirs``, ``realpath``,
# ``shutil``'s copies, a glob) is not an input: they look at paths on their own account.
_TESTS = frozenset({"exists", "lexists", "isfile", "isdir", "islink", "is_dir", "is_file", "is_symlink",
                    "access"})
_STATS = frozenset({"stat", "lstat", "getsize", "getmtime", "getatime", "getctime"})
# What was asked of a path found, least first: only tested; its size or mtime (``getsize``,
# ``getmtime``, ``getatime``: checked by size and mtime); its whole stat (``os.stat``,
# ``Path.stat``, ``getctime``: the ctime too, which a chmod or chown changes alone)
_TESTED, _SIZE_MTIME, _WHOLE_STAT = range(3)
_READS_CTIME = frozenset({"stat", "lstat", "getctime"})
# What gives a path with its links resolved: the links it read are inputs (`_note_probe`), the
# paths it found missing on its way (a dangling link's target) are not
_RESOLVES = frozenset({"realpath", "resolve"})


def _note_probe(path: Any, kwargs: dict, called: str, found: bool, result: Any = None) -> None:
    """A stat (or access) the project's own code asked for: a path not found is recorded
    absent (``read``, and `opened` as not there); a path found, `probed` (tested only: there,
    and its type; or its stat read: its size and mtime too, and its ctime if the code could
    read it; the first such stat, `result`, kept in `stats`). A name in a folder's descriptor
    (``dir_fd``) is the path in that folder; where none is found, an *unseen* entry."""
    stack = _LOCAL.stack
    if not stack or getattr(_PROBING, "on", False):
        return
    _PROBING.on = True
    try:
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return  # a file descriptor
        dir_fd, folder, given = kwargs.get("dir_fd"), "", path
        if dir_fd is not None and not os.path.isabs(path):  # os.stat(name, dir_fd=d): in d's
            folder = _dir_fd_path(dir_fd)  # folder (it had been skipped: a file replaced there kept
            if folder is not None:  # the hit); where none is found, `unseen` below
                path = given = os.path.join(folder, path)
        path = os.path.abspath(path)
        if path.endswith(_SKIP_SUFFIXES) or path.startswith(_SKIP_ROOTS):
            return
        frame, outer = sys._getframe(2), None  # (0: here, 1: the probe, 2: who called os.stat)
        while frame is not None:  # past the wrappers: who asked (a library's probes are its own
            namespace = frame.f_globals  # business, as its missing opens are)
            name = namespace.get("__name__")
            kind = _KINDS.get(name)
            if kind is None:
                kind = _KINDS[name] = _module_kind(name, namespace)
            if kind != _WRAPPER:
                break
            outer, frame = frame, frame.f_back
        if frame is None or kind != _USER:
            return
        if folder is None:  # (no /proc, the folder removed): never served, nor a wrong path
            for recording in stack:
                recording.unseen.add(f"<{given} looked for in the folder of file "
                                     f"descriptor {dir_fd}, whose path could not be found>")
            return
        asked = called if outer is None else outer.f_code.co_name
        _note_name(stack, given, path)
        if not found:
            if asked in _RESOLVES and not (outer is not None and outer.f_locals.get("strict")):
                # (realpath's lstat of a dangling link's target, of a component not there: the
                # path it gives is the same once they appear; its links are. Not with
                # strict=True: it raises, and the code sees whether the path is there)
                return
            for recording in stack:
                recording.read[path] = True
                recording.opened.setdefault(path, None)  # (there at the end: changed meanwhile)
            return
        if called == "readlink":  # os.readlink, Path.readlink: the link's target is an input, and
            # so is each link realpath/resolve read (`result`, its target: the path they give is
            # made of them, and a file opened by that path is recorded by it alone: the link
            # re-pointed to another file had kept the hit); not a path they found no link
            if asked == "readlink" or asked in _RESOLVES and result is not None:
                for recording in stack:
                    recording.links.add(path)
            return
        if asked in _TESTS or asked in _STATS:
            asks = (_TESTED if asked in _TESTS else _WHOLE_STAT if asked in _READS_CTIME else _SIZE_MTIME)
            unfollowed = called == "lstat" or kwargs.get("follow_symlinks", True) is False
            seen = ((result.st_size, result.st_mtime_ns, result.st_ctime_ns)
                    if asks != _TESTED and isinstance(result, os.stat_result) else None)
            for recording in stack:  # (islink, lexists, is_symlink, lstat: the link itself)
                probed = recording.unfollowed if unfollowed else recording.probed
                probed[path] = max(asks, probed.get(path, _TESTED))
                if seen is not None:
                    recording.stats.setdefault((path, not unfollowed), seen)
    except Exception:  # noqa: BLE001 - never fail the function's own stat
        pass
    finally:
        _PROBING.on = False


@contextmanager
def recording_reads(exclude: tuple[str, ...] = (),
                    root: Callable | None = None) -> Iterator[_Recording]:
    """Record the files opened for reading inside the block (nested blocks all record).
    `root`: the lineage function whose call it is (the memos its code reaches: see above)."""
    _install()
    _empty_out_of_date_caches(root)
    recording = _Recording(exclude, root)
    try:
        recording.cwd = os.getcwd()  # (what a relative name the call gives is relative to: `_note_name`)
    except OSError:  # (the working directory removed: no relative name can be read)
        pass
    if root is not None:  # (the walk the call's key was made by: the call may import what it
        # names, and the walk after it, valid then, lists other files: `_note_reached_modules`)
        from scistack.codeid.identity import reached_modules  # (identity imports the code walk)

        recording.reached = reached_modules(root)
    stack = _LOCAL.__dict__.setdefault("stack", [])
    try:  # (appended inside: an interrupt just after it must not leave it recording forever)
        stack.append(recording)
        yield recording
    finally:
        if recording in stack:
            stack.remove(recording)


def files_read(recording: _Recording) -> list[FileRead]:
    """The inputs of a finished recording, hashed now, and the reads of this process's memos
    its function reaches (sorted by path)."""
    _note_reached_modules(recording)
    if not (recording.read or recording.listed or recording.probed or recording.unfollowed or recording.links
            or recording.modules
            or recording.reused or recording.unseen
            or _MEMO_READS
            or _IMPORTED_BY):
        return []
    exclude = tuple(os.path.realpath(e) for e in recording.exclude)
    found: dict[str, FileRead] = {}
    for path, own in recording.read.items():  # (a .py here was read by content: `_note`)
        if path in recording.written:
            continue
        if not _is_input_path(path, exclude, source=True):
            _links_out(path, recording.exclude, exclude, found, source=True)
            continue
        if os.path.isfile(path):
            entry = _hashed(path)
            if entry is not None:
                entry = _as_opened(entry, recording)
        elif own and not os.path.exists(path):  # (a dangling link too: the code followed it)
            entry = FileRead(path, -1, -1, 0, "", "absent")
        else:
            continue  # a directory, a socket, a pipe; or a missing path a library looked for
        if entry is not None:
            found[path] = entry
    for path, seen in recording.listed.items():
        if seen is not None and path not in found:
            if _is_input_path(path, exclude):
                found[path] = settled_listing(seen, recording.written)
            else:
                _links_out(path, recording.exclude, exclude, found)
    for path, asks in recording.probed.items():
        if path in found or path in recording.written:
            continue  # (read or listed: its content or names say more)
        if not _is_input_path(path, exclude):
            _links_out(path, recording.exclude, exclude, found)
            continue
        if asks == _TESTED and recording.listed.get(os.path.dirname(path)) is not None:
            continue  # (its folder's listing names it, and marks a folder: `_listing`)
        entry = _probed(path, asks)
        if entry is not None:
            found[path] = _as_seen(entry, recording)
    # Found by an lstat (the link itself): its own entry, beside the one of the same path
    # followed (a stat, or its content read): `islink(p)` then `getsize(p)` had recorded the
    # lstat alone, and the link's target rewritten kept the hit. (Keyed apart in `found`.)
    for path, asks in recording.unfollowed.items():
        if path in recording.written or not _is_input_link(path, exclude):
            continue
        entry = _probed(path, asks, follow=False)
        if entry is not None:
            found[path + _UNFOLLOWED] = _as_seen(entry, recording)
    for path in recording.links:  # (its own entry, as an lstat's: the link, not what it names)
        if path in recording.written or not _is_input_link(path, exclude):
            continue
        entry = _link(path)
        if entry is not None:
            found[path + _TARGET] = entry
    for described in recording.unseen:
        found[described] = FileRead(described, -1, -1, 0, "", "unseen")
    _imports(recording, found, exclude)
    _remember_memos(recording, found)
    _add_memos(recording, found, exclude)
    if any(recording.relative.values()):
        for key, entry in found.items():
            relative = recording.relative.get(entry.path) if entry.kind != "unseen" else None
            if relative:
                found[key] = dataclasses.replace(entry, relative=relative, cwd=recording.cwd)
    return [found[p] for p in sorted(found)]


_UNFOLLOWED = "\0lstat"  # `files_read`'s key of a path's lstat entry (sorts just after the path's)
_NOT_NOTED = (-1, -1, -1, -1)
# The digest recorded for a file whose stat at the end of the call differs from its stat when
# the call first opened it (another process or thread rewrote it meanwhile, or it appeared
# after an open that failed): the content the call read is not known, and the content now
# may not be what it computed from (it had been recorded as the input, and the result served
# for it). No content has this digest: the next run misses and records the file afresh.
CHANGED_WHILE_READ = "changed while the call ran"


def _as_opened(entry: FileRead, recording: _Recording) -> FileRead:
    """A file input as hashed at the end of the call (`entry`), or `CHANGED_WHILE_READ` when
    its stat then differs from its stat when the call first opened (or imported) it."""
    if recording.opened.get(entry.path, _NOT_NOTED) in (
            _NOT_NOTED, (entry.size, entry.mtime_ns, entry.inode, entry.ctime_ns)):
        return entry
    return dataclasses.replace(entry, digest=CHANGED_WHILE_READ, racy=True)


def _as_seen(entry: FileRead, recording: _Recording) -> FileRead:
    """A path whose stat the code read (`entry`, as it is at the end of the call): with an
    mtime no file has (-1: never a hit) when the stat the code first read differs (another
    process touched it meanwhile: the result was computed from the stat as it was)."""
    seen = recording.stats.get((entry.path, entry.follow)) if entry.kind == "stat" else None
    if seen is None or (seen[0], seen[1]) == (entry.size, entry.mtime_ns) and (
            entry.ctime_ns == -1 or seen[2] == entry.ctime_ns):
        return entry
    return dataclasses.replace(entry, mtime_ns=-1)


def _stamp(path: str) -> tuple[int, int, int, int] | None:
    """(size, mtime, inode, ctime) of `path` now, by the real ``os.stat`` (not `_probe`'s:
    the hook's own look is no probe of the code's), None where there is no file."""
    try:
        st = _REAL_STAT(path)
    except (OSError, ValueError):
        return None
    return stat_stamp(st)


def stat_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """What a stat says of a file's content, as every memo of files keys it (this module's
    records, `foreach.filestats`): (size, mtime, inode, ctime), each in whole units (ns)."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


_REAL_STAT = getattr(os.stat, "__wrapped__", os.stat)  # (`_probe` wraps os.stat on install)
_REAL_LSTAT = getattr(os.lstat, "__wrapped__", os.lstat)


# a lineage function's code -> the source files of the project modules its calls imported in
# this process (``importlib.import_module(name)`` with a name computed at run time, which its
# code identity cannot follow), as first read
_IMPORTED_BY: dict[int, tuple[CodeType, dict[str, FileRead]]] = {}


def _imports(recording: _Recording, found: dict[str, FileRead], exclude: tuple[str, ...]) -> None:
    """The project modules the call imported are inputs (their source files, by content), and
    those an earlier call of the same function imported in this process are inputs of every
    later call too: ``sys.modules`` is a memo, and the later calls use the module without
    importing it. A module file edited since it was imported: the code in memory is the old
    one, so the call is recorded with the file as it was imported (stale at once; a new
    process imports the file as it is), with a warning, as a memo's file is (`_add_memos`)."""
    root = code_object(recording.root)
    imported = _IMPORTED_BY.setdefault(id(root), (root, {}))[1] if root is not None else {}
    for path in recording.modules:
        if path not in found and path not in recording.written and not _excluded(path, exclude):
            entry = _hashed(path) if os.path.isfile(path) else None
            if entry is not None:
                entry = _as_opened(entry, recording)  # (edited since the import read it: the
                if _loaded_as(entry) is False:  # old code ran, the result must not be served
                    entry = dataclasses.replace(entry, digest=CHANGED_WHILE_READ, racy=True)  # for
                found[path] = entry  # the new; a same-size edit in its stat's tick: by content)
                imported.setdefault(path, entry.bare())
    for path in recording.reused - recording.modules:  # (imported before: no file opened)
        if path in found or path in imported or path in recording.written or _excluded(path, exclude):
            continue  # (one an earlier call imported: as then, below)
        entry = _hashed(path) if os.path.isfile(path) else None
        if entry is None:
            continue
        loaded = _loaded_as(entry)
        if loaded if loaded is not None else _validated(path, entry):
            imported[path] = entry.bare()  # the file as the module in memory was loaded
        else:  # changed since it was imported (or may have: imported before the hook was
            _warn_imported(recording, path)  # installed, at an unknown time since the start)
            entry = FileRead(path, -1, -1, 0, "")  # the old code ran: stale at once, never served
        found[path] = entry
    for path, entry in list(imported.items()):
        if path in recording.modules or path in found or _excluded(path, exclude):
            continue
        if (id(root), path) not in _WARNED and changed_files([entry]):
            _warn_imported(recording, path)
        found[path] = entry  # as imported: the result is stale at once, never served


def _note_reached_modules(recording: _Recording) -> None:
    """The project modules the function's code identity reaches by a ``getattr`` with a
    computed name (`identity.reached_modules`): the identity digests their code members, not
    their data (a ``STARTED = time.time()`` differs in every process), so their source files
    are inputs by content, as a module `importlib.import_module` gave is (`_note_module`,
    `_imports`): ``float(getattr(cfg, name))`` with cfg.py edited from K = 2 to K = 3 had been
    served from the cache. (A comment-only edit of such a module re-runs the call.)"""
    if recording.root is None:
        return
    from scistack.codeid.identity import reached_modules  # (identity imports the code walk)

    for path in dict.fromkeys((*recording.reached, *reached_modules(recording.root))):
        # (those of the walk as the call began too: a submodule named by attribute that the
        # call imported is walked now, its files no longer listed, yet the key was made
        # without its code: `_graph.Walk._unimported_source`)
        source = _module_source(os.path.abspath(path))
        if source is not None:
            recording.reused.add(source)


def _validated(path: str, entry: FileRead) -> bool:
    """Whether a project module imported before the hook was installed (no `_LOADED_AT`) was
    loaded from its source file as it is (`entry`): its ``__pycache__`` bytecode, last written
    before this process started, holds the source's mtime (whole seconds) and size (or its
    hash) that the import checked; else, without such a pyc, whether the file is older than
    the process. A pyc written since may be another process's, compiled from the source
    edited after this process imported it (the in-memory K = 2 had been recorded under the
    K = 3 file, and a new process served it): trusting one written before the hook was
    installed had let that through. (So a module edited after the kernel started, then
    imported, then scistack, re-runs its calls with "changed after" warnings, as without a
    pyc: never a stale result served.) Either way a file whose ctime, which no copy can set, is
    later than the hook's install (so than the import) is not: a ``cp -p``/``touch -r`` of
    another version of the same size keeps the mtime (and so the pyc's check), and had passed
    as the code loaded. (One between the import and the install is not seen: when the import
    happened is not known, and the process's start is known to a second or two only.)"""
    if entry.ctime_ns >= _HOOKED_NS:  # (changed since the hook was installed, so since the import)
        return False
    try:
        pyc = importlib.util.cache_from_source(path)
        if os.stat(pyc).st_mtime_ns < _process_start_ns():  # (since: maybe another process's)
            with open(pyc, "rb") as handle:  # (a .pyc: never an input)
                header = handle.read(16)
            if len(header) == 16 and header[:4] == importlib.util.MAGIC_NUMBER:
                flags = int.from_bytes(header[4:8], "little")
                if flags & 1:  # hash-based
                    with open(path, "rb") as handle:
                        return header[8:16] == importlib.util.source_hash(handle.read())
                return flags == 0 and header[8:16] == (
                    (entry.mtime_ns // 10**9 & 0xFFFFFFFF).to_bytes(4, "little")
                    + (entry.size & 0xFFFFFFFF).to_bytes(4, "little"))
    except (OSError, ValueError, NotImplementedError):
        pass
    return entry.mtime_ns < _process_start_ns()


def _warn_imported(recording: _Recording, path: str) -> None:
    root = code_object(recording.root)
    if (id(root), path) not in _WARNED:
        _WARNED.add((id(root), path))
        warnings.warn(
            f"{path} changed after {getattr(recording.root, '__name__', 'the function')} imported "
            "it in this process: its calls run the module's old code (their results show as "
            "stale, and run again). Run again in a new Python process", RuntimeWarning, stacklevel=4)


def _remember_memos(recording: _Recording, found: dict[str, FileRead]) -> None:
    """Reads made under a memoising function: kept for this process's later calls."""
    root = code_object(recording.root)
    filled = _FILLED_BY.setdefault(id(root), (root, set()))[1] if root is not None else set()
    for path, callers in recording.callers.items():
        entry = found.get(path)
        if entry is None:
            continue
        for key in callers:
            code, namespace = recording.codes[key]
            if _memoises(code, namespace, in_place=code is not root):
                _MEMO_READS.setdefault(key, (code, namespace, {}))[2][path] = entry.bare()
                filled.add(key)


def _add_memos(recording: _Recording, found: dict[str, FileRead],
               exclude: tuple[str, ...]) -> None:
    """What the memos this call's function reaches read when they were filled (unless the
    call read it again itself): the call used their values."""
    for key, (code, _, reads) in _memos_of(recording.root):
        for path, entry in list(reads.items()):
            if path in found or path in recording.written or not _is_input_path(path, exclude, source=True):
                continue
            if (key, path) not in _WARNED and changed_files([entry]):
                _WARNED.add((key, path))
                warnings.warn(
                    f"{code.co_qualname} (in {code.co_filename}) keeps in memory what it read from "
                    f"{path}, which has changed since: the calls of "
                    f"{getattr(recording.root, '__name__', 'the function')} that use it compute "
                    "from the old content (their results show as stale, and run again). Run "
                    "again in a new Python process", RuntimeWarning, stacklevel=2)
            found[path] = entry  # as read then: the result is stale at once, never served


def _memos_of(root: Callable | None) -> list[tuple[int, tuple[CodeType, dict, dict[str, FileRead]]]]:
    """This process's memos whose values a call of `root` may use: the functions its code
    identity reaches, and those its earlier calls filled (at most `_MEMO_FILES` files each)."""
    if not _MEMO_READS or root is None:
        return []
    from scistack.codeid.identity import reached_code  # (identity imports the code walk)

    filled = _FILLED_BY.get(id(code_object(root)), (None, set()))[1]
    reached = reached_code(root) | filled
    return [(key, memo) for key, memo in list(_MEMO_READS.items())
            if key in reached and len(memo[2]) <= _MEMO_FILES]


def _empty_out_of_date_caches(root: Callable | None) -> None:
    """Empty the ``lru_cache`` memos a call of `root` may use whose files changed since they
    were read in this process (the call would compute from their old content); they fill
    again from the files as they are. Other memos cannot be emptied: `_add_memos` warns."""
    for key, (code, namespace, reads) in _memos_of(root):
        cached = _lru_wrapper(code, namespace)
        if cached is not None and changed_files(list(reads.values())):
            cached.cache_clear()
            _MEMO_READS.pop(key, None)


# A memo that has read more files than this in the process is a cache per item (an lru_cache
# over per-subject files): its files are not added to every later call (records and hits would
# grow with the loop, and one subject's edit would make every later result stale)
_MEMO_FILES = 8


def code_object(fn: Callable | None) -> CodeType | None:
    """The code object behind a function, a method or a partial (None for other callables)."""
    if fn is None:
        return None
    real = getattr(fn, "func", fn)  # a partial
    real = getattr(real, "__func__", real)  # a method
    code = getattr(real, "__code__", None)
    return code if isinstance(code, CodeType) else None


def _memoises(code: CodeType, namespace: dict, in_place: bool) -> bool:
    """Whether the function running `code` keeps what it computes across calls: it is wrapped
    by ``functools.lru_cache``/``cache``, assigns a module global, or (`in_place`: asked of
    helpers, not of the lineage function itself, whose ``CALLS.append(x)`` is a log, not a memo)
    changes one in place."""
    known = _MEMOISES.get(id(code))
    if known is None:
        if len(_MEMOISES) > 10_000:
            _MEMOISES.clear()
        memoises = _stores_global(code) or _is_cached(code, namespace)
        known = _MEMOISES[id(code)] = (code, memoises, _mutates_global(code, namespace))
    return known[1] or (in_place and known[2])


def _stores_global(code: CodeType) -> bool:
    return not _GLOBAL_WRITES.isdisjoint(code.co_code[::2])  # (wordcode: opcodes at even offsets)


def _is_cached(code: CodeType, namespace: dict) -> bool:
    return _lru_wrapper(code, namespace) is not None


def _lru_wrapper(code: CodeType, namespace: dict) -> Any:
    """The lru_cache wrapping the function of `code`, found by its qualified name in its
    module (None if that function is not one)."""
    found = _named(code, namespace)
    wrapped = getattr(found, "__wrapped__", None)
    cached = hasattr(found, "cache_info") and getattr(wrapped, "__code__", None) is code
    return found if cached else None


def _named(code: CodeType, namespace: dict) -> Any:
    """What the qualified name of `code` is bound to in its module (None for a local function)."""
    parts = code.co_qualname.split(".")
    if "<locals>" in parts:
        return None
    found = namespace.get(parts[0])
    for part in parts[1:]:
        found = vars(found).get(part) if hasattr(found, "__dict__") else None
    return found


def _mutates_global(code: CodeType, namespace: dict) -> bool:
    """The function of `code` changes a module-level object in place (``_CACHE[key] = v``),
    from its analysed shape: the one the code walk made when a lineage function's identity
    reached it, else analysed now (a dict memo the script fills before the first call is
    asked of here before any identity walk reached it: it had not been taken for a memo, so
    the calls using it named no file, and the next process served results made from the
    file's old content). Once per code object (`_memoises` keeps the answer)."""
    from scistack.codeid._shapes import function_shape, known_shape

    shape = known_shape(code)
    if shape is None:
        found = _named(code, namespace)
        found = getattr(found, "__wrapped__", found)
        found = getattr(found, "__func__", found)
        if getattr(found, "__code__", None) is not code:
            return False
        try:
            shape = function_shape(found)
        except Exception:  # noqa: BLE001 - source that cannot be analysed: not known as a memo
            return False
    return any(chain[0] in namespace for chain in shape.mutated)


def changed_files(files: list[FileRead], paths: list[str] | None = None, *,
                  report: bool = False) -> list[str]:
    """Paths whose content differs from when they were read (a missing file has changed; an
    absent one that now exists has; a listed directory whose names differ has). `paths`:
    where to look for each file instead of its recorded path (this checkout's copy of a
    file inside the project's folder, `lineage.filecheck`). A path the code named relative to
    the working directory is looked for where that name leads from the working directory now
    (`FileRead.relative`): run from another folder, the code reads that folder's file.
    `report` (status, why, the web view, asked from any folder, often the project's own while
    the scripts run in a subfolder): where the name leads into no folder from here, it is
    looked for where the call ran, so `scistack status` in the project folder does not call every value
    stale that a script in `scripts/` made reading `../data/cfg.json`."""
    changed = []
    here = None  # (the working directory, asked once: only for a path named relative to it)
    for i, f in enumerate(files):
        path = f.path if paths is None else paths[i]
        if f.kind == "unseen":  # (a folder listed whose path could not be found: never a hit)
            changed.append(f.path)
            continue
        if f.relative is not None:
            if here is None:
                here = _cwd()
            if here != f.cwd:
                if not here:  # (the working directory removed: the name leads nowhere)
                    changed.append(f.relative)
                    continue
                moved = os.path.normpath(os.path.join(here, f.relative))
                if not report or os.path.isdir(os.path.dirname(moved)):
                    path = moved
        if f.kind == "link":  # (a link whose target the code read: re-pointed, or no link now)
            if _target_digest(path) != f.digest:
                changed.append(path)
            continue
        try:
            st = os.stat(path) if f.follow else os.lstat(path)
        except OSError:
            if f.kind != "absent":
                changed.append(path)
            continue
        if f.kind == "absent":
            changed.append(path)
            continue
        if f.kind in _PROBED:
            if _type(st.st_mode) != f.digest or f.kind == "stat" and (
                    (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns)
                    or f.ctime_ns != -1 and st.st_ctime_ns != f.ctime_ns):  # (-1: ctime not read)
                changed.append(path)
            continue
        stamp = (path, *stat_stamp(st))
        if (not f.racy and stamp[1:] == (f.size, f.mtime_ns, f.inode, f.ctime_ns)
                or _STAT_OK.get(stamp) == f.digest):
            continue  # the cheap check: same size, mtime, inode and ctime (no ctime recorded: -1)
        now = _listing(path) if f.kind == "listing" else _hashed(path)
        if now is None or now.digest != f.digest:
            changed.append(path)
        elif not now.racy:  # (a racy stat would vouch for a rewrite in its tick: hashed again)
            if len(_STAT_OK) > 100_000:
                _STAT_OK.clear()
            # touched, not changed, or recorded racy: hashed once per process (and once for
            # all where a run keeps it in the project's memo: `verified_stats`)
            key = (path, now.size, now.mtime_ns, now.inode, now.ctime_ns)
            _STAT_OK[key] = f.digest
            if len(_VERIFIED) <= 100_000:
                _VERIFIED[key] = f.digest
    return changed


def _cwd() -> str:
    """The working directory ("" where it was removed)."""
    try:
        return os.getcwd()
    except OSError:
        return ""


def verified_stats() -> dict[str, list]:
    """What this process verified of file inputs since the last call (`_STAT_OK`'s new
    entries): path -> [size, mtime, inode, ctime, blake3], each stat no longer racy when its
    content was hashed, for a project's memo to keep (`foreach.filestats.FileStats`): a record
    written racy is never trusted by its own stat, and with `_STAT_OK` alone each new process
    hashed its file again at its first hit, for ever. Git promotes such an entry at its next
    index write; a call record is immutable, so the verification is what is kept, and
    `trust_verified` reads it back."""
    found = {path: [size, mtime, inode, ctime, digest]
             for (path, size, mtime, inode, ctime), digest in _VERIFIED.items()}
    _VERIFIED.clear()
    return found


def trust_verified(entries: dict[str, list]) -> None:
    """Take a project memo's verifications (`verified_stats`, written by an earlier process)
    into `_STAT_OK`: a file whose whole stat is the one verified has the content verified (as
    an output file's, `FileStats.holds`: the ctime, which no copy can set, is in the stat)."""
    if len(_STAT_OK) + len(entries) > 100_000:
        _STAT_OK.clear()
    for path, entry in entries.items():
        if (isinstance(path, str) and isinstance(entry, list) and len(entry) == 5
                and all(type(v) is int for v in entry[:4]) and isinstance(entry[4], str)):
            _STAT_OK[(path, *entry[:4])] = entry[4]


def racy_stat(st: os.stat_result, now_ns: int) -> bool:
    """Whether a stat taken at `now_ns` (``time.time_ns()`` just before it) may not tell the
    content it saw from a later rewrite of the same size: the file's mtime or ctime is within
    `_RACY_NS` of that moment (or after it: a clock ahead), so a write in the same timestamp
    tick may keep both. Git's rule for its index (``racy-git.txt``), with a fixed window
    instead of the index file's own mtime: a record has no file of its own on the data's
    filesystem to compare with."""
    return max(st.st_mtime_ns, st.st_ctime_ns) > now_ns - _RACY_NS


def content_stamp(path: str | os.PathLike) -> tuple[int, int, int, int] | None:
    """The key under which something computed from `path`'s content, read after this call, may
    be remembered: its (size, mtime, inode, ctime) now; None when that stat cannot vouch for
    the content (`racy_stat`: a same-size rewrite in the same timestamp tick keeps it), so
    compute it again and remember nothing. The stat-keyed memos of what a file holds ask it
    (the parse of a script `why` judges, where a module assigns a name, a data_base's marker,
    the copies of edited modules `why` runs): keyed by (path, mtime, size) alone, a same-size
    rewrite in the tick, or one whose mtime ``cp -p``/``touch -r`` set back (only the ctime
    shows it), was served from the memo. Raises OSError when the path cannot be stat'ed."""
    now_ns = time.time_ns()  # (before the stat: a write after it shows as a later time)
    st = _REAL_STAT(path)
    return None if racy_stat(st, now_ns) else stat_stamp(st)


def _is_input_path(path: str, exclude: tuple[str, ...], source: bool = False) -> bool:
    """`source`: a project .py can be one (read by content, not imported: `_note`)."""
    if (path.endswith(_SKIP_SUFFIXES) and not (source and path.endswith(".py"))
            or path.startswith(_SKIP_ROOTS)):
        return False
    return _is_input_place(os.path.realpath(path), exclude)


def _is_input_place(place: str, exclude: tuple[str, ...]) -> bool:
    """Whether a path's place, as given (its links not followed), is neither a library's, the
    interpreter's, a tool's cache nor excluded."""
    if _is_library_place(place) or any(_under(place, root) for root in _not_input_roots()):
        return False
    return not any(_under(place, root) for root in exclude)


def _is_input_link(path: str, exclude: tuple[str, ...]) -> bool:
    """`_is_input_path` of a link itself (its folder resolved, not the link: a project's link
    into site-packages is the project's; it had been judged by its target, so left out)."""
    if path.startswith(_SKIP_ROOTS):
        return False
    return _is_input_place(os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)), exclude)


def _links_out(path: str, given: tuple[str, ...], exclude: tuple[str, ...], found: dict[str, FileRead],
               source: bool = False) -> None:
    """A path read (opened, listed, probed) that is no input by its real place, a library's,
    while the path as the code named it is not: the links on its way in input places (the
    project's link into site-packages) are the inputs, by their targets (`_link`), under
    `found`'s keys for links (`_TARGET`). Nothing had been recorded, so the link re-pointed to
    another package's file kept the hit; the package's files are the environment's (its
    versions are in the call key), the link is the project's. `given`: the excluded folders
    as given (`exclude`: as real paths); a path in one, as named, is no input either way."""
    if (path.endswith(_SKIP_SUFFIXES) and not (source and path.endswith(".py"))
            or path.startswith(_SKIP_ROOTS) or not _is_input_place(path, exclude)
            or any(_under(path, os.path.abspath(root)) for root in given)):
        return  # (named in a library or an excluded folder: no project link of its own)
    done = os.sep
    for name in path.split(os.sep):
        if not name:
            continue
        at = os.path.join(done, name)
        try:
            st = _REAL_LSTAT(at)
        except OSError:
            return
        if not stat.S_ISLNK(st.st_mode):
            done = at
            continue
        if at + _TARGET not in found and _is_input_link(at, exclude):
            entry = _link(at)
            if entry is not None:
                found[at + _TARGET] = entry
        done = os.path.realpath(at)


# Tools' own bookkeeping in the user's cache folder (~/.cache, $XDG_CACHE_HOME): files a
# library reads and rewrites as it pleases, which say nothing about a result (matplotlib's
# font list, rewritten by another matplotlib or a new font: every call that plotted re-ran),
# environments and packages of installers (uv, poetry, pre-commit), compilers' and editors'
# caches, credentials. Not the rest of the folder: data is downloaded there (pooch, and
# through it scipy's, scikit-image's and MNE's datasets, Hugging Face's hub, torch.hub's
# weights, astropy's downloads), and a result computed from a file there is made from its
# content like any other (the whole folder had been left out: a replaced calibration file
# kept the hit).
_TOOL_CACHES = ("matplotlib", "fontconfig", "pip", "uv", "pypoetry", "pdm", "hatch", "virtualenv",
                "pipenv", "pre-commit", "jedi", "parso", "black", "pylint", "mypy", "ruff", "numba",
                "cython", "torch_extensions", "pyopencl", "pycuda", "mesa_shader_cache", "thumbnails",
                "huggingface/token", "huggingface/stored_tokens")


def _user_cache() -> str:
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


@functools.lru_cache(maxsize=1)
def _interpreter_roots() -> tuple[str, ...]:
    """Where code is not the project's: the interpreter's trees and the user's cache folder
    (modules generated or downloaded there: Cython's inline modules, Hugging Face's remote
    code, an environment ``uv run --with`` made)."""
    roots = (sys.prefix, sys.base_prefix, sys.exec_prefix, _user_cache())
    return tuple(sorted({os.path.realpath(p) for p in roots}))


@functools.lru_cache(maxsize=1)
def _not_input_roots() -> tuple[str, ...]:
    """Where a file read is no input: the interpreter's trees and the tools' own folders in
    the user's cache folder (`_TOOL_CACHES`; the rest of it holds downloaded data)."""
    cache = _user_cache()
    roots = (sys.prefix, sys.base_prefix, sys.exec_prefix, *(os.path.join(cache, name) for name in _TOOL_CACHES))
    return tuple(sorted({os.path.realpath(p) for p in roots}))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _hashed(path: str) -> FileRead | None:
    """Stat and blake3 of a file, stat taken before reading (a write during it shows later)."""
    try:
        now_ns = time.time_ns()
        st = os.stat(path)
        hasher = blake3.blake3()
        with open(path, "rb") as handle:  # (an outer call, if any, saw this path already)
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    except OSError:
        return None
    return FileRead(path, st.st_size, st.st_mtime_ns, st.st_ino, hasher.hexdigest(), ctime_ns=st.st_ctime_ns,
                    racy=racy_stat(st, now_ns))


_PROBED = ("present", "stat")  # kinds of a path found by a stat: tested only; its stat read


def _type(mode: int) -> str:
    return ("folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "link" if stat.S_ISLNK(mode)
            else "other")


def _probed(path: str, asks: int, follow: bool = True) -> FileRead | None:
    """A path the code found by a stat, as it is now: there, of its type (`digest`), and (its
    stat read: `asks`) of its size and mtime, and its ctime too when the code could read it
    (`_WHOLE_STAT`: a chmod alone misses the hit of code returning ``getctime(p)``; a
    ``getsize``/``exists`` probe keeps it). `follow`: found by a stat following
    links; else by an ``lstat`` (``islink``, ``lexists``), so checked by one: a link replaced
    by a file of its name, or a dangling link, is seen as such (``os.stat`` had followed it)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    if asks == _TESTED:
        return FileRead(path, -1, -1, 0, _type(st.st_mode), "present", follow=follow)
    return FileRead(path, st.st_size, st.st_mtime_ns, 0, _type(st.st_mode), "stat", follow=follow,
                    ctime_ns=st.st_ctime_ns if asks == _WHOLE_STAT else -1)


_TARGET = "\0readlink"  # `files_read`'s key of a link's target read (as `_UNFOLLOWED`)


def _target_digest(path: str) -> str | None:
    """The blake3 of the target a link names (its text, as ``os.readlink`` gives it); None
    where `path` is no link."""
    try:
        return blake3.blake3(os.fsencode(os.readlink(path))).hexdigest()
    except (OSError, ValueError):
        return None


def _link(path: str) -> FileRead | None:
    """A link whose target the code read (``os.readlink``, ``Path.readlink``), as it is now:
    its target text (`kind` ``link``: a link re-pointed misses the hit; it had kept it, no
    stat nor open of the link being seen); a path the code found no link (``EINVAL``), of
    its type by an ``lstat`` (a link put there misses)."""
    digest = _target_digest(path)
    if digest is None:
        return _probed(path, _TESTED, follow=False)
    return FileRead(path, -1, -1, 0, digest, "link", follow=False)


def _listing(path: str, keep_names: bool = False) -> FileRead | None:
    """Stat of a directory and the blake3 of its sorted entry names, a folder's marked with a
    trailing ``/`` (stat first, as above): code that lists a folder often asks each entry
    whether it is a folder (``DirEntry.is_dir()``, which stats nothing through ``os.stat``;
    ``Path.iterdir`` then ``is_dir``), so a file replaced by a folder of the same name is a
    change (a folder of files only digests as its names did before folders were marked).
    Write-ahead logs come and go while a database in the folder is written: left out.
    `keep_names`: the names too, unmarked (`FileRead.seen`)."""
    try:
        now_ns = time.time_ns()
        st = os.stat(path)
        with os.scandir(path) as found:
            entries = [(sys.intern(e.name), e.is_dir()) for e in found if not e.name.endswith(".wal")]
    except OSError:
        return None
    names = tuple(sorted(name for name, _ in entries))
    marked = sorted(name + "/" if folder else name for name, folder in entries)
    digest = blake3.blake3("\0".join(marked).encode("utf-8", "surrogateescape")).hexdigest()
    return FileRead(path, st.st_size, st.st_mtime_ns, st.st_ino, digest, "listing",
                    names if keep_names else None, ctime_ns=st.st_ctime_ns, racy=racy_stat(st, now_ns))


def _absent_folder(path: str) -> FileRead | None:
    """A folder the code listed that did not exist (``glob("extra/*")`` before anyone made
    extra/): absent, with no names seen, so the next run misses once it exists, unless the
    call's (or its step's) own writes alone made it (`settled_listing`). It had been no input:
    a result computed from no files was served after the folder was filled."""
    return None if os.path.lexists(path) else FileRead(path, -1, -1, 0, "", "absent", ())


def settled_listing(seen: FileRead, written: Iterable[str],
                    now: dict[str, FileRead | None] | None = None) -> FileRead:
    """What to record of a folder a call listed (`seen`, with its names as then): the folder
    as it is now when it differs from what the call saw only by paths in `written` (the
    call's, or its for_each step's, own outputs: they change it on every run), else what the
    call saw, so that the next run misses (someone else changed the folder meanwhile; a
    result computed from the old names must not be served for the new ones). `now`: folders
    listed already at this moment (a step settles many calls' listings of one folder)."""
    if seen.seen is None:
        return seen
    if now is None:
        now = {}
    if seen.path not in now:
        now[seen.path] = _listing(seen.path, keep_names=True)
    current = now[seen.path]
    if current is not None:
        ours = {os.path.basename(p) for p in written if os.path.dirname(p) == seen.path}
        if set(seen.seen) - ours == set(current.seen or ()) - ours:
            return dataclasses.replace(current, seen=seen.seen, relative=seen.relative, cwd=seen.cwd)
    return seen


