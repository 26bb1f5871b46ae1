"""One way to replace a small file whole: `write_atomic`.

A reader (another process, a crash's next start) sees the old file or the new one, never a
half-written one: the bytes go to a temporary file in the same folder, which is synced and then
renamed over the target, and the folder is synced so the rename itself survives a crash.

A file a library writes itself (pandas' CSV, pyarrow's Parquet) goes to `temporary_sibling`'s
name, then `os.replace`: never a fixed temporary name (see `write_atomic`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomic(
    path: str | os.PathLike, data: bytes | str, *, mode: int | None = None, durable: bool = True
) -> None:
    """Replace the file `path` with `data` (a str is written as UTF-8) in one step.

    The temporary name is unique to this call (process id and a random token): a fixed or
    per-process name let two writers at once (processes, or threads of one) write into the
    same temporary file, so one renamed the other's half-written bytes into place and the
    other's rename failed. `mode`: the file's permission bits, exactly (`0o444` for a file no
    one should edit); None gives a new file's usual mode (0o666 less the umask). The temporary
    file is removed if anything fails, and the error raised. `durable=False` skips the two
    syncs (file and folder, ~12 ms a file): for a copy of bytes already safe in the store
    (checkout, a for_each putting back an output file), which the user's own code would
    have written unsynced, and which may be thousands of files."""
    target = Path(path)
    temp = temporary_sibling(target)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb") as out:
            out.write(payload)
            out.flush()
            if mode is not None:
                os.fchmod(out.fileno(), mode)
            if durable:
                os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        _fsync_folder(target.parent)


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A temporary name for a new copy of `path`, in its folder (so `os.replace` renames it in
    one step) and unique to the caller: the process id and a random token, so no two writers
    (processes, or threads of one) ever share it. Hidden, and ending `.tmp`, so a library that
    infers a format from the name (pandas' compression) infers none. The target's name is cut
    so the whole name stays within the 255 bytes a file name may have: any name the file
    system takes for the target works (the tail adds up to 26 bytes)."""
    target = Path(path)
    tail = f".{os.getpid()}-{secrets.token_hex(6)}.tmp"
    room = _NAME_MAX - 1 - len(tail)  # (1: the leading dot)
    name = os.fsdecode(os.fsencode(target.name)[:room])  # (a cut inside a character: escaped)
    return target.with_name(f".{name}{tail}")


_NAME_MAX = 255  # bytes in one file name: Linux, macOS and Windows file systems alike


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable. A filesystem that cannot sync a folder (some network and FUSE
    mounts refuse it) still has the file's bytes synced and the rename done: not an error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
