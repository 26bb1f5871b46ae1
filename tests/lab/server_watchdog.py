"""Servers that die with the process that started them, even when it is SIGKILLed.

A test run killed outright (`kill -9`, a CI job's timeout) runs no fixture teardown, no
`finally` and no atexit, and the servers it started lived on for ever: PostgreSQL is
daemonised by pg_ctl (the postmaster's parent is never pytest) and SeaweedFS runs in a session
of its own. PR_SET_PDEATHSIG cannot cover them: the postmaster is not pytest's child, the
setting is cleared when `runuser` drops to the postgres user (as root), and it fires when the
starting *thread* ends, not the process.

So the process that starts a server starts one watchdog first (this file, run as a script in
a session of its own, so a kill of pytest's process group does not take it along) and tells
it, on a pipe, what to stop: a process by pid (with its start time, so a reused pid is left
alone) or by a pid file (PostgreSQL's postmaster.pid, with the data folder the postmaster
runs in), and folders to remove. The watchdog polls its parent (`getppid` changes once the
parent is gone: no pid reuse can fool it) and sees the pipe's end; when the parent is gone it
stops each process still running (its signal, then SIGKILL after 10 s), removes the folders,
and exits. A server stopped normally is `forget`-ten, so nothing is left to do at a normal exit.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import time

# -- the watchdog process (stdlib only: run as `python -I -S server_watchdog.py <parent pid>`) --


def _state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) of a running process; None once it is gone
    or a zombie (a zombie holds no port and no file: its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields[0], fields[19]


def start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): with the pid, names one process."""
    state = _state(pid)
    return None if state is None else state[1]


def _target(entry: dict) -> int | None:
    """The pid of `entry`'s process if it is still the one registered, else None."""
    pid = entry.get("pid")
    if pid is None and entry.get("pidfile"):
        try:
            with open(entry["pidfile"]) as pidfile:
                pid = int(pidfile.readline())
        except (OSError, ValueError):
            return None  # (never started, or stopped: a postmaster removes its pid file)
        try:  # the postmaster runs in its data folder; another process with that pid does not
            if os.path.realpath(os.readlink(f"/proc/{pid}/cwd")) != os.path.realpath(entry["cwd"]):
                return None
        except OSError:
            return None
    if pid is None or _state(pid) is None:
        return None
    if entry.get("start") is not None and start_time(pid) != entry["start"]:
        return None
    return pid


def _signal(pid: int, number: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, number)
        else:
            os.kill(pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def _gone(pid: int, start: str | None, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if start_time(pid) != start:
            return True
        time.sleep(0.05)
    return start_time(pid) != start


def _stop(entry: dict) -> None:
    pid = _target(entry)
    if pid is None:
        return
    start, group = start_time(pid), bool(entry.get("group"))
    _signal(pid, int(entry.get("signal", signal.SIGTERM)), group)
    if not _gone(pid, start, 10.0):
        _signal(pid, signal.SIGKILL, group)
        _gone(pid, start, 10.0)


def unlink_unanswered(pattern: str) -> None:
    """Remove the unix sockets matching `pattern` that nothing answers on: a stopped server's
    leftovers. One a process answers on is that process's own (another test worker's server
    given the same port since: sockets are named by port), and stays."""
    import glob
    import socket
    import stat

    for path in glob.glob(pattern):
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                continue
        except OSError:
            continue
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(2)
            try:
                probe.connect(path)
                continue  # (answered)
            except ConnectionRefusedError:
                pass
            except OSError:
                continue  # (a full backlog, a timeout: someone is there)
        try:
            os.unlink(path)
        except OSError:
            pass


def _remove(entry: dict) -> None:
    for path in entry.get("remove", ()):
        shutil.rmtree(path, ignore_errors=True)
    for pattern in entry.get("unlink", ()):
        unlink_unanswered(pattern)


def _watch(parent: int) -> None:
    entries: dict[str, dict] = {}
    pending = b""

    def take(data: bytes) -> None:
        nonlocal pending
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "forget" in message:
                entries.pop(message["forget"], None)
            else:
                entries[message["key"]] = message

    # the parent holds the pipe's writing end for its life (its forks may too: hence getppid)
    while os.getppid() == parent:
        ready, _, _ = select.select([0], [], [], 0.2)
        if ready:
            data = os.read(0, 65536)
            if not data:
                break
            take(data)
    os.set_blocking(0, False)
    try:  # what the parent wrote just before it died
        while data := os.read(0, 65536):
            take(data)
    except (BlockingIOError, OSError):
        pass
    for entry in entries.values():
        _stop(entry)
    for entry in entries.values():
        _remove(entry)


# -- the side of the process starting servers ------------------------------------------------

_watchdog = None  # (the watchdog's Popen, the pid of the process it watches)


def _pipe():
    """The pipe to this process's watchdog, started on first use (a fork child starts its own)."""
    global _watchdog
    import subprocess

    if _watchdog is None or _watchdog[1] != os.getpid() or _watchdog[0].poll() is not None:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd="/", start_new_session=True)
        _watchdog = (process, os.getpid())
    return _watchdog[0].stdin


def watchdog_pid() -> int | None:
    """The pid of this process's watchdog (None: none started)."""
    return None if _watchdog is None else _watchdog[0].pid


def _send(message: dict) -> None:
    pipe = _pipe()
    pipe.write(json.dumps(message).encode() + b"\n")
    pipe.flush()


def stop_with_us(key: str, *, pid: int | None = None, pidfile: str | None = None,
                 cwd: str | None = None, group: bool = False, signal_number: int = signal.SIGTERM,
                 unlink: tuple[str, ...] = ()) -> None:
    """Have the watchdog stop a process once this process is gone, however it ends: `pid`
    (the one running now: its start time is recorded) or the pid in `pidfile` when this process
    ends, if that process runs in `cwd`; `group`: its whole process group; `signal_number` first,
    SIGKILL 10 s later; then the unix sockets matching the `unlink` patterns that nothing
    answers on are removed (`unlink_unanswered`)."""
    start = None
    if pid is not None:
        start = start_time(pid)
        if start is None:
            return  # (already gone)
    _send({"key": key, "pid": pid, "start": start, "pidfile": pidfile, "cwd": cwd, "group": group,
           "signal": int(signal_number), "unlink": list(unlink)})


def remove_with_us(key: str, *folders: str) -> None:
    """Have the watchdog remove these folders once this process is gone (after the stops)."""
    _send({"key": key, "remove": [str(folder) for folder in folders]})


def forget(key: str) -> None:
    """Nothing to do for `key` any more (its server stopped, its folder removed)."""
    if _watchdog is not None and _watchdog[1] == os.getpid() and _watchdog[0].poll() is None:
        try:
            _send({"forget": key})
        except OSError:
            pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch(int(sys.argv[1]))
