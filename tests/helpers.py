"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CC = shutil.which("cc") or shutil.which("gcc")  # builds a project's own extension (None: skip)


def journal_size(db: Any) -> int:
    """Bytes in a project's ref journal (0 before the first write)."""
    try:
        return os.path.getsize(db.index.journal_path)
    except FileNotFoundError:
        return 0


# layout 17's undone: no parts, and `var_oid_left` as it was (own sizes held their children's)
_BEFORE_PARTS = """DROP TRIGGER var_oid_left; DROP TABLE parts; DROP TABLE var_parts;
CREATE TRIGGER var_oid_left AFTER DELETE ON var_oids
WHEN EXISTS (SELECT 1 FROM var_bytes WHERE var = OLD.var) BEGIN
    UPDATE var_bytes SET bytes = bytes - coalesce((SELECT bytes FROM sizes WHERE oid = OLD.oid), 0)
        WHERE var = OLD.var AND NOT EXISTS (SELECT 1 FROM var_unsized WHERE var = OLD.var AND oid = OLD.oid);
    DELETE FROM var_unsized WHERE var = OLD.var AND oid = OLD.oid;
END;
"""


def older_fold(db: Any, script: str) -> tuple[Any, str]:
    """Close the project and turn its fold into an older layout's with `script` (SQL); returns
    the fold's path and a mark left in it, to show (`migrated_in_place`) that the next open
    migrates that file in place rather than rebuilding it. The script must undo every later
    layout's change from 13 down (before 13: `calls.origins`); layouts 14's (`var_calls.n`),
    15's (`var_deleted`), 16's (`var_calls.live`) and 17's (`parts`, `var_parts`) are undone here first. A migration that failed on a column already there rebuilt the file,
    and the tests, comparing inodes, passed where the new file happened to get the old one's."""
    import sqlite3
    import uuid

    path = db.root / ".scistack" / "fold.sqlite"
    db.close()
    mark = uuid.uuid4().hex
    con = sqlite3.connect(path)
    con.executescript(_BEFORE_PARTS + "DROP TRIGGER ref_call_unnamed; ALTER TABLE var_calls DROP COLUMN live; "
                      "DROP TABLE var_deleted; DROP INDEX var_calls_by_n; ALTER TABLE var_calls DROP COLUMN n; "
                      "UPDATE meta SET value = '13' WHERE key = 'fold_version';" + script)
    con.execute("INSERT INTO meta VALUES ('test_mark', ?)", (mark,))
    con.commit()
    con.close()
    return path, mark


def fold_before_key_values(root: Any) -> None:
    """Turn the closed project's fold at `root` into layout 17's, before `key_values` (the
    schema keys' values with their types): its rows gone and its version set back, so the next
    open migrates the file in place, filling the table from the addresses."""
    import sqlite3

    fold = sqlite3.connect(os.path.join(root, ".scistack", "fold.sqlite"))
    try:
        with fold:
            fold.execute("DELETE FROM key_values")
            fold.execute("UPDATE meta SET value = '17' WHERE key = 'fold_version'")
    finally:
        fold.close()


def migrated_in_place(path: Any, mark: str) -> bool:
    """Whether the fold at `path` is the file `older_fold` marked (not one rebuilt since)."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT value FROM meta WHERE key = 'test_mark'").fetchone() == (mark,)
    finally:
        con.close()


def interrupt_when(ready: Any, where: str, act: Any = None) -> Any:
    """A context manager: Ctrl-C as Python delivers it, at a chosen moment. A KeyboardInterrupt
    is raised at the first bytecode instruction run, once `ready()` holds, in a frame of a file
    whose path ends with `where`: where a real SIGINT's handler runs, just after the call that
    was under way returns. Deterministic, unlike a timer (a tracing hook, not a mock). `act`,
    if given, is done there instead (`kill_self`: a kill at that instruction, in a child)."""
    return _at_instruction(ready, where, act, interrupt=True)


def run_when(ready: Any, where: str, act: Any) -> Any:
    """`interrupt_when` that runs `act()` at that instruction and lets the code go on: this
    thread stops at a chosen moment while the test makes another thread act, deterministically."""
    return _at_instruction(ready, where, act, interrupt=False)


def _at_instruction(ready: Any, where: str, act: Any, *, interrupt: bool) -> Any:
    import sys
    from contextlib import contextmanager

    @contextmanager
    def armed() -> Any:
        fired: list[str] = []

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            if not frame.f_code.co_filename.endswith(where):
                return None
            frame.f_trace_opcodes = True
            if event == "opcode" and not fired and ready():
                fired.append(frame.f_code.co_name)
                sys.settrace(None)
                if act is not None:
                    act()
                if interrupt:
                    raise KeyboardInterrupt
                return None
            return tracer

        sys.settrace(tracer)
        try:
            yield fired
        finally:
            sys.settrace(None)
        assert fired, f"no instruction of {where} ran once ready"

    return armed()


def kill_self() -> None:
    """SIGKILL this process: nothing after it runs (no finally, no atexit), as `kill -9`."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def interrupt_after_statement(connections: list[Any], prefix: str, where: str = "scistack/index/fold.py") -> Any:
    """`interrupt_when` just after SQLite ran a statement starting with `prefix` on one of these
    connections (the KeyboardInterrupt comes in the fold's frame that called it)."""
    seen: list[str] = []
    for con in connections:
        con.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith(prefix) else None)
    return interrupt_when(lambda: bool(seen), where)


def child_status(pid: int, bound: float = 60.0) -> int:
    """A forked child's exit status, waited for up to `bound` seconds (killed past it: -1)."""
    import signal
    import time

    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def scistack_cli() -> str:
    """The `scistack` console script of this environment (next to the running Python), which
    the MATLAB client runs (SCISTACK_CLI); a failure naming the fix where it is not installed."""
    import sys
    from pathlib import Path

    import pytest

    path = Path(sys.executable).with_name("scistack.exe" if os.name == "nt" else "scistack")
    if not path.exists():
        pytest.fail(f"{path} is missing: install the package (pip install -e .) so that the "
                    "MATLAB client can run the scistack command")
    return str(path)


def evict(paths: Any) -> None:
    """Drop these files' pages from the OS page cache (written back first), so the next read
    comes from the disk, as a recording's first read in a session does. A file's own
    `posix_fadvise(DONTNEED)`: no root needed, and nothing else's cache is touched. (Used by
    tests/test_chunked.py and bench/large.py.)"""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def require_tool(tool: str) -> str:
    """The path of a program the MATLAB client tests run (octave-cli, zstd): skipped where it
    is not installed, but a failure under CI (`make test` installs them there), so CI never
    passes with those tests unrun."""
    import shutil

    import pytest

    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (make octave installs octave and zstd)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the MATLAB client tests")
        pytest.skip(message)
    return path


@contextmanager
def small_tmpfs(folder: Path, size: str = "6m") -> Iterator[Path]:
    """A small disk that fills for real (`fill_disk`), or that a remount makes read-only for
    root too (chmod does not stop root): a tmpfs mounted on `folder` (made), unmounted after.
    Mounting needs root: skipped without it, a failure under CI (CI runs the suite as root)."""
    import pytest

    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set: run the suite as root")
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], check=False).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path) -> None:
    """Write into `folder` until its disk refuses a byte more (ENOSPC)."""
    import errno

    with open(folder / "filler", "wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    try:  # (the last partial block too)
        with open(folder / "filler-tail", "wb", buffering=0) as out:
            while out.write(b"\0"):
                pass
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise


def require_compiler() -> str:
    """The C compiler that builds a project's own extension in the code-identity tests:
    skipped where there is none, a failure under CI (`make test` installs gcc there)."""
    import pytest

    if CC is None:
        message = "no C compiler (cc or gcc) to build an extension (make cc installs gcc)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the compiled-extension tests")
        pytest.skip(message)
    return CC


_bytecode_cache: list[str] = []  # this test process's folder for its children's bytecode


def bytecode_cached(env: dict[str, str]) -> dict[str, str]:
    """`env` for Python children started many times (the `scistack` command the MATLAB client
    runs per save and per for_each), keeping their bytecode: where PYTHONDONTWRITEBYTECODE is
    set (as in the CI's container), each start compiled every scistack module again, ~0.5 s
    of CPU each of the octave suite's ~130 starts. The bytecode goes to a temporary folder
    of this test process (PYTHONPYCACHEPREFIX), never into the source tree, which the setting
    keeps clean; where it is not set, `env` is left as it is."""
    if not env.get("PYTHONDONTWRITEBYTECODE"):
        return env
    if not _bytecode_cache:
        import atexit
        import tempfile

        _bytecode_cache.append(tempfile.mkdtemp(prefix="scistack-test-pycache-"))
        atexit.register(shutil.rmtree, _bytecode_cache[0], True)
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = _bytecode_cache[0]
    return env


def octave_env(**extra: str) -> dict[str, str]:
    """The environment Octave runs the MATLAB client in: this environment's `scistack`
    command and Python, `extra`, no SCISTACK_DB of the caller's (each test names its own
    project), and the command's bytecode kept between its starts (`bytecode_cached`)."""
    import sys

    env = dict(os.environ, SCISTACK_CLI=scistack_cli(), SCISTACK_PYTHON=sys.executable, **extra)
    env.pop("SCISTACK_DB", None)
    return bytecode_cached(env)


def octave_for_each_project(folder: Any, variables: tuple[str, ...], functions: dict[str, str],
                            schema: tuple[str, ...], run: str, **env: str) -> dict[str, str]:
    """A MATLAB for_each project in `folder` (the project's data at p/p.duckdb, saved by the
    caller): a classdef per variable, each function (name -> its .m text) and run.m, which puts
    the MATLAB client on the path, configures p/p.duckdb with `schema` and runs the lines
    `run`. Returns the environment Octave runs run.m in (`octave_env(**env)`)."""
    from pathlib import Path

    folder = Path(folder)
    matlab = Path(__file__).resolve().parents[1] / "matlab"
    for var in variables:
        (folder / f"{var}.m").write_text(f"classdef {var} < scistack.BaseVariable\nend\n")
    for name, text in functions.items():
        (folder / f"{name}.m").write_text(text)
    keys = ", ".join(f"'{key}'" for key in schema)
    (folder / "run.m").write_text(
        f"addpath('{matlab}');\nscistack.configure_database('p/p.duckdb', {{{keys}}});\n{run}")
    return octave_env(**env)


def octave_command(script: str = "run.m") -> list[str]:
    """Octave running `script` (in the folder it is started in), with no GUI nor init file."""
    return [require_tool("octave-cli"), "--no-gui", "--no-init-file", "--quiet", script]


def run_octave(cwd: Any, env: dict[str, str], script: str = "run.m", timeout: float = 300) -> Any:
    """Run `script` in Octave in `cwd` (its output captured, whatever its exit status)."""
    import subprocess

    return subprocess.run(octave_command(script), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def same_size_rewrite(path: Any, text: str, bound: float = 30.0) -> None:
    """`path` rewritten in place with `text` (of its size) and its mtime set back, as a
    ``cp -p`` or ``touch -r`` of another version does: size, mtime and inode as before, so a
    memo keyed by them cannot tell the versions apart. Only the ctime (no copy can set it)
    changes: the rewrite waits (up to `bound` seconds) until the filesystem's clock has passed
    the file's ctime, so that it does even where timestamps come from a coarse tick."""
    import time
    from pathlib import Path

    path = Path(path)
    st = os.stat(path)
    assert len(text.encode()) == st.st_size, "the same size, or a stat keyed by size tells them apart"
    probe = path.with_name(path.name + ".tick")
    deadline = time.monotonic() + bound
    while True:  # (a file written now gets the clock's time as its ctime)
        probe.write_text("")
        if os.stat(probe).st_ctime_ns > st.st_ctime_ns:
            break
        assert time.monotonic() < deadline, "the filesystem's clock did not move"
    probe.unlink()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = os.stat(path)
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert now.st_ctime_ns != st.st_ctime_ns


EXTENSION_C = """
#include <Python.h>
static PyObject *value(PyObject *self, PyObject *args) { return PyLong_FromLong(%(value)d); }
static PyMethodDef methods[] = {{"value", value, METH_NOARGS, "the value"}, {NULL, NULL, 0, NULL}};
static PyTypeObject GridType = {PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "%(name)s.Grid",
    .tp_basicsize = sizeof(PyObject), .tp_flags = Py_TPFLAGS_DEFAULT, .tp_new = PyType_GenericNew};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "%(name)s", NULL, -1, methods};
PyMODINIT_FUNC PyInit_%(name)s(void) {
    if (PyType_Ready(&GridType) < 0) return NULL;
    PyObject *m = PyModule_Create(&mod);
    if (m == NULL) return NULL;
    Py_INCREF(&GridType);
    if (PyModule_AddObject(m, "Grid", (PyObject *)&GridType) < 0) return NULL;
    return m;
}
"""


def build_extension(folder: Path, name: str, value: int) -> Path:
    """Compile extension module `name` (its ``value()`` returns `value`) into `folder`, as a
    linker does: a new file put in place of the old one."""
    source = folder / f"{name}.c"
    source.write_text(EXTENSION_C % {"name": name, "value": value})
    binary = folder / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    partial = folder / f".{name}.building"
    include = sysconfig.get_paths()["include"]
    done = subprocess.run([CC, "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(partial)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    os.replace(partial, binary)
    return binary
