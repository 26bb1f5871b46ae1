"""Whether a process named in a file (a gc lock, a set-aside object's name) still runs here."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path


def process_space() -> str:
    """Where a pid names one process: this boot of this kernel and this pid namespace (Linux;
    a container sharing the host's name has its own). "" where that cannot be read."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def process_place() -> str:
    """Where this process's pid names it, as a short name (hex) to keep beside the pid in a
    file: its host name and `process_space` (its boot and pid namespace). A file another place
    wrote (another machine sharing the folder or the bucket, another boot, a container beside
    its host) names a process of that place: its pid is never judged by this place's."""
    where = f"{socket.gethostname()}\0{process_space()}"
    return hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs here (True when that cannot be told: never take a live lock,
    never undo a live gc's work). A pid read from a file may be anything: one too large for
    the system (OverflowError) or refused (ValueError) is answered True, not raised."""
    if os.name == "nt":  # (os.kill there terminates the process; signal 0 is CTRL_C_EVENT)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # another user's (PermissionError), or unknown
        return True
    return True


def pid_started(pid: int) -> str:
    """When process `pid` started, as the kernel counts it (Linux: /proc/<pid>/stat's field 22,
    clock ticks since boot), as text to keep beside the pid in a file: a pid alone names no one
    process for long (pids are used again, after a restart at once, as in a container), the
    pair does. "" where that cannot be read (not Linux, no such process, a pid that is no pid)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as stat:  # (the name may hold ")": cut at the last)
            started = stat.read().rpartition(b")")[2].split()[19].decode("ascii")
    except (OSError, ValueError, IndexError, OverflowError):
        return ""
    return started if started.isdigit() else ""


def process_gone(pid: int, started: str) -> bool:
    """Whether the process a file names by `pid` and `started` (`pid_started`'s, "" when it was
    not known) no longer runs here: its pid does not run, or runs a process that started at
    another time (another process given the pid since). False when that cannot be told."""
    if not pid_alive(pid):
        return True
    if not started:
        return False
    now = pid_started(pid)
    return bool(now) and now != started
