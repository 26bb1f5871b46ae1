"""Whether a process named in a file (a gc lock, a set-aside object's name) still runs here."""

from __future__ import annotations

import os
from pathlib import Path


def process_space() -> str:
    """Where a pid names one process: this boot of this kernel and this pid namespace (Linux;
    a container sharing the host's name has its own). "" where that cannot be read."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


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
