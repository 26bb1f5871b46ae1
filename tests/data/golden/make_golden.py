"""Write the golden vectors: golden.json plus the object files under objects/ab/cdef...

Golden vectors are written ONCE. They pin docs/format.md: a later change to the codec that
moves any of these oids is a format break (it needs a new kind), never a regeneration. So
this script refuses to overwrite an existing golden.json unless given --force, and
tests/objects/test_golden.py checks that a fresh run reproduces the committed files exactly.

Each entry: name, kind, oid, size (payload bytes), payload_hex (payloads <= 512 bytes),
children (oids of child objects), stored ("zstd" or "raw": how the file holds it), expr (a
Python expression, evaluated with np, pd, pa, datetime in scope) and description (plain
words, for readers in other languages, e.g. the MATLAB client tests).

Usage: python tests/data/golden/make_golden.py [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

HERE = Path(__file__).resolve().parent
PAYLOAD_HEX_MAX = 512
NAMESPACE = {"np": np, "pd": pd, "pa": pa, "datetime": datetime}

# Pseudo-random floats from integer arithmetic only (no RNG stream, no libm): reproducible
# bit for bit on every platform and numpy version.
LCG = ("((np.arange(1000, dtype=np.uint64) * np.uint64(6364136223846793005) + np.uint64(1442695040888963407))"
       " >> np.uint64(11)).astype(np.float64) / 2.0**53")

VALUES: list[tuple[str, str, str]] = [
    # -- npy: every dtype, every rank ----------------------------------------------------
    ("npy_float64_1d", "np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e-300, 5e-324, 1.7976931348623157e308])",
     "float64 vector with signed zero, infinities, NaN (0x7ff8000000000000), subnormal and max"),
    ("npy_float64_2d", "np.arange(12, dtype=np.float64).reshape(3, 4) / 8", "float64 3x4, row-major payload"),
    ("npy_float64_3d", "np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 11.5", "float64 2x3x4"),
    ("npy_float64_2d_fortran", "np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4) / 8)",
     "the same 3x4 array held in Fortran order: same payload and oid as npy_float64_2d"),
    ("npy_float32", "np.array([0.1, -1.0, np.nan, 3.4028235e38], dtype=np.float32)", "float32 vector"),
    ("npy_float16", "np.array([0.1, -65504.0, 6e-08, np.inf], dtype=np.float16)", "float16 vector incl. subnormal"),
    *[(f"npy_{t}", f"np.array([np.iinfo(np.{t}).min, 0, 1, np.iinfo(np.{t}).max], dtype=np.{t})",
       f"{t} vector with its min and max") for t in ("int8", "int16", "int32", "int64",
                                                     "uint8", "uint16", "uint32", "uint64")],
    ("npy_int32_big_endian", "np.arange(5, dtype='>i4')", "big-endian int32 0..4: stored little-endian, same oid as '<i4'"),
    ("npy_bool_2d", "np.array([[True, False, True], [False, False, True]])", "bool 2x3"),
    ("npy_complex64", "np.array([1 + 2j, -0.5 - 0j, complex(np.nan, 1)], dtype=np.complex64)", "complex64 vector"),
    ("npy_complex128", "np.array([[1 + 2j, 0j], [-1e300j, complex(np.inf, -np.inf)]])", "complex128 2x2"),
    ("npy_datetime64_ns", "np.array(['2024-01-01T00:00:00.123456789', 'NaT', '1970-01-01'], dtype='datetime64[ns]')",
     "datetime64[ns]: int64 nanoseconds since 1970 UTC, NaT = int64 min"),
    ("npy_timedelta64_s", "np.array([0, -5, 86400, 'NaT'], dtype='timedelta64[s]')", "timedelta64[s]"),
    ("npy_unicode", "np.array(['', 'a', 'h\u00e9llo', '\u65e5\u672c'])", "<U5: UCS-4 little-endian, NUL-padded"),
    ("npy_bytes", "np.array([b'', b'ab', b'\\x00\\xff'], dtype='S3')", "|S3: NUL-padded bytes"),
    ("npy_0d_float64", "np.array(3.25)", "0-d float64 (shape ())"),
    ("npy_0d_int32", "np.array(7, dtype=np.int32)", "0-d int32"),
    ("npy_empty_1d", "np.zeros((0,))", "empty float64, shape (0,)"),
    ("npy_empty_3d", "np.zeros((2, 0, 3), dtype=np.int16)", "empty int16, shape (2, 0, 3)"),
    ("npy_zeros_compressed", "np.zeros(8192)", "64 KiB of zeros: the file is one zstd frame"),
    ("npy_noise_raw", LCG, "1000 pseudo-random floats in [0, 1): incompressible, the file is raw"),
    # -- json ----------------------------------------------------------------------------
    ("json_none", "None", "null"),
    ("json_true", "True", "true"),
    ("json_false", "False", "false"),
    ("json_int_zero", "0", "int 0"),
    ("json_int_negative", "-1", "int -1"),
    ("json_int_big", "2**64", "int beyond 64 bits, written as an integer literal"),
    ("json_int_big_negative", "-(2**100)", "negative big int"),
    ("json_float_one", "1.0", "float written 1.0, never 1"),
    ("json_float_negative_zero", "-0.0", "-0.0 preserved"),
    ("json_float_tenth", "0.1", "shortest repr"),
    ("json_float_1e16", "1e16", "written 1e+16"),
    ("json_float_small", "1e-07", "written 1e-07"),
    ("json_float_nan", "float('nan')", '{"$float":"nan"}'),
    ("json_float_inf", "float('inf')", '{"$float":"inf"}'),
    ("json_float_neg_inf", "float('-inf')", '{"$float":"-inf"}'),
    ("json_complex", "complex(1.5, -2.0)", '{"$complex":[1.5,-2.0]}'),
    ("json_str_empty", "''", "empty string"),
    ("json_str_unicode", "'h\u00e9llo \u2603 \U0001f600 \"q\" \\\\ \\n'", "non-ASCII (\\u escapes, surrogate pair), quotes"),
    ("json_bytes_in_list", "[b'\\x00\\x01\\xff', b'']", '{"$bytes": standard base64}'),
    ("json_list_empty", "[]", "empty list"),
    ("json_list_mixed", "[1, 'a', None, True, 2.5]", "list"),
    ("json_tuple_empty", "()", '{"$tuple":[]}'),
    ("json_tuple_nested", "(1, (2, 3), [4])", "tuples stay tuples"),
    ("json_dict_empty", "{}", "empty dict"),
    ("json_dict_sorted", "{'b': 1, 'a': [1.5, None], 'A': {'z': 0}}", "keys sorted by code point"),
    ("json_dict_dollar_keys", "{'$ref': 'x', 'plain': 2}", 'a user key starting with $: {"$dict":[[k,v],...]}'),
    ("json_nested_with_child_array", "{'emg': np.arange(4.0), 'meta': {'fs': 1000.0, 'ch': ('L', 'R')}}",
     'a dict holding an array: the array is a child npy object, referenced as {"$ref":oid}'),
    ("json_list_of_same_array", "[np.arange(3), np.arange(3)]", "two refs to one child object"),
    # -- numpy scalars (json) --------------------------------------------------------------
    ("scalar_bool", "np.bool_(True)", '{"$np":["|b1",true]}'),
    ("scalar_int8", "np.int8(-5)", "int8 scalar"),
    ("scalar_int16", "np.int16(-300)", "int16 scalar"),
    ("scalar_int32", "np.int32(2**31 - 1)", "int32 scalar"),
    ("scalar_int64", "np.int64(-2**63)", "int64 scalar, min"),
    ("scalar_uint8", "np.uint8(255)", "uint8 scalar"),
    ("scalar_uint16", "np.uint16(65535)", "uint16 scalar"),
    ("scalar_uint32", "np.uint32(4000000000)", "uint32 scalar"),
    ("scalar_uint64", "np.uint64(2**64 - 1)", "uint64 scalar, max"),
    ("scalar_float16", "np.float16(0.1)", "float16 scalar: the float64 value of the float16 (0.0999755859375)"),
    ("scalar_float32", "np.float32(0.1)", "float32 scalar: its exact float64 value"),
    ("scalar_float64", "np.float64(0.1)", "float64 scalar (tagged, unlike a Python float)"),
    ("scalar_float32_nan", "np.float32('nan')", "float32 NaN scalar"),
    ("scalar_complex64", "np.complex64(1 - 2j)", "complex64 scalar"),
    ("scalar_complex128", "np.complex128(complex(0.5, -0.0))", "complex128 scalar"),
    ("scalar_datetime64_ns", "np.datetime64('2024-02-29T12:00:00', 'ns')", "datetime64[ns] scalar: int64 count"),
    ("scalar_datetime64_nat", "np.datetime64('NaT')", "generic-unit NaT"),
    ("scalar_timedelta64_s", "np.timedelta64(90, 's')", "timedelta64[s] scalar"),
    ("scalar_str", "np.str_('h\u00e9llo')", "numpy str scalar (<U5)"),
    ("scalar_bytes", "np.bytes_(b'ab')", "numpy bytes scalar (|S2), base64"),
    # -- bytes ---------------------------------------------------------------------------
    ("bytes_empty", "b''", "kind bytes: the raw bytes"),
    ("bytes_hello", "b'hello\\x00world'", "kind bytes"),
    ("bytes_all", "bytes(range(256))", "kind bytes, every byte value"),
    # -- table ---------------------------------------------------------------------------
    ("table_dataframe", "pd.DataFrame({'subject': ['s1', 's2'], 'emg': [1.5, -0.0], "
     "'n': pd.array([1, None], dtype='Int64'), 'cond': pd.Categorical(['pre', 'post'])})",
     "small DataFrame: str, float64, nullable Int64 with NA, categorical"),
    ("table_dataframe_tz_index", "pd.DataFrame({'x': [1, 2]}, index=pd.DatetimeIndex(['2024-03-31T00:30', "
     "'2024-03-31T01:30'], tz='UTC', name='t').tz_convert('Europe/Berlin'))", "DataFrame with a tz-aware index"),
    ("table_series", "pd.Series([1.0, 2.0, 3.0], name='rms', index=pd.Index(['a', 'b', 'c'], name='trial'))",
     "named Series with a named str index"),
    ("table_arrow", "pa.table({'a': pa.array([1, None, 3], pa.int64()), 's': ['x', None, 'zz']})", "Arrow table"),
]


def build(out: Path) -> list[dict]:
    """Store every value under out/objects and return the golden.json entries."""
    from scistack.objects import LocalObjectStore
    from scistack.objects.codec import encode_value
    from scistack.objects.hashing import hash_object

    store = LocalObjectStore(out / "objects")
    entries = []
    for name, expr, description in VALUES:
        value = eval(expr, dict(NAMESPACE))  # noqa: S307 - our own fixed expressions
        children: list[str] = []

        def put_child(kind: str, parts: list) -> str:
            oid = store.put(kind, parts)
            children.append(oid)
            return oid

        kind, parts = encode_value(value, put_child)
        payload = b"".join(bytes(p) for p in parts)
        oid = store.put(kind, [payload])
        assert oid == hash_object(kind, [payload]) == store.put_value(value)
        entry = {"name": name, "kind": kind, "oid": oid, "size": len(payload)}
        if len(payload) <= PAYLOAD_HEX_MAX:
            entry["payload_hex"] = payload.hex()
        entry["children"] = children
        entry["stored"] = "zstd" if store.path_of(oid).read_bytes()[:4] == b"\x28\xb5\x2f\xfd" else "raw"
        entry["expr"] = expr
        entry["description"] = description
        entries.append(entry)
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory for golden.json and objects/")
    parser.add_argument("--force", action="store_true", help="overwrite an existing golden.json")
    args = parser.parse_args(argv)
    target = args.out / "golden.json"
    if target.exists() and not args.force:
        print(f"refusing to overwrite {target}: golden vectors are written once. A change that "
              "moves an oid is a format break; use --force only to add vectors deliberately.",
              file=sys.stderr)
        return 1
    if args.force and (args.out / "objects").exists():
        shutil.rmtree(args.out / "objects")
    args.out.mkdir(parents=True, exist_ok=True)
    entries = build(args.out)
    target.write_text(json.dumps(entries, indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {len(entries)} vectors to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
