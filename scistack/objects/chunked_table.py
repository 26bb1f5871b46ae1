"""Chunked tables: a large DataFrame, Series or Arrow table as row-group `table` objects.

The manifest (kind `chunked`, type `table`) names a *head* (the zero-row table carrying the
whole schema metadata: pandas' index and dtypes, scistack's type) and one `table` object per
row group, each without schema metadata. So a row group's oid depends only on its rows and
columns: appending rows or changing one row keeps every other row group (they dedupe), even
though pandas' metadata (a RangeIndex's stop) changes. Rows per group are a pure function
of the schema (`chunking.table_rows_per_chunk` over an estimated row width), never of how
the table happened to be chunked in memory.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from scistack.errors import ChunkReadError, CorruptObjectError, NoSuchColumnError, ObjectNotFoundError
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.chunking import ChunkPolicy, table_rows_per_chunk
from scistack.objects.table import from_arrow, read_arrow, table_payload

FORMAT = 1
_VARIABLE_WIDTH = 32  # bytes a row of a string/binary/nested column is assumed to take
_WORKERS = 2


def should_chunk_table(value: Any, policy: ChunkPolicy) -> bool:
    """Whether a DataFrame, Series or Arrow table is stored chunked: an estimate from its row
    count and column types alone (cheap, and the same however its memory is laid out)."""
    rows = len(value)
    if getattr(type(value), "__scistack_chunked__", False):  # a LazyTable: by the types it reads as
        value = value.head(0)
    if isinstance(value, pa.Table):
        width, columns = row_width(value.schema), value.num_columns
    else:
        dtypes = [value.dtype] if value.ndim == 1 else list(value.dtypes)
        width, columns = 8 + sum(_dtype_width(d) for d in dtypes), len(dtypes)
    return columns > 0 and rows > 1 and rows * width > policy.threshold


def _dtype_width(dtype: Any) -> int:
    itemsize = getattr(dtype, "itemsize", 0)
    return itemsize if getattr(dtype, "kind", "O") in "biufcmM" and itemsize else _VARIABLE_WIDTH


def row_width(schema: pa.Schema) -> int:
    """Estimated bytes of one row, from the schema alone."""
    total = 0
    for field in schema:
        try:
            total += max(1, field.type.bit_width // 8)
        except ValueError:  # variable width (strings, lists, dictionaries...)
            total += _VARIABLE_WIDTH
    return total


def encode_chunked_table(table: pa.Table, put: Any, policy: ChunkPolicy) -> list[bytes]:
    """Store the head and every row group through `put`; the manifest payload."""
    rows = table_rows_per_chunk(row_width(table.schema), policy.chunk_bytes)
    head = put("table", table_payload(table.slice(0, 0), 0))
    bare = table.replace_schema_metadata(None)
    oids = [put("table", table_payload(part, part.num_rows))
            for part in (bare.slice(start, rows) for start in range(0, table.num_rows, rows))]
    return [dumps_canonical({
        "format": FORMAT, "type": "table", "head": head, "chunks": oids, "rows": table.num_rows,
        "rows_per_chunk": rows, "columns": [str(name) for name in table.schema.names],
    })]


class TableChunks:
    """Reads a chunked table's head and row groups (verified; errors name the row group)."""

    def __init__(self, tree: dict, get: Any, oid: str) -> None:
        self.tree, self.get, self.oid = tree, get, oid
        kind, payload = get(tree["head"])
        self.schema = read_arrow(payload).schema  # with the metadata

    def group(self, i: int, columns: list[str] | None = None) -> pa.Table:
        oid = self.tree["chunks"][i]
        try:
            kind, payload = self.get(oid)
            part = read_arrow(payload)
        except ObjectNotFoundError:
            raise ChunkReadError(oid, (i,), self.oid, "is missing from the object store") from None
        except CorruptObjectError as exc:
            raise ChunkReadError(oid, (i,), self.oid, f"is corrupt ({str(exc).split(': ', 1)[-1].split('. ')[0]})") from None
        except pa.ArrowException as exc:
            raise ChunkReadError(oid, (i,), self.oid, f"is not an Arrow table ({exc})") from None
        return part.select(columns) if columns is not None else part

    def labels(self) -> dict[str, Any]:
        """Each stored column name -> the label the saved DataFrame had for it (Arrow names
        columns by text: `pd.DataFrame(matrix)`'s 0, 1, 2 are stored as "0", "1", "2"), read
        from the head (no row group); a name that is its own label, and anything not a
        DataFrame (a Series, an Arrow table), maps to itself."""
        made = getattr(self, "_labels", None)
        if made is None:
            head = self.read(range(0))
            made = {name: name for name in self.schema.names}
            if hasattr(head, "columns") and hasattr(head, "iloc"):  # (a DataFrame: its columns, stored order)
                index = [c for c in self.schema.pandas_metadata.get("index_columns", []) if isinstance(c, str)] \
                    if self.schema.metadata and b"pandas" in self.schema.metadata else []
                data = [name for name in self.schema.names if name not in index]
                if len(data) == len(head.columns):
                    made.update(zip(data, head.columns))
            self._labels = made
        return made

    def read(self, groups: range | None = None, columns: list[str] | None = None) -> Any:
        """The value (its saved type) of the given row groups (all by default) and columns."""
        wanted = self._with_index(columns)
        groups = range(len(self.tree["chunks"])) if groups is None else groups
        with ThreadPoolExecutor(_WORKERS) as pool:
            parts = list(pool.map(lambda i: self.group(i, wanted), groups))
        schema = self.schema if wanted is None else pa.schema([self.schema.field(c) for c in wanted],
                                                             metadata=self.schema.metadata)
        if wanted == []:  # no column at all, every row still (concatenated, or given metadata,
            # a column-less table of pyarrow 26 has no rows)
            rows = pa.RecordBatch.from_pydict({"rows": pa.nulls(sum(p.num_rows for p in parts))}).select([])
            metadata = dict(self.schema.metadata or {})
            if metadata.get(b"scistack", b"arrow") == b"arrow":  # (as from_arrow gives it, rows kept)
                metadata.pop(b"scistack", None)
                return pa.Table.from_batches([rows], schema=pa.schema([], metadata=metadata or None))
            return from_arrow(pa.Table.from_batches([rows], schema=schema))
        table = pa.concat_tables([p.cast(schema) for p in parts]) if parts else schema.empty_table()
        return from_arrow(table.replace_schema_metadata(self.schema.metadata))

    def _stored_name(self, column: Any, labels: dict[str, Any]) -> Any:
        """The stored name of a column asked for by its label (0) or by that text ("0")."""
        if isinstance(column, str) and column in labels:
            return column
        by_label = getattr(self, "_by_label", None)
        if by_label is None:
            by_label = self._by_label = {}
            for name, label in labels.items():
                try:
                    by_label.setdefault(label, name)
                except TypeError:  # (an unhashable label: asked for by its text only)
                    pass
        try:
            return by_label.get(column, column)
        except TypeError:  # (a list asked for as one column: refused below as missing)
            return column

    def _with_index(self, columns: list[str] | None) -> list[str] | None:
        """The stored columns to read: those asked for, in the order asked (as `df[columns]`
        and `pq.read_table(columns=)` give them: the stored order had swapped the values of
        `columns=["force", "time"]`), then the stored index columns not asked for (pandas
        stores them last). A name asked twice is refused: a stored table names each column
        once (a save of a frame with a repeated name is refused too)."""
        if columns is None:
            return None
        if isinstance(columns, (str, bytes)):
            raise NoSuchColumnError([], self.tree["columns"], f"ask for a list of names, e.g. columns=[{columns!r}]",
                                    what=f"columns= is the text {columns!r}, not a list of column names")
        asked, labels = list(columns), self.labels()
        columns = [self._stored_name(c, labels) for c in asked]
        missing = [c for c, name in zip(asked, columns) if name not in self.schema.names]
        if missing:
            raise NoSuchColumnError(missing, [labels.get(c, c) for c in self.tree["columns"]])
        twice = list(dict.fromkeys(c for i, c in enumerate(columns) if c in columns[:i]))
        if twice:
            raise NoSuchColumnError(
                [], self.tree["columns"], "ask for each column once (a stored table names each once); to repeat "
                f"one, select it from what is read, e.g. `read(columns=[{twice[0]!r}])[[{twice[0]!r}, {twice[0]!r}]]`",
                what=f"column {', '.join(repr(c) for c in twice)} asked for twice")
        if self.schema.metadata and self.schema.metadata.get(b"scistack") == b"series" and \
                "__series__" not in columns:
            raise NoSuchColumnError([], self.tree["columns"],
                                    "this is a Series, stored as its one column '__series__': read it whole "
                                    "(`read()`) or with columns=['__series__']")
        index = [c for c in self.schema.pandas_metadata.get("index_columns", []) if isinstance(c, str)] \
            if self.schema.metadata and b"pandas" in self.schema.metadata else []
        return columns + [c for c in self.schema.names if c in index and c not in columns]


def decode_chunked_table(tree: dict, get: Any, oid: str) -> Any:
    return TableChunks(tree, get, oid).read()
