"""`scistack ingest`: values staged by another language (the MATLAB client) are recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.helpers import journal_size
from scistack import BaseVariable
from scistack.cli import main
from scistack.errors import InvalidMetadataError, SchemaMismatchError, UnsupportedValueError
from scistack.ingest import ingest_manifest
from scistack.objects.npy import encode_npy, npy_header


class Staged(BaseVariable):
    pass


def _stage(project, items, children=(), schema_keys=None, name="abc123") -> Path:
    folder = project.scistack_dir / "staging" / name
    folder.mkdir(parents=True)
    manifest = {"children": list(children), "format": 1, "items": items,
                "schema_keys": schema_keys or project.schema_keys, "var": "Staged",
                "writer": "scistack-matlab"}
    (folder / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n")
    return folder


def test_ingest_records_npy_and_json_with_children(project):
    folder = _stage(project, [
        {"addr": {"subject": 1, "session": "pre"}, "kind": "npy", "payload": "payload-0.bin", "vkeys": {}},
        {"addr": {"subject": 2, "session": "pre"}, "kind": "json", "payload": "payload-2.bin",
         "vkeys": {"note": "m"}},
    ], children=[{"kind": "npy", "payload": "payload-1.bin"}])
    (folder / "payload-0.bin").write_bytes(b"".join(bytes(p) for p in encode_npy(np.arange(4.0))))
    (folder / "payload-1.bin").write_bytes(b"".join(bytes(p) for p in encode_npy(np.ones(2))))
    (folder / "payload-2.bin").write_bytes(b'{"gain":2.5,"trace":{"$ref":"staged:payload-1.bin"}}')
    result = CliRunner().invoke(main, ["ingest", str(folder / "manifest.json")])
    assert result.exit_code == 0, result.output
    oids = result.output.split()
    assert len(oids) == 2
    project.index.refresh()
    loaded = Staged.load(subject=1, session="pre")
    assert loaded.oid == oids[0] and loaded.data.tolist() == [0.0, 1.0, 2.0, 3.0]
    value = Staged.load(subject=2, session="pre").data
    assert value["gain"] == 2.5 and value["trace"].tolist() == [1.0, 1.0]


def test_ingest_is_all_or_nothing_and_refuses_other_schemas(project):
    folder = _stage(project, [
        {"addr": {"subject": 1, "session": "pre"}, "kind": "npy", "payload": "payload-0.bin", "vkeys": {}},
        {"addr": {"subject": 2, "session": "pre"}, "kind": "npy", "payload": "payload-1.bin", "vkeys": {}},
    ])
    (folder / "payload-0.bin").write_bytes(b"".join(bytes(p) for p in encode_npy(np.arange(4.0))))
    (folder / "payload-1.bin").write_bytes(b"not an npy payload")
    before = journal_size(project)
    with pytest.raises(Exception, match="does not decode"):
        ingest_manifest(project, folder / "manifest.json")
    assert journal_size(project) == before
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["schema_keys"] = ["subject"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaMismatchError):
        ingest_manifest(project, folder / "manifest.json")


@pytest.mark.parametrize("addr, vkeys, named", [
    ({"subject": [1, 2], "session": "pre"}, {}, "subject=[1, 2] is a list"),
    ({"subject": None, "session": "pre"}, {}, "subject=None"),
    ({"subject": {"a": 1}, "session": "pre"}, {}, "subject={'a': 1} is a dict"),
    ({"subject": 2**70, "session": "pre"}, {}, "beyond 64 bits"),
    ({"subject": "x" * 2000, "session": "pre"}, {}, "string of 2,000 characters"),
    ({"subject": 2, "session": "pre"}, {"note": [1]}, "version key note=[1] is a list"),
    ({"subject": 2}, {"session": "x"}, "version key 'session' is a schema key"),
    ({"subject": 2}, {"Session": "x"}, "'Session' is the schema key 'session' but for case"),
    ({"subject": "caf\udce9", "session": "pre"}, {}, "subject='caf\\udce9' is not text: it holds a lone surrogate"),
    ({"subject": 2, "session": "pre"}, {"file": "caf\udce9.csv"}, "file='caf\\udce9.csv' is not text"),
])
def test_ingest_refuses_an_address_save_refuses_and_records_nothing(project, addr, vkeys, named):
    Staged.save(np.zeros(2), subject=1, session="pre")
    folder = _stage(project, [
        {"addr": {"subject": 1, "session": "pre"}, "kind": "npy", "payload": "payload-0.bin", "vkeys": {}},
        {"addr": addr, "kind": "npy", "payload": "payload-0.bin", "vkeys": vkeys},
    ])
    (folder / "payload-0.bin").write_bytes(b"".join(bytes(p) for p in encode_npy(np.arange(3.0))))
    before = journal_size(project)
    with pytest.raises(InvalidMetadataError, match=re.escape(named)):
        ingest_manifest(project, folder / "manifest.json")
    assert journal_size(project) == before
    assert [r.metadata for r in Staged.load_all()] == [{"subject": 1, "session": "pre"}]


def test_ingest_takes_a_whole_float_address_as_its_int_as_save_does(project):
    Staged.save(np.zeros(2), subject=3, session="pre")
    folder = _stage(project, [{"addr": {"subject": 3.0, "session": "pre"}, "kind": "npy",
                               "payload": "payload-0.bin", "vkeys": {}}])
    (folder / "payload-0.bin").write_bytes(b"".join(bytes(p) for p in encode_npy(np.arange(3.0))))
    ingest_manifest(project, folder / "manifest.json")
    assert [(r.addr, r.version) for r in Staged.list_versions()] == [
        ({"subject": 3, "session": "pre"}, 1), ({"subject": 3, "session": "pre"}, 2)]
    assert Staged.load(subject=3, session="pre").data.tolist() == [0.0, 1.0, 2.0]


_ITEM = {"addr": {"subject": 2, "session": "pre"}, "kind": "npy", "payload": "payload-1.bin", "vkeys": {}}
_JSON = {**_ITEM, "kind": "json"}


@pytest.mark.parametrize("fields, payload, error, named", [
    ({"items": [_ITEM, {**_ITEM, "payload": "nope.bin"}]}, None, InvalidMetadataError,
     "item 1: its payload file 'nope.bin' cannot be read"),
    ({"items": [_ITEM, {**_ITEM, "payload": "."}]}, None, InvalidMetadataError,
     "item 1 has 'payload' '.', not the name of a file"),
    ({"items": [_JSON]}, b"{oops", UnsupportedValueError, "item 0: json payload payload-1.bin is not UTF-8 JSON"),
    ({"items": [_JSON]}, b"\x93NUMPY", UnsupportedValueError, "item 0: json payload payload-1.bin is not UTF-8"),
    ({"items": [_JSON]}, b'{"a": [1, NaN]}', UnsupportedValueError, 'NaN is not JSON: write it as {"$float": "nan"}'),
    ({"items": [_JSON]}, b'{"f": ["caf\\udce9.csv"]}', UnsupportedValueError,  # (MATLAB's char(56553))
     "item 0: cannot store 'caf\\udce9.csv': it holds a lone surrogate"),
    ({"items": [_JSON]}, b'{"caf\\udce9": 1}', UnsupportedValueError, "item 0: cannot store 'caf\\udce9'"),
    ({"items": [_ITEM]}, npy_header("<U4", (2,)) + np.array(["a", "caf\udce9"]).tobytes(), UnsupportedValueError,
     "item 0: cannot store this str array: its item 'caf\\udce9' holds a lone surrogate"),
    ({"items": [_ITEM, "x"]}, None, InvalidMetadataError, "item 1 is the str 'x', not an object"),
    ({"items": [_ITEM, 7]}, None, InvalidMetadataError, "item 1 is the int 7, not an object"),
    ({"items": [{**_ITEM, "addr": "subject=1"}]}, None, InvalidMetadataError,
     "item 0: 'addr' is the str 'subject=1', not an object"),
    ({"items": [{**_ITEM, "vkeys": ["note"]}]}, None, InvalidMetadataError, "item 0: 'vkeys' is the list ['note']"),
    ({"items": [{**_ITEM, "addr": {"subject": float("nan")}}]}, None, InvalidMetadataError,
     "item 0: subject=nan is a float, but not a finite one"),
    ({"children": ["payload-1.bin"]}, None, InvalidMetadataError, "child 0 is the str 'payload-1.bin'"),
    ({"children": {}}, None, InvalidMetadataError, "'children' must be a list"),
])
def test_ingest_names_what_is_malformed_where_and_records_nothing(project, fields, payload, error, named):
    folder = _stage(project, [])
    npy = b"".join(bytes(p) for p in encode_npy(np.arange(3.0)))
    (folder / "payload-0.bin").write_bytes(npy)
    (folder / "payload-1.bin").write_bytes(npy if payload is None else payload)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["items"] = [{**_ITEM, "payload": "payload-0.bin"}]
    manifest.update(fields)
    (folder / "manifest.json").write_text(json.dumps(manifest))  # (a NaN written as JSON's NaN)
    before = journal_size(project)
    with pytest.raises(error, match=re.escape(named)):
        ingest_manifest(project, folder / "manifest.json")
    assert journal_size(project) == before


def test_ingest_of_a_manifest_that_is_no_object_says_so(project):
    folder = _stage(project, [])
    (folder / "manifest.json").write_text("[1, 2]")
    result = CliRunner().invoke(main, ["ingest", str(folder / "manifest.json")])
    assert result.exit_code != 0
    assert "holds a JSON list, not the manifest object" in result.output
    assert "AttributeError" not in result.output


def test_ingest_of_the_queue_records_every_save_in_order_and_skips_unfinished(project):
    queue = project.scistack_dir / "queue"
    for name, value in [("20260101T000000000-00000002-b", 2.0), ("20260101T000000000-00000001-a", 1.0)]:
        folder = queue / name
        folder.mkdir(parents=True)
        (folder / "payload-0.bin").write_bytes(b"".join(bytes(p) for p in encode_npy(np.full(2, value))))
        (folder / "manifest.json").write_text(json.dumps({
            "children": [], "format": 1, "schema_keys": project.schema_keys, "var": "Staged",
            "writer": "scistack-matlab", "items": [{"addr": {"subject": 1, "session": "pre"},
                                                    "kind": "npy", "payload": "payload-0.bin", "vkeys": {}}]}))
    unfinished = queue / "20260101T000000000-00000003-c"
    unfinished.mkdir()
    (unfinished / "payload-0.bin").write_bytes(b"partial")
    result = CliRunner().invoke(main, ["ingest", str(queue)])
    assert result.exit_code == 0, result.output
    assert len(result.output.split()) == 2
    assert [p.name for p in queue.iterdir()] == [unfinished.name]  # recorded folders removed
    project.index.refresh()
    current = Staged.load(subject=1, session="pre")
    assert current.data.tolist() == [2.0, 2.0] and current.version == 2  # sorted by name: 1 then 2


def test_a_refused_queued_save_is_set_aside_and_the_others_recorded(project):
    """A queued MATLAB save Python refuses (here NaN as an address value, which an older
    client queued) had failed every later flush and kept the saves after it unrecorded until
    its folder was deleted by hand. It is moved whole to .scistack/rejected, named once (as
    the user wrote it: NaN, not the `$float` tag), and the others are recorded."""
    queue = project.scistack_dir / "queue"
    for name, subject in [("20260101T000000000-00000001-a", 1), ("20260101T000000000-00000002-b", {"$float": "nan"}),
                          ("20260101T000000000-00000003-c", 3)]:
        folder = queue / name
        folder.mkdir(parents=True)
        (folder / "payload-0.bin").write_bytes(b"".join(bytes(p) for p in encode_npy(np.full(2, 7.0))))
        (folder / "manifest.json").write_text(json.dumps({
            "children": [], "format": 1, "schema_keys": project.schema_keys, "var": "Staged",
            "writer": "scistack-matlab", "items": [{"addr": {"subject": subject, "session": "pre"},
                                                    "kind": "npy", "payload": "payload-0.bin", "vkeys": {}}]}))
    result = CliRunner().invoke(main, ["ingest", str(queue)])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 2
    kept = project.scistack_dir / "rejected" / "20260101T000000000-00000002-b"
    assert "a queued save was not recorded (Staged at subject=nan, session='pre')" in result.stderr
    assert "subject=nan is a float, but not a finite one" in result.stderr
    assert str(kept) in result.stderr and "$float" not in result.stderr
    assert sorted(p.name for p in kept.iterdir()) == ["manifest.json", "payload-0.bin", "reason.txt"]
    assert not any(queue.iterdir())
    project.index.refresh()
    assert sorted(r.metadata["subject"] for r in Staged.load_all()) == [1, 3]
    again = CliRunner().invoke(main, ["ingest", str(queue)])
    assert again.exit_code == 0 and again.stderr == "" and again.stdout == ""


def _stage_stored(project, oids: list[str], name: str) -> Path:
    """A manifest naming values already stored (MATLAB Thunk results) by their oids."""
    return _stage(project, [{"addr": {"subject": n + 1, "session": "pre"}, "oid": oid, "vkeys": {}}
                            for n, oid in enumerate(oids)], name=name)


def test_a_stored_value_a_part_of_which_is_gone_is_not_named(project):
    """A stored dict whose array a gc freed: only the dict itself being gone was refused, so
    it was named, half of it unloadable. Any part gone refuses it; nothing is recorded."""
    from scistack.objects.codec import child_oids

    parent = project.store.put_value({"gain": 2.5, "trace": np.arange(50.0)})
    (child,) = [oid for oid, _ in child_oids("json", project.store.get(parent).payload)]
    project.store.delete(child)
    before = journal_size(project)
    with pytest.raises(InvalidMetadataError, match="does not hold"):
        ingest_manifest(project, _stage_stored(project, [parent], "half") / "manifest.json")
    assert journal_size(project) == before


def test_the_items_of_a_manifest_freshen_a_shared_lineage_once(project):
    """Items naming the same stored value (or sharing children) freshen each object once a
    manifest, not once an item: each item had walked the whole lineage again."""
    import sys

    shared = project.store.put_value({"a": np.arange(30.0), "b": np.arange(40.0)})
    folder = _stage_stored(project, [shared] * 3, "shared")
    freshened: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "freshen":
            freshened.append(frame.f_locals.get("oid"))

    sys.setprofile(profile)
    try:
        ingest_manifest(project, folder / "manifest.json")
    finally:
        sys.setprofile(None)
    from scistack.objects.codec import child_oids

    parts = [oid for oid, _ in child_oids("json", project.store.get(shared).payload)]
    assert sorted(freshened) == sorted([shared, *parts])  # each once, not once an item
    assert [r.oid for r in project.index.records("Staged")] == [shared] * 3
