"""Is a file wholly in the page cache? Asked without reading it, so without starting I/O.

`LocalObjectStore.read_stored` asks before a read past the page cache (`O_DIRECT`): a file
wholly cached is copied from memory, any other is read from the disk once. The earlier test,
a cache-only read (`preadv2(RWF_NOWAIT)`), failed on a file not cached, but not before the
kernel had started its readahead of it (`read_ahead_kb` 8192 on this project's VM: a whole
4 MiB chunk file), so the direct read that followed read the file from disk a second time.
`posix_fadvise(RANDOM)` on the probing descriptor does not stop it (the kernel then reads
just the pages asked for: the whole file).

Asked by `cachestat` (Linux 6.5 and later), else `mincore` over a read-only mapping of the
file. Neither reads the file. A 4 MiB file on this VM (load 10-11): `cachestat` 2-15 us when
not cached, 6-180 us when cached (it walks the file's cached entries), `mincore` 130-720 us
(it looks each page up), against 0.8-3.8 ms for the copy of the cached file that follows.
Asking of the first page only would cost ~2.5 us, but a file cached in part would then be
probed, and its missing pages read ahead as before. Either answers only for a file the caller owns or may write: Linux hides the page
cache of another's (`cachestat` refuses: None here; `mincore` calls every page cached), and
the caller then probes as before, readahead and all (seen on Linux 6.18 as another user).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import platform
import sys

_PAGE = mmap.PAGESIZE
_CACHESTAT = 451  # (its number on these; MIPS and alpha number it otherwise)
_CACHESTAT_ON = {"x86_64", "i686", "i386", "aarch64", "armv7l", "riscv64", "ppc64le", "s390x", "loongarch64"}


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


_LOW_BIT = bytes(i & 1 for i in range(256))  # (a page's byte: bit 0 says resident; the rest are reserved)
_FAILED = ctypes.c_void_p(-1).value  # (mmap's MAP_FAILED)
_libc: ctypes.CDLL | None = None
_has_cachestat = sys.platform.startswith("linux") and platform.machine() in _CACHESTAT_ON  # (cleared when
# the kernel has none: before Linux 6.5)


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
        if libc.syscall(ctypes.c_long(_CACHESTAT), ctypes.c_long(fd), ctypes.byref(where),
                        ctypes.byref(stat), ctypes.c_long(0)) == 0:
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
