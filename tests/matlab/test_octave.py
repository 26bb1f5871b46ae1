"""Run the MATLAB client's test suite (matlab/tests/run_all.m) under GNU Octave.

The fixture project is built in a temporary folder by matlab/tests/make_fixtures.py (numpy,
blake3 and zstandard only, following docs/format.md), Octave reads it, and then Python
decodes what the MATLAB side saved through the reference ingester. In CI (the CI variable
is set) a missing octave-cli or zstd is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MATLAB_TESTS = REPO / "matlab" / "tests"


def _fixtures():
    spec = importlib.util.spec_from_file_location(
        "scistack_matlab_fixtures", MATLAB_TESTS / "make_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fx = _fixtures()


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (make octave installs octave and zstd)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the MATLAB client tests")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def octave_run(tmp_path_factory):
    octave = _require("octave-cli")
    _require("zstd")
    root = tmp_path_factory.mktemp("matlab_fixture")
    fx.build(root)
    env = dict(os.environ, SCISTACK_FIXTURE=str(root), SCISTACK_PYTHON=sys.executable)
    env.pop("SCISTACK_CLI", None)
    started = time.monotonic()
    proc = subprocess.run(
        [octave, "--no-gui", "--no-init-file", "--quiet", "--eval", "run_all();"],
        cwd=MATLAB_TESTS, env=env, capture_output=True, text=True, timeout=1200,
        stdin=subprocess.DEVNULL,
    )
    return root, proc, time.monotonic() - started


def test_octave_suite_passes(octave_run):
    root, proc, elapsed = octave_run
    out = proc.stdout + "\n" + "\n".join(
        line for line in proc.stderr.splitlines() if "execution_exception" not in line
    )
    print(out)
    print(f"octave run: {elapsed:.1f} s")
    assert proc.returncode == 0, f"Octave tests failed (exit {proc.returncode}):\n{out}"
    counts = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert counts, f"the runner printed no summary:\n{out}"
    assert int(counts.group(2)) == 0, out
    assert int(counts.group(1)) >= 60, f"too few Octave tests ran:\n{out}"
    assert "FAIL " not in proc.stdout


def _saved(root: Path) -> dict:
    saved = root / "saved"
    records = fx.current_records(saved)
    out = {}
    for r in records:
        if r["var"] == "SavedValue" and r["addr"].get("subject") == 1:
            out[r["addr"]["session"]] = fx.load_value(saved, r["oid"])
    return out


def test_values_saved_from_matlab_decode_in_python(octave_run):
    root, proc, _ = octave_run
    assert proc.returncode == 0, "the Octave suite failed; see test_octave_suite_passes"
    v = _saved(root)
    expected_arrays = {
        "matrix": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        "col": np.array([1.0, 2.0, 3.0, 4.0]),          # n x 1 -> (n,)
        "row": np.array([[1.0, 2.0, 3.0, 4.0]]),        # 1 x n -> (1, n)
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
    assert s["n"] == 3 and type(s["n"]) is int       # int32 -> Python int
    assert s["name"] == "x" and s["tags"] == ["a", "b"]
    assert s["arr"].dtype == np.int16 and s["arr"].shape == (1, 3)
    np.testing.assert_array_equal(s["arr"], [[1, 2, 3]])


def test_matlab_payloads_hash_like_python(octave_run):
    """Every object the MATLAB side staged re-encodes to the same bytes in Python."""
    root, proc, _ = octave_run
    assert proc.returncode == 0
    saved = root / "saved"
    for r in fx.current_records(saved):
        kind, payload = fx.read_object(saved, r["oid"])
        if kind == "npy":
            assert fx.npy_payload(fx.decode_npy(payload)) == payload, r["addr"]
        elif kind == "json":
            value = fx.load_value(saved, r["oid"])
            refs = {}

            def child(arr, refs=refs):
                oid = fx.oid_of("npy", fx.npy_payload(arr))
                refs[oid] = arr
                return oid

            assert fx.json_payload(value, child) == payload, r["addr"]
