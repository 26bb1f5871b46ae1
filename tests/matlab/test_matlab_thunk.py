"""`scistack matlab-thunk` / `matlab-thunk-commit` without Octave (the files a MATLAB
`scistack.Thunk` call writes are written here), the save of a Thunk result by `ingest`, and
`status` / `why` judging MATLAB calls by their `.m` files. matlab/tests/test_thunk.m runs the
real thing in Octave; test_octave_queue.py races two flushes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from scistack.database import Database
from scistack.errors import InvalidMetadataError, LineageError
from scistack.ingest import ingest_manifest
from scistack.lineage.calls import key_from_oids
from scistack.matlab_bridge import matlab_function, plan, thunk_commit, thunk_lookup
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.hashing import hash_object
from scistack.objects.npy import encode_npy
from scistack.records import read_call
from scistack.report.status import status_grid
from scistack.report.why import why_record

KEYS = ["subject", "session"]


def _npy(value: np.ndarray) -> bytes:
    return b"".join(bytes(p) for p in encode_npy(value))


@pytest.fixture
def project(tmp_path):
    db = Database(tmp_path / "proj" / "gait.duckdb", KEYS)
    with db.batch():
        for subject in (1, 2):
            oid = db.store.put_value(np.arange(4.0) * subject)
            db.index.put_ref("Raw", {"subject": subject, "session": "pre"}, {}, oid, "npy")
    fn = tmp_path / "code" / "scale.m"
    fn.parent.mkdir()
    fn.write_text("function y = scale(signal, k)\ny = signal * k;\nend\n")
    yield db, fn
    db.close()


def _call(db: Database, fn: Path, name: str, args: list, k: bytes = b"2.0", helpers: tuple = ()) -> Path:
    """The folder of one Thunk call as MATLAB stages it: thunk.json and the constant's payload."""
    folder = db.root / ".scistack" / "staging" / name
    folder.mkdir(parents=True)
    (folder / "payload-0.bin").write_bytes(k)
    request = {"args": [*args, {"kind": "json", "payload": "payload-0.bin"}], "children": [],
               "format": 1, "function": {"file": str(fn), "helpers": [str(h) for h in helpers], "name": "scale"},
               "nargout": 1, "schema_keys": KEYS, "writer": "scistack-matlab"}
    (folder / "thunk.json").write_bytes(dumps_canonical(request) + b"\n")
    return folder


def _run(db: Database, folder: Path, value: np.ndarray) -> dict:
    """MATLAB's side of a miss: (the lookup if not done yet,) the output staged, the commit."""
    if not (folder / "thunk-result.json").exists():
        assert thunk_lookup(db, folder / "thunk.json")["status"] == "run"
    (folder / "payload-1.bin").write_bytes(_npy(value))
    results = {"children": [], "duration": 0.01, "env": {"language": "matlab", "octave": "7.3.0"},
               "format": 1, "outputs": [{"kind": "npy", "payload": "payload-1.bin"}],
               "started": 1790000000.5, "writer": "scistack-matlab"}
    (folder / "thunk-results.json").write_bytes(dumps_canonical(results) + b"\n")
    return thunk_commit(db, folder / "thunk-results.json")


def _raw(db: Database, subject: int) -> dict:
    ref = db.index.versions_at("Raw", dumps_canonical({"session": "pre", "subject": subject}).decode())[-1]
    return {"metadata": {"session": "pre", "subject": float(subject)}, "oid": ref.oid}


def test_a_miss_is_recorded_then_hits_and_shares_the_for_each_key(project):
    db, fn = project
    raw = _raw(db, 1)
    folder = _call(db, fn, "c1", [raw])
    looked = thunk_lookup(db, folder / "thunk.json")
    identity = matlab_function(fn).identity
    k_oid = hash_object("json", [b"2.0"])
    assert looked["status"] == "run"
    assert looked["key"] == key_from_oids(identity, {"signal": raw["oid"], "k": k_oid})
    assert looked["inputs"]["signal"] == {"oid": raw["oid"], "var": "Raw",
                                          "addr": {"session": "pre", "subject": 1}}
    assert looked["params"] == {"scale.k": 2.0}
    done = _run(db, folder, np.arange(4.0) * 2)
    record = read_call(db.store, done["call"])
    assert record.function.module == "matlab:scale.m" and record.function.file == str(fn)
    assert record.outputs == tuple(done["outs"])
    assert np.array_equal(db.store.get_value(done["outs"][0]), np.arange(4.0) * 2)

    again = thunk_lookup(db, _call(db, fn, "c2", [raw]) / "thunk.json")
    assert (again["status"], again["outs"], again["call"]) == ("cached", done["outs"], done["call"])
    assert again["params"] == {"scale.k": 2.0}
    assert thunk_lookup(db, _call(db, fn, "c3", [raw], b"3.0") / "thunk.json")["status"] == "run"

    # a for_each of the same .m file with the same inputs is the same call
    staging = db.root / ".scistack" / "staging" / "fe"
    staging.mkdir()
    (staging / "payload-0.bin").write_bytes(b"2.0")
    request = {"children": [], "format": 1,
               "function": {"file": str(fn), "helpers": [], "name": "scale"},
               "inputs": {"signal": {"var": "Raw"}, "k": {"kind": "json", "payload": "payload-0.bin"}},
               "iterate": [["subject", [1]], ["session", ["pre"]]], "order": ["signal", "k"],
               "outputs": ["Scaled"], "schema_keys": KEYS, "writer": "scistack-matlab"}
    (staging / "plan.json").write_bytes(dumps_canonical(request) + b"\n")
    combo = plan(db, staging / "plan.json")["combos"][0]
    assert (combo["status"], combo["call"], combo["outs"]) == ("cached", done["call"], done["outs"])


def test_an_infinite_constant_is_a_parameter_and_a_hit_still_writes_json(project):
    db, fn = project
    raw, inf = _raw(db, 1), b'{"$float":"inf"}'  # MATLAB's Inf, as canonical JSON holds it
    looked = thunk_lookup(db, _call(db, fn, "c1", [raw], inf) / "thunk.json")
    assert looked["params"] == {"scale.k": {"$float": "inf"}}
    done = _run(db, db.root / ".scistack" / "staging" / "c1", np.full(4, np.inf))
    again = thunk_lookup(db, _call(db, fn, "c2", [raw], inf) / "thunk.json")  # had raised:
    assert again["status"] == "cached" and again["call"] == done["call"]  # inf is not JSON
    assert again["params"] == {"scale.k": {"$float": "inf"}}


def test_an_edit_between_lookup_and_commit_records_nothing(project):
    db, fn = project
    folder = _call(db, fn, "c1", [_raw(db, 1)])
    key = thunk_lookup(db, folder / "thunk.json")["key"]
    fn.write_text("function y = scale(signal, k)\ny = signal * k + 1;\nend\n")
    with pytest.raises(LineageError, match="changed between the lookup and the commit"):
        _run(db, folder, np.arange(4.0) * 2)
    assert db.index.cached_call(key) is None


def test_chained_results_and_cells_of_records(project):
    db, fn = project
    first = _run(db, _call(db, fn, "c1", [_raw(db, 1)]), np.arange(4.0) * 2)
    folder = _call(db, fn, "c2", [{"call": first["call"], "oid": first["outs"][0]}])
    looked = thunk_lookup(db, folder / "thunk.json")
    assert looked["inputs"]["signal"] == {"oid": first["outs"][0], "call": first["call"]}
    members = [_raw(db, 1), _raw(db, 2)]
    both = thunk_lookup(db, _call(db, fn, "c3", [{"members": members}]) / "thunk.json")
    signal = both["inputs"]["signal"]
    assert signal["members"] == [m["oid"] for m in members]
    assert (signal["var"], signal["addr"]) == ("Raw", {"session": "pre"})
    with pytest.raises(InvalidMetadataError, match="takes 2 argument"):
        thunk_lookup(db, _call(db, fn, "c4", [_raw(db, 1), _raw(db, 2)]) / "thunk.json")


def _save(db: Database, item: dict, name: str) -> list[str]:
    folder = db.root / ".scistack" / "staging" / name
    folder.mkdir(parents=True)
    manifest = {"children": [], "format": 1, "items": [item], "schema_keys": KEYS,
                "var": "Scaled", "writer": "scistack-matlab"}
    (folder / "manifest.json").write_bytes(dumps_canonical(manifest) + b"\n")
    return ingest_manifest(db, folder / "manifest.json")


def test_a_saved_result_carries_its_call_and_status_why_read_the_m_file(project):
    db, fn = project
    done = _run(db, _call(db, fn, "c1", [_raw(db, 1)]), np.arange(4.0) * 2)
    addr = {"session": "pre", "subject": 1}
    with pytest.raises(InvalidMetadataError, match="did not output"):
        _save(db, {"addr": addr, "call": done["call"], "oid": _raw(db, 1)["oid"], "vkeys": {}}, "s0")
    _save(db, {"addr": addr, "call": done["call"], "oid": done["outs"][0], "vkeys": {}}, "s1")
    ref = db.index.records("Scaled")[0]
    assert (ref.oid, ref.call, ref.params) == (done["outs"][0], done["call"], {"scale.k": 2.0})

    assert why_record(db, "Scaled", ref).status == "current"
    assert _status(db) == "done"
    fn.write_text("function y = scale(signal, k)\n% a comment\ny = signal * k;\nend\n")
    assert why_record(db, "Scaled", ref).status == "current"
    fn.write_text("function y = scale(signal, k)\ny = signal * k + 1;\nend\n")
    report = why_record(db, "Scaled", ref)
    assert report.status == "stale" and "+y = signal * k + 1;" in report.reasons[0].diff
    assert _status(db) == "stale"
    fn.unlink()
    assert why_record(db, "Scaled", ref).status == "unknown"
    assert _status(db) == "unknown"


def _status(db: Database) -> str:
    """The status grid's verdict (judged afresh: a new grid judges every identity again)."""
    return status_grid(db, ["Scaled"]).cell("Scaled", {"session": "pre", "subject": 1}).status


def test_the_same_values_at_another_address_are_served_with_their_own_record(project):
    """Subject 3 holds subject 1's raw values (one call key). The lookup had answered
    "cached" with subject 1's call record; then "run", and the commit pointed the cache
    entry at subject 3's record, so subject 1 ran at its next call, and so on, in turn. It is
    served the cached result with a record of its own (as Python's Thunk does), at every call
    the same one, and the cache entry stays."""
    db, fn = project
    db.index.put_ref("Raw", {"subject": 3, "session": "pre"}, {}, _raw(db, 1)["oid"], "npy")
    first = _run(db, _call(db, fn, "c1", [_raw(db, 1)]), np.arange(4.0) * 2)
    assert thunk_lookup(db, _call(db, fn, "c2", [_raw(db, 1)]) / "thunk.json")["call"] == first["call"]
    looked = [thunk_lookup(db, _call(db, fn, f"c{n}", [_raw(db, 3)]) / "thunk.json") for n in (3, 4)]
    assert [x["status"] for x in looked] == ["cached", "cached"]
    assert looked[0]["call"] == looked[1]["call"] != first["call"]
    assert looked[0]["outs"] == first["outs"] and looked[0]["params"] == {"scale.k": 2.0}
    record = db.store.get_value(looked[0]["call"])
    assert record["inputs"]["signal"]["addr"] == {"session": "pre", "subject": 3}
    assert record["started"] == db.store.get_value(first["call"])["started"]
    assert db.index.cached_call(looked[0]["key"])["call"] == first["call"]
    assert thunk_lookup(db, _call(db, fn, "c5", [_raw(db, 1)]) / "thunk.json")["call"] == first["call"]


def test_a_copied_project_judges_its_own_copy_of_the_m_files(tmp_path):
    """A second checkout of the project (a colleague's clone, a moved or copied folder) reads
    its own `.m` files: the record names them relative to the project's folder too. Before,
    it read the absolute paths of the folder that computed the value: its own edit stayed
    "done", and with that folder gone every MATLAB value was "unknown"."""
    first, second = tmp_path / "a", tmp_path / "b"
    db = Database(first / "gait.duckdb", KEYS)
    try:
        with db.batch():
            oid = db.store.put_value(np.arange(4.0))
            db.index.put_ref("Raw", {"subject": 1, "session": "pre"}, {}, oid, "npy")
        fn, helper = first / "code" / "scale.m", first / "code" / "+lab" / "twice.m"
        helper.parent.mkdir(parents=True)
        fn.write_text("function y = scale(signal, k)\ny = lab.twice(signal) * k;\nend\n")
        helper.write_text("function y = twice(x)\ny = 2 * x;\nend\n")
        done = _run(db, _call(db, fn, "c1", [_raw(db, 1)], helpers=(helper,)), np.arange(4.0) * 4)
        _save(db, {"addr": {"session": "pre", "subject": 1}, "call": done["call"], "oid": done["outs"][0],
                   "vkeys": {}}, "s1")
        record = read_call(db.store, done["call"]).function
        assert record.project_file == "code/scale.m"
        assert [h.extra.get("project_file") for h in record.helpers.values()] == ["code/+lab/twice.m"]
        assert _status(db) == "done"
    finally:
        db.close()
    shutil.copytree(first, second)
    shutil.rmtree(first / "code")  # the first folder's files gone: the copy has its own
    copy = Database(second / "gait.duckdb", KEYS)
    try:
        ref = copy.index.records("Scaled")[0]
        assert why_record(copy, "Scaled", ref).status == "current"
        assert _status(copy) == "done"
        (second / "code" / "+lab" / "twice.m").write_text("function y = twice(x)\ny = 3 * x;\nend\n")
        report = why_record(copy, "Scaled", ref)
        assert report.status == "stale" and "twice.m" in str(report), report
        assert _status(copy) == "stale"
    finally:
        copy.close()


def test_an_imported_matlab_value_is_judged_by_the_exporting_projects_m_files(tmp_path):
    """Project A's MATLAB-computed value exported and imported into project B, whose own
    code/scale.m (and helper) is another function of that name: the record names the project
    that made it (`function.project`, as a Python record does), so B reads A's `.m` files at
    their recorded paths. Before, B joined the record's `project_file` to its own folder and
    called the value stale (B's scale.m) or, with no such file in B, unknown."""
    a, b = tmp_path / "a", tmp_path / "b"
    db = Database(a / "gait.duckdb", KEYS)
    try:
        with db.batch():
            oid = db.store.put_value(np.arange(4.0))
            db.index.put_ref("Raw", {"subject": 1, "session": "pre"}, {}, oid, "npy")
        fn, helper = a / "code" / "scale.m", a / "code" / "+lab" / "twice.m"
        helper.parent.mkdir(parents=True)
        fn.write_text("function y = scale(signal, k)\ny = lab.twice(signal) * k;\nend\n")
        helper.write_text("function y = twice(x)\ny = 2 * x;\nend\n")
        done = _run(db, _call(db, fn, "c1", [_raw(db, 1)], helpers=(helper,)), np.arange(4.0) * 4)
        _save(db, {"addr": {"session": "pre", "subject": 1}, "call": done["call"], "oid": done["outs"][0],
                   "vkeys": {}}, "s1")
        record = read_call(db.store, done["call"]).function
        assert record.project_file == "code/scale.m" and record.project in db.project_ids
        db.export("Scaled", to=tmp_path / "bundle", subject=1, session="pre")
    finally:
        db.close()
    into = Database(b / "gait.duckdb", KEYS)
    try:
        into.import_bundle(tmp_path / "bundle")
        ref = into.index.records("Scaled")[0]
        assert why_record(into, "Scaled", ref).status == "current"  # (B has no code/ at all)
        assert _status(into) == "done"
        (b / "code" / "+lab").mkdir(parents=True)  # B's own scale.m and twice.m: other functions
        (b / "code" / "scale.m").write_text("function y = scale(signal, k)\ny = signal - k;\nend\n")
        (b / "code" / "+lab" / "twice.m").write_text("function y = twice(x)\ny = x;\nend\n")
        assert why_record(into, "Scaled", ref).status == "current"
        assert _status(into) == "done"
        helper.write_text("function y = twice(x)\ny = 3 * x;\nend\n")  # A's helper edited: stale
        report = why_record(into, "Scaled", ref)
        assert report.status == "stale" and str(helper) in str(report), report
        assert _status(into) == "stale"
    finally:
        into.close()
