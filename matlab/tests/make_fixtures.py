"""Build a scistack fixture project for the MATLAB/Octave client, following docs/format.md.

Uses only numpy, blake3 and zstandard (not the scistack package), so the MATLAB client is
tested against the written contract rather than against one implementation of it.

    python make_fixtures.py <dir>              build the fixture project in <dir>

(The values MATLAB saves are ingested by the real `scistack ingest`; pyproject.py builds a
project with the scistack package itself: packs, for_each lineage.)

Layout of the fixture project (schema keys: subject, session):

    <dir>/.scistack/config.json, objects/, refs.log      the project
    <dir>/expected/npy_cases.json + npy/<case>.bin       what each NpyCase must decode to
                                                         (MATLAB class, size, column-major bytes)
    <dir>/expected/encode/npy_<name>.bin, json_<name>.json   canonical payloads that
                                                         scistack.encode_npy / encode_json must
                                                         reproduce byte for byte
    <dir>/expected/floats.bin + floats.txt               doubles and their Python repr
    <dir>/expected/oids.json                             oids the tests need to know
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
import struct
import sys
from pathlib import Path

import blake3
import numpy as np
import zstandard

SCHEMA_KEYS = ["subject", "session"]
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
NPY_MAGIC = b"\x93NUMPY\x01\x00"

# --------------------------------------------------------------------------------------
# objects (format.md §1)


def canonical(tree) -> bytes:
    """Canonical JSON text of an already-tagged tree (format.md §1.2)."""
    return json.dumps(
        tree, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def oid_of(kind: str, payload: bytes) -> str:
    header = f"{kind} {len(payload)}".encode("ascii") + b"\0"
    return blake3.blake3(header + payload).hexdigest()


def put_object(root: Path, kind: str, payload: bytes, compress: bool | None = None) -> str:
    """Write one object; compress=None compresses when it saves >= 10 %."""
    payload = bytes(payload)
    oid = oid_of(kind, payload)
    raw = f"{kind} {len(payload)}".encode("ascii") + b"\0" + payload
    packed = zstandard.ZstdCompressor(level=3).compress(raw)
    if compress is None:
        compress = len(packed) <= 0.9 * len(raw)
    data = packed if compress else raw
    path = root / ".scistack" / "objects" / oid[:2] / oid[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(0o644)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    path.chmod(0o444)
    return oid


def put_raw_file(root: Path, oid: str, data: bytes) -> None:
    """Write arbitrary bytes under an oid's path (for corrupt-object fixtures)."""
    path = root / ".scistack" / "objects" / oid[:2] / oid[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --------------------------------------------------------------------------------------
# npy (format.md §1.1)


def descr_of(dtype: np.dtype) -> str:
    text = dtype.str
    return "<" + text[1:] if text[0] in "=>" else text


def npy_payload(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, order="C")  # not ascontiguousarray: it turns shape () into (1,)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    shape = arr.shape
    shape_text = "(%d,)" % shape[0] if len(shape) == 1 else repr(tuple(int(n) for n in shape))
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr_of(arr.dtype), shape_text)
    pad = -(len(NPY_MAGIC) + 2 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin-1")
    return NPY_MAGIC + struct.pack("<H", len(body)) + body + arr.tobytes(order="C")


def decode_npy(payload: bytes) -> np.ndarray:
    import io

    return np.load(io.BytesIO(payload), allow_pickle=False)


# --------------------------------------------------------------------------------------
# canonical JSON values (format.md §1.2)


def _float(x: float):
    if math.isfinite(x):
        return x
    return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def _np_scalar(x: np.generic):
    descr = descr_of(x.dtype)
    k = x.dtype.kind
    if k == "b":
        return [descr, bool(x)]
    if k in "iu":
        return [descr, int(x)]
    if k == "f":
        return [descr, _float(float(x))]
    if k == "c":
        return [descr, [_float(float(x.real)), _float(float(x.imag))]]
    if k in "Mm":
        return [descr, int(np.array(x).view("<i8"))]
    if k == "U":
        return [descr, str(x)]
    if k == "S":
        return [descr, base64.b64encode(bytes(x)).decode("ascii")]
    raise TypeError(x)


def to_tree(value, put_child):
    if value is None or value is True or value is False:
        return value
    if isinstance(value, np.ndarray):
        return {"$ref": put_child(value)}
    if isinstance(value, np.generic):
        return {"$np": _np_scalar(value)}
    t = type(value)
    if t is int or t is str:
        return value
    if t is float:
        return _float(value)
    if t is complex:
        return {"$complex": [_float(value.real), _float(value.imag)]}
    if t is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if t is list:
        return [to_tree(v, put_child) for v in value]
    if t is tuple:
        return {"$tuple": [to_tree(v, put_child) for v in value]}
    if t is dict:
        if any(k.startswith("$") for k in value):
            return {"$dict": [[k, to_tree(v, put_child)] for k, v in sorted(value.items())]}
        return {k: to_tree(v, put_child) for k, v in value.items()}
    raise TypeError(f"no canonical form for {t}")


def json_payload(value, put_child=None) -> bytes:
    def refuse(_):
        raise TypeError("arrays inside containers need put_child")

    return canonical(to_tree(value, put_child or refuse))


def put_value(root: Path, value, compress: bool | None = None) -> tuple[str, str]:
    """(kind, oid) of `value` stored as Python scistack would (top-level arrays are npy)."""
    if isinstance(value, np.ndarray):
        return "npy", put_object(root, "npy", npy_payload(value), compress)
    if type(value) is bytes:
        return "bytes", put_object(root, "bytes", value, compress)

    def child(arr):
        return put_object(root, "npy", npy_payload(arr), compress)

    return "json", put_object(root, "json", json_payload(value, child), compress)


# --------------------------------------------------------------------------------------
# the journal (format.md §2)

_T0 = _dt.datetime(2026, 11, 21, 6, 0, 0, tzinfo=_dt.timezone.utc)


class Journal:
    def __init__(self, root: Path):
        self.path = root / ".scistack" / "refs.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lines: list[bytes] = []
        self.tick = 0

    def _t(self) -> str:
        self.tick += 1
        t = _T0 + _dt.timedelta(seconds=self.tick, microseconds=self.tick * 7)
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def put(self, var, addr, oid, kind, version, vkeys=None, params=None, call=None):
        rec = {
            "op": "put", "var": var, "addr": addr, "vkeys": vkeys or {}, "version": version,
            "oid": oid, "kind": kind, "call": call, "params": params or {},
            "summary": kind, "t": self._t(),
        }
        self.lines.append(canonical(rec) + b"\n")
        return rec

    def delete(self, var, addr, version):
        rec = {"op": "del", "var": var, "addr": addr, "version": version, "t": self._t()}
        self.lines.append(canonical(rec) + b"\n")

    def other(self, rec):
        rec = dict(rec, t=self._t())
        self.lines.append(canonical(rec) + b"\n")

    def raw(self, text: bytes):
        self.lines.append(text)

    def write(self):
        self.path.write_bytes(b"".join(self.lines))


# --------------------------------------------------------------------------------------
# expected values for the MATLAB side


def matlab_size(shape: tuple[int, ...]) -> list[int]:
    """The MATLAB size an npy shape decodes to: () -> 1x1, (n,) -> n x 1, trailing 1s dropped."""
    if len(shape) == 0:
        return [1, 1]
    if len(shape) == 1:
        return [shape[0], 1]
    size = list(shape)
    while len(size) > 2 and size[-1] == 1:
        size.pop()
    return size


def matlab_class(dtype: np.dtype) -> str:
    k, n = dtype.kind, dtype.itemsize
    if k == "b":
        return "logical"
    if k == "f":
        return "double" if n == 8 else "single"
    if k == "c":
        return "double" if n == 16 else "single"
    if k in "iu":
        return ("int" if k == "i" else "uint") + str(8 * n)
    if k in "Mm":
        return "int64"
    raise TypeError(dtype)


def column_major_bytes(arr: np.ndarray) -> bytes:
    """The bytes of MATLAB's x(:) for the decoded array (float16 widened to float32)."""
    if arr.dtype.kind == "f" and arr.dtype.itemsize == 2:
        arr = arr.astype("<f4")
    if arr.dtype.kind in "Mm":
        arr = arr.view("<i8")
    if arr.dtype.kind == "b":
        arr = arr.astype("u1")
    return np.asarray(arr).reshape(-1, order="F").astype(arr.dtype.newbyteorder("<")).tobytes()


def npy_cases() -> dict[str, np.ndarray]:
    cases: dict[str, np.ndarray] = {}
    shapes = {"0d": (), "1d": (5,), "2d": (2, 3), "3d": (2, 3, 4)}
    ints = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]
    for code in ints + ["f2", "f4", "f8", "c8", "c16", "b1"]:
        dt = np.dtype(code)
        for sname, shape in shapes.items():
            n = int(np.prod(shape)) if shape else 1
            base = np.arange(n)
            if dt.kind in "iu":
                info = np.iinfo(dt)
                vals = (base * 37 + 3) % 120
                arr = vals.astype(dt)
                if n >= 5:
                    arr[1] = info.max
                    arr[2] = info.min
            elif dt.kind == "f":
                arr = (base * 1.25 - 3.5).astype(dt)
                if n >= 5:
                    arr[1] = np.nan
                    arr[2] = np.inf
                    arr[3] = -np.inf
                    arr[4] = -0.0
                if code == "f2" and n >= 8:
                    arr[5] = np.float16(6e-8)  # subnormal
                    arr[6] = np.float16(65504)  # max
                    arr[7] = np.float16(-2.0**-14)  # smallest normal
            elif dt.kind == "c":
                arr = (base * 1.5 - 2).astype(dt) + 1j * (base * -0.5 + 1).astype(dt)
                arr = arr.astype(dt)
                if n >= 3:
                    arr[2] = complex(np.nan, -np.inf)
            else:
                arr = (base % 3 == 0)
            cases[f"{code}_{sname}"] = np.array(arr).reshape(shape)
    f8 = np.dtype("f8")
    for sname, shape in {
        "empty_1d": (0,), "empty_0x3": (0, 3), "empty_2x0": (2, 0), "empty_3x0x2": (3, 0, 2),
        "row_1x5": (1, 5), "col_5x1": (5, 1), "one_1d": (1,), "one_1x1": (1, 1),
        "shape_2x1x3": (2, 1, 3), "shape_2x3x1": (2, 3, 1), "shape_4d": (2, 3, 2, 2),
        "shape_1x1x3": (1, 1, 3), "big_1d": (1000,),
    }.items():
        n = int(np.prod(shape))
        cases[f"f8_{sname}"] = (np.arange(n, dtype=f8) * 0.5 + 1).reshape(shape)
    cases["f8_fortran_2x3"] = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    cases["f8_bigendian_2x2"] = np.arange(4.0).reshape(2, 2).astype(">f8")
    cases["i4_noncontig_2x3"] = np.arange(24, dtype="i4").reshape(4, 6)[::2, ::2]
    cases["M8_D_1d"] = np.array(["2020-01-01", "NaT", "1969-12-31"], dtype="M8[D]")
    cases["m8_s_2d"] = np.array([[1, -5], [3, 0]], dtype="m8[s]")
    cases["M8_ns_0d"] = np.array("2026-11-21T06:03:36.123456789", dtype="M8[ns]")
    return cases


STRING_CASES = {
    "U_0d": np.array("hello"),
    "U_empty_0d": np.array(""),
    "U_1d": np.array(["a", "bcd", ""]),
    "U_2d": np.array([["\u00e9", "\u65e5\u672c"], ["\U0001F600x", "plain"]]),
    "S_0d": np.array(b"abc"),
    "S_1d": np.array([b"ab", b"c"]),
}


def json_cases() -> dict:
    return {
        "int": 42,
        "neg_int": -7,
        "zero_int": 0,
        "int_2p53p1": 2**53 + 1,
        "int64_max": 2**63 - 1,
        "int64_min": -(2**63),
        "uint64_max": 2**64 - 1,
        "float": 3.14159,
        "float_int": 2.0,
        "float_tiny": 5e-324,
        "float_big": 1e300,
        "float_exp": 1e16,
        "neg_zero": -0.0,
        "nan": float("nan"),
        "inf": float("inf"),
        "ninf": float("-inf"),
        "str": 'hello "world"\n\\ tab\t/',
        "unicode": "\u00e9\u65e5\u672c\U0001F600",
        "empty_str": "",
        "none": None,
        "true": True,
        "false": False,
        "list": [1, 2.5, "a", None, True],
        "empty_list": [],
        "nested_list": [[1, 2], [3, [4.5]]],
        "tuple": (1, "x"),
        "dict": {"a": 1, "b": [1, 2], "c": {"d": "e"}},
        "dict_badkeys": {"my key": 1, "x.y": 2, "_under": 3},
        "dollar_dict": {"$a": 1, "b": 2},
        "empty_dict": {},
        "bytes_inline": {"b": b"\x00\x01\xffabc"},
        "complex": 1.5 - 2j,
        "np_scalars": {
            "f4": np.float32(0.1), "i2": np.int16(-3), "u8": np.uint64(2**64 - 1),
            "b": np.bool_(True), "c8": np.complex64(1 + 2j), "dt": np.datetime64("2020-01-01", "D"),
            "u": np.str_("h\u00e9"), "s": np.bytes_(b"ab"), "f2": np.float16(0.5),
            "f8nan": np.float64("nan"), "i8": np.int64(-(2**63)),
        },
        "nested": {
            "arr": np.arange(6.0).reshape(2, 3),
            "list": [np.array([1, 2, 3], dtype="i4"), {"deep": np.arange(8.0).reshape(2, 2, 2)}],
            "name": "x",
        },
    }


# Values that scistack.encode_npy / encode_json must reproduce; the MATLAB side builds the same
# values in test_encode.m under the same names.
def encode_npy_cases() -> dict[str, np.ndarray]:
    return {
        "scalar_double": np.array(3.5),
        "row_double": np.array([[1.0, 2.0, 3.0]]),
        "col_double": np.array([1.0, 2.0, 3.0]),
        "matrix_double": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        "cube_double": np.arange(24.0).reshape(2, 3, 4),
        "empty_0x0": np.zeros((0, 0)),
        "empty_0x1": np.zeros((0,)),
        "empty_1x0": np.zeros((1, 0)),
        "single_matrix": np.array([[1.5, -2.0], [0.25, 8.0]], dtype="<f4"),
        "int8_col": np.array([-128, 0, 127], dtype="i1"),
        "uint8_row": np.array([[0, 1, 255]], dtype="u1"),
        "int16_matrix": np.array([[-32768, 2], [3, 32767]], dtype="<i2"),
        "uint16_col": np.array([0, 65535], dtype="<u2"),
        "int32_cube": np.arange(-6, 6, dtype="<i4").reshape(2, 3, 2),
        "uint32_col": np.array([0, 4294967295], dtype="<u4"),
        "int64_col": np.array([-(2**63), 2**63 - 1, 0], dtype="<i8"),
        "uint64_col": np.array([0, 2**64 - 1], dtype="<u8"),
        "logical_matrix": np.array([[True, False], [False, True], [True, True]]),
        "complex_col": np.array([1 + 2j, -3.5 - 0j, 0 + 1j]),
        "complex_single_row": np.array([[1 + 2j, 3 - 4j]], dtype="<c8"),
        "special_col": np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324]),
        "char_row": np.array("hello"),
        "char_empty": np.array(""),
        "cellstr_col": np.array(["a", "bcd", ""]),
        "cellstr_matrix": np.array([["x", "yy"], ["zzz", "\u00e9"]]),
        "long_shape": np.zeros((1, 1, 1, 1, 1, 1, 2, 3)),
    }


def encode_json_cases() -> dict:
    """Python values whose canonical JSON a MATLAB value must reproduce (see test_encode.m)."""
    return {
        "double": 3.5,
        "double_int": 2.0,
        "double_big": 1e16,
        "double_small": 1e-05,
        "double_third": 1 / 3,
        "double_neg_zero": -0.0,
        "double_nan": float("nan"),
        "double_inf": float("inf"),
        "double_ninf": float("-inf"),
        "complex": 1.5 - 2j,
        "int32": 7,
        "int64_min": -(2**63),
        "uint64_max": 2**64 - 1,
        "true": True,
        "false": False,
        "char": 'quote" back\\ nl\n tab\t ctl\x01 del\x7f',
        "unicode": "\u00e9\u65e5\U0001F600",
        "empty_char": "",
        "none": None,
        "cell": [1.0, "a", True, None],
        "empty_cell": [],
        "struct": {"zeta": 1.0, "alpha": "a", "Mid": [2.0, 3.0]},
        "nested": {"a": {"b": [{"c": 1.5}]}},
        "map_badkeys": {"my key": 1.0, "x.y": "z"},
        "map_dollar": {"$a": 1.0, "b": 2.0},
        "single": np.float32(0.1),
        "struct_array": [{"a": 1.0}, {"a": 2.0}],
        "bigish": 123456789012.0,
        "fraction": 0.1,
        "neg_exp": -2.5e-10,
    }


FLOAT_SPECIALS = [
    0.1, 0.2, 0.3, 1 / 3, 2 / 3, 1e-4, 1e-5, 1.5e-5, 9.999999999999999e-05, 1e15, 1e16,
    1.2345678901234567e16, 123456789012345.6, 5e-324, 2.2250738585072014e-308,
    1.7976931328623157e308, 2.0**-1074 * 3, 2.0**52, 2.0**53, 2.0**53 + 2, 2.0**63, 2.0**64,
    9007199254740993.0, 100.0, 1234.5, 0.5, 0.25, 0.125, 1e22, 1e23, 5e-310, 4.35, 2.675,
    -1.0, -123.456, 1e-7, 1e21, 1e100, 3e-05, 0.0001, 0.001,
]


def float_cases(n_random: int = 3000) -> list[float]:
    rng = np.random.default_rng(12345)
    vals = list(FLOAT_SPECIALS)
    vals += [float(2.0**e) for e in range(-1074, 1024, 37)]
    bits = rng.integers(0, 2**63 - 1, size=n_random, dtype=np.int64, endpoint=False)
    for b in bits.view("<f8"):
        if math.isfinite(b):
            vals.append(float(b))
    vals += [float(x) for x in rng.normal(size=500) * 10.0 ** rng.integers(-8, 20, size=500)]
    vals += [float(round(x, 3)) for x in rng.uniform(-1000, 1000, size=500)]
    return [v for v in vals if math.isfinite(v) and v != 0.0]


# --------------------------------------------------------------------------------------
# the fixture project


def build(root: Path, n_many: int = 2000) -> dict:
    root = Path(root)
    (root / ".scistack" / "objects").mkdir(parents=True, exist_ok=True)
    (root / ".scistack" / "config.json").write_bytes(
        canonical({"format": 1, "schema_keys": SCHEMA_KEYS}) + b"\n"
    )
    exp = root / "expected"
    (exp / "npy").mkdir(parents=True, exist_ok=True)
    (exp / "encode").mkdir(parents=True, exist_ok=True)
    j = Journal(root)
    oids: dict[str, str] = {}

    # -- npy cases: variable NpyCase, subject 1, session = case name
    listing = []
    for i, (name, arr) in enumerate(npy_cases().items()):
        oid = put_object(root, "npy", npy_payload(arr), compress=(i % 3 == 0))
        j.put("NpyCase", {"session": name, "subject": 1}, oid, "npy", 1)
        (exp / "npy" / f"{name}.bin").write_bytes(column_major_bytes(arr))
        listing.append({
            "name": name, "class": matlab_class(arr.dtype), "size": matlab_size(arr.shape),
            "complex": arr.dtype.kind == "c", "descr": descr_of(arr.dtype), "shape": list(arr.shape),
        })
    (exp / "npy_cases.json").write_text(json.dumps(listing, indent=1))
    for name, arr in STRING_CASES.items():
        oid = put_object(root, "npy", npy_payload(arr), compress=False)
        j.put("StrCase", {"session": name, "subject": 1}, oid, "npy", 1)

    # -- json cases: variable JsonCase, subject 1, session = case name
    for i, (name, value) in enumerate(json_cases().items()):
        kind, oid = put_value(root, value, compress=(i % 2 == 0))
        j.put("JsonCase", {"session": name, "subject": 1}, oid, kind, 1)

    # -- the journal fold: variable Trial
    def trial(text, **addr):
        kind, oid = put_value(root, text)
        return kind, oid

    def tput(text, addr, version, vkeys=None, params=None):
        kind, oid = trial(text)
        j.put("Trial", addr, oid, kind, version, vkeys=vkeys, params=params)
        return oid

    j.other({"op": "call", "key": "k" * 64, "call": "c" * 64, "fn": "mod.fn#abc"})
    tput("s1-pre-v1", {"session": "pre", "subject": 1}, 1)
    tput("s1-post-v1", {"session": "post", "subject": 1}, 1)
    tput("s1-pre-v2", {"session": "pre", "subject": 1}, 2,
         params={"f.cfg": {"addr": {"x": 1}, "var": "Fake", "vkeys": {"a": "}"}}, "f.low": 20})
    tput("s1-post-v2", {"session": "post", "subject": 1}, 2)
    j.delete("Trial", {"session": "post", "subject": 1}, 2)
    tput("s2-pre-v1", {"session": "pre", "subject": 2}, 1)
    tput("s2-pre-v2-recal", {"session": "pre", "subject": 2}, 2, vkeys={"note": "recal"})
    tput("s2-post-v1", {"session": "post", "subject": 2}, 1)
    j.delete("Trial", {"session": "post", "subject": 2}, 1)
    tput("s'1'-pre-v1", {"session": "pre", "subject": "1"}, 1)
    tput("s3-v1", {"subject": 3}, 1)
    tput("s4-a", {"session": "a{,\"}", "subject": 4}, 1, vkeys={"k": [1, {"vkeys": 2}]})
    j.other({"op": "run", "fn": "mod.fn", "n": 3})
    tput("s5-big", {"session": "pre", "subject": 2**62 + 1}, 1)

    # -- kinds
    oids["table"] = put_object(root, "table", b"ARROW1 not really an arrow stream", False)
    j.put("TableVar", {"subject": 1}, oids["table"], "table", 1)
    kind, oids["bytes"] = put_value(root, b"\x00\x01\x02\xfe\xff", compress=False)
    j.put("BytesVar", {"subject": 1}, oids["bytes"], "bytes", 1)
    oids["code"] = put_object(root, "code", "def f(x):\n    return x\n".encode(), False)

    # -- compressed vs raw
    zeros = np.zeros(4096)
    oids["zeros_zstd"] = put_object(root, "npy", npy_payload(zeros), compress=True)
    j.put("Compressed", {"session": "zstd", "subject": 1}, oids["zeros_zstd"], "npy", 1)
    ramp = np.arange(4096, dtype="<i2").reshape(64, 64)
    oids["ramp_raw"] = put_object(root, "npy", npy_payload(ramp), compress=False)
    j.put("Compressed", {"session": "raw", "subject": 1}, oids["ramp_raw"], "npy", 1)
    oids["ramp_zstd_json"] = put_object(
        root, "json", json_payload({"ramp": list(range(300))}), compress=True)
    j.put("Compressed", {"session": "json", "subject": 1}, oids["ramp_zstd_json"], "json", 1)

    # -- broken objects
    good = npy_payload(np.arange(3.0))
    oids["corrupt_len"] = oid_of("npy", good + b"x")
    put_raw_file(root, oids["corrupt_len"], f"npy {len(good) + 5}".encode() + b"\0" + good)
    j.put("Broken", {"session": "badlen", "subject": 1}, oids["corrupt_len"], "npy", 1)
    oids["missing"] = oid_of("npy", b"never written")
    j.put("Broken", {"session": "missing", "subject": 1}, oids["missing"], "npy", 1)
    j.put("Broken", {"session": "badoid", "subject": 1}, "../../../etc/passwd", "npy", 1)
    oids["badheader"] = "f" * 64
    put_raw_file(root, oids["badheader"], b"\x01garbage with no header")
    j.put("Broken", {"session": "badheader", "subject": 1}, oids["badheader"], "npy", 1)

    # -- many records (fold speed); one shared object
    kind, shared = put_value(root, 1.5)
    for i in range(n_many):
        j.put("Many", {"session": f"s{i % 7}", "subject": i // 7}, shared, kind, 1)
        if i % 10 == 0:
            j.put("Many", {"session": f"s{i % 7}", "subject": i // 7}, shared, kind, 2)

    # -- an interrupted write: no final newline, must be ignored
    kind, oids["torn"] = put_value(root, "torn")
    torn = canonical({"op": "put", "var": "Trial", "addr": {"session": "pre", "subject": 1},
                      "vkeys": {}, "version": 3, "oid": oids["torn"], "kind": kind,
                      "call": None, "params": {}, "summary": "str", "t": "x"})
    j.raw(torn[: len(torn) // 2 + 20])
    j.write()

    # -- expected encodings
    for name, arr in encode_npy_cases().items():
        (exp / "encode" / f"npy_{name}.bin").write_bytes(npy_payload(arr))
    for name, value in encode_json_cases().items():
        (exp / "encode" / f"json_{name}.json").write_bytes(json_payload(value))
    floats = float_cases()
    (exp / "floats.bin").write_bytes(np.array(floats, dtype="<f8").tobytes())
    (exp / "floats.txt").write_text("".join(repr(f) + "\n" for f in floats))
    (exp / "oids.json").write_text(json.dumps(oids, indent=1))
    return oids


def main(argv: list[str]) -> int:
    if len(argv) == 1:
        build(Path(argv[0]))
        print(argv[0])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
