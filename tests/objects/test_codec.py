"""The canonical codec: every supported value round-trips with its type; the rest is refused.

Round trips go through a real `MemoryObjectStore` (the codec plus child objects), so a
container's arrays and tables are exercised as child objects too.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import pathlib
import re
import struct
import warnings
from collections import OrderedDict, defaultdict

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scistack.errors import UnsupportedValueError
from scistack.objects import MemoryObjectStore
from scistack.objects.codec import encode_value
from scistack.objects.npy import decode_npy, decode_npy_many
from tests.objects.values import (
    ALL_DTYPES,
    arrays,
    arrow_tables,
    assert_array_identical,
    assert_identical,
    data_frames,
    nested,
    numpy_scalars,
    oid_of,
    python_scalars,
    roundtrip,
    series,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def payload_of(value) -> tuple[str, bytes]:
    kind, parts = encode_value(value, MemoryObjectStore().put)
    return kind, b"".join(bytes(p) for p in parts)


# -- round trips --------------------------------------------------------------------------
@PROPERTY
@given(arrays())
def test_arrays_roundtrip(arr):
    assert_array_identical(roundtrip(arr), arr)


@PROPERTY
@given(numpy_scalars())
def test_numpy_scalars_roundtrip(x):
    assert_identical(roundtrip(x), x)


@PROPERTY
@given(python_scalars)
def test_python_scalars_roundtrip(x):
    assert_identical(roundtrip(x), x)


@PROPERTY
@given(nested)
def test_nested_containers_roundtrip(value):
    assert_identical(roundtrip(value), value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data_frames())
def test_dataframes_roundtrip(frame):
    assert_identical(roundtrip(frame), frame)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series())
def test_series_roundtrip(s):
    assert_identical(roundtrip(s), s)


@settings(max_examples=60, deadline=None)
@given(arrow_tables())
def test_arrow_tables_roundtrip(table):
    assert_identical(roundtrip(table), table)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_every_dtype_in_every_rank(dtype):
    base = np.arange(24).astype(dtype)
    for shape in [(), (0,), (24,), (4, 6), (2, 3, 4), (1, 2, 1, 3, 4), (3, 0, 2)]:
        arr = np.zeros(shape, dtype) if 0 in shape else base[: int(np.prod(shape))].reshape(shape)
        assert_array_identical(roundtrip(arr), arr)


@PROPERTY
@given(st.lists(arrays(), min_size=1, max_size=5), st.integers(0, 3))
def test_many_npy_payloads_decode_as_each_alone(arrs, cut):
    """`decode_npy_many` (a `load_all` of arrays) gives each payload what `decode_npy` gives:
    dtype, shape, bytes, a view not written through. Payloads of one header are read as rows
    of one array; a payload it cannot read so (cut short here, Fortran-ordered) is None, left
    to `decode_npy`, which names what is wrong."""
    payloads = [payload for kind, payload in map(payload_of, arrs * 2) if kind == "npy"]
    if payloads and cut:  # a payload cut short: its header promises more bytes
        payloads.append(payloads[0][:-cut])
    if payloads:  # the same header as Fortran order (its length kept)
        payloads.append(payloads[0].replace(b"'fortran_order': False", b"'fortran_order': True "))
    for payload, got in zip(payloads, decode_npy_many(payloads)):
        try:
            alone = decode_npy(payload)
        except Exception:  # noqa: BLE001 - whatever it raises, the store names the object
            assert got is None
            continue
        if b"'fortran_order': True" in payload[:128] and alone.ndim > 1:
            assert got is None  # (left to `decode_npy`)
            continue
        assert got is not None
        assert_array_identical(got, alone)
        assert not got.flags.writeable


def test_decoded_arrays_are_writable_plain_ndarrays():
    out = roundtrip(np.arange(3.0))
    assert type(out) is np.ndarray and out.flags.writeable
    out[0] = 7  # no error: the caller owns the array


def test_nested_value_stores_arrays_and_tables_as_children():
    store = MemoryObjectStore()
    arr, frame = np.arange(5), pd.DataFrame({"a": [1, 2]})
    value = {"arr": arr, "frames": (frame, [arr]), "n": 1}
    oid = store.put_value(value)
    assert set(store.iter_oids()) == {oid, oid_of(arr), oid_of(frame)}
    assert store.get(oid).kind == "json"
    assert oid_of(arr).encode() in bytes(store.get(oid).payload)  # a {"$ref": oid} to the child
    assert_identical(store.get_value(oid), value)


# -- one logical array, one oid -----------------------------------------------------------
@PROPERTY
@given(arrays())
def test_layout_and_byte_order_never_change_the_oid(arr):
    canonical = arr.astype(arr.dtype.newbyteorder("<"), order="C")
    variants = [arr, canonical, arr.copy(order="F"), arr.astype(arr.dtype.newbyteorder(">"))]
    if arr.ndim:
        variants.append(np.repeat(arr, 3, axis=0)[::3])  # strided view
        variants.append(np.flip(np.flip(arr, axis=-1).copy(), axis=-1))  # negative strides
        variants.append(np.broadcast_to(arr, arr.shape))  # read-only view
    oids = {oid_of(v) for v in variants}
    assert oids == {oid_of(canonical)}


def test_oid_distinguishes_dtype_shape_and_kind():
    a = np.arange(6, dtype="<i4")
    oids = {oid_of(a), oid_of(a.astype("<i8")), oid_of(a.reshape(2, 3)), oid_of(a.reshape(3, 2)),
            oid_of(a.tolist()), oid_of(tuple(a.tolist())), oid_of(a.tobytes())}
    assert len(oids) == 7
    assert len({oid_of(1), oid_of(True), oid_of("1"), oid_of(b"1"), oid_of(1.0), oid_of(np.int64(1))}) == 6


def test_npy_header_is_the_canonical_spelling():
    kind, payload = payload_of(np.asfortranarray(np.zeros((2, 3), dtype=">f4")))
    assert kind == "npy"
    header = payload[: 10 + struct.unpack("<H", payload[8:10])[0]]
    assert header.startswith(b"\x93NUMPY\x01\x00")
    assert b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" in header
    assert len(header) % 64 == 0 and header.endswith(b"\n")
    assert payload_of(np.array(1.5))[1][10:].startswith(b"{'descr': '<f8', 'fortran_order': False, 'shape': (), }")
    assert b"'shape': (5,)" in payload_of(np.zeros(5))[1]


# -- NaN, -0.0 and friends ----------------------------------------------------------------
NAN_BITS = [0x7FF8000000000000, 0x7FF8000000000001, 0xFFF8000000000000, 0x7FF0000000000001]


def test_nan_payload_policy():
    """NaN payloads: kept in arrays, normalised in JSON.

    An `npy` payload stores the array's bytes, so every float64 NaN keeps its exact bit
    pattern (quiet, signalling, negative, with payload) and different NaN patterns get
    different oids. In canonical JSON a NaN float or numpy float scalar is written as
    `{"$float":"nan"}`: all NaN payloads (and the sign of NaN) collapse to one value and
    one oid, and decode to Python's canonical NaN. -0.0 is preserved in both.
    """
    nans = [struct.unpack("<d", struct.pack("<Q", bits))[0] for bits in NAN_BITS]
    arrays_ = [np.array([x, -0.0]) for x in nans]
    for arr, bits in zip(arrays_, NAN_BITS):
        out = roundtrip(arr)
        assert out[:1].view("<u8")[0] == bits
        assert out[1:].view("<u8")[0] == 0x8000000000000000
    assert len({oid_of(a) for a in arrays_}) == len(NAN_BITS)

    assert {payload_of(x)[1] for x in nans} == {b'{"$float":"nan"}'}
    assert len({oid_of(x) for x in nans}) == 1
    assert payload_of(np.float32(nans[1]))[1] == b'{"$np":["<f4",{"$float":"nan"}]}'
    assert payload_of(-0.0)[1] == b"-0.0" and payload_of(0.0)[1] == b"0.0"
    assert str(roundtrip(-0.0)) == "-0.0"
    assert payload_of([float("inf"), -float("inf")])[1] == b'[{"$float":"inf"},{"$float":"-inf"}]'


def test_json_spellings_follow_the_format_doc():
    assert payload_of({"b": 1, "a": [None, True, 1.0, 1e16]})[1] == b'{"a":[null,true,1.0,1e+16],"b":1}'
    assert payload_of((1, "\u00e9"))[1] == b'{"$tuple":[1,"\\u00e9"]}'
    assert payload_of([b"\x00\xff"])[1] == b'[{"$bytes":"AP8="}]'
    assert payload_of(1 + 2j)[1] == b'{"$complex":[1.0,2.0]}'
    assert payload_of({"$ref": "x", "b": 2})[1] == b'{"$dict":[["$ref","x"],["b",2]]}'
    assert payload_of(2**100)[1] == str(2**100).encode()
    assert payload_of(np.datetime64("NaT", "ns"))[1] == b'{"$np":["<M8[ns]",-9223372036854775808]}'
    assert payload_of(np.float16(0.1))[1] == b'{"$np":["<f2",0.0999755859375]}'
    assert payload_of(np.timedelta64(3, "s"))[1] == b'{"$np":["<m8[s]",3]}'
    assert payload_of(b"raw") == ("bytes", b"raw")


def test_user_dicts_cannot_forge_tags():
    forged = {"$ref": "0" * 64}
    assert roundtrip(forged) == forged
    assert roundtrip({"$tuple": [1]}) == {"$tuple": [1]}
    assert type(roundtrip({"$float": "nan"})["$float"]) is str


def test_float16_and_datetime_scalars_in_containers():
    value = {"h": np.float16(65504), "tiny": np.float16(6e-08), "t": np.datetime64("2024-02-29T12:00", "ns"),
             "nat": np.datetime64("NaT"), "d": np.timedelta64(-5, "D"), "generic": np.datetime64("2020", "Y")}
    assert_identical(roundtrip(value), value)


# -- pandas and Arrow specifics -----------------------------------------------------------
def frame_cases():
    idx = pd.date_range("2024-03-30", periods=3, freq="h", tz="Europe/Berlin")
    yield "pandas3-str", pd.DataFrame({"s": ["a", None, "c"]})
    yield "string-na", pd.DataFrame({"s": pd.array(["a", None, "c"], dtype="string")})
    yield "string-python", pd.DataFrame({"s": pd.array(["a", None], dtype="string[python]")})
    yield "arrow-string", pd.DataFrame({"s": pd.array(["a", None], dtype=pd.ArrowDtype(pa.string()))})
    yield "object-str", pd.DataFrame({"s": pd.Series(["a", None, "é"], dtype=object)})
    yield "object-bytes", pd.DataFrame({"b": pd.Series([b"a", None], dtype=object)})
    yield "nullable", pd.DataFrame({"i": pd.array([1, None, 3], dtype="Int64"),
                                    "u": pd.array([None, 2, 3], dtype="UInt16"),
                                    "b": pd.array([True, None, False], dtype="boolean"),
                                    "f": pd.array([1.5, None, -0.0], dtype="Float32")})
    yield "categorical", pd.DataFrame({"c": pd.Categorical(["lo", None, "hi"], categories=["lo", "hi"], ordered=True),
                                       "n": pd.Categorical([3, 1, 3])})
    yield "tz-columns", pd.DataFrame({"t": idx, "utc": idx.tz_convert("UTC"), "naive": idx.tz_localize(None)})
    yield "tz-index", pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.DatetimeIndex(idx, freq=None, name="time"))
    yield "multiindex-rows", pd.DataFrame({"x": [1, 2, 3]}, index=pd.MultiIndex.from_tuples(
        [("a", 1), ("a", 2), ("b", 1)], names=["subject", "trial"]))
    yield "multiindex-columns", pd.DataFrame([[1, 2.0]], columns=pd.MultiIndex.from_tuples([("emg", "raw"), ("emg", "f")]))
    yield "empty", pd.DataFrame()
    yield "empty-columns", pd.DataFrame({"a": pd.Series([], dtype="float64"), "s": pd.Series([], dtype="str")})
    yield "empty-rows-index", pd.DataFrame(index=pd.Index([3, 1], name="k"))
    yield "int-column-labels", pd.DataFrame({0: [1.0], 5: [2.0]})
    yield "float-column-labels", pd.DataFrame({0.5: [1.0], 1.5: [2.0]})
    yield "timestamp-column-labels", pd.DataFrame({pd.Timestamp("2020-01-01"): [1]})
    yield "named-column-index", pd.DataFrame({"a": [1]}).rename_axis("channel", axis=1)
    yield "stepped-range-index", pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(10, 14, 2))
    yield "big-endian-column", pd.DataFrame({"a": np.arange(3, dtype=">f8")})
    yield "float16", pd.DataFrame({"h": np.array([1, np.nan, -0.0], dtype="float16")})
    yield "dates", pd.DataFrame({"d": [datetime.date(2020, 1, 1), None]})
    yield "attrs", pd.DataFrame({"a": [1]}).pipe(lambda d: d.attrs.update(units="mV") or d)
    yield "duplicate-index", pd.DataFrame({"a": [1, 2]}, index=[0, 0])


@pytest.mark.parametrize("name,frame", list(frame_cases()), ids=[n for n, _ in frame_cases()])
def test_dataframe_cases_roundtrip(name, frame):
    out = roundtrip(frame)
    if name == "big-endian-column":  # byte-swapped, as arrays are
        frame = frame.astype({"a": "<f8"})
    assert_identical(out, frame)


def test_datetime_index_freq_is_dropped_but_values_kept():
    """Arrow has no place for a DatetimeIndex `freq`: it is not part of the value's identity."""
    with_freq = pd.Series([1, 2], index=pd.date_range("2020", periods=2, tz="UTC"))
    without = pd.Series([1, 2], index=pd.DatetimeIndex(with_freq.index, freq=None))
    assert oid_of(with_freq) == oid_of(without)
    assert_identical(roundtrip(with_freq), without)


def extension_index_levels():
    yield "Int64", pd.array([9007199254740993, None, 9007199254740995], dtype="Int64")  # above 2**53
    yield "UInt8", pd.array([1, None, 3], dtype="UInt8")
    yield "boolean", pd.array([True, None, False], dtype="boolean")
    yield "Float64", pd.array([1.5, None, -0.0], dtype="Float64")
    yield "Float32", pd.array([1.5, None, 2.5], dtype="Float32")
    yield "string", pd.array(["a", None, "b"], dtype="string")
    yield "string-python", pd.array(["a", None, "b"], dtype="string[python]")
    yield "arrow-string", pd.array(["a", None, "b"], dtype=pd.ArrowDtype(pa.string()))
    yield "arrow-int64", pd.array([1, None, 3], dtype="int64[pyarrow]")
    yield "object-str", pd.Index(["a", None, "b"], dtype=object)


@pytest.mark.parametrize("name,level", list(extension_index_levels()), ids=[n for n, _ in extension_index_levels()])
def test_an_index_of_an_extension_dtype_keeps_it(name, level):
    """pyarrow rebuilds an index level from its Arrow type only, not the dtype pandas'
    metadata names (as it does for columns): an Int64 index came back float64, its ids above
    2**53 rounded to their neighbours' (`.loc[id]` gave another row), NA as NaN; a boolean
    one object, Float64 float64, `string` str. Each level keeps its dtype and exact values,
    in a single index, a MultiIndex, and a Series' index; the stored bytes are as before."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.Index(level, name="id"))
    multi = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.MultiIndex.from_arrays(
        [[3, 1, 2], pd.Index(level)], names=["trial", None]))
    series = pd.Series([1, 2, 3], index=pd.Index(level), name="s")
    for value in (frame, multi, series):
        out = roundtrip(value)
        assert_identical(out, value)
        pd.testing.assert_index_equal(out.index.get_level_values(-1), value.index.get_level_values(-1), exact=True)
    assert oid_of(frame) == oid_of(roundtrip(frame))


@pytest.mark.parametrize("name", [None, "emg", 3, 2.5, float("nan"), True, ("a", 1), np.int64(4), "__series__"])
def test_series_names_keep_their_type(name):
    s = pd.Series([1.0, 2.0], index=pd.Index(["x", "y"], name="k"), name=name)
    assert_identical(roundtrip(s), s)


def test_string_storage_variants_are_different_values():
    # pandas considers these dtypes different, so they are stored (and decoded) apart.
    frames = [pd.DataFrame({"s": pd.Series(["a"], dtype=d)}) for d in ("str", "string", "string[python]", object)]
    assert [str(f["s"].dtype) for f in frames] == ["str", "string", "string", "object"]
    assert len({oid_of(f) for f in frames}) == len(frames)


def test_equal_tables_built_differently_have_one_oid():
    one = pa.table({"a": [1, None, 3], "s": ["x", None, "zz"], "b": [True, None, False]})
    chunked = pa.Table.from_batches([one.slice(0, 1).to_batches()[0], one.slice(1).to_batches()[0]])
    wide = pa.table({"a": [7, 1, None, 3, 9], "s": ["q", "x", None, "zz", "r"], "b": [True, True, None, False, True]})
    stale = pa.Array.from_buffers(pa.int64(), 3, [pa.array([True, False, True]).buffers()[1],
                                                  pa.py_buffer(np.array([1, 99, 3]).tobytes())])
    reordered = pa.table({"s": one["s"], "b": one["b"], "a": one["a"]}).select(["a", "s", "b"])
    variants = [chunked, wide.slice(1, 3), one.set_column(0, "a", stale), reordered]
    assert {oid_of(t) for t in variants} == {oid_of(one)}

    stale_na = pd.array([1, 5, 3], dtype="Int64")
    stale_na[1] = pd.NA  # pandas keeps the 5 under the mask
    fresh = pd.DataFrame({"i": pd.array([1, None, 3], dtype="Int64")})
    assert oid_of(pd.DataFrame({"i": stale_na})) == oid_of(fresh)
    frame = pd.DataFrame({"a": np.arange(6.0), "s": list("abcdef")})
    assert oid_of(frame.iloc[2:5].reset_index(drop=True)) == oid_of(
        pd.DataFrame({"a": [2.0, 3.0, 4.0], "s": list("cde")}))


def test_table_metadata_has_no_library_versions():
    _, payload = payload_of(pd.DataFrame({"a": [1]}))
    assert b"pandas_version" not in payload and b"creator" not in payload
    assert pa.__version__.encode() not in payload


# -- refused values -----------------------------------------------------------------------
class Point:
    pass


class Color(enum.Enum):
    RED = 1


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    MATRIX = np.asmatrix(np.eye(1))

UNSUPPORTED = [
    (Point(), "Point"),
    (lambda x: x, "function"),
    ({1, 2}, "set"),
    (frozenset(), "frozenset"),
    (bytearray(b"x"), "bytearray"),
    (memoryview(b"x"), "memoryview"),
    ({1: "a"}, "int"),
    ({("a", 1): 2}, "tuple"),
    ([1, {2.5: 3}], "float"),
    (OrderedDict(a=1), "OrderedDict"),
    (defaultdict(list), "defaultdict"),
    (Color.RED, "Color"),
    (decimal.Decimal("1.5"), "Decimal"),
    (datetime.datetime(2020, 1, 1), "datetime"),
    (pathlib.Path("x"), "Path"),
    (np.array([1, "a"], dtype=object), "object"),
    (np.zeros(2, dtype=[("x", "<f8"), ("y", "<i4")]), "('y', '<i4')"),
    (np.zeros(2, dtype="V4"), "V4"),
    (np.zeros(2, dtype=np.longdouble), "long double"),
    (np.longdouble(1), "longdouble"),
    (np.void(b"ab"), "void"),
    (np.ma.array([1, 2], mask=[0, 1]), "MaskedArray cannot be stored: its mask would be lost"),
    (MATRIX, "np.matrix cannot be stored: it would load as an ndarray"),
    (pd.Index([1, 2]), "Index"),
    (pd.DataFrame({"a": [1], 0: [2]}), "column labels mix types"),
    (pd.DataFrame({"a": [1]}, index=pd.Index([1], name=3)), "int"),
    (pd.DataFrame({"a": [1]}, index=pd.MultiIndex.from_tuples([("x", 1)], names=["k", 2])), "int"),
    (pd.DataFrame({"a": [[1, 2], [3]]}), "list"),
    (pd.DataFrame({"a": [{"x": 1}]}), "struct"),
    (pd.DataFrame({"a": [1, "x"]}), "DataFrame"),
    (pd.DataFrame({"a": [decimal.Decimal("1.10")]}), "decimal"),
    (pd.DataFrame({"c": np.array([1 + 2j])}), "complex numbers"),  # (the fix: `.real`, `.imag`)
    (pd.Series([1j]), ".real"),
    (pd.DataFrame([[1, 2]], columns=["a", "a"]), "appear twice (a)"),
    (pd.DataFrame({"a": pd.arrays.SparseArray([0, 1])}), "Sparse"),
    (pd.Series([1], name=Color.RED), "Color"),
    (pa.record_batch({"a": [1]}), "RecordBatch"),
    ([np.array([None], dtype=object)], "object"),
    ({"deep": [[(Point(),)]]}, "Point"),
]


@pytest.mark.parametrize("value,named", UNSUPPORTED, ids=[n for _, n in UNSUPPORTED])
def test_unsupported_values_are_refused_with_their_type_named(value, named):
    store = MemoryObjectStore()
    with pytest.raises(UnsupportedValueError) as info:
        store.put_value(value)
    assert isinstance(info.value, TypeError)
    assert named in str(info.value)
    way_out = ("convert", "use ", "save", "store", "rename", "give")
    assert any(word in str(info.value).lower() for word in way_out), str(info.value)


def test_cyclic_values_are_refused():
    cyclic: list = [1]
    cyclic.append(cyclic)
    with pytest.raises(UnsupportedValueError, match="contains itself"):
        MemoryObjectStore().put_value(cyclic)


def test_no_pickle_anywhere_in_the_object_layer():
    import scistack.objects as objects

    forbidden = re.compile(r"import (c?pickle|dill|cloudpickle|joblib)|pickle\.|allow_pickle\s*=\s*True")
    for source in pathlib.Path(objects.__file__).parent.glob("*.py"):
        assert not forbidden.search(source.read_text()), source.name


@given(st.lists(st.text(), max_size=3))
def test_str_subclasses_and_int_subclasses_are_not_silently_coerced(words):
    class Name(str):
        pass

    with pytest.raises(UnsupportedValueError, match="Name"):
        MemoryObjectStore().put_value([Name(w) for w in words] + [Name("x")])
