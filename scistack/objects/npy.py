"""Canonical `npy` payloads: NPY 1.0 with one fixed header spelling (docs/format.md §1.1).

numpy's own writer has changed its header padding across releases, so scistack spells the
header itself: the same logical array always yields the same bytes, whichever numpy (or
MATLAB) wrote it. Arrays are normalised to C order and little-endian first, so a Fortran-
ordered, strided or big-endian view of the same values has the same oid (logical equality,
which is what a data store wants; joblib chose the opposite for a cache of calls).
"""

from __future__ import annotations

import ast
import functools
import re
import struct
from typing import Any

import numpy as np

from scistack.address import NOT_TEXT, shown
from scistack.errors import UnsupportedValueError

MAGIC = b"\x93NUMPY\x01\x00"
_ALLOWED_KINDS = frozenset("biufcMmSU")
_HEADER_RE = re.compile(
    r"\{'descr': '([^']+)', 'fortran_order': (False|True), 'shape': \(([0-9, ]*)\), \} *\n"
)


def canonical_array(arr: np.ndarray) -> np.ndarray:
    """The array as it is stored: C-contiguous, little-endian, a plain ndarray."""
    if isinstance(arr, np.ma.MaskedArray):
        raise UnsupportedValueError(
            "MaskedArray cannot be stored: its mask would be lost. Save `arr.filled(np.nan)` (or "
            "another fill), or the data and `np.ma.getmaskarray(arr)` as two variables")
    if isinstance(arr, np.matrix):
        raise UnsupportedValueError(
            "np.matrix cannot be stored: it would load as an ndarray, whose `*` is elementwise. "
            "Save `np.asarray(m)` (and use `@` for matrix products)")
    dtype = arr.dtype
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsupportedValueError(
            f"numpy arrays of dtype {dtype} cannot be stored canonically (object, structured "
            "and void dtypes are refused, never pickled). Convert to a numeric, bool, string or "
            "datetime dtype, or store a structured array as a pandas DataFrame"
        )
    if dtype.kind in "fc" and dtype.itemsize > (16 if dtype.kind == "c" else 8):
        raise UnsupportedValueError(
            f"numpy arrays of dtype {dtype} (long double) cannot be stored: their bytes are "
            "platform-specific and include padding, so they have no canonical form. Convert "
            "with `arr.astype(np.float64)` (or complex128)"
        )
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and not np.little_endian):
        arr = arr.astype(dtype.newbyteorder("<"))
    if not arr.flags.c_contiguous:  # not np.ascontiguousarray: it turns 0-d into 1-d
        arr = arr.copy(order="C")
    if dtype.kind == "U":
        refuse_lone_surrogates(arr)
    return arr.view(np.ndarray) if type(arr) is not np.ndarray else arr


def refuse_lone_surrogates(arr: np.ndarray) -> None:
    """Refuse a str array (dtype kind "U") holding a lone surrogate (a file name's non-UTF-8
    byte as `os.listdir` reads it): the SQL views and exports could not hold its text. One
    pass over the code points (UCS-4), so a large array costs no Python loop; the item named
    is the first in C order, whatever the array's order and byte order."""
    if arr.dtype.itemsize == 0 or arr.size == 0:
        return
    if not arr.flags.c_contiguous or arr.dtype.byteorder == ">" or (
            arr.dtype.byteorder == "=" and not np.little_endian):
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    flat = arr.reshape(-1)  # (C-contiguous: a view)
    points = flat.view("<u4")
    bad = (points >= 0xD800) & (points <= 0xDFFF)
    if bad.any():
        first = flat[int(np.argmax(bad.reshape(flat.size, -1).any(axis=1)))]
        raise UnsupportedValueError(f"cannot store this str array: its item {shown(str(first))} {NOT_TEXT[3:]}")


def descr_of(dtype: np.dtype) -> str:
    """The little-endian dtype string written in the header (``<f8``, ``|b1``, ``<U5``)."""
    text = dtype.str
    return "<" + text[1:] if text[0] in "=>" else text


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """The NPY 1.0 preamble + header for `descr` and `shape`, padded to 64 bytes."""
    shape_text = "(%s,)" % shape[0] if len(shape) == 1 else repr(tuple(int(n) for n in shape))
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_text)
    pad = -(len(MAGIC) + 2 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin-1")
    if len(body) > 0xFFFF:
        raise UnsupportedValueError(f"array with {len(shape)} dimensions has a header too large for NPY 1.0")
    return MAGIC + struct.pack("<H", len(body)) + body


def encode_npy(arr: np.ndarray) -> list[memoryview | bytes]:
    """The payload of `arr` as buffers: the header, then the data viewed in place (no copy)."""
    arr = canonical_array(arr)
    header = npy_header(descr_of(arr.dtype), arr.shape)
    if arr.nbytes == 0:
        return [header]
    return [header, memoryview(arr.reshape(-1).view(np.uint8))]


def decode_npy(payload: bytearray | bytes | memoryview) -> np.ndarray:
    """The array in an NPY 1.0 payload, viewing the payload's memory (no copy)."""
    view = memoryview(payload)
    if bytes(view[:8]) != MAGIC:
        raise ValueError("not an NPY 1.0 payload (bad magic)")
    (hlen,) = struct.unpack("<H", view[8:10])
    text = bytes(view[10 : 10 + hlen]).decode("latin-1")
    descr, fortran, shape = _parse_header(text)
    dtype = _dtype(descr)
    count = 1
    for n in shape:
        count *= n
    offset = 10 + hlen
    if len(view) - offset != count * dtype.itemsize:
        raise ValueError(f"NPY payload holds {len(view) - offset} data bytes, header says {count * dtype.itemsize}")
    arr = np.frombuffer(view, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def decode_npy_many(payloads: list[Any]) -> list[np.ndarray | None]:
    """`decode_npy` of many payloads at once: those that share a C-order header (one
    variable's values, mostly) become rows of one array read from their joined bytes, each
    a read-only view as `decode_npy` gives (300k 4-element arrays: ~0.2 s, where one call
    each took 1.1 s). None where a payload is not such (the caller decodes it alone, and so
    names what is wrong with it)."""
    out: list[np.ndarray | None] = [None] * len(payloads)
    groups: dict[bytes, list[int]] = {}
    for i, payload in enumerate(payloads):
        if payload[:8] == MAGIC and len(payload) >= 10:
            start = 10 + int.from_bytes(payload[8:10], "little")
            if len(payload) >= start:  # (else its header is cut short)
                groups.setdefault(bytes(payload[:start]), []).append(i)
    for header, members in groups.items():
        try:
            descr, fortran, shape = _parse_header(header[10:].decode("latin-1"))
            dtype = _dtype(descr)
        except (ValueError, SyntaxError, TypeError, KeyError):
            continue  # (each is decoded alone, and its error named)
        size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if fortran and len(shape) > 1 or dtype.hasobject:
            continue
        start = len(header)
        members = [i for i in members if len(payloads[i]) - start == size]
        if not members:
            continue
        joined = b"".join([memoryview(payloads[i])[start:] for i in members])
        rows = np.frombuffer(joined, dtype=dtype).reshape((len(members), *shape))
        # each row a view (for shape (), a 0-d array as `decode_npy` gives, not a scalar)
        views = list(rows) if shape else [rows[n, ...] for n in range(len(members))]
        for i, view in zip(members, views):
            out[i] = view
    return out


@functools.lru_cache(maxsize=256)
def _dtype(descr: str) -> np.dtype:
    return np.dtype(descr)


@functools.lru_cache(maxsize=1024)
def _parse_header(text: str) -> tuple[str, bool, tuple[int, ...]]:
    match = _HEADER_RE.fullmatch(text)
    if match:  # the canonical spelling: parse without eval
        dims = [d for d in match.group(3).replace(" ", "").split(",") if d]
        return match.group(1), match.group(2) == "True", tuple(int(d) for d in dims)
    header = ast.literal_eval(text.strip())  # any valid NPY 1.0 header (foreign writers)
    return header["descr"], bool(header["fortran_order"]), tuple(header["shape"])
