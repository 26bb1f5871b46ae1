"""The MATLAB fixtures and the Python codec must agree byte for byte.

make_fixtures.py encodes values by reading docs/format.md; the MATLAB client is tested
against those bytes. When the Python codec (scistack.objects) is importable, this checks that
it produces the same payloads for the same values, so the two sides cannot drift apart
unnoticed. Skipped where the codec is not there (or its API has moved).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2] / "matlab" / "tests"
_spec = importlib.util.spec_from_file_location("scistack_matlab_fixtures_agreement", TESTS / "make_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)


def _codec(module: str, name: str):
    try:
        fn = getattr(importlib.import_module(module), name, None)
    except ImportError:
        fn = None
    return fn


encode_npy = _codec("scistack.objects.npy", "encode_npy")
encode_json = _codec("scistack.objects.canonical_json", "encode_json")
if encode_npy is None or encode_json is None:
    pytest.skip("the Python codec (scistack.objects) is not importable here",
                allow_module_level=True)


NPY = {**fx.encode_npy_cases(), **fx.npy_cases(), **fx.STRING_CASES}
JSON = {**fx.encode_json_cases(), **fx.json_cases()}
@pytest.mark.parametrize("name", list(NPY))
def test_npy_payloads_agree(name):
    arr = NPY[name]
    parts = encode_npy(arr)
    got = b"".join(bytes(p) for p in parts) if isinstance(parts, (list, tuple)) else bytes(parts)
    assert got == fx.npy_payload(arr)


@pytest.mark.parametrize("name", list(JSON))
def test_json_payloads_agree(name):
    value = JSON[name]

    def child(arr):
        return fx.oid_of("npy", fx.npy_payload(arr))

    assert bytes(encode_json(value, child)) == fx.json_payload(value, child)


def test_zero_d_arrays_keep_shape_and_oid():
    """A 0-d array is stored with shape () (not (1,)), so MATLAB and Python agree on its oid."""
    import numpy as np

    from scistack.objects.codec import decode_value
    from scistack.objects.store import hash_value

    arr = np.array(2.5)
    payload = b"".join(bytes(p) for p in encode_npy(arr))
    assert payload == fx.npy_payload(arr)
    assert hash_value(arr) == fx.oid_of("npy", fx.npy_payload(arr))
    assert decode_value("npy", payload, None).shape == ()
