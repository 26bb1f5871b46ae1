"""Golden vectors: committed values, payloads, oids and object files that must never change.

See tests/data/golden/README.md. A failure here means the encoding of a value moved: that is
a format break for every project on disk and for the MATLAB client, not a test to update.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scistack.objects import LocalObjectStore
from scistack.objects.codec import encode_value
from scistack.objects.hashing import hash_object
from tests.objects.test_stores import read_object_file
from tests.objects.values import assert_identical

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
ENTRIES = json.loads((GOLDEN / "golden.json").read_text())
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402

EXPECTED_KINDS = {"npy", "json", "table", "bytes"}


def value_of(entry: dict):
    return eval(entry["expr"], dict(make_golden.NAMESPACE))  # noqa: S307 - committed test data


def encode(value) -> tuple[str, bytes, list[str]]:
    children: list[str] = []

    def put_child(kind: str, parts: list) -> str:
        children.append(hash_object(kind, parts))
        return children[-1]

    kind, parts = encode_value(value, put_child)
    return kind, b"".join(bytes(p) for p in parts), children


def test_golden_set_covers_every_kind_and_both_storage_forms():
    assert {e["kind"] for e in ENTRIES} == EXPECTED_KINDS
    assert {e["stored"] for e in ENTRIES} == {"zstd", "raw"}
    assert len({e["name"] for e in ENTRIES}) == len(ENTRIES)
    assert [e["name"] for e in ENTRIES] == [name for name, _, _ in make_golden.VALUES]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_value_still_encodes_to_its_golden_payload_and_oid(entry):
    kind, payload, children = encode(value_of(entry))
    versions_note = ""
    if entry["kind"] == "table":
        import pandas as pd
        import pyarrow as pa

        versions_note = (f" (pandas {pd.__version__}, pyarrow {pa.__version__}: table oids depend on "
                         "their Arrow IPC and pandas metadata; see tests/data/golden/README.md)")
    assert kind == entry["kind"]
    assert len(payload) == entry["size"], "payload length moved" + versions_note
    if "payload_hex" in entry:
        assert payload.hex() == entry["payload_hex"], "payload bytes moved" + versions_note
    assert hash_object(kind, [payload]) == entry["oid"], "oid moved" + versions_note
    assert children == entry["children"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_committed_object_files_read_back_as_the_value(entry):
    store = LocalObjectStore(GOLDEN / "objects")
    obj = store.get(entry["oid"])  # verifies the blake3 hash of the committed file
    assert obj.kind == entry["kind"] and len(obj.payload) == entry["size"]
    if "payload_hex" in entry:
        assert bytes(obj.payload).hex() == entry["payload_hex"]
    head = store.path_of(entry["oid"]).read_bytes()[:4]
    assert (head == b"\x28\xb5\x2f\xfd") == (entry["stored"] == "zstd")
    assert_identical(store.get_value(entry["oid"]), value_of(entry))


def test_no_stray_or_missing_object_files():
    store = LocalObjectStore(GOLDEN / "objects")
    referenced = {e["oid"] for e in ENTRIES} | {c for e in ENTRIES for c in e["children"]}
    assert set(store.iter_oids()) == referenced
    assert list(store.iter_temp_files()) == []


def test_generator_refuses_to_overwrite_and_reproduces_the_committed_files(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    script = str(GOLDEN / "make_golden.py")
    run = lambda *args: subprocess.run([sys.executable, script, "--out", str(tmp_path), *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=120, env=env)
    assert run().returncode == 0
    (tmp_path / "golden.json").write_text("sentinel")
    refused = run()
    assert refused.returncode != 0 and "refusing to overwrite" in refused.stderr
    assert (tmp_path / "golden.json").read_text() == "sentinel"
    assert run("--force").returncode == 0
    fresh = json.loads((tmp_path / "golden.json").read_text())
    # Oids and payloads are the format; whether a file is stored raw or as zstd is a storage
    # choice (it moved when small objects stopped being compressed) and may change.
    def pinned(entries: list[dict]) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "stored"} for e in entries if e["kind"] != "table"]

    stable = [e for e in ENTRIES if e["kind"] != "table"]
    assert pinned(fresh) == pinned(ENTRIES)
    for entry in stable:
        for oid in [entry["oid"], *entry["children"]]:
            rel = Path(oid[:2]) / oid[2:]
            # the decoded content, not the file bytes: a zstd release may compress differently
            assert read_object_file(tmp_path / "objects" / rel) == read_object_file(GOLDEN / "objects" / rel)
