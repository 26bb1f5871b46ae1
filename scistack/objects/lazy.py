"""Lazily loaded chunked values: `Var.load(..., lazy=True).data`.

A `LazyArray` holds only its manifest. Basic indexing (integers, slices with any step,
`...`) reads just the chunks the selection touches; `np.asarray(x)` reads everything;
`x.to_dask()` gives a dask array over the same chunks. Anything else (fancy or boolean
indexing, `None`) reads the whole array first, then indexes it. Results are read-only, as
loaded arrays are (lineage keys them by the stored oid).

`chunks_read` and `bytes_read` count what was read, so a caller (and the benchmark) can see
that a one-channel slice touched one or two chunks.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

import numpy as np

from scistack.errors import LazyValueError
from scistack.objects.chunked import ArrayManifest, Get, read_region
from scistack.summary import described
from scistack.objects.forks import renew_in_child


class LazyArray:
    """A chunked array in the store, read chunk by chunk on demand."""

    __scistack_chunked__ = True

    def __init__(self, manifest: ArrayManifest, get: Get, oid: str) -> None:
        self.manifest = manifest
        self.oid = oid
        self._get = get
        self._lock = threading.Lock()
        _LAZY_ARRAYS.add(self)
        self.chunks_read = 0
        self.bytes_read = 0

    def __getattr__(self, name: str) -> Any:
        """A numpy array's method (`.max()`, `.T`, `.astype`) names the two ways to it."""
        if not name.startswith("_") and hasattr(np.ndarray, name):
            raise LazyValueError(
                f"a lazy array has no {name!r}: it reads only what you index (x[1000:2000, 3]). "
                f"For the whole array, np.asarray(x).{name} (reads every chunk into memory) or "
                f"x.to_dask().{name} (chunk by chunk)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a dask worker) as the manifest and the store: nothing read is sent."""
        return {"manifest": self.manifest, "oid": self.oid, "get": self._get}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["manifest"], state["get"], state["oid"])

    # -- the array protocol ----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.manifest.shape

    @property
    def dtype(self) -> np.dtype:
        return self.manifest.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        """The chunk shape (every chunk but the edges holds exactly this block)."""
        return self.manifest.chunks

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.manifest.nbytes

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        plan = _basic_plan(key, self.shape)
        if plan is None:  # fancy, boolean or newaxis indexing: read all, then index
            return _frozen(np.asarray(self)[key])
        region, local = plan
        block = read_region(self.manifest, region, self._get, self.oid, self._count)
        picked = block[local]
        return picked[()] if picked.ndim == 0 else _frozen(picked)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = read_region(self.manifest, tuple(slice(0, n) for n in self.shape), self._get,
                            self.oid, self._count)
        return whole.astype(dtype, copy=False) if dtype is not None else _frozen(whole)

    def to_dask(self) -> Any:
        """A dask array over the stored chunks (each task reads one chunk)."""
        import dask.array as da

        return da.from_array(self, chunks=self.chunks, name=f"scistack-{self.oid}",
                             meta=np.empty((0,) * self.ndim, dtype=self.dtype))

    def _count(self, index: tuple, nbytes: int) -> None:
        with self._lock:
            self.chunks_read += 1
            self.bytes_read += nbytes

    # -- scistack hooks ----------------------------------------------------------------------
    def __scistack_input__(self) -> tuple:
        """Lineage keys a lazy input by its manifest oid: nothing is read or hashed."""
        return self, self.oid, None, {}, None, {}

    def __repr__(self) -> str:
        return (f"LazyArray({self.dtype}{list(self.shape)}, chunks={list(self.chunks)}, "
                f"oid={self.oid[:12]}, chunks_read={self.chunks_read})")


def _frozen(array: np.ndarray) -> np.ndarray:
    if isinstance(array, np.ndarray):
        array.flags.writeable = False
    return array


def _basic_plan(key: Any, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple] | None:
    """For basic indexing: the bounding region to read and the index to apply inside it."""
    key = key if isinstance(key, tuple) else (key,)
    if not all(isinstance(k, (int, np.integer, slice)) or k is Ellipsis for k in key):
        return None
    ellipses = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = ellipses[0]
        key = key[:at] + (slice(None),) * (len(shape) - len(key) + 1) + key[at + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices for an array of {len(shape)} dimensions")
    key = key + (slice(None),) * (len(shape) - len(key))
    region, local = [], []
    for item, n in zip(key, shape):
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            i = int(item) + n if item < 0 else int(item)
            if not 0 <= i < n:
                raise IndexError(f"index {int(item)} is out of bounds for an axis of size {n}")
            region.append(slice(i, i + 1))
            local.append(0)
        elif isinstance(item, slice):
            picked = range(*item.indices(n))
            if not picked:
                region.append(slice(0, 0))
                local.append(slice(0, 0))
                continue
            low, high = min(picked[0], picked[-1]), max(picked[0], picked[-1]) + 1
            stop = picked.stop - low
            region.append(slice(low, high))
            local.append(slice(picked.start - low, stop if stop >= 0 else None, picked.step))
        else:
            return None
    return tuple(region), tuple(local)


class LazyTable:
    """A chunked table in the store: read whole, by columns, or as a dask dataframe."""

    __scistack_chunked__ = True

    def __init__(self, chunks: Any, oid: str) -> None:
        self._chunks = chunks  # a chunked_table.TableChunks (head already read)
        self.oid = oid

    @property
    def num_rows(self) -> int:
        return self._chunks.tree["rows"]

    @property
    def columns(self) -> list[Any]:
        """The column labels, as the saved DataFrame had them (0, 1, 2 for a frame of a
        matrix, stored by Arrow as "0", "1", "2"); a Series is one column, `__series__`."""
        labels = self._chunks.labels()
        return [labels.get(name, name) for name in self._chunks.tree["columns"]]

    @property
    def row_groups(self) -> int:
        return len(self._chunks.tree["chunks"])

    def __len__(self) -> int:
        return self.num_rows

    @property
    def nbytes(self) -> int:
        """Bytes of its rows as the head's schema tells them (no row group is read): exact for
        fixed-width columns, a string or nested cell counted as `chunked_table.row_width` does."""
        from scistack.objects.chunked_table import row_width  # noqa: PLC0415 - loads pyarrow

        return self.num_rows * row_width(self._chunks.schema)

    def described(self) -> tuple[str, tuple]:
        """(dtype or type name, shape) of the value this reads as, as its summary says them
        (`summary.described`): a Series of float64 `float64`, (rows,), not a table of one
        column; from the head alone (no row group is read)."""
        name, shape = described(self._chunks.read(range(0)))
        return name, (self.num_rows, *shape[1:])

    def read(self, columns: list[Any] | None = None) -> Any:
        """The value as saved (DataFrame, Series or Arrow table), optionally only `columns`
        (labels as the saved frame had them, e.g. [0, 2], or their text, ["0", "2"])."""
        return self._chunks.read(columns=columns)

    def head(self, rows: int = 20) -> Any:
        """The first `rows` rows, as the value's type (reads only the row groups they are in);
        a negative `rows` is every row but the last `-rows`, as pandas' `head` gives."""
        rows = int(rows)
        rows = max(self.num_rows + rows, 0) if rows < 0 else rows
        per = max(int(self._chunks.tree["rows_per_chunk"]), 1)
        part = self._chunks.read(range(min(self.row_groups, max(1, -(-rows // per)))))
        if hasattr(part, "slice") and hasattr(part, "schema"):
            return part.slice(0, rows)
        return self._range_indexed(part, 0).iloc[:rows]  # (saved as `df.iloc[1000:]`: from 1000)

    def to_dask(self, columns: list[str] | None = None) -> Any:
        """A dask dataframe with one partition per row group (each reads one object), with the
        dtypes `read()` gives: dask's own conversion of strings to its pyarrow string dtype is
        off for it (a `str` column had come back `string[pyarrow]`, NA for NaN). A categorical's
        categories are dask's "unknown" until computed: the head, with no rows, has none, and the
        frame had claimed to know them (`.cat.categories` said `[]`)."""
        import dask
        import dask.dataframe as dd
        from dask.dataframe.utils import clear_known_categories

        meta = clear_known_categories(self._partition(None, columns))
        with dask.config.set({"dataframe.convert-string": False}):  # (read when the graph is built)
            return dd.from_map(_Partition(self, columns), list(range(self.row_groups)),
                               meta=meta, enforce_metadata=False)

    def _partition(self, i: int | None, columns: list[str] | None) -> Any:
        import pyarrow as pa

        groups = range(0) if i is None else range(i, i + 1)
        part = self._chunks.read(groups, columns)
        if isinstance(part, pa.Table):
            part = part.to_pandas()
        return self._range_indexed(part, i or 0)

    def _range_indexed(self, part: Any, first_group: int) -> Any:
        """A pandas part read from row group `first_group` on, with its stretch of the RangeIndex
        the table was saved with (a partial read has none of its own: it counted from 0)."""
        import pandas as pd

        per = self._chunks.tree["rows_per_chunk"]
        index = (self._chunks.schema.pandas_metadata or {}).get("index_columns", [{}]) \
            if self._chunks.schema.metadata and b"pandas" in self._chunks.schema.metadata else [{}]
        if len(index) == 1 and isinstance(index[0], dict) and index[0].get("kind") == "range":
            r = index[0]
            first = r["start"] + first_group * per * r["step"]
            part.index = pd.RangeIndex(first, first + len(part) * r["step"], r["step"], name=r.get("name"))
        return part

    def __repr__(self) -> str:
        return f"LazyTable({self.num_rows} rows x {len(self.columns)} columns, oid={self.oid[:12]})"


class _Partition:
    """One row group of a LazyTable as a pandas object (dask names tasks by the table's oid)."""

    def __init__(self, table: LazyTable, columns: list[str] | None) -> None:
        self.table, self.columns = table, columns

    def __call__(self, i: int) -> Any:
        return self.table._partition(i, self.columns)

    def __dask_tokenize__(self) -> tuple:
        return ("scistack-table", self.table.oid, self.columns)


# A forked child's lazy arrays count under locks of their own: a thread of the parent reading
# one (a dask or for_each thread) may have held its lock, and the child's first read of it
# waited for ever. The counts are a pair of additions, whole without waiting for that thread.
_LAZY_ARRAYS: weakref.WeakSet[LazyArray] = weakref.WeakSet()


renew_in_child(lambda: [array._lock for array in list(_LAZY_ARRAYS)])
