"""Is a file wholly in the page cache? Asked without reading it, so without starting I/O.

`LocalObjectStore.read_stored` asks before a read past the page cache (`O_DIRECT`): a file
wholly cached is copied from memory, any other is read from the disk once. The earlier test,
a cache-only read (`preadv2(RWF_NOWAIT)`), failed on a file not cached, but not before the
kernel had started its readahead of it (`read_ahead_kb` 8192 on this project's VM: a whole
4 MiB chunk file), so the direct read that followed read the file from disk a second time.
`posix_fadvise(RANDOM)` on the probing descriptor does not stop it (the kernel then reads
just the pages asked for: the whole file).

Asked by `cachestat` (Linux 6.5 and later), else `mincore` over a read-only mapping of the
file. Neither reads the file. A 4 MiB file on this VM (load 11): `cachestat` 2-15 us when not
cached, 6-170 us when cached (it walks the file's cached entries), `mincore` 170-460 us
(it looks each page up); the copy of a cached 4 MiB file costs ~1 ms. Either answers only for a file the caller owns or may write: Linux hides the page
cache of another's (`cachestat` refuses: None here; `mincore` calls every page cached), and
the caller then probes as before, readahead and all (seen on Linux 6.18 as another user).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import sys

_PAGE = mmap.PAGESIZE
_CACHESTAT = 451  # (its number on every Linux architecture but alpha)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


_LOW_BIT = bytes(i & 1 for i in range(256))  # (a page's byte: bit 0 says resident; the rest are reserved)
_FAILED = ctypes.c_void_p(-1).value  # (mmap's MAP_FAILED)
_libc: ctypes.CDLL | None = None
_has_cachestat = sys.platform.startswith("linux")  # (cleared when the kernel has none)


def _c() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
            libc.mincore.restype = ctypes.c_int
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_long]
            libc.mmap.restype = ctypes.c_void_p
            libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            _libc = libc
        except (OSError, AttributeError):  # (no C library by that name, or no mincore)
            return None
    return _libc


def wholly_cached(fd: int, size: int) -> bool | None:
    """Whether all `size` bytes of the open file `fd` are in the page cache; None when this
    system cannot tell (the caller then decides as it did without asking)."""
    if size <= 0:
        return True
    libc = _c()
    if libc is None:
        return None
    pages = -(-size // _PAGE)
    global _has_cachestat
    if _has_cachestat:
        where, stat = _Range(0, size), _Stat()
        if libc.syscall(_CACHESTAT, fd, ctypes.byref(where), ctypes.byref(stat), 0) == 0:
            return stat.nr_cache >= pages
        if ctypes.get_errno() != errno.ENOSYS:
            return None  # EPERM: another's file, not writable here
        _has_cachestat = False
    return _mincore(libc, fd, size, pages)


def _mincore(libc: ctypes.CDLL, fd: int, size: int, pages: int) -> bool | None:
    address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address in (None, _FAILED):
        return None
    try:
        vector = ctypes.create_string_buffer(pages)
        if libc.mincore(address, size, vector) != 0:
            return None
        return b"\x00" not in vector.raw[:pages].translate(_LOW_BIT)
    finally:
        libc.munmap(address, size)
