"""The Python half of the MATLAB client's pipeline tests, run with the real scistack package.

    python pyproject.py build <dir>        a project saved by Python: values in a batch
                                           (packs), a compressed packed value, a json value
                                           with a child array, a large loose value, a table;
                                           plus the shared golden vectors (tests/data/golden):
                                           their object files in the store and, in
                                           <dir>/golden/, what MATLAB must decode them to
    python pyproject.py downstream <dir>   after MATLAB's for_each: a Python for_each on
                                           MATLAB's FilteredEMG, then prints (JSON) what
                                           Python sees: provenance of both steps, lineage
                                           queries, the bytes and oids of MATLAB's outputs

It runs in its own process (tests/matlab/test_octave.py calls it) because variable classes
are process-wide by name and the test suite defines its own RawEMG elsewhere. The values
follow formulas that matlab/tests/test_packs.m and test_foreach.m recompute.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

import scistack
from scistack import BaseVariable, for_each
from scistack.index import key_of
from scistack.objects.chunking import ChunkPolicy, pin_policy
from scistack.objects.store import hash_value

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as fx  # (matlab_class, matlab_size, column_major_bytes)

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden"
SCHEMA = ["subject", "session"]
SESSIONS = {"pre": 1.0, "post": 2.0, "baseline": 3.0}


class RawEMG(BaseVariable):
    pass


class FilteredEMG(BaseVariable):
    pass


class Envelope(BaseVariable):
    pass


class Ratio(BaseVariable):
    pass


class PackedZ(BaseVariable):
    pass


class PackedJson(BaseVariable):
    pass


class BigLoose(BaseVariable):
    pass


class TableVar(BaseVariable):
    pass


class BigRaw(BaseVariable):
    pass


class ChunkedTable(BaseVariable):
    pass


def chunked_frame():
    """A DataFrame stored as a chunked table under pyproject's tiny chunking: 300 rows of
    an int column missing in one row group only, a float, a string and a category column."""
    import pandas as pd

    n = 300
    count = pd.array([None if i == 250 else i for i in range(n)], dtype="Int64")
    return pd.DataFrame({"count": count, "force": np.arange(n) / 4.0,
                         "label": [f"t{i}" for i in range(n)],
                         "side": pd.Categorical(["left", "right"] * (n // 2))})


class ChunkedVar(BaseVariable):
    pass


def chunked_values() -> dict[int, np.ndarray]:
    """ChunkedVar by subject (matlab/tests/test_chunked.m recomputes them)."""
    return {
        1: ((scrambled(6000) % 30000) - 15000).astype(np.int16).reshape(1000, 6),
        2: (scrambled(1200) / 7.0).reshape(30, 20, 2),
        3: np.arange(3000.0) % 11,
        # 2 MiB of a slow int16 signal: two 1 MiB chunks stored byte-shuffled (objects/shuffle.py)
        4: ((np.arange(16384)[:, None] // 100 + np.arange(64)) % 300).astype(np.int16),
        # timestamps (Zarr's numpy.datetime64, unit us) with one NaT, and 2-D durations of 10 ms
        5: _with_nat((1_700_000_000_000_000 + np.arange(600) * 1000).astype("datetime64[us]"), 10),
        6: np.arange(1400).reshape(700, 2).astype("timedelta64[10ms]"),
    }


def _with_nat(a: np.ndarray, at: int) -> np.ndarray:
    a[at] = np.datetime64("NaT")
    return a


def chunk_oids(db, oid: str) -> list[str]:
    """The chunk oids a chunked value's manifest names."""
    from scistack.objects.chunked import array_manifest, parse_manifest

    return list(array_manifest(parse_manifest(db.store.get(oid).payload)).oids)


def scrambled(n: int) -> np.ndarray:
    """0..n-1 scrambled by Knuth's multiplicative hash mod 2^32 (exact in doubles too)."""
    return (np.arange(n, dtype=np.int64) * 2654435761) % 2**32


def raw_emg(subject: int, session: str) -> np.ndarray:
    """RawEMG at (subject, session): 0:7 * subject + 1 (pre), 2 (post) or 3 (baseline)."""
    return np.arange(8.0) * subject + SESSIONS[session]


def build(root: Path) -> None:
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    db = scistack.configure_database(root / "gait.duckdb", SCHEMA)
    with db.batch():  # small objects go into one pack
        for subject in (1, 2, 3):
            for session in SESSIONS:
                RawEMG.save(raw_emg(subject, session), subject=subject, session=session)
        # 8,000 bytes of a repeating pattern: stored as a zstd frame inside the pack
        PackedZ.save(np.arange(1000.0) % 7, subject=1)
        PackedJson.save({"a": np.eye(3), "name": "x", "n": 3}, subject=1)
        # above 1 MB: a loose file even inside a batch (compressed: it is very regular)
        BigLoose.save(np.tile(np.arange(1000.0), 200), subject=1)
        # above 1 MB: loose; MATLAB reads the elements in place (the first is incompressible,
        # so stored raw; the second compresses, so it is inflated to a temporary file first)
        BigRaw.save(scrambled(300_000).astype(np.uint32).reshape(500, 600), subject=1)
        BigRaw.save((scrambled(200_000) / 7.0).reshape(1000, 200), subject=2)
    TableVar.save(pd.DataFrame({"x": [1.0, 2.0]}), subject=1, session="pre")
    # several chunkings in one project (a project records one: pinned here, over the project's)
    pin_policy(ChunkPolicy(threshold=4096, chunk_bytes=1024))  # chunked arrays: loose, packed, zstd chunks
    try:
        values = chunked_values()
        ChunkedVar.save(values[1], subject=1)
        with db.batch():
            ChunkedVar.save(values[2], subject=2)
        ChunkedVar.save(values[3], subject=3)
        ChunkedVar.save(values[5], subject=5)
        ChunkedVar.save(values[6], subject=6)
        ChunkedTable.save(chunked_frame(), subject=1)  # row groups of a few rows, some missing
        pin_policy(ChunkPolicy(threshold=1 << 20, chunk_bytes=1 << 20))
        oid = ChunkedVar.save(values[4], subject=4).oid
        shuffled = [c for c in chunk_oids(db, oid) if db.store.path_of(c).read_bytes()[:4] == b"P*M\x18"]
        assert len(shuffled) == 2, "subject 4's chunks must be stored byte-shuffled"
    finally:
        pin_policy(None)
    golden(db, root)
    db.close()


def golden(db, root: Path) -> None:
    """Copy the golden object files into the store, and write what MATLAB must read from them.

    `<root>/golden/cases.json` lists every golden entry with, for npy arrays, the MATLAB class,
    size and complexity, the file of its column-major bytes (`golden/npy/<name>.bin`) or its
    strings' code points, and whether MATLAB's encode_npy of the decoded array must give the same payload
    (shapes MATLAB keeps, dtypes it writes); `error` names the error MATLAB must raise.
    """
    objects = root / ".scistack" / "objects"
    for path in (GOLDEN / "objects").glob("*/*"):
        target = objects / path.parent.name / path.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    out = root / "golden"
    (out / "npy").mkdir(parents=True, exist_ok=True)
    cases = []
    for entry in json.loads((GOLDEN / "golden.json").read_text()):
        case = {"name": entry["name"], "kind": entry["kind"], "oid": entry["oid"], "error": ""}
        if entry["kind"] == "table":
            case["columns"] = _table_columns(bytes(db.store.get(entry["oid"]).payload))
        elif entry["kind"] == "npy":
            arr = db.store.get_value(entry["oid"])
            case.update(descr=fx.descr_of(arr.dtype), shape=list(arr.shape))
            if arr.dtype.kind in "US":
                items = arr.reshape(-1).tolist()
                texts = [v if isinstance(v, str) else v.decode("latin-1") for v in items]
                # code points in hex ("61 62"): Octave's jsondecode stops a string at \u0000
                case["strings"] = [" ".join(f"{ord(ch):x}" for ch in t) for t in texts]
            else:
                case.update(
                    cls=fx.matlab_class(arr.dtype),
                    size=fx.matlab_size(arr.shape),
                    complex=arr.dtype.kind == "c",
                    encodable=_matlab_keeps(arr),
                )
                (out / "npy" / f"{entry['name']}.bin").write_bytes(fx.column_major_bytes(arr))
        elif entry["kind"] == "bytes":
            case["hex"] = db.store.get(entry["oid"]).payload.hex()
        cases.append(case)
    (out / "cases.json").write_text(json.dumps(cases, indent=1))


def _table_columns(payload: bytes) -> list[dict]:
    """What MATLAB's decode_table must give for each column of a table payload, read by
    pyarrow: its name (a Series' values under the Series' name), how to compare it, and its
    values (integers and time counts as decimal text, so int64 stays exact; None: missing)."""
    import pyarrow as pa

    table = pa.ipc.open_stream(payload).read_all()
    meta = table.schema.metadata or {}
    columns = []
    for field, column in zip(table.schema, table.columns):
        name = field.name
        if meta.get(b"scistack") == b"series" and name == "__series__":
            name = json.loads(meta[b"scistack.series_name"])["v"] or "value"
        kind = field.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            case = {"compare": "text", "values": column.to_pylist()}
        elif pa.types.is_integer(kind) or pa.types.is_temporal(kind):
            counts = column.cast(pa.int64()) if pa.types.is_temporal(kind) else column
            case = {"compare": "time" if pa.types.is_temporal(kind) else "int",
                    "values": [None if v is None else str(v) for v in counts.to_pylist()]}
        elif pa.types.is_floating(kind):
            case = {"compare": "float", "values": column.to_pylist()}
        elif pa.types.is_boolean(kind):
            case = {"compare": "bool", "values": column.to_pylist()}
        else:
            raise AssertionError(f"no MATLAB expectation written for {kind}")
        columns.append({"name": name, **case})
    return columns


def _matlab_keeps(arr: np.ndarray) -> bool:
    """Whether MATLAB's encode_npy of this array, decoded, writes the same payload."""
    shape = arr.shape
    if arr.dtype.kind not in "biufc" or arr.dtype.itemsize == 2 and arr.dtype.kind == "f":
        return False
    if len(shape) == 1:
        return shape[0] != 1
    if len(shape) == 2:
        return shape != (1, 1) and shape[1] != 1
    return len(shape) == 0 or shape[-1] != 1


def envelope(x):
    """A Python step downstream of MATLAB's bandpass."""
    return np.abs(x) + 1.0


def downstream(root: Path) -> dict:
    db = scistack.configure_database(root / "gait.duckdb", SCHEMA)
    out: dict = {}
    report = for_each(
        envelope,
        inputs={"x": FilteredEMG},
        outputs=[Envelope],
        subject=[1, 2, 3],
        session=["pre", "post"],
    )
    out["envelope_counts"] = report.counts
    prov = db.get_provenance(Envelope, subject=1, session="pre")
    upstream = db.call_record(prov["inputs"]["x"]["call"])
    out["provenance"] = {
        "function": prov["function_name"],
        "input_var": prov["inputs"]["x"]["var"],
        "upstream_function": upstream["function_name"],
        "upstream_module": upstream["module"],
        "upstream_constants": upstream["constants"],
        "upstream_inputs": {k: v.get("var") for k, v in upstream["inputs"].items()},
        "upstream_env": {k: upstream["env"].get(k) for k in ("language", "octave", "matlab")},
        "upstream_code": db.store.get_value(upstream["code"]),
        "params": prov["params"],
    }
    ratio = db.get_provenance(Ratio, subject=1, session="pre")
    out["ratio"] = {
        "function": ratio["function_name"],
        "constants": ratio["constants"],
        "inputs": {
            k: {"var": v.get("var"), "addr": v.get("addr")} for k, v in ratio["inputs"].items()
        },
        "multi": len(ratio["outputs"]),
        "params": ratio["params"],
    }
    out["load_low_hz_20"] = len(FilteredEMG.load(low_hz=20))
    out["load_low_hz_20_qualified"] = len(FilteredEMG.load(**{"bandpass.low_hz": 20.0}))
    # MATLAB's outputs: the same bytes and oids as numpy's encoding of the same values
    checks = []
    for subject in (1, 2, 3):
        for session in ("pre", "post"):
            record = db.index.current_at(
                "FilteredEMG", key_of({"subject": subject, "session": session}), "{}"
            )
            expected = raw_emg(subject, session) * 2 + 20
            checks.append(
                {
                    "addr": [subject, session],
                    "oid_matches": record.oid == hash_value(expected),
                    "kind": record.kind,
                    "summary": record.summary,
                    "value_equal": bool(np.array_equal(db.store.get_value(record.oid), expected)),
                }
            )
    out["filtered"] = checks
    db.close()
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "build":
        build(Path(argv[1]))
        return 0
    if len(argv) == 2 and argv[0] == "downstream":
        print(json.dumps(downstream(Path(argv[1])), default=str))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
