"""Chunked arrays: a `chunked` manifest (Zarr v3 metadata + chunk map) over `chunk` objects.

A large array is stored as one `chunk` object per block of the regular grid that
`chunking.chunk_shape` computes (raw little-endian C-order bytes, edge blocks zero-padded to
the full chunk shape as Zarr does), then one manifest naming them in C order of the grid.
Chunks are written first and the manifest last, so an interrupted save names nothing (its
chunks are orphans that gc removes after the grace period). Saving streams block by block:
memory holds a few chunks, whatever the source (numpy, memmap, dask, zarr), and pages of a
memory-mapped source are released as soon as their chunk is written.

Reading assembles the blocks a request touches (all of them for a whole load), each
verified by the store, in a small thread pool (file reads, blake3 and copies release the GIL).
A read of many chunks has reader threads of its own read the chunks' files ahead of the
decoding (`_fill_read_ahead`); a read of a few (a lazy slice) hints them to the store.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from scistack.errors import (
    ChunkReadError,
    CorruptObjectError,
    ObjectNotFoundError,
    StorageFullError,
    UnsupportedValueError,
)
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.chunking import ChunkPolicy, chunk_shape, grid_shape
from scistack.objects.npy import canonical_array
from scistack.objects.owner import for_this_save

Put = Callable[[str, list], str]
Get = Callable[[str], tuple[str, Any]]

FORMAT = 1
CHUNKABLE_KINDS = frozenset("biufcMm")  # Zarr v3 core data types, and numpy's datetime64 /
# timedelta64 as zarr-extensions name them (a recording's timestamps are as long as its samples)
_TIME_TYPES = {"M": "numpy.datetime64", "m": "numpy.timedelta64"}
_TIME_KINDS = {name: kind for kind, name in _TIME_TYPES.items()}
_NAT = -(1 << 63)  # NaT's int64: the time types' fill value, as zarr-python writes it
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_WORKERS = 2                          # writers/readers in flight (a 2-core machine saturates)
_AHEAD = 4                            # chunks a multi-chunk read asks the store to prefetch ahead
_READ_AHEAD_FROM = 8                  # a read of this many chunks or more reads files apart (see
_READ_DEPTH = 8                       # `_fill_read_ahead`), this many ahead, on this many threads
_READERS = 2


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # (a platform without them: as if 16 GB)
        return 16 << 30


# A whole read of more bytes than this goes past the page cache (`read_stored(direct=True)`):
# such a read would push out the rest of the cache for bytes read once. A smaller one goes
# through it, so a script run again loads its arrays from memory (past the cache, every
# load of a 1 GB array went to the disk again).
_DIRECT_FROM = _physical_memory() // 4


@dataclass(frozen=True, slots=True)
class ArrayManifest:
    """What a `chunked` array manifest says: dtype, shape, chunk shape, chunk oids (C order)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    oids: tuple[str, ...]

    @property
    def grid(self) -> tuple[int, ...]:
        return grid_shape(self.shape, self.chunks)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Every chunk index, in the manifest's (C) order."""
        return itertools.product(*(range(n) for n in self.grid))

    def oid_at(self, index: tuple[int, ...]) -> str:
        return self.oids[int(np.ravel_multi_index(index, self.grid))] if index else self.oids[0]

    def block(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        """The region of the array that chunk `index` holds (edge chunks clipped)."""
        return tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, self.chunks, self.shape))


# -- which values ----------------------------------------------------------------------------
def is_array_source(value: Any) -> bool:
    """A dask or zarr array, or a lazily loaded one (numpy arrays are handled as always)."""
    if getattr(type(value), "__scistack_chunked__", False):
        return hasattr(value, "shape")  # (a lazily loaded table is not an array)
    root = type(value).__module__.split(".")[0]
    return root in ("dask", "zarr") and type(value).__name__ == "Array"


def measure_unknown_chunks(value: Any) -> None:
    """Give a dask array whose chunk sizes are unknown (`x[x > 5]`: shape `(nan,)`) its sizes,
    in place, as `x.compute_chunk_sizes()` does: every block is computed and measured, none is
    kept (memory stays a few blocks), so the grid and the threshold can be judged. The save
    then computes the blocks again as it stores them: twice the computation, never the whole
    array in memory. Anything else is left as it is."""
    chunks = getattr(value, "chunks", None)
    if not isinstance(chunks, tuple) or type(value).__module__.split(".")[0] != "dask":
        return
    if any(math.isnan(n) for axis in chunks for n in axis):
        check_source_dtype(value)  # an object dtype is refused before anything is computed
        value.compute_chunk_sizes()


def should_chunk(value: Any, policy: ChunkPolicy) -> bool:
    """Whether an array-like value is stored chunked under `policy`."""
    if isinstance(value, (np.ma.MaskedArray, np.matrix)):
        return False  # refused by the npy encoder, with the way out
    # a numpy array of a refused dtype is left to the npy encoder (its message says why)
    dtype = np.dtype(value.dtype) if isinstance(value, np.ndarray) else check_source_dtype(value)
    shape = tuple(int(n) for n in value.shape)
    return (bool(shape) and dtype.kind in CHUNKABLE_KINDS and _zarr_names(dtype)
            and math.prod(shape) * dtype.itemsize > policy.threshold)


def _zarr_names(dtype: np.dtype) -> bool:
    """Whether Zarr has a name for the dtype (not long double, nor a datetime without unit)."""
    if dtype.kind in _TIME_TYPES:
        return np.datetime_data(dtype)[0] != "generic"
    return dtype.itemsize <= (16 if dtype.kind == "c" else 8)


def check_source_dtype(value: Any) -> np.dtype:
    """The source's dtype, refusing object/structured dtypes before any byte is read."""
    dtype = np.dtype(value.dtype)
    if dtype.kind == "O" or dtype.fields is not None or dtype.kind == "V":
        what = f"{type(value).__module__.split('.')[0]} array" if is_array_source(value) else type(value).__name__
        raise UnsupportedValueError(
            f"a {what} of dtype {dtype} cannot be stored: object, structured and void dtypes "
            "have no canonical bytes (scistack never pickles). Convert it first, e.g. "
            "`x.astype(np.float64)`, or store a structured array as a pandas DataFrame"
        )
    return dtype


# -- manifest --------------------------------------------------------------------------------
def zarr_data_type(dtype: np.dtype) -> str | dict:
    """The Zarr v3 `data_type` of a chunkable dtype: its numpy name (`int16`), or for
    datetime64/timedelta64 the zarr-extensions form with the unit (`{"name":
    "numpy.datetime64", "configuration": {"unit": "ns", "scale_factor": 1}}`)."""
    if dtype.kind in _TIME_TYPES:
        unit, scale = np.datetime_data(dtype)
        return {"name": _TIME_TYPES[dtype.kind], "configuration": {"unit": unit, "scale_factor": scale}}
    return dtype.name


def dtype_of(data_type: Any) -> np.dtype:
    """The little-endian numpy dtype a manifest's `data_type` names (ValueError if none)."""
    if isinstance(data_type, dict):
        kind = _TIME_KINDS.get(data_type.get("name"))
        config = data_type.get("configuration")
        if kind is None or not isinstance(config, dict) or type(config.get("scale_factor")) is not int \
                or config["scale_factor"] < 1:
            raise ValueError(f"unknown data_type {json.dumps(data_type)[:80]}")
        try:
            return np.dtype(f"<{kind}8[{config['scale_factor']}{config.get('unit')}]")
        except TypeError:
            raise ValueError(f"unknown time unit in data_type {json.dumps(data_type)[:80]}") from None
    try:
        return np.dtype(data_type).newbyteorder("<")
    except TypeError:
        raise ValueError(f"unknown data_type {str(data_type)[:80]!r}") from None


def zarr_metadata(dtype: np.dtype, shape: tuple[int, ...], chunks: tuple[int, ...]) -> dict:
    """Zarr v3 array metadata (`zarr.json`) for the stored layout."""
    fill: Any = {"b": False, "f": 0.0, "c": [0.0, 0.0], "M": _NAT, "m": _NAT}.get(dtype.kind, 0)
    return {
        "zarr_format": 3, "node_type": "array", "shape": list(shape), "data_type": zarr_data_type(dtype),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {},
    }


def manifest_payload(dtype: np.dtype, shape: tuple[int, ...], chunks: tuple[int, ...], oids: list[str]) -> bytes:
    """Canonical JSON of an array manifest (docs/format.md 1.6)."""
    return dumps_canonical({"format": FORMAT, "type": "array", "chunks": list(oids),
                            "zarr": zarr_metadata(dtype, shape, chunks)})


def parse_manifest(payload: Any) -> dict:
    """The manifest's JSON tree, checked for the fields every reader relies on."""
    tree = json.loads(bytes(payload))
    if not isinstance(tree, dict) or tree.get("format") != FORMAT or tree.get("type") not in ("array", "table"):
        raise ValueError("not a format-1 chunked manifest")
    if not isinstance(tree.get("chunks"), list):
        raise ValueError("its chunk map is not a list")
    return tree


def array_manifest(tree: dict) -> ArrayManifest:
    """The typed view of an array manifest tree (raises ValueError when it is inconsistent)."""
    meta = tree["zarr"]
    dtype = dtype_of(meta["data_type"])
    shape = tuple(int(n) for n in meta["shape"])
    chunks = tuple(int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"])
    oids = tuple(tree["chunks"])
    if len(chunks) != len(shape) or min(chunks, default=1) < 1 or len(oids) != math.prod(grid_shape(shape, chunks)):
        raise ValueError(f"its chunk map ({len(oids)} oids) does not match shape {shape} in chunks {chunks}")
    return ArrayManifest(dtype, shape, chunks, oids)


def chunk_labels(tree: dict) -> list[tuple[str, str]]:
    """`(oid, "chunk [i, j]")` for every object a manifest names, for gc and fsck messages."""
    if tree["type"] == "array":
        manifest = array_manifest(tree)
        return [(manifest.oid_at(index), f"chunk {list(index)}") for index in manifest.indices()]
    named = [(oid, f"row group {i}") for i, oid in enumerate(tree["chunks"])]
    return named + [(tree["head"], "schema")] if "head" in tree else named


def describe_manifest(payload: Any) -> dict[str, Any]:
    """What `scistack show` prints for a chunked value, from its manifest alone."""
    tree = parse_manifest(payload)
    if tree["type"] == "table":
        return {"type": "chunked table", "rows": tree["rows"], "columns": tree["columns"],
                "row_groups": len(tree["chunks"]), "rows_per_group": tree["rows_per_chunk"]}
    manifest = array_manifest(tree)
    return {"type": "chunked array", "dtype": str(manifest.dtype.newbyteorder("=")),
            "shape": list(manifest.shape), "chunk_shape": list(manifest.chunks),
            "chunks": len(manifest.oids), "bytes": manifest.nbytes}


# -- write -----------------------------------------------------------------------------------
def encode_chunked_array(source: Any, put: Put, policy: ChunkPolicy) -> list[bytes]:
    """Store `source` chunk by chunk through `put`; the manifest payload (chunks already stored)."""
    dtype = check_source_dtype(source).newbyteorder("<")
    shape = tuple(int(n) for n in source.shape)
    chunks = chunk_shape(shape, dtype.itemsize, policy.chunk_bytes)
    grid = grid_shape(shape, chunks)
    put = for_this_save(put)  # (written on helper threads: a background upload's failure is this save's)
    try:
        if type(source).__module__.split(".")[0] == "dask":
            oids = _write_dask(source, shape, chunks, grid, put)
        else:
            oids = _write_blocks(source, shape, chunks, grid, put)
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        raise StorageFullError(
            exc.errno, f"the object store refused a chunk of this {math.prod(shape) * dtype.itemsize:,}-byte "
            f"array ({exc.strerror}): the disk, a quota or a file-size limit is full. Nothing was "
            "named and every earlier value is intact; free space and save again (the chunks "
            "already written are reused, or removed by `scistack gc` if never named)") from exc
    return [manifest_payload(dtype, shape, chunks, oids)]


def chunk_bytes_of(block: np.ndarray, chunks: tuple[int, ...]) -> memoryview:
    """The stored bytes of one block: canonical (C order, little-endian), zero-padded at edges."""
    block = canonical_array(np.asarray(block))
    if block.shape != chunks:
        padded = np.zeros(chunks, dtype=block.dtype)
        padded[tuple(slice(0, n) for n in block.shape)] = block
        block = padded
    return memoryview(block.reshape(-1).view(np.uint8))


def _write_blocks(source: Any, shape, chunks, grid, put: Put) -> list[str]:
    """Read blocks in order; hash and write them in a small pool, a bounded window in flight."""
    index_list = list(itertools.product(*(range(n) for n in grid)))
    release = _page_releaser(source)
    oids: list[str] = [""] * len(index_list)
    with ThreadPoolExecutor(_WORKERS) as pool:
        pending: dict = {}
        for flat, index in enumerate(index_list):
            region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, shape))
            view = source[region]
            pending[pool.submit(_put_block, put, view, chunks, release)] = flat
            if len(pending) >= 2 * _WORKERS:
                _drain(pending, oids, keep=_WORKERS)
        _drain(pending, oids, keep=0)
    return oids


def _put_block(put: Put, view: Any, chunks: tuple[int, ...], release: Callable) -> str:
    """Store one block; then drop its pages if it came from a memory map (it was read)."""
    oid = put("chunk", [chunk_bytes_of(view, chunks)])
    release(view)
    return oid


def _drain(pending: dict, oids: list[str], *, keep: int) -> None:
    while len(pending) > keep:
        future = next(iter(pending))
        oids[pending.pop(future)] = future.result()


class _BlockTarget:
    """A dask `store` target: each block written to it becomes one chunk object."""

    def __init__(self, shape, chunks, grid, put: Put) -> None:
        self.shape, self.chunks, self.grid, self.put = shape, chunks, grid, put
        self.oids: list[str] = [""] * math.prod(grid)

    def __setitem__(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        index = tuple(s.start // c for s, c in zip(region, self.chunks))
        flat = int(np.ravel_multi_index(index, self.grid)) if index else 0
        self.oids[flat] = self.put("chunk", [chunk_bytes_of(block, self.chunks)])


def _write_dask(source: Any, shape, chunks, grid, put: Put) -> list[str]:
    """Rechunk to the canonical grid and let dask's threads compute and hand over each block."""
    import dask.array as da

    target = _BlockTarget(shape, chunks, grid, put)
    aligned = source.rechunk(tuple(min(c, n) if n else 1 for c, n in zip(chunks, shape)))
    da.store(aligned, target, lock=False, scheduler="threads")
    return target.oids


def _page_releaser(source: Any) -> Callable[[np.ndarray], None]:
    """For a memory-mapped source, a function that drops a written block's pages from this
    process (MADV_DONTNEED), so saving a memmap larger than RAM keeps a bounded RSS.

    Only for read-only or shared maps: on a copy-on-write map it would discard the caller's
    unsaved edits, so those are left alone.
    """
    owner, mapped = source, None
    while isinstance(owner, np.ndarray):
        if isinstance(owner, np.memmap) and getattr(owner, "mode", "c") == "c":
            return _no_release
        if isinstance(owner.base, mmap.mmap):
            mapped = owner.base
            break
        owner = owner.base
    if mapped is None or not hasattr(mapped, "madvise"):
        return _no_release
    start = np.frombuffer(mapped, dtype=np.uint8).ctypes.data if len(mapped) else 0
    page = mmap.PAGESIZE

    def release(view: np.ndarray) -> None:
        if not isinstance(view, np.ndarray) or view.size == 0:
            return
        low, high = np.lib.array_utils.byte_bounds(view)
        first = max(0, (low - start) // page * page)
        last = min(len(mapped), (high - start) // page * page)
        if last > first:
            mapped.madvise(mmap.MADV_DONTNEED, first, last - first)

    return release


def _no_release(view: np.ndarray) -> None:
    return None


# -- read ------------------------------------------------------------------------------------
def read_chunk(manifest: ArrayManifest, index: tuple[int, ...], get: Get, array_oid: str) -> np.ndarray:
    """One chunk as an array of the full chunk shape (verified; errors name index and oid)."""
    out = np.empty(manifest.chunks, dtype=manifest.dtype)
    read_chunk_into(manifest, index, get, array_oid, out)
    return out


def read_chunk_into(manifest: ArrayManifest, index: tuple[int, ...], get: Get, array_oid: str,
                    out: np.ndarray, stored: memoryview | None = None) -> None:
    """Chunk `index` written into `out` (C-contiguous, the full chunk shape), verified.

    A store's `get.into` decodes straight into `out`; any other `get` is read, then copied.
    `stored`: the chunk's file as `get.read_stored` read it ahead, decoded by `get.decode_into`."""
    oid = manifest.oid_at(index)
    target = out.reshape(-1).view(np.uint8)
    into = getattr(get, "into", None)
    try:
        if stored is not None:
            kind, length = get.decode_into(oid, stored, target)
        elif into is not None:
            kind, length = into(oid, target)
        else:
            kind, payload = get(oid)
            payload = memoryview(payload).cast("B")
            length = len(payload)
            if length == target.size:
                target[:] = payload
    except ObjectNotFoundError:
        raise ChunkReadError(oid, index, array_oid, "is missing from the object store") from None
    except CorruptObjectError as exc:
        raise ChunkReadError(oid, index, array_oid, f"is corrupt ({str(exc).split(': ', 1)[-1].split('. ')[0]})") from None
    if kind != "chunk" or length != target.size:
        raise ChunkReadError(oid, index, array_oid, f"is not a chunk of {target.size} bytes")


def result_array(shape: list[int], dtype: np.dtype) -> np.ndarray:
    """An empty array for a read's result; one of 32 MB or more on plain anonymous pages.

    numpy asks the kernel for huge pages for every array of 4 MB or more (MADV_HUGEPAGE),
    and where the kernel defragments only for those who ask (THP `defrag=madvise`, the common
    default) every fault of the result then stalls compacting memory. A plain mapping follows
    the system's policy instead. On this project's 2-core VM, touching 4 GB took 2.1-4.3 s on
    plain pages against 4.5-9.4 s on numpy's (bench/results/large.md); populating the pages in
    one call (`MAP_POPULATE`) lost at 8 GB. Pages are freed when the array is."""
    count = math.prod(shape)
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes < _PLAIN_PAGES_FROM:
        return np.empty(shape, dtype=dtype)
    pages = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(pages, dtype=dtype, count=count).reshape(shape)


_PLAIN_PAGES_FROM = 32 << 20  # below, malloc reuses freed memory (glibc maps anew from 32 MB)


def read_region(manifest: ArrayManifest, region: tuple[slice, ...], get: Get, array_oid: str,
                on_read: Callable[[tuple, int], None] | None = None) -> np.ndarray:
    """The array's values in `region` (plain start:stop slices), reading only the chunks it touches.

    A chunk whose block is one contiguous stretch of the result (a whole-array read of an
    array chunked along its first axis) is decoded straight into it; any other is decoded
    into a buffer its reader thread keeps, then copied. Nothing is allocated per chunk:
    fresh multi-MB buffers on two threads cost as much again in page faults as the decoding."""
    bounds = [(s.start, s.stop) for s in region]
    out = result_array([b - a for a, b in bounds], manifest.dtype)
    if out.size == 0:
        return out
    ranges = [range(a // c, (b - 1) // c + 1) for (a, b), c in zip(bounds, manifest.chunks)]
    scratch = threading.local()

    def fill(index: tuple[int, ...], stored: memoryview | None = None) -> None:
        src, dst = [], []
        for i, c, (a, b) in zip(index, manifest.chunks, bounds):
            lo, hi = max(a, i * c), min(b, (i + 1) * c)
            src.append(slice(lo - i * c, hi - i * c))
            dst.append(slice(lo - a, hi - a))
        block = out[tuple(dst)]
        if block.shape == manifest.chunks and block.flags.c_contiguous:
            read_chunk_into(manifest, index, get, array_oid, block, stored)
        else:
            chunk = getattr(scratch, "chunk", None)
            if chunk is None:
                chunk = scratch.chunk = np.empty(manifest.chunks, dtype=manifest.dtype)
            read_chunk_into(manifest, index, get, array_oid, chunk, stored)
            block[...] = chunk[tuple(src)]
        if on_read is not None:
            on_read(index, math.prod(manifest.chunks) * manifest.dtype.itemsize)

    indices = list(itertools.product(*ranges))
    if len(indices) == 1:
        fill(indices[0])
        return out
    if len(indices) >= _READ_AHEAD_FROM and getattr(get, "read_stored", None) is not None:
        _fill_read_ahead(manifest, indices, get, fill)
        return out
    prefetch = getattr(get, "prefetch", None)

    def fill_next(at: int) -> None:
        if prefetch is not None and at + _AHEAD < len(indices):  # on its way while these decode
            prefetch(manifest.oid_at(indices[at + _AHEAD]))
        fill(indices[at])

    if prefetch is not None:
        for ahead in indices[:_AHEAD]:
            prefetch(manifest.oid_at(ahead))
    with ThreadPoolExecutor(_WORKERS) as pool:
        for done in pool.map(fill_next, range(len(indices))):
            pass
    return out


def _fill_read_ahead(manifest: ArrayManifest, indices: list[tuple[int, ...]], get: Get,
                     fill: Callable[[tuple[int, ...], memoryview | None], None]) -> None:
    """Decode many chunks on `_WORKERS` threads while `_READERS` others read their files
    (`get.read_stored`) up to `_READ_DEPTH` chunks ahead, into that many reused buffers.

    The decoders never wait on the disk (a read from disk had stalled them: 1-4 s of an
    8 GB load); a read bigger than a quarter of the machine's memory (`_DIRECT_FROM`) passes
    the files' bytes once through the buffers, not the page cache. A
    chunk with no loose file that fits (packed, missing) takes the ordinary path, whose
    errors name its index and oid; so does a damaged one, in `decode_into`."""
    size = (math.prod(manifest.chunks) * manifest.dtype.itemsize // 4096 + 2) * 4096  # a chunk's file fits
    direct = len(indices) * size > _DIRECT_FROM
    depth = min(_READ_DEPTH, len(indices))
    free: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(depth):
        free.put(None)  # a buffer, made when first needed
    reads: list = [None] * len(indices)
    posted = threading.Condition()
    failed = [len(indices)]  # the first chunk that failed: those after it are skipped

    def read(at: int) -> tuple[np.ndarray | None, memoryview | None]:
        buffer = free.get()
        try:
            if buffer is None:
                buffer = np.frombuffer(mmap.mmap(-1, size), dtype=np.uint8)  # page-aligned (O_DIRECT)
            return buffer, get.read_stored(manifest.oid_at(indices[at]), buffer, direct=direct)
        except Exception:  # noqa: BLE001 - the ordinary path reads it again and says what is wrong
            return buffer, None

    def post(at: int) -> None:
        with posted:
            reads[at] = readers.submit(read, at)
            posted.notify_all()

    def decode(at: int) -> None:
        with posted:
            posted.wait_for(lambda: reads[at] is not None)
        buffer, stored = reads[at].result()
        try:
            if at < failed[0]:  # (after a chunk fails, later ones only pass their buffers on; an
                fill(indices[at], stored)  # earlier one still runs, so the error named is the first)
        except BaseException:
            with posted:
                failed[0] = min(failed[0], at)
            raise
        finally:
            free.put(buffer)
            if at + depth < len(indices):
                post(at + depth)

    with ThreadPoolExecutor(_READERS) as readers, ThreadPoolExecutor(_WORKERS) as decoders:
        for at in range(depth):
            post(at)
        for _ in decoders.map(decode, range(len(indices))):
            pass


def decode_chunked_array(tree: dict, get: Get, array_oid: str = "?") -> np.ndarray:
    """The whole array (every chunk read and verified)."""
    manifest = array_manifest(tree)
    return read_region(manifest, tuple(slice(0, n) for n in manifest.shape), get, array_oid)
