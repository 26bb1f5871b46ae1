"""When a value is chunked, and its chunk grid: pure functions of shape and dtype.

A value's oid must not depend on how it was handed over (a numpy array, a memmap, a dask or
zarr array), so the grid is computed here from the logical shape and item size alone, never
from the source's own chunks. The grid splits the leading axis first, keeping the trailing
axes whole while a row of them fits the chunk budget (C-order blocks): a memmap is then read
as contiguous byte ranges, a time range of a (samples, channels) recording touches few
chunks, and an array that grows along its first axis keeps its earlier chunks (so they
dedupe across versions).

The policy (threshold and chunk budget) is part of every large value's identity: two
policies give two different oids for the same values. So a project records the one it uses
(database.py, in its config, the first time a process needs it) and every process that opens
it uses that one (`set_policy_source`: the current project's; `pin_policy`: a for_each
worker's, handed over by its parent). The environment (`SCISTACK_CHUNK_THRESHOLD`,
`SCISTACK_CHUNK_BYTES`) or `set_chunking` (tests use tiny values) chooses the policy a project
records, and the policy of a process with no project.
"""

from __future__ import annotations

import contextvars
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

THRESHOLD_ENV = "SCISTACK_CHUNK_THRESHOLD"
CHUNK_BYTES_ENV = "SCISTACK_CHUNK_BYTES"
DEFAULT_THRESHOLD = 256 << 20   # arrays/tables larger than this are chunked
DEFAULT_CHUNK_BYTES = 4 << 20   # the budget of one chunk (raw bytes)


@dataclass(frozen=True, slots=True)
class ChunkPolicy:
    """Values of more than `threshold` bytes are stored as chunks of about `chunk_bytes`."""

    threshold: int
    chunk_bytes: int


T = TypeVar("T")

_pinned: ChunkPolicy | None = None  # a for_each worker's: its parent's project's
_source: Callable[[], ChunkPolicy | None] | None = None  # the current project's (database.py)
_using: contextvars.ContextVar[ChunkPolicy | None] = contextvars.ContextVar("scistack_chunking", default=None)


def current_policy() -> ChunkPolicy:
    """The policy in force: the one `with_policy` puts in force, else the one pinned in a worker, else
    the current project's, else the process's own (`process_policy`)."""
    using = _using.get()
    if using is not None:
        return using
    if _pinned is not None:
        return _pinned
    if _source is not None:
        found = _source()
        if found is not None:
            return found
    return process_policy()


def process_policy() -> ChunkPolicy:
    """The policy this process would choose (from the environment, else the defaults): a new
    project records it, and a process with no project uses it."""
    return ChunkPolicy(_env_int(THRESHOLD_ENV, DEFAULT_THRESHOLD), _env_int(CHUNK_BYTES_ENV, DEFAULT_CHUNK_BYTES))


def chosen_in_environment() -> bool:
    """Whether this process's policy was chosen (an environment variable set), not the defaults."""
    return bool(os.environ.get(THRESHOLD_ENV) or os.environ.get(CHUNK_BYTES_ENV))


def set_policy_source(source: Callable[[], ChunkPolicy | None] | None) -> None:
    """Where the current project's recorded policy comes from (None when there is no project)."""
    global _source
    _source = source


def with_policy(policy: ChunkPolicy, fn: Callable[..., T], /, *args: Any) -> T:
    """`fn(*args)` with `policy` in force (a project that is not the current one: a dictionary
    database), in a copy of the caller's context: the caller's is never changed, so no
    interrupt (Ctrl-C) can leave `policy` in force. A `set` undone in a `finally` left it so
    when the KeyboardInterrupt came between the two: every later save of the session (in this
    thread) was chunked by that database's policy."""
    return contextvars.copy_context().run(_under, policy, fn, args)


def _under(policy: ChunkPolicy, fn: Callable[..., T], args: tuple) -> T:
    _using.set(policy)
    return fn(*args)


def pin_policy(policy: ChunkPolicy | None) -> None:
    """Use `policy` in this process whatever else says (a worker: its parent project's)."""
    global _pinned
    _pinned = policy


def policy_from_config(found: object) -> ChunkPolicy | None:
    """The policy a project's config records (`{"threshold": N, "chunk_bytes": M}`), or None
    when it records none or something else."""
    if not isinstance(found, dict):
        return None
    threshold, chunk_bytes = found.get("threshold"), found.get("chunk_bytes")
    if type(threshold) is not int or type(chunk_bytes) is not int or threshold < 1 or chunk_bytes < 1:
        return None
    return ChunkPolicy(threshold, chunk_bytes)


def set_chunking(*, threshold: int | None = None, chunk_bytes: int | None = None) -> ChunkPolicy:
    """Set the process's own policy (None restores a default); child processes inherit it. A
    project records it the first time one of its values needs a policy; one that has recorded
    its own keeps using that. Returns the process's policy."""
    for name, value in ((THRESHOLD_ENV, threshold), (CHUNK_BYTES_ENV, chunk_bytes)):
        if value is None:
            os.environ.pop(name, None)
        elif type(value) is not int or value < 1:
            raise ValueError(f"{name.lower()} must be a positive number of bytes, not {value!r}")
        else:
            os.environ[name] = str(value)
    return process_policy()


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"${name}={text!r} is not a number of bytes; unset it or give e.g. 4194304") from None
    return max(1, value)


def chunk_shape(shape: tuple[int, ...], itemsize: int, chunk_bytes: int) -> tuple[int, ...]:
    """The regular chunk shape of an array: leading axis split first (see module docstring).

    The row count is a power of two (so it does not move when the array grows), clipped to
    the axis length.
    """
    if not shape:
        return ()
    row = math.prod(shape[1:]) * itemsize
    if row <= chunk_bytes:
        rows = 1 << max(0, (chunk_bytes // max(row, 1)).bit_length() - 1)
        return (max(1, min(rows, shape[0])), *shape[1:])
    return (1, *chunk_shape(shape[1:], itemsize, chunk_bytes))


def grid_shape(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    """How many chunks along each axis."""
    return tuple(-(-n // c) for n, c in zip(shape, chunks))


def table_rows_per_chunk(row_bytes: int, chunk_bytes: int) -> int:
    """Rows in one row-group chunk of a table: a power of two from the schema's row width."""
    return 1 << max(0, (chunk_bytes // max(row_bytes, 1)).bit_length() - 1)
