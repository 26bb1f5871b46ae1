"""Shared test helpers: hypothesis strategies for every storable type, and `assert_identical`.

`assert_identical(decoded, original)` is the round-trip contract: equal values *and* the
same type all the way down (a tuple stays a tuple, np.float32 stays np.float32, a column
keeps its dtype). The documented normalisations are the only exceptions:

- arrays come back C-ordered, little-endian (the same logical array has one oid);
- a float NaN in JSON comes back as Python's canonical NaN (npy keeps NaN bit patterns);
- dicts come back with their keys in sorted order (dict equality ignores order);
- a DatetimeIndex loses its `freq` (Arrow has no place for it); the values are kept;
- a RangeIndex of *column labels* comes back as an int64 Index with the same labels (pandas
  compares them as equivalent; a RangeIndex of rows is kept).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scistack.objects import MemoryObjectStore

# -- dtypes -------------------------------------------------------------------------------
NUMERIC_DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
]
TIME_DTYPES = ["datetime64[ns]", "datetime64[s]", "datetime64[D]", "timedelta64[s]", "timedelta64[ns]"]
STRING_DTYPES = ["S1", "S7", "U1", "U5"]
ALL_DTYPES = [np.dtype(d) for d in NUMERIC_DTYPES + TIME_DTYPES + STRING_DTYPES]
BIG_ENDIAN_DTYPES = [d.newbyteorder(">") for d in ALL_DTYPES if d.byteorder == "<"]


def oid_of(value: Any) -> str:
    """The oid `value` is stored under (computed by a throwaway memory store)."""
    return MemoryObjectStore().put_value(value)


def roundtrip(value: Any, store=None) -> Any:
    store = store if store is not None else MemoryObjectStore()
    return store.get_value(store.put_value(value))


# -- strategies ---------------------------------------------------------------------------
dtypes = st.sampled_from(ALL_DTYPES + BIG_ENDIAN_DTYPES)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


# (a lone surrogate is refused, as no UTF-8 file can hold it: test_non_utf8_text.py)
STORABLE_TEXT = st.characters(exclude_categories=("Cs",))


def storable_elements(dtype: np.dtype) -> st.SearchStrategy:
    """Values of `dtype` a store accepts: its text without lone surrogates."""
    return hnp.from_dtype(dtype, alphabet=STORABLE_TEXT) if dtype.kind == "U" else hnp.from_dtype(dtype)


@st.composite
def arrays(draw, dtype=dtypes, shape=shapes) -> np.ndarray:
    """Arrays of every storable dtype, sometimes as Fortran-ordered or strided views."""
    kind = draw(dtype) if not isinstance(dtype, np.dtype) else dtype
    arr = draw(hnp.arrays(kind, draw(shape), elements=storable_elements(np.dtype(kind))))
    layout = draw(st.sampled_from(["c", "fortran", "strided", "reversed"]))
    if layout == "fortran":
        return np.asfortranarray(arr)
    if layout == "strided" and arr.ndim:
        big = np.repeat(arr, 2, axis=-1)  # every other element of this is `arr`
        return big[..., ::2]
    if layout == "reversed" and arr.ndim:
        return np.flip(np.flip(arr, axis=0).copy(), axis=0)  # negative strides
    return arr


@st.composite
def numpy_scalars(draw) -> np.generic:
    dtype = draw(st.sampled_from(ALL_DTYPES + [np.dtype("datetime64"), np.dtype("U12"), np.dtype("S12")]))
    return np.array(draw(storable_elements(dtype)), dtype=dtype)[()]


python_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(), st.complex_numbers(), st.text(), st.binary(),
)
keys = st.one_of(st.text(max_size=6), st.sampled_from(["$tuple", "$ref", "$float", "$dict", "$", "a"]))
small_arrays = arrays(shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
leaves = st.one_of(python_scalars, numpy_scalars(), small_arrays)
nested = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def columns(draw, n: int) -> pd.Series | Any:
    """One DataFrame column of `n` rows, of a dtype users put in tables."""
    kind = draw(st.sampled_from([
        "int64", "int8", "uint64", "float64", "float32", "float16", "bool", "Int64", "UInt8",
        "Float64", "boolean", "string", "string[python]", "str", "object-str", "category",
        "ordered-category", "datetime64[ns]", "datetime64[s]", "tz", "timedelta64[ns]",
    ]))
    if kind in ("int64", "int8", "uint64", "float64", "float32", "float16", "bool",
                "datetime64[ns]", "datetime64[s]", "timedelta64[ns]"):
        return draw(hnp.arrays(np.dtype(kind), n))
    maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731
    if kind in ("Int64", "UInt8"):
        bounds = (-(2**63), 2**63 - 1) if kind == "Int64" else (0, 255)
        return pd.array(draw(st.lists(maybe(st.integers(*bounds)), min_size=n, max_size=n)), dtype=kind)
    if kind == "Float64":
        return pd.array(draw(st.lists(maybe(st.floats(allow_nan=False)), min_size=n, max_size=n)), dtype=kind)
    if kind == "boolean":
        return pd.array(draw(st.lists(maybe(st.booleans()), min_size=n, max_size=n)), dtype=kind)
    texts = st.lists(maybe(st.text(max_size=5)), min_size=n, max_size=n)
    if kind in ("string", "string[python]"):
        return pd.array(draw(texts), dtype=kind)
    if kind == "str":
        return pd.Series(draw(st.lists(st.text(max_size=5), min_size=n, max_size=n)), dtype="str").array
    if kind == "object-str":
        return pd.Series(draw(texts), dtype=object).array
    if kind.endswith("category"):
        cats = draw(st.lists(st.text(max_size=3), min_size=1, max_size=4, unique=True))
        values = draw(st.lists(maybe(st.sampled_from(cats)), min_size=n, max_size=n))
        return pd.Categorical(values, categories=cats, ordered=kind.startswith("ordered"))
    stamps = draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n))
    tz = draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
    return pd.to_datetime(stamps, unit="ns", utc=True).tz_convert(tz).array


@st.composite
def indexes(draw, n: int) -> pd.Index:
    kind = draw(st.sampled_from(["range", "int", "str", "tz", "multi", "category", "stepped"]))
    name = draw(st.one_of(st.none(), st.text(max_size=4)))
    if kind == "range":
        return pd.RangeIndex(n, name=name)
    if kind == "stepped":
        return pd.RangeIndex(5, 5 + 3 * n, 3, name=name)
    if kind == "int":
        return pd.Index(draw(st.lists(st.integers(-9, 9), min_size=n, max_size=n)), dtype="int64", name=name)
    if kind == "str":
        return pd.Index(draw(st.lists(st.text(max_size=3), min_size=n, max_size=n)), dtype="str", name=name)
    if kind == "category":
        return pd.CategoricalIndex(draw(st.lists(st.sampled_from("xyz"), min_size=n, max_size=n)), name=name)
    if kind == "tz":
        stamps = draw(st.lists(st.integers(0, 2**60), min_size=n, max_size=n))
        return pd.DatetimeIndex(pd.to_datetime(stamps, unit="ns", utc=True), name=name)
    level = st.lists(st.sampled_from(["a", "b"]), min_size=n, max_size=n)
    return pd.MultiIndex.from_arrays([draw(level), list(range(n))], names=[name, "n"])


column_names = st.text(min_size=1, max_size=6).filter(lambda s: not s.startswith("__"))


@st.composite
def data_frames(draw) -> pd.DataFrame:
    n = draw(st.integers(0, 5))
    names = draw(st.lists(column_names, max_size=4, unique=True))
    frame = pd.DataFrame({name: draw(columns(n)) for name in names}, index=draw(indexes(n)))
    if not names and draw(st.booleans()):
        frame = pd.DataFrame(index=frame.index)
    return frame


series_names = st.one_of(
    st.none(), st.text(max_size=4), st.integers(), st.floats(), st.booleans(),
    st.tuples(st.text(max_size=2), st.integers()),
)


@st.composite
def series(draw) -> pd.Series:
    n = draw(st.integers(0, 5))
    return pd.Series(draw(columns(n)), index=draw(indexes(n)), name=draw(series_names))


arrow_types = st.sampled_from([
    pa.int64(), pa.int8(), pa.uint32(), pa.float64(), pa.float32(), pa.bool_(), pa.string(),
    pa.large_string(), pa.binary(), pa.date32(), pa.timestamp("ns", tz="UTC"), pa.timestamp("s"),
    pa.duration("ms"), pa.list_(pa.int32()),
])


@st.composite
def arrow_tables(draw) -> pa.Table:
    n = draw(st.integers(0, 5))
    fields = draw(st.lists(st.tuples(column_names, arrow_types), max_size=4, unique_by=lambda f: f[0]))
    cols = {}
    for name, typ in fields:
        values = draw(st.lists(st.one_of(st.none(), _arrow_values(typ)), min_size=n, max_size=n))
        cols[name] = pa.array(values, type=typ)
    return pa.table(cols) if cols else pa.table({})


def _arrow_values(typ: pa.DataType):
    if pa.types.is_integer(typ):
        return st.integers(0, 100)
    if pa.types.is_floating(typ):
        return st.floats(width=32)
    if pa.types.is_boolean(typ):
        return st.booleans()
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return st.text(max_size=4)
    if pa.types.is_binary(typ):
        return st.binary(max_size=4)
    if pa.types.is_list(typ):
        return st.lists(st.integers(0, 9), max_size=3)
    return st.integers(0, 2_000_000)  # date32 (days, < year 9999), timestamp, duration: counts


# -- the round-trip contract --------------------------------------------------------------
def assert_identical(got: Any, want: Any, path: str = "value") -> None:
    """`got` equals `want` and has the same type, recursively (see the module docstring)."""
    if isinstance(want, np.ndarray):
        return assert_array_identical(got, want, path)
    if isinstance(want, pd.DataFrame):
        assert type(got) is pd.DataFrame, path
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_freq=False,
                                      check_index_type=True, check_column_type="equiv")
        return None
    if isinstance(want, pd.Series):
        assert type(got) is pd.Series, path
        pd.testing.assert_series_equal(got, want, check_exact=True, check_freq=False,
                                       check_index_type=True)
        return assert_identical(got.name, want.name, f"{path}.name")
    if isinstance(want, pa.Table):
        assert type(got) is pa.Table, path
        assert got.schema.equals(want.schema, check_metadata=True), f"{path}: {got.schema}"
        # not Table.equals: it says NaN != NaN; reprs of the rows compare NaN and -0.0 exactly
        assert repr(got.to_pylist()) == repr(want.to_pylist()), f"{path}: {got} != {want}"
        return None
    assert type(got) is type(want), f"{path}: {type(got)} is not {type(want)}"
    if isinstance(want, np.generic):
        return _assert_scalar_identical(got, want, path)
    if isinstance(want, float):
        assert _same_float(got, want), f"{path}: {got!r} != {want!r}"
    elif isinstance(want, complex):
        assert _same_float(got.real, want.real) and _same_float(got.imag, want.imag), path
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_identical(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert sorted(got) == sorted(want), path
        for k in want:
            assert_identical(got[k], want[k], f"{path}[{k!r}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"
    return None


def assert_array_identical(got: Any, want: np.ndarray, path: str = "array") -> None:
    """Same shape, same dtype (little-endian), same bytes (so NaN payloads and -0.0 too)."""
    assert type(got) is np.ndarray, f"{path}: {type(got)}"
    expected_dtype = want.dtype.newbyteorder("<") if want.dtype.byteorder == ">" else want.dtype
    assert got.dtype == expected_dtype, f"{path}: dtype {got.dtype} != {expected_dtype}"
    assert got.shape == want.shape, f"{path}: shape {got.shape} != {want.shape}"
    assert got.flags.c_contiguous, path
    assert got.tobytes() == want.astype(expected_dtype).tobytes(order="C"), f"{path}: bytes differ"


def _assert_scalar_identical(got: np.generic, want: np.generic, path: str) -> None:
    assert got.dtype == want.dtype, f"{path}: {got.dtype} != {want.dtype}"
    if want.dtype.kind == "f":
        assert _same_float(float(got), float(want)), f"{path}: {got!r} != {want!r}"
    elif want.dtype.kind == "c":
        assert _same_float(float(got.real), float(want.real)), path
        assert _same_float(float(got.imag), float(want.imag)), path
    elif want.dtype.kind in "Mm":
        assert got.view("<i8") == want.view("<i8"), f"{path}: {got!r} != {want!r}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def _same_float(got: float, want: float) -> bool:
    """Bit-equal, except that any NaN matches any NaN (JSON normalises NaN payloads)."""
    if math.isnan(want):
        return math.isnan(got)
    return struct.pack("<d", got) == struct.pack("<d", want)
