"""Run the MATLAB client's test suite (matlab/tests/run_all.m) under GNU Octave, then check
from Python what the MATLAB side wrote.

Two projects are built in temporary folders: the reader fixture (matlab/tests/make_fixtures.py:
numpy, blake3 and zstandard only, following docs/format.md: the golden vectors the MATLAB
decoders and encoders must match) and a project saved by the real scistack
(matlab/tests/pyproject.py: values in packs, a table, and the shared golden vectors of
tests/data/golden, which the MATLAB suite decodes and re-encodes). Octave runs every matlab/tests/test_*.m
once, saving through the real `scistack ingest` and running `scistack.for_each` through
`scistack matlab-plan` / `matlab-commit` (the console script next to this Python, passed as
SCISTACK_CLI). Python then checks the saved values and oids, runs a Python for_each on the
MATLAB outputs and reads the lineage of both steps. In CI (the CI variable is set) a missing
octave-cli or zstd is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scistack.database import Database
from scistack.objects.store import hash_value
from tests.helpers import octave_env, require_tool, scistack_cli

REPO = Path(__file__).resolve().parents[2]
MATLAB_TESTS = REPO / "matlab" / "tests"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _fixtures():
    spec = importlib.util.spec_from_file_location(
        "scistack_matlab_fixtures", MATLAB_TESTS / "make_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fx = _fixtures()


def _pyproject(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(MATLAB_TESTS / "pyproject.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"pyproject.py {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def octave_run(tmp_path_factory):
    octave = require_tool("octave-cli")
    require_tool("zstd")
    root = tmp_path_factory.mktemp("matlab_fixture")
    fx.build(root)
    pyproject = tmp_path_factory.mktemp("matlab_pyproject")
    _pyproject("build", str(pyproject))
    env = octave_env(SCISTACK_FIXTURE=str(root), SCISTACK_PYPROJECT=str(pyproject))
    started = time.monotonic()
    proc = subprocess.run(
        [octave, "--no-gui", "--no-init-file", "--quiet", "--eval", "run_all();"],
        cwd=MATLAB_TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return root, pyproject, proc, time.monotonic() - started


@pytest.fixture(scope="module")
def octave_ok(octave_run):
    root, pyproject, proc, _ = octave_run
    if proc.returncode != 0:
        pytest.fail("the Octave suite failed; see test_octave_suite_passes")
    return root, pyproject


def test_octave_suite_passes(octave_run):
    _, _, proc, elapsed = octave_run
    out = (
        proc.stdout
        + "\n"
        + "\n".join(line for line in proc.stderr.splitlines() if "execution_exception" not in line)
    )
    print(out)
    print(f"octave run: {elapsed:.1f} s")
    assert proc.returncode == 0, f"Octave tests failed (exit {proc.returncode}):\n{out}"
    counts = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.MULTILINE)
    assert counts, f"the runner printed no summary:\n{out}"
    assert int(counts.group(2)) == 0, out
    assert int(counts.group(1)) >= 80, f"too few Octave tests ran:\n{out}"
    assert "FAIL " not in proc.stdout
    for suite in ("test_packs", "test_foreach", "test_save", "test_golden", "test_thunk"):
        assert f"PASS {suite}:" in proc.stdout, f"{suite} did not run"


# -- values saved from MATLAB (scistack ingest) -------------------------------------------
def _current(db: Database, var: str) -> list:
    db.index.refresh()
    latest: dict = {}
    for r in db.index.records(var):
        key = (r.addr_key, r.vkeys_key)
        if key not in latest or r.version > latest[key].version:
            latest[key] = r
    return list(latest.values())


def test_values_saved_from_matlab_decode_in_python(octave_ok):
    root, _ = octave_ok
    with Database(root / "saved" / "gait.duckdb") as db:
        v = {
            r.addr["session"]: db.store.get_value(r.oid)
            for r in _current(db, "SavedValue")
            if r.addr.get("subject") == 1
        }
    expected_arrays = {
        "matrix": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        "col": np.array([1.0, 2.0, 3.0, 4.0]),  # n x 1 -> (n,)
        "row": np.array([[1.0, 2.0, 3.0, 4.0]]),  # 1 x n -> (1, n)
        "logical": np.array([[True, False, True]]),
        "complex": np.array([1 + 3j, 2 - 4j]),
    }
    for name, want in expected_arrays.items():
        got = v[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, got.shape)
        np.testing.assert_array_equal(got, want)
    assert v["scalar"] == 2.5 and type(v["scalar"]) is float
    assert v["text"] == "h\u00e9llo"
    assert v["empty"] is None
    assert math.isnan(v["nan"])
    s = v["struct"]
    assert set(s) == {"arr", "n", "name", "tags"}
    assert s["n"] == 3 and type(s["n"]) is int  # int32 -> Python int
    assert s["name"] == "x" and s["tags"] == ["a", "b"]
    assert s["arr"].dtype == np.int16 and s["arr"].shape == (1, 3)
    np.testing.assert_array_equal(s["arr"], [[1, 2, 3]])
    typed = {
        "int8": (np.int8, [[1, -2, 3]]),
        "uint64": (np.uint64, [[1, 2**64 - 1]]),
        "single": (np.float32, [[1.5, 2.5]]),
    }
    for name, (dtype, want) in typed.items():
        assert v[name].dtype == dtype, name
        np.testing.assert_array_equal(v[name], np.array(want, dtype=dtype))
    assert v["bigint"] == 9007199254740993 and type(v["bigint"]) is int
    assert v["true"] is True
    assert v["list"] == [1.0, "a", None]
    assert v["dollar"] == {"$x": 1.0, "b": 2.0}
    cube = v["cube"]  # MATLAB (i, j, k) is numpy [i-1, j-1, k-1]
    assert cube.shape == (2, 3, 4) and cube[1, 2, 3] == 24.0 and cube[1, 0, 0] == 2.0


def test_matlab_payloads_hash_like_python(octave_ok):
    """Every value MATLAB saved has the bytes and oid that Python's own encoder gives it."""
    root, pyproject = octave_ok
    checked = 0
    for project, variables in (
        (root / "saved", ["SavedValue"]),
        (pyproject, ["FilteredEMG", "Ratio", "NCount", "Edited", "NSessions", "PeakSummary"]),
    ):
        with Database(project / "gait.duckdb") as db:
            for var in variables:
                for r in _current(db, var):
                    stored = db.store.get(r.oid)
                    value = db.store.get_value(r.oid)
                    assert hash_value(value) == r.oid, (var, r.addr)
                    if stored.kind == "npy":
                        assert fx.npy_payload(value) == bytes(stored.payload), (var, r.addr)
                    checked += 1
    assert checked >= 30


# -- the Python -> MATLAB -> Python pipeline ----------------------------------------------
@pytest.fixture(scope="module")
def downstream(octave_ok):
    _, pyproject = octave_ok
    return json.loads(_pyproject("downstream", str(pyproject)))


def test_python_step_on_matlab_output_keeps_both_steps(downstream):
    assert downstream["envelope_counts"]["ran"] == 6
    prov = downstream["provenance"]
    assert prov["function"] == "envelope" and prov["input_var"] == "FilteredEMG"
    assert prov["upstream_function"] == "bandpass"
    assert prov["upstream_module"] == "matlab:bandpass.m"
    assert prov["upstream_constants"] == {"low_hz": 20.0}
    assert prov["upstream_inputs"] == {"signal": "RawEMG"}
    assert prov["upstream_env"]["language"] == "matlab"
    assert re.fullmatch(
        r"\d+\.\d+\.\d+.*", prov["upstream_env"]["octave"] or prov["upstream_env"]["matlab"]
    )
    assert prov["upstream_code"].startswith("function y = bandpass(signal, low_hz)\n")
    assert "%" not in prov["upstream_code"]  # the normalised text: no comments
    assert prov["params"] == {"bandpass.low_hz": 20.0}  # upstream constants flow downstream


def test_matlab_outputs_query_by_lineage_and_hash_like_numpy(downstream):
    assert downstream["load_low_hz_20"] == 6
    assert downstream["load_low_hz_20_qualified"] == 6
    for check in downstream["filtered"]:
        assert check["kind"] == "npy" and check["summary"] == "float64[8]", check
        assert check["value_equal"] and check["oid_matches"], check


def test_fixed_constants_and_two_outputs_in_lineage(downstream):
    ratio = downstream["ratio"]
    assert ratio["function"] == "ratio"
    assert ratio["inputs"]["base"] == {
        "var": "RawEMG",
        "addr": {"subject": 1, "session": "baseline"},
    }
    assert ratio["inputs"]["signal"] == {"var": "RawEMG", "addr": {"subject": 1, "session": "pre"}}
    assert ratio["inputs"]["offsets"]["var"] is None  # an array constant: stored, not inline
    assert ratio["constants"] == {"scale": 3, "opts": {"name": "x", "shift": 0.5}}
    assert ratio["multi"] == 2
    assert ratio["params"] == {"ratio.scale": 3}


def test_scistack_log_shows_the_matlab_function(octave_ok):
    _, pyproject = octave_ok
    proc = subprocess.run(
        [
            scistack_cli(),
            "--db",
            str(pyproject / "gait.duckdb"),
            "log",
            "FilteredEMG",
            "--subject",
            "1",
            "--session",
            "pre",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "bandpass (matlab:bandpass.m)" in proc.stdout, proc.stdout
    assert "low_hz=20.0" in proc.stdout, proc.stdout
    assert "signal=RawEMG@" in proc.stdout, proc.stdout


def test_the_python_project_really_uses_packs(octave_ok):
    """Guards the meaning of the pack fixture: packed raw, packed zstd, loose large."""
    _, pyproject = octave_ok
    with Database(pyproject / "gait.duckdb") as db:

        def stored(var):
            (record,) = [
                r
                for r in _current(db, var)
                if r.addr.get("subject") == 1 and r.addr.get("session") in (None, "pre")
            ]
            loose = db.store.path_of(record.oid)
            return loose.exists(), db.store.packs.read(record.oid)

        loose, packed = stored("RawEMG")
        assert not loose and packed is not None and packed[:4] != ZSTD_MAGIC
        loose, packed = stored("PackedZ")
        assert not loose and packed is not None and packed[:4] == ZSTD_MAGIC
        loose, packed = stored("BigLoose")
        assert loose and packed is None
