"""`db.export` / `db.import_bundle` and `scistack export` / `scistack import` (issue 22).

A small real pipeline (Raw -> smooth -> Filtered -> peak -> Peak, plus an unrelated
variable and call); bundles are checked as a stranger would read them (open files, sha256,
RO-Crate validated offline by roc-validator, PROV-JSON read by `prov`) and imported into a
fresh project where the same run is all cache hits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from prov.model import ProvActivity, ProvDocument

import scistack.database as database_module
from scistack import BaseVariable, configure_database, for_each
from scistack.errors import BundleDamagedError, ExportError, SchemaMismatchError, ScistackError
from tests.conftest import PYTHON, SCHEMA
from tests.rocrate_offline import validate

PIPELINE = {"subject": [1, 2], "session": ["pre", "post"]}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Exports and their validation must work offline: any connection attempt fails."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("this test must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


class ExRaw(BaseVariable):
    pass


class ExFiltered(BaseVariable):
    pass


class ExPeak(BaseVariable):
    pass


class ExTable(BaseVariable):
    pass


class ExUnrelated(BaseVariable):
    pass


def smooth(signal, width):
    return np.convolve(signal, np.ones(width) / width, mode="same")


def peak(signal):
    return float(signal.max())


def doubled(signal):
    return signal * 2


def run_pipeline() -> list:
    return [
        for_each(smooth, inputs={"signal": ExRaw, "width": 3}, outputs=[ExFiltered], **PIPELINE),
        for_each(peak, inputs={"signal": ExFiltered}, outputs=[ExPeak], **PIPELINE),
    ]


@pytest.fixture
def pipeline(project):
    for subject in (1, 2):
        for session in ("pre", "post"):
            ExRaw.save(np.arange(6.0) * subject + (session == "post"), subject=subject, session=session)
    run_pipeline()
    for_each(doubled, inputs={"signal": ExRaw}, outputs=[ExUnrelated], **PIPELINE)
    import pandas as pd

    ExTable.save(pd.DataFrame({"t": [0.0, 0.1], "v": [1, 2]}), subject=1, session="pre")
    return project


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "scistack-bundle.json").read_text())


def _fresh_project(path: Path):
    database_module._current = None
    return configure_database(path / "other.duckdb", SCHEMA)


def test_export_holds_the_lineage_closure_and_nothing_else(pipeline, tmp_path):
    report = pipeline.export(ExPeak, to=tmp_path / "paper", subject=1, session="post")
    bundle = tmp_path / "paper"
    manifest = _manifest(bundle)
    held = {(r["var"], json.dumps(r["addr"], sort_keys=True)) for r in manifest["refs"]}
    here = json.dumps({"session": "post", "subject": 1}, sort_keys=True)
    assert held == {("ExPeak", here), ("ExFiltered", here), ("ExRaw", here)}
    assert report.selected == 1 and report.calls == 2 == len(manifest["call_records"])
    peak_call = pipeline.call_record(ExPeak.load(subject=1, session="post").record.call)
    assert peak_call["call"] in manifest["call_records"]
    assert peak_call["function"]["code"] in {o["oid"] for o in manifest["objects"]}
    # open files a stranger can read, each named readably and with its hashes
    raw = np.load(bundle / "ExRaw/subject=1/session=post.npy")
    np.testing.assert_array_equal(raw, np.arange(6.0) + 1)
    assert json.loads((bundle / "ExPeak/subject=1/session=post.json").read_text()) == ExPeak.load(
        subject=1, session="post").data
    for entry in manifest["files"]:
        data = (bundle / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["size"] == len(data)
    readme = (bundle / "README.md").read_text()
    assert "scistack import" in readme and "np.load" in readme and "ExPeak" in readme


def test_tables_become_parquet(pipeline, tmp_path):
    import pandas as pd

    pipeline.export(ExTable, to=tmp_path / "t", subject=1, session="pre")
    frame = pd.read_parquet(tmp_path / "t/ExTable/subject=1/session=pre.parquet")
    assert frame["v"].tolist() == [1, 2]


def test_a_series_is_a_column_named_as_the_series_and_imports_back_equal(project, tmp_path):
    """A Series was exported as a frame whose one column was named `__series__` (scistack's
    storage name): its column is named as `series.to_frame()` names it (an unnamed one after
    the variable), beside its index, and the bundle still imports back to the equal Series."""
    import pandas as pd

    force = pd.Series([1.5, 2.5e-12], index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"], name="t"),
                      name="force")
    saved = {1: force, 2: pd.Series([1, 2], index=pd.Index(["a", "b"], name="trial")),
             3: pd.Series([0.5, 0.25], index=pd.Index([3, 4], name="n"), name="n")}  # its index's name
    saved[4] = pd.Series(np.arange(5000) / 7, index=pd.Index(np.arange(5000) * 2, name="t"), name="t")
    from scistack.objects.chunking import set_chunking

    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)  # subject 4 is stored chunked
    try:
        for subject, series in saved.items():
            ExTable.save(series, subject=subject, session="pre")
    finally:
        set_chunking()
    assert ExTable.load(subject=4, session="pre", lazy=True).record.kind == "chunked"
    project.export(all_current=[ExTable], to=tmp_path / "b")
    read = {s: pd.read_parquet(tmp_path / f"b/ExTable/subject={s}/session=pre.parquet") for s in saved}
    assert [list(frame.columns) for frame in read.values()] == [["force"], ["ExTable"], ["n"], ["t"]]
    pd.testing.assert_series_equal(read[1]["force"], force, check_freq=False)
    pd.testing.assert_series_equal(read[2]["ExTable"], saved[2].rename("ExTable"))
    pd.testing.assert_series_equal(read[3]["n"], saved[3])
    pd.testing.assert_series_equal(read[4]["t"], saved[4])
    assert validate(tmp_path / "b", tmp_path / "cache") == []
    other = _fresh_project(tmp_path / "other")
    try:
        assert other.import_bundle(tmp_path / "b").refs == 4
        for subject, series in saved.items():
            pd.testing.assert_series_equal(ExTable.load(subject=subject, session="pre").data, series)
    finally:
        other.close()


def test_a_dict_holding_arrays_is_a_folder_of_open_files(project, tmp_path):
    """A dict holding an array had no open file at all (only its scistack objects): it is a
    `.parts` folder, each array a .npy (its stored bytes), each table a .parquet, and the dict
    itself value.json naming them (`{"$ref": "emg.npy"}`); it imports back as it was."""
    import pandas as pd

    emg = np.random.default_rng(1).normal(size=(50, 2))
    trials = [np.arange(3, dtype="int16"), np.array([0.1, np.pi])]
    table = pd.DataFrame({"t": [0.0, 0.5], "force": [1.5, 2.5]})
    value = {"emg": emg, "fs": 2000.0, "trials": trials, "table": table, "note": "left", "gain": np.nan}
    ExRaw.save(value, subject=1, session="pre")
    project.export(ExRaw, to=tmp_path / "b", subject=1, session="pre")
    folder = tmp_path / "b/ExRaw/subject=1/session=pre.parts"
    assert json.loads((folder / "value.json").read_text()) == {
        "emg": {"$ref": "emg.npy"}, "fs": 2000.0, "gain": None, "note": "left",
        "table": {"$ref": "table.parquet"}, "trials": [{"$ref": "trials.0.npy"}, {"$ref": "trials.1.npy"}]}
    np.testing.assert_array_equal(np.load(folder / "emg.npy"), emg)
    for n, trial in enumerate(trials):
        got = np.load(folder / f"trials.{n}.npy")
        assert got.dtype == trial.dtype and np.array_equal(got, trial)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "table.parquet"), table)
    entry, = _manifest(tmp_path / "b")["files"]
    assert entry["path"] == "ExRaw/subject=1/session=pre.parts"
    assert {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in entry["members"]} \
        == entry["members"] and len(entry["members"]) == 5
    assert '`value.json` holds it, each' in (tmp_path / "b/README.md").read_text()
    assert validate(tmp_path / "b", tmp_path / "cache") == []
    # keys that would leave the folder, or name one file (`a/b` and `a_b`; `EMG` and `emg` on macOS)
    ExRaw.save({"..": np.zeros(2), "a/b": np.ones(2), "a_b": np.full(2, 2.0), "EMG": np.full(2, 3.0),
                "emg": np.full(2, 4.0)}, subject=2, session="pre")
    project.export(ExRaw, to=tmp_path / "odd", subject=2, session="pre")
    folder = tmp_path / "odd/ExRaw/subject=2/session=pre.parts"
    refs, odd = json.loads((folder / "value.json").read_text()), ExRaw.load(subject=2, session="pre").data
    assert len({ref["$ref"].casefold() for ref in refs.values()}) == 5
    for key, ref in refs.items():
        assert (folder / ref["$ref"]).resolve().parent == folder.resolve()
        np.testing.assert_array_equal(np.load(folder / ref["$ref"]), odd[key])
    other = _fresh_project(tmp_path / "other")
    try:
        other.import_bundle(tmp_path / "b")
        back = ExRaw.load(subject=1, session="pre").data
        np.testing.assert_array_equal(back["emg"], emg)
        assert back["trials"][0].dtype == np.int16 and back["fs"] == 2000.0 and np.isnan(back["gain"])
        pd.testing.assert_frame_equal(back["table"], table)
    finally:
        other.close()


def test_every_crate_is_a_valid_process_run_crate(pipeline, tmp_path):
    for name, kwargs in {"one": {"subject": 1, "session": "post"}, "all": {}}.items():
        if name == "all":
            pipeline.export(to=tmp_path / name, all_current=[ExPeak, ExFiltered, ExTable])
        else:
            pipeline.export(ExPeak, to=tmp_path / name, **kwargs)
        bundle = tmp_path / name
        assert validate(bundle, tmp_path / f"cache-{name}") == []
        graph = json.loads((bundle / "ro-crate-metadata.json").read_text())["@graph"]
        actions = [e for e in graph if e.get("@type") == "CreateAction"]
        assert len(actions) == len(_manifest(bundle)["call_records"])
        by_id = {e["@id"]: e for e in graph}
        for action in actions:
            assert action["result"] and action["startTime"] and action["endTime"] and action["environment"]
            app = by_id[action["instrument"]["@id"]]
            call = pipeline.call_record(action["identifier"].removeprefix("blake3:"))
            assert app["@type"] == "SoftwareApplication"
            assert app["identifier"] == f"scistack-code:{call['code_hash']}"
            if (call["env"].get("git") or {}).get("commit"):  # the tests run inside a git clone
                assert call["env"]["git"]["commit"] in app["softwareVersion"]
            python = [by_id[e["@id"]] for e in action["environment"] if by_id[e["@id"]]["name"] == "python"]
            assert python[0]["value"] == call["env"]["python"]
        values = [e for e in graph if e.get("@type") == "File" and e["@id"].endswith(".npy")
                  and not e["@id"].startswith("objects/")]
        assert values and all(v["identifier"].startswith("blake3:") and len(v["sha256"]) == 64
                              and v["encodingFormat"] and v["contentSize"] for v in values)
        doc = ProvDocument.deserialize(bundle / "provenance.json", format="json")
        assert len(list(doc.get_records(ProvActivity))) == len(actions)


def test_the_validator_check_can_fail(pipeline, tmp_path):
    """A crate without its profile or an action without instrument is refused."""
    bundle = tmp_path / "b"
    pipeline.export(ExPeak, to=bundle, subject=1, session="post")
    path = bundle / "ro-crate-metadata.json"
    crate = json.loads(path.read_text())
    for entity in crate["@graph"]:
        if entity.get("@type") == "CreateAction":
            del entity["instrument"]
    path.write_text(json.dumps(crate))
    assert any("instrument" in issue for issue in validate(bundle, tmp_path / "cache"))


def test_round_trip_restores_values_lineage_and_cache(pipeline, tmp_path):
    pipeline.export(to=tmp_path / "all", all_current=[ExPeak, ExFiltered])
    expected = {(s, t): ExPeak.load(subject=s, session=t).data for s in (1, 2) for t in ("pre", "post")}
    provenance = pipeline.get_provenance(ExPeak, subject=2, session="pre")
    oids = {o["oid"] for o in _manifest(tmp_path / "all")["objects"]}
    other = _fresh_project(tmp_path / "other")
    try:
        report = other.import_bundle(tmp_path / "all")
        assert report.objects == len(oids) and report.refs == 12
        assert all(other.store.contains(oid) for oid in oids)  # the same oids
        for (s, t), value in expected.items():
            assert ExPeak.load(subject=s, session=t).data == value
        assert other.get_provenance(ExPeak, subject=2, session="pre") == provenance
        with pytest.raises(ScistackError):
            ExUnrelated.load(subject=1, session="pre")  # not in the closure
        reports = run_pipeline()
        assert [r.counts["cached"] for r in reports] == [4, 4]
        assert [r.counts["ran"] for r in reports] == [0, 0]
        assert report.calls == len(_manifest(tmp_path / "all")["calls"]) > 0
        for entry in _manifest(tmp_path / "all")["calls"]:  # each with where its inputs came from,
            here = other.index.cached_call(entry["key"])  # so a hit reads no record to know it
            assert here["origins"] == pipeline.index.cached_call(entry["key"])["origins"] is not None
        again = other.import_bundle(tmp_path / "all")  # merging twice adds nothing
        assert (again.objects, again.refs, again.calls, again.skipped_refs) == (0, 0, 0, 12)
    finally:
        other.close()


def test_bad_selections_and_targets(pipeline, tmp_path):
    with pytest.raises(ExportError, match="nothing to export"):
        pipeline.export(to=tmp_path / "a")
    with pytest.raises(ScistackError, match="subject=9"):
        pipeline.export(ExPeak, to=tmp_path / "a", subject=9)
    assert not (tmp_path / "a").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        pipeline.export(ExPeak, to=busy, subject=1, session="post")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


def _journal_size(db) -> int:
    path = db.index.journal_path
    return path.stat().st_size if path.exists() else 0


def test_numpy_times_in_a_bundle_are_iso_text_and_a_value_json_cannot_hold_is_named(project, tmp_path):
    """A datetime64[ns] was written as its int of nanoseconds (1577872800000000001), a
    timedelta64 as 1500, and a microsecond time got no file at all, though selected and
    listed; any value JSON has no type for (complex, bytes in a dict) was skipped as silently.
    Times are ISO text now (their oids unchanged), and what has no open file is named: a
    NoOpenFileWarning, `no_open_file` in the manifest and the report, and the README."""
    from scistack.errors import NoOpenFileWarning

    ns = np.datetime64("2020-01-01T10:00:00.000000001")
    oids = [ExPeak.save(v, subject=s, session="pre").oid for s, v in enumerate(
        [ns, np.datetime64("2020-01-01T10:00:00.000001"), {"t": ns, "fs": 2000}, np.timedelta64(1500, "ns")], 1)]
    ExPeak.save(1 + 2j, subject=5, session="pre")
    ExPeak.save({"raw": b"\x00"}, subject=6, session="pre")
    with pytest.warns(NoOpenFileWarning, match=r"2 value\(s\) have no open file: ExPeak at subject=5.*complex.*"
                      r"ExPeak at subject=6.*bytes"):
        report = project.export(all_current=[ExPeak], to=tmp_path / "b")
    folder = tmp_path / "b/ExPeak"
    assert [json.loads((folder / f"subject={s}/session=pre.json").read_text()) for s in range(1, 5)] == [
        "2020-01-01T10:00:00.000000001", "2020-01-01T10:00:00.000001",
        {"fs": 2000, "t": "2020-01-01T10:00:00.000000001"}, "1500 nanoseconds"]
    assert [ExPeak.load(subject=s, session="pre").oid for s in range(1, 5)] == oids
    files = {f["addr"]["subject"]: f for f in _manifest(tmp_path / "b")["files"]}
    assert [s for s, f in sorted(files.items()) if f["path"] is None] == [5, 6]
    assert "complex" in files[5]["no_open_file"] and "no_open_file" not in files[1]
    assert len(report.no_open_file) == 2 and report.files == 4
    readme = (tmp_path / "b/README.md").read_text()
    assert "## Values without an open file" in readme
    assert "`ExPeak` at subject=6, session=pre (version 1): it holds a bytes value" in readme


def test_a_tampered_bundle_is_refused_by_name_and_changes_nothing(pipeline, tmp_path):
    pipeline.export(ExPeak, to=tmp_path / "b", subject=1, session="post")
    for victim in ("ExRaw/subject=1/session=post.npy", next(
            o["path"] for o in _manifest(tmp_path / "b")["objects"] if o["kind"] == "code")):
        shutil.rmtree(tmp_path / "c", ignore_errors=True)
        shutil.copytree(tmp_path / "b", tmp_path / "c")
        with open(tmp_path / "c" / victim, "r+b") as fh:
            fh.seek(-1, 2)
            last = fh.read(1)
            fh.seek(-1, 2)
            fh.write(bytes([last[0] ^ 1]))
        other = _fresh_project(tmp_path / f"o{len(victim)}")
        try:
            before, objects = _journal_size(other), sorted(other.store.iter_oids())
            with pytest.raises(BundleDamagedError, match=victim.split("/")[-1]):
                other.import_bundle(tmp_path / "c")
            assert _journal_size(other) == before and sorted(other.store.iter_oids()) == objects
        finally:
            other.close()


def test_a_bundle_missing_an_object_is_refused(pipeline, tmp_path):
    pipeline.export(ExPeak, to=tmp_path / "b", subject=1, session="post")
    call = next(o for o in _manifest(tmp_path / "b")["objects"] if o["kind"] == "call")
    (tmp_path / "b" / call["path"]).unlink()
    other = _fresh_project(tmp_path / "o")
    try:
        with pytest.raises(BundleDamagedError, match=f"{call['path']} is missing"):
            other.import_bundle(tmp_path / "b")
        manifest = _manifest(tmp_path / "b")  # a manifest whose object list lacks that call
        manifest["objects"] = [o for o in manifest["objects"] if o["oid"] != call["oid"]]
        (tmp_path / "b/scistack-bundle.json").write_text(json.dumps(manifest))
        assert call["oid"] in {c["call"] for c in manifest["calls"]}
        with pytest.raises(BundleDamagedError, match=f"call record {call['oid']}"):
            other.import_bundle(tmp_path / "b")
        assert _journal_size(other) == 0 and not list(other.store.iter_oids())
    finally:
        other.close()


def test_a_project_with_other_schema_keys_is_left_alone(pipeline, tmp_path):
    pipeline.export(ExPeak, to=tmp_path / "b", subject=1, session="post")
    database_module._current = None
    other = configure_database(tmp_path / "o" / "x.duckdb", ["animal"])
    try:
        before = _journal_size(other)
        with pytest.raises(SchemaMismatchError, match="nothing was imported"):
            other.import_bundle(tmp_path / "b")
        assert _journal_size(other) == before and not list(other.store.iter_oids())
    finally:
        other.close()


def test_a_bundle_goes_into_a_project_that_has_added_a_finer_level_since(pipeline, tmp_path):
    """After `add_schema_key("trial")` a project refused every bundle of its own old layout."""
    pipeline.export(ExPeak, to=tmp_path / "b", subject=1, session="post")
    database_module._current = None
    (tmp_path / "o").mkdir()
    other = configure_database(tmp_path / "o" / "x.duckdb", SCHEMA)
    other.add_schema_key("trial")
    try:
        other.import_bundle(tmp_path / "b")
        assert ExPeak.load(subject=1, session="post").data == pipeline_peak(1, "post")
        assert ExPeak.load(subject=1, session="post").metadata == {"subject": 1, "session": "post"}
    finally:
        other.close()
        database_module._current = None
    (tmp_path / "c").mkdir()
    coarser = configure_database(tmp_path / "c" / "x.duckdb", ["subject"])
    try:
        with pytest.raises(SchemaMismatchError, match=r"Add the bundle's finer level\(s\) first: "
                                                      r"db.add_schema_key\('session'\)"):
            coarser.import_bundle(tmp_path / "b")
    finally:
        coarser.close()


def test_a_whole_float_in_an_edited_bundle_is_the_int_it_equals(pipeline, tmp_path):
    """A manifest edited to say `subject: 1.0` (by hand, or by a tool that reads numbers as
    doubles) had been imported at a float address of its own, beside the project's subject 1:
    load(subject=1) still gave the project's value. As save does, 1.0 is subject 1."""
    pipeline.export(ExPeak, to=tmp_path / "b", subject=1, session="post")
    manifest = _manifest(tmp_path / "b")
    for ref in manifest["refs"]:
        ref["addr"] = {k: float(v) if k == "subject" else v for k, v in ref["addr"].items()}
    (tmp_path / "b/scistack-bundle.json").write_text(json.dumps(manifest))
    assert '"subject": 1.0' in (tmp_path / "b/scistack-bundle.json").read_text()
    other = _fresh_project(tmp_path / "o")
    try:
        ExPeak.save(-1.0, subject=1, session="post")
        report = other.import_bundle(tmp_path / "b")
        assert report.superseded == [("ExPeak", {"session": "post", "subject": 1}, {})]
        assert ExPeak.load(subject=1, session="post").data == pipeline_peak(1, "post")
        assert {type(r.addr["subject"]) for var in ("ExRaw", "ExFiltered", "ExPeak")
                for r in other.index.records(var)} == {int}
        assert [r.summary for r in ExPeak.list_versions(subject=1, session="post")] == [
            "-1.0", repr(pipeline_peak(1, "post"))]  # one address, the project's value kept as version 1
    finally:
        other.close()


def pipeline_peak(subject: int, session: str) -> float:
    signal = np.arange(6.0) * subject + (session == "post")
    return float(smooth(signal, 3).max())


def test_cli_export_and_import(pipeline, tmp_path, python_env):
    pipeline.close()
    db = str(tmp_path / "gait.duckdb")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "scistack", "--db", *args], capture_output=True, text=True,
                              env=python_env, cwd=tmp_path, timeout=120)

    done = cli(db, "export", "ExPeak", "--session", "post", "--to", "paper")
    assert done.returncode == 0, done.stderr
    assert {r["addr"]["subject"] for r in _manifest(tmp_path / "paper")["selected"]} == {1, 2}
    done = cli(db, "export", "ExPeak", "session=post", "subject=2", "--to", "paper2")  # key=value too
    assert done.returncode == 0, done.stderr
    assert [r["addr"] for r in _manifest(tmp_path / "paper2")["selected"]] == [{"subject": 2, "session": "post"}]
    done = cli(db, "export", "--all-current", "ExPeak", "ExPeak", "--version", "1", "--to", "paper3")
    assert done.returncode == 2 and "export one variable at that version" in done.stderr
    done = cli(db, "export", "ExPeak", "--subject", "2", "--version", "1", "--to", "paper3")
    assert done.returncode == 0, done.stderr
    assert [r["version"] for r in _manifest(tmp_path / "paper3")["selected"]] == [1, 1]  # pre, post
    done = cli(db, "export", "--all-current", "ExPeak", "ExFiltered", "--to", "paper")
    assert done.returncode == 2 and "not an empty folder" in done.stderr
    database_module._current = None
    configure_database(tmp_path / "o" / "x.duckdb", SCHEMA).close()
    done = cli(str(tmp_path / "o" / "x.duckdb"), "import", "paper", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["refs"] == 6


def test_a_variable_named_twice_is_selected_once_and_version_selects_an_older_one(project, tmp_path):
    """A variable named twice listed each value twice in `selected` and the README ("6
    selected value(s)" for 3); `version=` was refused with a message about load()/load_all()
    that did not say how to export an older version: it selects it, as load(version=) does."""
    for subject in (1, 2, 3):
        ExPeak.save(float(subject), subject=subject, session="pre")
    ExPeak.save(10.0, subject=1, session="pre")
    report = project.export(ExPeak, all_current=["ExPeak", ExPeak], to=tmp_path / "b")
    selected = _manifest(tmp_path / "b")["selected"]
    assert report.selected == len(selected) == 3
    assert sorted(r["addr"]["subject"] for r in selected) == [1, 2, 3]
    assert "3 selected value(s)" in (tmp_path / "b/README.md").read_text()
    project.export(ExPeak, subject=1, version=1, to=tmp_path / "v1")
    (entry,) = _manifest(tmp_path / "v1")["selected"]
    assert (entry["addr"]["subject"], entry["version"]) == (1, 1)
    assert json.loads((tmp_path / "v1" / (_manifest(tmp_path / "v1")["files"][0]["path"])).read_text()) == 1.0
    with pytest.raises(ExportError, match=r"export one variable at that version: db.export\(ExPeak, version=1"):
        project.export(all_current=[ExPeak], version=1, to=tmp_path / "v2")


def test_an_import_names_the_values_of_the_project_it_makes_no_longer_current(pipeline, tmp_path, python_env):
    """The bundle's value becomes current where the project had another one: said, and listed
    (the import had been silent; the project's own value stays as an earlier version)."""
    pipeline.export(ExPeak, to=tmp_path / "b", subject=1)
    pipeline.close()
    database_module._current = None
    (tmp_path / "o").mkdir()
    other = configure_database(tmp_path / "o" / "x.duckdb", SCHEMA)
    try:
        ExPeak.save(-1.0, subject=1, session="pre")  # this project's own, another value
        ExPeak.save(pipeline_peak(1, "post"), subject=1, session="post")  # the same value: kept
    finally:
        other.close()
        database_module._current = None
    done = subprocess.run([PYTHON, "-m", "scistack", "--db", str(tmp_path / "o" / "x.duckdb"), "import",
                           str(tmp_path / "b")], capture_output=True, text=True, env=python_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("1 value(s) of this project are no longer current" in done.stdout
            and "scistack log ExPeak subject=1 session=pre)" in done.stdout), done.stdout
    other = configure_database(tmp_path / "o" / "x.duckdb", SCHEMA)
    try:
        assert ExPeak.load(subject=1, session="pre").data == pipeline_peak(1, "pre")
        assert ExPeak.load(subject=1, session="pre", version=1).data == -1.0
        assert other.import_bundle(tmp_path / "b").superseded == []  # twice: nothing changes
    finally:
        other.close()
        database_module._current = None


def average(values):
    return float(np.mean([v.mean() for v in values]))


def test_an_aggregate_brings_every_member_and_nothing_else(pipeline, tmp_path):
    ExUnrelated.save(np.arange(6.0) * 2, subject=2, session="pre")  # the same value as a member
    for_each(average, inputs={"values": ExRaw}, outputs=[ExTable], subject=[2])
    pipeline.export(ExTable, to=tmp_path / "agg", subject=2)
    held = {(r["var"], r["addr"].get("session")) for r in _manifest(tmp_path / "agg")["refs"]}
    assert held == {("ExTable", None), ("ExRaw", "pre"), ("ExRaw", "post")}
    assert validate(tmp_path / "agg", tmp_path / "cache") == []


def test_a_chunked_array_becomes_a_zarr_folder(project, tmp_path):
    import zarr

    from scistack.objects.chunking import set_chunking

    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)
    try:
        big = np.arange(12_000, dtype="int16").reshape(3_000, 4)
        ExRaw.save(big, subject=1, session="pre")
        for_each(smooth, inputs={"signal": ExRaw, "width": 1}, outputs=[ExFiltered], subject=[1],
                 session=["pre"])
        assert ExRaw.load(subject=1, session="pre").record.kind == "chunked"
        project.export(ExRaw, to=tmp_path / "z", subject=1, session="pre")
    finally:
        set_chunking()
    folder = tmp_path / "z/ExRaw/subject=1/session=pre.zarr"
    np.testing.assert_array_equal(zarr.open_array(str(folder), mode="r")[:], big)
    assert validate(tmp_path / "z", tmp_path / "cache") == []
    chunk = next(p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "zarr.json")
    shutil.copytree(tmp_path / "z", tmp_path / "bad")
    bad = tmp_path / "bad" / chunk.relative_to(tmp_path / "z")
    data = bad.read_bytes()
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    other = _fresh_project(tmp_path / "other")
    try:
        name = chunk.relative_to(tmp_path / "z").as_posix()
        with pytest.raises(BundleDamagedError, match=name):
            other.import_bundle(tmp_path / "bad")
        other.import_bundle(tmp_path / "z")
        np.testing.assert_array_equal(ExRaw.load(subject=1, session="pre").data, big)
    finally:
        other.close()


def test_an_import_adopts_the_bundles_chunking_so_identical_data_saved_again_is_a_no_op(project, tmp_path):
    """The chunking is part of a large value's identity: a fresh project importing a bundle
    chunked otherwise than its process would chunk takes the bundle's, and saving the same
    array there again is the documented no-op (it had made version 2). A project with a
    chunking of its own keeps it, and the import says what follows."""
    from scistack.objects.chunking import set_chunking

    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)
    try:
        big = np.random.default_rng(3).standard_normal((3_000, 4))
        ExRaw.save(big, subject=1, session="pre")
        assert ExRaw.load(subject=1, session="pre").record.kind == "chunked"
        project.export(ExRaw, to=tmp_path / "b", subject=1, session="pre")
    finally:
        set_chunking()
    other = _fresh_project(tmp_path / "other")  # (this process chunks by the defaults now)
    try:
        report = other.import_bundle(tmp_path / "b")
        saved = ExRaw.save(big.copy(), subject=1, session="pre")
        assert saved.version == 1 and saved.oid == ExRaw.load(subject=1, session="pre").record.oid
        assert report.notes == []
        assert _manifest(tmp_path / "b")["chunking"] == {"threshold": 16 << 10, "chunk_bytes": 4 << 10}
        config = json.loads((other.scistack_dir / "config.json").read_text())
        assert config["chunking"] == {"threshold": 16 << 10, "chunk_bytes": 4 << 10}
    finally:
        other.close()
    third = _fresh_project(tmp_path / "third")
    try:
        third.chunk_policy()  # (records this process's: the defaults)
        [note] = third.import_bundle(tmp_path / "b").notes
        assert "chunked above 16,384 bytes in chunks of 4,096 bytes" in note and "new project" in note
        assert third.chunk_policy() == set_chunking()  # its own kept
    finally:
        third.close()


def width(table):
    return float(len(table.columns))


def test_a_merge_brings_both_parts(pipeline, tmp_path):
    from scistack import Merge

    for_each(width, inputs={"table": Merge(ExRaw, ExFiltered)}, outputs=[ExUnrelated], subject=[2],
             session=["pre"])
    pipeline.export(ExUnrelated, to=tmp_path / "m", subject=2, session="pre")
    manifest = _manifest(tmp_path / "m")
    assert {r["var"] for r in manifest["refs"]} == {"ExUnrelated", "ExRaw", "ExFiltered"}
    assert len(manifest["call_records"]) == 2  # width, and smooth that made ExFiltered
    other = _fresh_project(tmp_path / "other")
    try:
        other.import_bundle(tmp_path / "m")
        report = for_each(width, inputs={"table": Merge(ExRaw, ExFiltered)}, outputs=[ExUnrelated],
                          subject=[2], session=["pre"])
        assert report.counts["cached"] == 1
    finally:
        other.close()


def test_addresses_that_read_alike_get_files_of_their_own(project, tmp_path):
    """`a b`, `a/b` and `a_b` are one name once sanitised, `1` and `"1"` are too, and `A`
    and `a` are one on macOS and Windows: each value had overwritten the last one's file,
    so the bundle held wrong data and its own hashes refused its import."""
    saved = {(1, "a b"): 1.0, (1, "a/b"): 2.0, (1, "a_b"): 3.0, ("1", "a_b"): 4.0, (1, "A"): 5.0,
             (1, "a"): 6.0}
    from scistack.index import Index

    # (1 beside "1" is refused since 2026-12-07, tests/test_key_types.py; a project saved
    # before may hold both, and its bundle too)
    with pytest.MonkeyPatch.context() as looks_alike:
        looks_alike.setattr(Index, "_check_key_value", lambda *args: None)
        for (subject, session), value in saved.items():
            ExRaw.save(np.full(3, value), subject=subject, session=session)
        project.export(all_current=[ExRaw], to=tmp_path / "b")
        files = _manifest(tmp_path / "b")["files"]
        assert len({f["path"].casefold() for f in files}) == len(saved)
        for entry in files:
            path = tmp_path / "b" / entry["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
            key = (entry["addr"]["subject"], entry["addr"]["session"])
            np.testing.assert_array_equal(np.load(path), np.full(3, saved[key]))
        other = _fresh_project(tmp_path / "other")
        try:
            assert other.import_bundle(tmp_path / "b").refs == len(saved)
            assert ExRaw.load(subject="1", session="a_b").data[0] == 4.0
        finally:
            other.close()


def draw(signal, dest):
    Path(dest).write_bytes(b"plot " + np.asarray(signal).tobytes())


def test_a_value_downstream_of_a_path_output_is_exported(pipeline, tmp_path):
    """A PathOutput input's oid (the hash of the path it writes) is never an object: export
    had failed on it with ObjectNotFoundError, and fsck had called it missing."""
    from scistack import PathOutput
    from scistack.fsck import fsck

    spec = {"signal": ExPeak, "dest": PathOutput("{subject}/{session}.png", root="figs")}
    for_each(draw, inputs=spec, outputs=[ExUnrelated], subject=[1], session=["post"])
    assert fsck(pipeline).problems == ()
    pipeline.export(ExUnrelated, to=tmp_path / "b", subject=1, session="post")
    assert (tmp_path / "b/ExUnrelated/subject=1/session=post.bin").read_bytes().startswith(b"plot ")
    other = _fresh_project(tmp_path / "other")
    try:
        other.import_bundle(tmp_path / "b")
        assert fsck(other).problems == ()
        run_pipeline()
        again = for_each(draw, inputs=spec, outputs=[ExUnrelated], subject=[1], session=["post"])
        assert again.counts["cached"] == 1
    finally:
        other.close()


def test_a_bundle_larger_than_memory_is_imported_an_object_at_a_time(project, tmp_path):
    """Import had read every object of the bundle into memory before writing any: a bundle
    holding a recording larger than memory could not be imported."""
    import tracemalloc

    from scistack.objects.chunking import set_chunking

    set_chunking(threshold=1 << 20, chunk_bytes=1 << 20)  # 1 MiB chunks: written loose, not batched
    try:
        big = np.random.default_rng(0).random((3 << 20) // 8 * 8).reshape(-1, 8)  # 24 MiB
        ExRaw.save(big, subject=1, session="pre")
        project.export(ExRaw, to=tmp_path / "b", subject=1, session="pre")
        del big
        project.sync()  # the index thread's reads are not the import's
        other = _fresh_project(tmp_path / "other")
        try:
            tracemalloc.start()
            other.import_bundle(tmp_path / "b")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < 8 << 20, f"import held {peak >> 20} MiB"
            assert ExRaw.load(subject=1, session="pre", lazy=True).data.shape == (3 << 17, 8)
        finally:
            other.close()
    finally:
        set_chunking()


EXPORT_AND_MEASURE = """
import sys
import pyarrow as pa
from scistack import configure_database
from scistack.objects.chunking import set_chunking
set_chunking(threshold=1 << 20, chunk_bytes=1 << 20)
db = configure_database(sys.argv[1], ["subject", "session"])
db.sync()
db.export("ExTable", to=sys.argv[2], subject=1, session="pre")
print(pa.default_memory_pool().max_memory())
"""


def test_a_chunked_table_is_exported_a_row_group_at_a_time(project, tmp_path, python_env):
    """Export had read a chunked table whole (to write its Parquet file): a table larger than
    memory could not be exported. Arrow's peak memory is measured in a fresh process."""
    import pandas as pd

    from scistack.objects.chunking import set_chunking

    set_chunking(threshold=1 << 20, chunk_bytes=1 << 20)
    try:
        frame = pd.DataFrame({"force": np.arange(3 << 20) % 7, "t": np.arange(3 << 20) % 5})  # 48 MiB
        ExTable.save(frame, subject=1, session="pre")
        assert ExTable.load(subject=1, session="pre", lazy=True).record.kind == "chunked"
    finally:
        set_chunking()
    project.close()
    script = tmp_path / "measure.py"
    script.write_text(EXPORT_AND_MEASURE)
    done = subprocess.run([PYTHON, str(script), str(tmp_path / "gait.duckdb"), str(tmp_path / "b")],
                          capture_output=True, text=True, env=python_env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) < 8 << 20, f"arrow held {int(done.stdout.split()[-1]) >> 20} MiB"
    got = pd.read_parquet(tmp_path / "b/ExTable/subject=1/session=pre.parquet")
    pd.testing.assert_frame_equal(got, frame)


def test_a_dict_holding_a_chunked_array_is_not_read_to_export_it(project, tmp_path):
    """A dict of a large array and a number is a `.parts` folder: the array a Zarr folder of its
    chunks' bytes, the number in value.json. Export had decoded it whole (and then written no
    open file at all)."""
    import tracemalloc

    import zarr

    from scistack.objects.chunking import set_chunking

    emg = np.random.default_rng(0).random(3 << 20)
    set_chunking(threshold=1 << 20, chunk_bytes=1 << 20)
    try:
        ExRaw.save({"emg": emg, "fs": 2000}, subject=1, session="pre")
        project.export(ExRaw, to=tmp_path / "warm", subject=1, session="pre")  # imports done
        project.sync()
        tracemalloc.start()
        project.export(ExRaw, to=tmp_path / "b", subject=1, session="pre")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        set_chunking()
    assert peak < 8 << 20, f"export held {peak >> 20} MiB"
    assert [f["path"] for f in _manifest(tmp_path / "b")["files"]] == ["ExRaw/subject=1/session=pre.parts"]
    folder = tmp_path / "b/ExRaw/subject=1/session=pre.parts"
    assert json.loads((folder / "value.json").read_text()) == {"emg": {"$ref": "emg.zarr"}, "fs": 2000}
    np.testing.assert_array_equal(zarr.open_array(str(folder / "emg.zarr"), mode="r")[:], emg)


def _edit_first_ref(field, value):
    def edit(manifest):
        manifest["refs"][0][field] = value if field != "addr" else {**manifest["refs"][0]["addr"], **value}
    return edit


@pytest.mark.parametrize("edit, said", [
    (_edit_first_ref("addr", {"subject": [1, 2]}), "subject=[1, 2] is a list"),
    (_edit_first_ref("addr", {"animal": "x"}), "do not split into schema keys"),
    (_edit_first_ref("vkeys", {"session": "x"}), "do not split into schema keys"),
    (_edit_first_ref("var", "Ex Peak; drop"), "variable name 'Ex Peak; drop' cannot be used"),
    (_edit_first_ref("version", 0), "is not a positive integer"),
    # the address as every message writes one, schema keys in order (it printed the dict as the
    # manifest holds it: {'session': 'post', 'subject': 1})
    (_edit_first_ref("version", -1), "at subject=1, session='post' that no project can hold"),
    (_edit_first_ref("oid", "cd" * 32), "at subject=1, session='post', object " + "cd" * 32),
    (_edit_first_ref("version", "2"), "(put with 'version' of type str)"),
    (_edit_first_ref("call", "ab" * 32), "is not in the bundle"),
    (_edit_first_ref("summary", [1]), "not a valid journal entry (put with 'summary' of type list)"),
    (_edit_first_ref("params", {"smooth.width": [3]}), "not all scalar constants"),
    (lambda manifest: manifest["calls"][0].update(key=5), "not a valid journal entry (call with 'key'"),
    (lambda manifest: manifest["objects"][0].update(kind="pickle"), "is not an oid, a kind and a path"),
    (lambda manifest: manifest["files"][0].update(members=["x"]), "is malformed (AttributeError"),
    (lambda manifest: manifest.pop("refs"), "has no list 'refs'"),
    (lambda manifest: manifest["refs"].append([1]), "has no list 'refs'"),
])
def test_an_edited_manifest_is_refused_by_name_and_changes_nothing(pipeline, tmp_path, edit, said):
    """The manifest is the one file no hash covers: an edited one had been imported as it said,
    writing records no save can write (a list as an address made every load_all of the
    variable fail for good, a key outside the schema, a dangling call record, journal lines
    every reader skips and gc refuses to run beside), or failed half way with a TypeError."""
    pipeline.export(ExPeak, to=tmp_path / "b", subject=1, session="post")
    manifest = _manifest(tmp_path / "b")
    edit(manifest)
    (tmp_path / "b/scistack-bundle.json").write_text(json.dumps(manifest))
    other = _fresh_project(tmp_path / "o")
    try:
        with pytest.raises(BundleDamagedError, match=re.escape(said)):
            other.import_bundle(tmp_path / "b")
        assert _journal_size(other) == 0 and not list(other.store.iter_oids())
    finally:
        other.close()


def test_older_versions_a_bundle_brings_do_not_displace_its_current_value(project, tmp_path):
    """A bundle holding a value's old version (an input of a selected value) and its current one,
    imported into a project that already held the current one: the old version was added after
    it and became the project's current value, though both projects had the newer one."""
    ExRaw.save(np.arange(3.0), subject=1, session="pre")
    for_each(peak, inputs={"signal": ExRaw}, outputs=[ExPeak], subject=[1], session=["pre"])
    ExRaw.save(np.arange(3.0) * 10, subject=1, session="pre")  # the current value
    project.export(to=tmp_path / "b", all_current=[ExRaw, ExPeak])
    assert len([r for r in _manifest(tmp_path / "b")["refs"] if r["var"] == "ExRaw"]) == 2
    other = _fresh_project(tmp_path / "other")
    try:
        ExRaw.save(np.arange(3.0) * 10, subject=1, session="pre")  # the colleague's value, here already
        report = other.import_bundle(tmp_path / "b")
        np.testing.assert_array_equal(ExRaw.load(subject=1, session="pre").data, np.arange(3.0) * 10)
        assert ExPeak.load(subject=1, session="pre").data == 2.0  # computed from the old version
        assert (report.refs, report.skipped_refs) == (3, 0)  # the old version, named again, ExPeak
        again = other.import_bundle(tmp_path / "b")
        assert (again.refs, again.skipped_refs) == (0, 3)
        np.testing.assert_array_equal(ExRaw.load(subject=1, session="pre").data, np.arange(3.0) * 10)
    finally:
        other.close()


def test_the_readme_tells_variants_at_one_address_apart(project, tmp_path):
    """The README listed each selected value by its schema keys only: variants saved at one
    address (`note="x"`, `note="y"`) were listed as the same value several times."""
    ExRaw.save(np.arange(3.0), subject=1, session="pre")
    ExRaw.save(np.arange(3.0) + 1, subject=1, session="pre", note="x")
    ExRaw.save(np.arange(3.0) + 2, subject=1, session="pre", note="y")
    project.export(to=tmp_path / "b", all_current=[ExRaw])
    text = (tmp_path / "b/README.md").read_text()
    listed = [line for line in text.splitlines() if line.startswith("- `ExRaw`")]
    assert len(listed) == 3 and len(set(line.split(" (")[0] for line in listed)) == 3
    assert any("session=pre, note=x (" in line for line in listed)


def test_the_readme_names_the_first_hundred_values_and_counts_the_rest(project, tmp_path):
    """A bundle of a whole variable may hold 300k values: the README names 100 of them and
    says where every one is listed."""
    with project.batch():
        for subject in range(103):
            ExRaw.save(float(subject), subject=subject, session="pre")
    project.export(to=tmp_path / "b", all_current=[ExRaw])
    text = (tmp_path / "b/README.md").read_text()
    assert len([line for line in text.splitlines() if line.startswith("- `ExRaw`")]) == 100
    assert "- ... and 3 more (`scistack-bundle.json` lists every one under `selected`)" in text
    assert len(_manifest(tmp_path / "b")["selected"]) == 103


def test_a_variable_named_as_the_projects_but_for_case_is_refused_first(pipeline, tmp_path):
    """The project refuses `ExPeak` beside its own `expeak`, but import met that refusal half way:
    the call-cache entries and the records before it were written already (a batch is not a
    transaction), leaving half a bundle imported under an error."""
    pipeline.export(ExPeak, to=tmp_path / "b", subject=1, session="post")
    other = _fresh_project(tmp_path / "o")
    try:
        type("expeak", (BaseVariable,), {}).save(1.0, subject=9)
        before, objects = _journal_size(other), sorted(other.store.iter_oids())
        with pytest.raises(ScistackError, match="only by case") as refused:
            other.import_bundle(tmp_path / "b")
        assert _journal_size(other) == before and sorted(other.store.iter_oids()) == objects
        assert "nothing was imported" in str(refused.value)
    finally:
        other.close()


def test_a_long_address_value_gets_a_file_name_the_file_system_takes(project, tmp_path):
    """Address values may have 1,024 characters, but a file name at most 255 bytes: export of a
    value at a long address failed with OSError (File name too long)."""
    for n, text in enumerate(["x" * 1024, "x" * 1023 + "y", "é" * 300]):
        ExRaw.save(np.full(2, float(n)), subject=1, session=text)
    project.export(all_current=[ExRaw], to=tmp_path / "b")
    files = _manifest(tmp_path / "b")["files"]
    assert len({f["path"] for f in files}) == 3
    for entry in files:
        assert all(len(part) < 255 for part in entry["path"].split("/"))
        expected = ["x" * 1024, "x" * 1023 + "y", "é" * 300].index(entry["addr"]["session"])
        np.testing.assert_array_equal(np.load(tmp_path / "b" / entry["path"]), np.full(2, float(expected)))


def test_variants_keep_their_version_order_and_a_run_on_one_is_a_cache_hit_after_import(project, tmp_path):
    """Import numbered the records at an address variant by variant (`note="a"` before
    `note="b"`), not in the bundle's version order: an aggregate's members, listed in version
    order, came in another order, so its call key differed and the same run ran again. (An
    aggregate over several variants at one address is refused now: one is pinned.)"""
    from scistack import Fixed

    for session in ("pre", "post"):
        ExRaw.save(np.arange(3.0), subject=1, session=session, note="b")
        ExRaw.save(np.arange(3.0) + 1, subject=1, session=session, note="a")
    order = [(r.addr_key, r.version, r.vkeys) for r in ExRaw.list_versions(subject=1)]
    for_each(average, inputs={"values": Fixed(ExRaw, note="a")}, outputs=[ExTable], subject=[1])
    project.export(ExRaw, to=tmp_path / "raw", subject=1)  # every variant
    project.export(ExTable, to=tmp_path / "b", subject=1)
    other = _fresh_project(tmp_path / "other")
    try:
        other.import_bundle(tmp_path / "raw")
        other.import_bundle(tmp_path / "b")
        assert [(r.addr_key, r.version, r.vkeys) for r in ExRaw.list_versions(subject=1)] == order
        again = for_each(average, inputs={"values": Fixed(ExRaw, note="a")}, outputs=[ExTable], subject=[1])
        assert again.counts["cached"] == 1
    finally:
        other.close()


def load_csv(path):
    return np.loadtxt(path, delimiter=",")


def test_the_crate_names_the_raw_files_a_call_read(project, tmp_path):
    """A call that read a raw file (PathInput) had a CreateAction with no object, as if it
    used nothing; and PROV said a PathOutput's call used an entity that is only the hash of
    the path it writes."""
    from scistack import PathInput, PathOutput

    (tmp_path / "raw/1").mkdir(parents=True)
    (tmp_path / "raw/1/pre.csv").write_text("1,2\n")
    for_each(load_csv, inputs={"path": PathInput("{subject}/{session}.csv", root="raw")}, outputs=[ExRaw],
             subject=[], session=[])
    spec = {"signal": ExRaw, "dest": PathOutput("{subject}/{session}.png", root="figs")}
    for_each(draw, inputs=spec, outputs=[ExUnrelated], subject=[1], session=["pre"])
    project.export(ExUnrelated, to=tmp_path / "b", subject=1, session="pre")
    assert validate(tmp_path / "b", tmp_path / "cache") == []
    graph = json.loads((tmp_path / "b/ro-crate-metadata.json").read_text())["@graph"]
    by_id = {e["@id"]: e for e in graph}
    read = next(e for e in graph if e.get("@type") == "CreateAction" and e["name"].startswith("load_csv"))
    raw = by_id[read["object"]["@id"]]
    assert raw["name"] == "raw/1/pre.csv" and raw["identifier"].startswith("blake3:")
    prov = json.loads((tmp_path / "b/provenance.json").read_text())
    assert len(prov["used"]) == 2  # the raw file by load_csv, ExRaw by draw (not draw's path)


def test_raw_files_travel_with_with_raw_and_the_pipeline_runs_again_from_them_as_cache_hits(
        project, tmp_path, monkeypatch):
    """A bundle named the raw files its calls read but did not hold them: the recipient could not
    run the pipeline again. With `raw_files=True` (`--with-raw`) they are in raw/, checked
    against what each call read; one changed since is named, not copied."""
    from scistack import PathInput

    for session, text in (("pre", "1,2\n"), ("post", "3,4\n")):
        (tmp_path / "raw/1").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"raw/1/{session}.csv").write_text(text)
    spec = {"path": PathInput("{subject}/{session}.csv", root="raw")}
    for_each(load_csv, inputs=spec, outputs=[ExRaw], subject=[], session=[])
    report = project.export(all_current=[ExRaw], to=tmp_path / "b", raw_files=True)
    assert report.raw_missing == []
    assert (tmp_path / "b/raw/raw/1/pre.csv").read_text() == "1,2\n"
    manifest = _manifest(tmp_path / "b")
    entry = next(r for r in manifest["raw_files"] if r["read_as"] == "raw/1/post.csv")
    assert entry["sha256"] == hashlib.sha256(b"3,4\n").hexdigest() and entry["path"] == "raw/raw/1/post.csv"
    assert "raw/" in (tmp_path / "b/README.md").read_text()
    assert validate(tmp_path / "b", tmp_path / "cache") == []
    # the recipient: the raw files where the bundle says, the bundle imported: all cache hits
    database_module._current = None
    (tmp_path / "o").mkdir()
    shutil.copytree(tmp_path / "b/raw/raw", tmp_path / "o/raw")
    other = configure_database(tmp_path / "o" / "x.duckdb", SCHEMA)
    try:
        other.import_bundle(tmp_path / "b")
        monkeypatch.chdir(tmp_path / "o")
        again = for_each(load_csv, inputs=spec, outputs=[ExRaw], subject=[], session=[])
        assert (again.ran, again.cached) == (0, 2)
    finally:
        monkeypatch.chdir(tmp_path)
        other.close()
        database_module._current = None
    (tmp_path / "raw/1/pre.csv").write_text("9,9\n")  # changed since the call read it
    project_again = configure_database(tmp_path / "gait.duckdb")
    try:
        report = project_again.export(all_current=[ExRaw], to=tmp_path / "c", raw_files=True)
        assert report.raw_missing == ["raw/1/pre.csv: changed since the call read it"]
        assert not (tmp_path / "c/raw/raw/1/pre.csv").exists() and (tmp_path / "c/raw/raw/1/post.csv").exists()
    finally:
        project_again.close()


def test_raw_files_keep_the_paths_they_were_read_as_and_none_overwrites_another(
        project, tmp_path, monkeypatch):
    """Each part of a raw file's path had every character but [A-Za-z0-9._+-] replaced by `_`,
    unchecked: `raw/ü/pre.csv` and `raw/é/pre.csv` both became `raw/raw/_/pre.csv`, the second
    copy over the first (one subject's raw data lost, its manifest sha256 wrong), and
    `raw/sub 3/pre.csv`, copied back, read as subject `sub_3`. Now each keeps its path as read;
    two that differ only in case (one file on macOS and Windows) are told apart, and an import
    refuses a raw file that does not match its sha256, by name."""
    from scistack import PathInput

    texts = {"ü": "1,2\n", "é": "3,4\n", "sub 3": "5,6\n", "A": "7,8\n", "a": "9,0\n"}
    for subject, text in texts.items():
        (tmp_path / "raw" / subject).mkdir(parents=True)
        (tmp_path / "raw" / subject / "pre.csv").write_text(text)
    spec = {"path": PathInput("{subject}/{session}.csv", root="raw")}
    for_each(load_csv, inputs=spec, outputs=[ExRaw], subject=[], session=[])
    project.export(all_current=[ExRaw], to=tmp_path / "b", raw_files=True)
    entries = {r["read_as"]: r for r in _manifest(tmp_path / "b")["raw_files"]}
    assert sorted(entries) == sorted(f"raw/{s}/pre.csv" for s in texts)
    for read_as, entry in entries.items():
        assert (tmp_path / "b" / entry["path"]).read_text() == texts[read_as.split("/")[1]]
        assert entry["sha256"] == hashlib.sha256(texts[read_as.split("/")[1]].encode()).hexdigest()
    assert {entries[f"raw/{s}/pre.csv"]["path"] for s in ("ü", "é", "sub 3")} \
        == {f"raw/raw/{s}/pre.csv" for s in ("ü", "é", "sub 3")}
    paths = {entries["raw/A/pre.csv"]["path"], entries["raw/a/pre.csv"]["path"]}
    assert len({p.casefold() for p in paths}) == 2  # apart on any file system, one of them named
    moved, = (p for p in paths if not p.endswith("/pre.csv"))
    assert f"`{moved}`" in (tmp_path / "b/README.md").read_text()
    assert validate(tmp_path / "b", tmp_path / "cache") == []
    # the recipient: copied back, the same code finds subject "sub 3" and its call in the cache
    database_module._current = None
    (tmp_path / "o").mkdir()
    shutil.copytree(tmp_path / "b/raw/raw", tmp_path / "o/raw")
    other = configure_database(tmp_path / "o" / "x.duckdb", SCHEMA)
    try:
        other.import_bundle(tmp_path / "b")
        monkeypatch.chdir(tmp_path / "o")
        again = for_each(load_csv, inputs=spec, outputs=[ExRaw], subject=["sub 3"], session=["pre"])
        assert (again.ran, again.cached) == (0, 1)
    finally:
        monkeypatch.chdir(tmp_path)
        other.close()
        database_module._current = None
    (tmp_path / "b/raw/raw/é/pre.csv").write_text("3,5\n")  # damaged in the bundle
    fresh = _fresh_project(tmp_path / "f")
    try:
        with pytest.raises(BundleDamagedError, match="raw file raw/raw/é/pre.csv .*read as 'raw/é/pre.csv'"):
            fresh.import_bundle(tmp_path / "b")
        assert _journal_size(fresh) == 0 and not list(fresh.store.iter_oids())
    finally:
        fresh.close()
        database_module._current = None


_WINDOWS_REFUSES = re.compile(r'[<>:"|?*\\]|[. ]$|^(con|prn|aux|nul|com\d|lpt\d)(\.|$)', re.IGNORECASE)


def test_raw_names_windows_or_macos_cannot_unpack_are_made_safe_and_an_import_restores_them(
        project, tmp_path, monkeypatch, python_env):
    """`--with-raw` kept raw names verbatim: `raw/A` (a file) beside `raw/a/pre.csv` (one name
    for a file and a folder on macOS and Windows), device names (`CON`, `aux.txt`), a name
    ending in a dot or a space, a `:`: the bundle could not be unpacked there. Each is given a
    safe name in the bundle (`~2`, or `_` for a refused character), the manifest keeps the
    path as read (`restore_as`), and `import_bundle(raw_to=)` puts every file back there: the
    same code runs on them as cache hits."""
    from scistack import PathInput

    nested = {"a": "1,2\n", "CON": "3,4\n", "dot.": "5,6\n", "sp ": "7,8\n", "a:b": "9,0\n", "a_b": "2,2\n"}
    alone = {"A": "1,1\n", "aux.txt": "3,3\n"}
    for subject, text in nested.items():
        (tmp_path / "raw" / subject).mkdir(parents=True)
        (tmp_path / "raw" / subject / "pre.csv").write_text(text)
    for subject, text in alone.items():
        (tmp_path / "raw" / subject).write_text(text)
    by_folder = {"path": PathInput("{subject}/{session}.csv", root="raw")}
    by_file = {"path": PathInput("{subject}", root="raw")}
    for_each(load_csv, inputs=by_folder, outputs=[ExRaw], subject=list(nested), session=["pre"])
    for_each(load_csv, inputs=by_file, outputs=[ExFiltered], subject=list(alone))
    project.export(all_current=[ExRaw, ExFiltered], to=tmp_path / "b", raw_files=True)
    entries = {r["read_as"]: r for r in _manifest(tmp_path / "b")["raw_files"]}
    texts = {**{f"raw/{s}/pre.csv": t for s, t in nested.items()}, **{f"raw/{s}": t for s, t in alone.items()}}
    assert sorted(entries) == sorted(texts)
    files = [PurePosixPath(entry["path"]) for entry in entries.values()]
    for path in files:
        assert path.parts[:2] == ("raw", "raw"), path
        assert not any(_WINDOWS_REFUSES.search(p) for p in path.parts), path
    names = {str(f).casefold() for f in files}  # no two files, nor a file and a folder, one name
    assert len(names) == len(files) and not names & {str(f).casefold() for p in files for f in p.parents}
    for read_as, entry in entries.items():
        assert (tmp_path / "b" / entry["path"]).read_text() == texts[read_as]
        assert entry["restore_as"] == read_as
    assert validate(tmp_path / "b", tmp_path / "cache") == []
    # the recipient: every raw file back at the path it was read as, all cache hits
    database_module._current = None
    (tmp_path / "o").mkdir()
    other = configure_database(tmp_path / "o" / "x.duckdb", SCHEMA)
    try:
        other.import_bundle(tmp_path / "b", raw_to=tmp_path / "o")
        for read_as, text in texts.items():
            assert (tmp_path / "o" / read_as).read_text() == text
        monkeypatch.chdir(tmp_path / "o")
        again = for_each(load_csv, inputs=by_folder, outputs=[ExRaw], subject=list(nested), session=["pre"])
        alone_again = for_each(load_csv, inputs=by_file, outputs=[ExFiltered], subject=list(alone))
        assert (again.ran, again.cached, alone_again.ran, alone_again.cached) == (0, len(nested), 0, len(alone))
        other.import_bundle(tmp_path / "b", raw_to=tmp_path / "o")  # again: the same files, nothing replaced
        (tmp_path / "o/raw/CON/pre.csv").write_text("mine\n")
        with pytest.raises(ExportError, match="raw/CON/pre.csv, where another file or a folder is"):
            other.import_bundle(tmp_path / "b", raw_to=tmp_path / "o")
        assert (tmp_path / "o/raw/CON/pre.csv").read_text() == "mine\n"
    finally:
        monkeypatch.chdir(tmp_path)
        other.close()
        database_module._current = None
    done = subprocess.run([PYTHON, "-m", "scistack", "--db", str(tmp_path / "o" / "x.duckdb"), "import",
                           str(tmp_path / "b"), "--raw-to", str(tmp_path / "o2")],
                          capture_output=True, text=True, env=python_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {p.relative_to(tmp_path / "o2").as_posix() for p in (tmp_path / "o2").rglob("*") if p.is_file()} \
        == set(texts)
    manifest = _manifest(tmp_path / "b")  # edited to put a file outside the folder: refused whole
    manifest["raw_files"][0]["restore_as"] = "../outside.csv"
    (tmp_path / "b/scistack-bundle.json").write_text(json.dumps(manifest))
    fresh = _fresh_project(tmp_path / "f")
    try:
        with pytest.raises(BundleDamagedError, match="to '../outside.csv', not a relative path inside"):
            fresh.import_bundle(tmp_path / "b", raw_to=tmp_path / "f" / "run")
        assert not (tmp_path / "f/outside.csv").exists() and not (tmp_path / "f/run").exists()
        assert _journal_size(fresh) == 0
    finally:
        fresh.close()
        database_module._current = None


def test_the_same_run_on_an_imported_bundle_s_raw_files_adds_no_version(project, tmp_path, monkeypatch):
    """A colleague imports the bundle with its raw files (`raw_to`) and runs the same code: all
    cache hits, and the project stays as it was. Each value had been saved again (a new record
    naming the files where they are now): 3 values, 6 versions. Now the new record is the cache
    entry's, the ref keeps its version, and `status`/`why` judge the files where they are now
    (the bundle's records name the exporter's folder, here still in place); an edited raw file
    is stale and re-runs its combination alone."""
    from scistack import PathInput, why
    from scistack.report.status import status_grid

    bundle = _raw_bundle(tmp_path, {"raw/1": "1,2\n", "raw/2": "3,4\n", "raw/3": "5,6\n"})
    # (the exporting project's raw/ is still there, as on one machine or a shared disk: the
    # bundle's records name it, and the files put back here are the ones judged)
    subjects = ["1", "2", "3"]
    other = _fresh_project(tmp_path / "o")
    try:
        other.import_bundle(bundle, raw_to=tmp_path / "o")
        monkeypatch.chdir(tmp_path / "o")
        before = {s: ExRaw.load(subject=s) for s in subjects}

        def run():
            return for_each(load_csv, inputs={"path": PathInput("{subject}", root="raw")}, outputs=[ExRaw],
                            subject=subjects, progress=False)

        for _ in range(2):
            again = run()
            assert (again.ran, again.cached) == (0, 3)
            for s in subjects:
                assert [v.version for v in ExRaw.list_versions(subject=s)] == [before[s].version]
                assert ExRaw.load(subject=s).oid == before[s].oid
                said = why(ExRaw, subject=s)
                assert said.status == "current" and not said.reasons, str(said)
            assert status_grid(other).counts()["ExRaw"]["stale"] == 0
        (tmp_path / "o/raw/2").write_text("30,40\n")
        assert why(ExRaw, subject="2").status == "stale"
        assert "raw/2 changed" in str(why(ExRaw, subject="2"))
        assert why(ExRaw, subject="1").status == "current"
        assert status_grid(other).counts()["ExRaw"]["stale"] == 1
        edited = run()
        assert (edited.ran, edited.cached) == (1, 2)
        np.testing.assert_array_equal(ExRaw.load(subject="2").data, [30.0, 40.0])
        assert [len(ExRaw.list_versions(subject=s)) for s in subjects] == [1, 2, 1]
    finally:
        other.close()
        database_module._current = None


def test_an_edited_copy_of_an_imported_raw_file_with_a_twin_is_stale(project, tmp_path, monkeypatch):
    """Two raw files with the same bytes (one call key, one cache entry) exported, and imported
    with `raw_to` while the exporter's folder is still there: the bundle's entry names subject
    2's record, so subject 1's ref was judged by its own record, the exporter's file, and an
    edit of the copy here was "current", straight after the import and after runs of the two
    addresses apart. The import now names each ref with the record made where its files went
    back. The same with the files copied by hand and imported without `raw_to`: a run records
    subject 1 where its files are now; subject 2's run took the entry over, and subject 1 was
    judged by the exporter's file again. Another address's entry whose files are still there
    now stays; no run adds a version but, once, the one naming subject 1 with its own record."""
    import shutil
    from scistack import PathInput, why
    from scistack.report.status import status_grid

    bundle = _raw_bundle(tmp_path, {"raw/1": "1,2\n", "raw/2": "1,2\n"})
    for folder, raw_to in (("o", True), ("m", False)):
        other = _fresh_project(tmp_path / folder)
        try:
            if raw_to:
                other.import_bundle(bundle, raw_to=tmp_path / folder)
            else:
                shutil.copytree(tmp_path / "raw", tmp_path / folder / "raw")
                other.import_bundle(bundle)
            monkeypatch.chdir(tmp_path / folder)
            copy = tmp_path / folder / "raw/1"

            def statuses() -> list[str]:
                said = [why(ExRaw, subject=s).status for s in ("1", "2")]
                assert status_grid(other).counts()["ExRaw"]["stale"] == said.count("stale")
                return said

            if raw_to:
                copy.write_text("9,9\n")
                assert statuses() == ["stale", "current"], folder
                copy.write_text("1,2\n")
            for subject in ("1", "2", "1", "2"):
                again = for_each(load_csv, inputs={"path": PathInput("{subject}", root="raw")}, outputs=[ExRaw],
                                 subject=[subject], progress=False)
                assert (again.ran, again.cached) == (0, 1)
                assert statuses() == ["current", "current"], folder
                copy.write_text("9,9\n")
                assert statuses() == ["stale", "current"], (folder, subject)
                copy.write_text("1,2\n")
            assert [len(ExRaw.list_versions(subject=s)) for s in ("1", "2")] == ([1, 1] if raw_to else [2, 1])
        finally:
            monkeypatch.chdir(tmp_path)
            other.close()
            database_module._current = project


def test_a_copy_run_beside_its_folder_exports_its_cache_entry(project, tmp_path, monkeypatch):
    """raw/ run, then a copy of it, raw2/, beside it: the copy's refs name its own records (the
    cache entry, raw/'s, stays while its files are there). The bundle of the copy's values had
    no cache entry for them (the closure asked the index for the key of the entry's records
    only), and the importer computed every call again. The entry now goes in naming the copy's
    record, unless the bundle holds the entry's own (one entry per key)."""
    from scistack import PathInput, why

    (tmp_path / "raw").mkdir()
    for subject in ("1", "2"):
        (tmp_path / "raw" / subject).write_text(f"{subject},2\n")

    def run(root: str, subjects: list[str]) -> tuple[int, int]:
        done = for_each(load_csv, inputs={"path": PathInput("{subject}", root=root)}, outputs=[ExRaw],
                        subject=subjects, progress=False)
        return done.ran, done.cached

    assert run("raw", ["1", "2"]) == (2, 0)
    shutil.copytree(tmp_path / "raw", tmp_path / "raw2")
    assert run("raw2", ["1"]) == (0, 1)  # (subject 2's ref names raw/'s record, the entry)
    project.export(all_current=[ExRaw], to=tmp_path / "b", raw_files=True)
    manifest = _manifest(tmp_path / "b")
    assert sorted(r["read_as"] for r in manifest["raw_files"]) == ["raw/2", "raw2/1"]
    assert len(manifest["calls"]) == 2 == len({c["key"] for c in manifest["calls"]})
    for folder, raw_to in (("o", True), ("m", False)):
        other = _fresh_project(tmp_path / folder)
        try:
            if not raw_to:
                for rel in ("raw/2", "raw2/1"):
                    (tmp_path / folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(tmp_path / rel, tmp_path / folder / rel)
            other.import_bundle(tmp_path / "b", raw_to=tmp_path / folder if raw_to else None)
            monkeypatch.chdir(tmp_path / folder)
            assert (run("raw2", ["1"]), run("raw", ["2"])) == ((0, 1), (0, 1)), folder
            assert [why(ExRaw, subject=s).status for s in ("1", "2")] == ["current", "current"]
            (tmp_path / folder / "raw2/1").write_text("9,9\n")
            assert [why(ExRaw, subject=s).status for s in ("1", "2")] == ["stale", "current"]
            assert run("raw2", ["1"]) == (1, 0)
        finally:
            monkeypatch.chdir(tmp_path)
            other.close()
            database_module._current = project


def test_status_and_why_are_current_straight_after_an_import_with_raw_to(tmp_path, monkeypatch):
    """A colleague imports a bundle with its raw files (`raw_to`) on a machine without the
    exporting project's folder and runs `status` first: the bundle's records name the
    exporter's absolute paths, so every value was "stale: input path: raw/1 is gone" until a
    run (all cache hits) recorded the calls again. The import now records them where the files
    went back; a restored file edited or removed is still stale. fsck stays ok, and the project
    exports again."""
    from scistack import PathInput, why
    from scistack.fsck import fsck
    from scistack.report.status import status_grid

    monkeypatch.delenv("SCISTACK_DB", raising=False)
    (tmp_path / "a/raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    for s, text in {"1": "1,2\n", "2": "3,4\n", "3": "5,6\n"}.items():
        (tmp_path / "a/raw" / s).write_text(text)
    mine = _fresh_project(tmp_path / "a")
    for_each(load_csv, inputs={"path": PathInput("{subject}", root="raw")}, outputs=[ExRaw],
             subject=["1", "2", "3"], progress=False)
    mine.export(all_current=[ExRaw], to=tmp_path / "b", raw_files=True)
    mine.close()
    shutil.rmtree(tmp_path / "a")  # (the colleague's machine has no such folder)
    other = _fresh_project(tmp_path / "o")
    try:
        other.import_bundle(tmp_path / "b", raw_to=tmp_path / "o")
        monkeypatch.chdir(tmp_path / "o")
        for s in ("1", "2", "3"):
            said = why(ExRaw, subject=s)
            assert said.status == "current" and not said.reasons, str(said)
        assert status_grid(other).counts()["ExRaw"]["stale"] == 0
        assert fsck(other).ok
        other.export(all_current=[ExRaw], to=tmp_path / "again", raw_files=True)
        again = _manifest(tmp_path / "again")  # (the restored copies, and the cache entries)
        assert all(r.get("path") for r in again["raw_files"]) and len(again["calls"]) == 3
        third = _fresh_project(tmp_path / "c")
        try:
            third.import_bundle(tmp_path / "again", raw_to=tmp_path / "c")
            assert status_grid(third).counts()["ExRaw"]["stale"] == 0
        finally:
            third.close()
            database_module._current = other
        entries = {e["key"]: other.index.cached_call(e["key"])["call"] for e in _manifest(tmp_path / "b")["calls"]}
        run = for_each(load_csv, inputs={"path": PathInput("{subject}", root="raw")}, outputs=[ExRaw],
                       subject=["1", "2", "3"], progress=False)
        assert (run.ran, run.cached) == (0, 3)  # a plain hit: recorded nothing again
        assert {key: other.index.cached_call(key)["call"] for key in entries} == entries
        (tmp_path / "o/raw/2").write_text("30,40\n")
        (tmp_path / "o/raw/3").unlink()
        assert "raw/2 changed" in str(why(ExRaw, subject="2"))
        assert "gone" in str(why(ExRaw, subject="3"))
        assert why(ExRaw, subject="1").status == "current"
        assert status_grid(other).counts()["ExRaw"]["stale"] == 2
    finally:
        other.close()
        database_module._current = None


def _raw_bundle(tmp_path: Path, files: dict[str, str]) -> Path:
    """A bundle with the raw files `files` (`raw/<subject>`: text) read by a PathInput."""
    from scistack import PathInput

    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    subjects = [PurePosixPath(rel).relative_to("raw").as_posix() for rel in files]
    for_each(load_csv, inputs={"path": PathInput("{subject}", root="raw")}, outputs=[ExRaw], subject=subjects)
    database_module.get_database().export(all_current=[ExRaw], to=tmp_path / "b", raw_files=True)
    return tmp_path / "b"


def _planted(bundle: Path, restore: str, read_as: str | None = None) -> None:
    """The bundle's manifest edited to restore one more (hashed) file at `restore`."""
    manifest = _manifest(bundle)
    payload = b"print('code from the bundle ran')\n"
    (bundle / "raw" / "planted").write_bytes(payload)
    manifest["raw_files"].append({**manifest["raw_files"][0], "path": "raw/planted", "restore_as": restore,
                                  "read_as": read_as or manifest["raw_files"][0]["read_as"],
                                  "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)})
    (bundle / "scistack-bundle.json").write_text(json.dumps(manifest))


def test_an_edited_manifest_cannot_plant_code_or_private_files_where_raw_files_are_restored(project, tmp_path):
    """`restore_as` was only checked for being a relative path: an edited manifest could plant
    `pandas.py` in the folder the pipeline runs from (first on sys.path: it runs next time) or a
    file in `.scistack/`. It must be the path the file was read as (derived again from
    `read_as`); code, `.scistack/` and `.git/`, and a symbolic link on the way, are refused
    whatever the manifest says, before anything is written."""
    bundle = _raw_bundle(tmp_path, {"raw/1": "1,2\n"})
    original = (bundle / "scistack-bundle.json").read_text()
    cases = [("pandas.py", None, BundleDamagedError, "not to the path it was read as"),
             (".scistack/evil-note", None, BundleDamagedError, "not to the path it was read as"),
             ("raw/2", None, BundleDamagedError, "not to the path it was read as"),
             ("pandas.py", "pandas.py", ExportError, "a Python module or library"),
             ("lib/Helper.PYC", "lib/Helper.PYC", ExportError, "a Python module or library"),
             ("run/.scistack/evil-note", "/run/.scistack/evil-note", ExportError, "inside a .scistack/ or .git/"),
             (".Git/hooks/pre-commit", ".Git/hooks/pre-commit", ExportError, "inside a .scistack/ or .git/")]
    for n, (restore, read_as, error, says) in enumerate(cases):
        (bundle / "scistack-bundle.json").write_text(original)
        _planted(bundle, restore, read_as)
        fresh = _fresh_project(tmp_path / f"f{n}")
        try:
            with pytest.raises(error, match=re.escape(says)):
                fresh.import_bundle(bundle, raw_to=tmp_path / f"f{n}")
            assert not (tmp_path / f"f{n}" / restore).exists() and not (tmp_path / f"f{n}" / "raw").exists()
            assert _journal_size(fresh) == 0
        finally:
            fresh.close()
            database_module._current = None
    (bundle / "scistack-bundle.json").write_text(original)  # a link on the way: never written through
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "raw").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    fresh = _fresh_project(tmp_path / "s")
    try:
        with pytest.raises(ExportError, match="is a symbolic link"):
            fresh.import_bundle(bundle, raw_to=tmp_path / "s")
        assert list((tmp_path / "elsewhere").iterdir()) == [] and _journal_size(fresh) == 0
        fresh.import_bundle(bundle, raw_to=tmp_path / "s2")  # the bundle as exported: restored
        assert (tmp_path / "s2/raw/1").read_text() == "1,2\n"
    finally:
        fresh.close()
        database_module._current = None


def test_restoring_raw_files_never_replaces_a_file_and_an_unusable_folder_is_a_scistack_error(project, tmp_path):
    """Each raw file was copied to `<target>.scistack-tmp` and renamed: a file of that name (the
    user's, or another raw file) was overwritten and moved away. A folder that cannot be written
    or a path too long came out as a bare OSError (`error: FileNotFoundError` in the CLI)."""
    bundle = _raw_bundle(tmp_path, {"raw/1": "1,2\n", "raw/1.scistack-tmp": "5,6\n"})
    (tmp_path / "o/raw").mkdir(parents=True)
    (tmp_path / "o/raw/1.scistack-tmp").write_text("5,6\n")  # the user's, the same as the bundle's
    fresh = _fresh_project(tmp_path / "f")
    try:
        fresh.import_bundle(bundle, raw_to=tmp_path / "o")
        assert {p.name: p.read_text() for p in (tmp_path / "o/raw").iterdir()} == {
            "1": "1,2\n", "1.scistack-tmp": "5,6\n"}  # (no temporary file left either)
        too_long = tmp_path / ("x" * 300)
        with pytest.raises(ExportError, match=re.escape(f"{too_long}") + ".*with a shorter path"):
            fresh.import_bundle(bundle, raw_to=too_long)
        assert _journal_size(fresh) > 0  # (the first import's records)
    finally:
        fresh.close()
        database_module._current = None
    done = subprocess.run([PYTHON, "-m", "scistack", "--db", str(tmp_path / "f" / "other.duckdb"), "import",
                           str(bundle), "--raw-to", str(tmp_path / "x" / ("y" * 300))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "OSError" not in done.stderr and "shorter path" in done.stderr, done.stderr


def test_raw_files_whose_names_differ_only_in_case_are_both_restored_where_case_tells_them_apart(
        project, tmp_path):
    """Two raw files read as `raw/A` and `raw/a` (a Linux export): where the folder restored into
    ignores case (macOS, Windows) the second landed on the first, so that is refused before
    anything is written; on a file system that tells case apart both are restored."""
    from scistack.export.importer import _folds_case

    bundle = _raw_bundle(tmp_path, {"raw/A": "1,1\n", "raw/a": "2,2\n"})
    fresh = _fresh_project(tmp_path / "f")
    try:
        fresh.import_bundle(bundle, raw_to=tmp_path / "o")
        if _folds_case(tmp_path):
            raise AssertionError("expected an ExportError on a file system that ignores case")
        assert {p.name: p.read_text() for p in (tmp_path / "o/raw").iterdir()} == {"A": "1,1\n", "a": "2,2\n"}
    except ExportError as exc:
        assert _folds_case(tmp_path) and "its file system ignores case" in str(exc)
        assert not (tmp_path / "o").exists()
    finally:
        fresh.close()
        database_module._current = None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scistack-case-probe")]


def test_nan_and_infinities_in_open_json_files_are_strict_json_and_exact_on_import(project, tmp_path):
    """`NaN`/`Infinity` in a value's .json file: Python reads them, but JavaScript, R's jsonlite
    and jq refuse the whole file. They are null there (as pandas and MATLAB write them); the
    exact value travels in objects/ and comes back on import."""
    value = {"peak": float("nan"), "range": [np.float64(1.0), float("inf"), -float("inf")]}
    ExPeak.save(value, subject=1, session="pre")
    project.export(ExPeak, to=tmp_path / "b", subject=1, session="pre")

    def strict(name: str):
        raise ValueError(f"not JSON: {name}")

    text = (tmp_path / "b/ExPeak/subject=1/session=pre.json").read_text()
    assert json.loads(text, parse_constant=strict) == {"peak": None, "range": [1.0, None, None]}
    (tmp_path / "o").mkdir()
    _fresh_project(tmp_path / "o").import_bundle(tmp_path / "b")
    back = ExPeak.load(subject=1, session="pre").data
    assert np.isnan(back["peak"]) and back["range"] == [1.0, float("inf"), -float("inf")]


@pytest.mark.parametrize("read_as, kept", [
    ("//nas/lab/x.csv", "raw/nas/lab/x.csv"),          # a UNC path as shown on POSIX
    ("\\\\nas\\lab\\x.csv", "raw/nas/lab/x.csv"),      # ... and as Windows writes it
    ("/data/sub 3/s_pre.csv", "raw/data/sub 3/s_pre.csv"),
    ("C:\\data\\ü.csv", "raw/data/ü.csv"),
    ("../../up.csv", "raw/up.csv"),
])
def test_a_raw_file_is_copied_under_raw_whatever_path_it_was_read_as(read_as, kept):
    """A path starting `//` had kept its root: the copy went to that path outside the bundle
    (on Windows, onto the source file itself)."""
    from scistack.export.bundle import raw_path

    assert raw_path(read_as).as_posix() == kept


def _computed_again_elsewhere(db) -> list[str]:
    """What a second machine running the same for_each at the same time leaves: for each
    ExFiltered call, a record of its own (same inputs and outputs, another start) journalled
    after the first as the key's entry; the refs keep the first record (the same value)."""
    import dataclasses

    from scistack.records import read_call

    seconds = []
    for s in (1, 2):
        for t in ("pre", "post"):
            ref = db.index.select("ExFiltered", {"subject": s, "session": t}, {}, {})[0]
            key = db.index.call_key_of(ref.call)
            entry = db.index.cached_call(key)
            assert entry["call"] == ref.call
            call = read_call(db.store, ref.call)
            second = db.store.put("call", dataclasses.replace(call, started="2001-01-01T00:00:00Z").to_bytes())
            db.index.put_call(key, second, entry["fn"], list(entry["outs"]), multi=bool(entry.get("multi")))
            seconds.append(second)
    return seconds


def test_an_entry_another_machine_recorded_for_the_same_outputs_is_exported_naming_the_refs_record(
        pipeline, tmp_path):
    _computed_again_elsewhere(pipeline)
    pipeline.export(to=tmp_path / "raced", all_current=[ExFiltered])
    manifest = _manifest(tmp_path / "raced")
    refs_calls = {r.call for r in pipeline.index.select("ExFiltered", {}, {}, {}, all_versions=True)}
    assert {e["call"] for e in manifest["calls"]} == refs_calls  # the records the bundle holds
    other = _fresh_project(tmp_path / "other")
    try:
        other.import_bundle(tmp_path / "raced")
        report = for_each(smooth, inputs={"signal": ExRaw, "width": 3}, outputs=[ExFiltered], **PIPELINE)
        assert (report.counts["cached"], report.counts["ran"]) == (4, 0)
        assert {ExFiltered.load(subject=s, session=t).version for s in (1, 2) for t in ("pre", "post")} == {1}
    finally:
        other.close()


class MarkedX(BaseVariable):
    pass


def test_a_second_export_into_one_empty_folder_at_once_refuses_and_leaves_the_first_alone(
        project, tmp_path, monkeypatch):
    """Two exports into one empty folder: the mark that says an export is writing there was
    written over (write_atomic), so the second went ahead beside the first, and its failure
    emptied the folder of the first's finished bundle. The mark is made in one step with the
    check that none is there (O_EXCL): the second refuses, touching nothing."""
    from scistack import export as export_module
    from scistack.export import bundle

    MarkedX.save(1.0, subject=1, session="pre")
    target = tmp_path / "out"
    target.mkdir()
    closure = export_module.closure.closure

    def first_starts_meanwhile(*args, **kwargs):  # (between the second's check and its mark)
        (target / bundle.UNFINISHED).write_text("1 the-first-exports-mark\n")  # (pid 1: alive)
        (target / "first.txt").write_text("the first export's file")
        return closure(*args, **kwargs)

    monkeypatch.setattr(export_module.closure, "closure", first_starts_meanwhile)
    with pytest.raises(ExportError, match="another export is writing into"):
        project.export(MarkedX, to=target, subject=1, session="pre")
    assert (target / "first.txt").read_text() == "the first export's file"
    assert (target / bundle.UNFINISHED).read_text() == "1 the-first-exports-mark\n"


def test_a_mark_naming_this_process_pid_that_none_of_its_exports_made_is_left_over(project, tmp_path):
    # (pids repeat after a restart, as in a container: the folder had stayed blocked for good,
    # "not an empty folder", the mark a hidden file)
    from scistack.export import bundle

    MarkedX.save(1.0, subject=1, session="pre")
    target = tmp_path / "out"
    target.mkdir()
    (target / bundle.UNFINISHED).write_text(f"{os.getpid()} an-export-before-the-restart\n")
    (target / "half.json").write_text("{}")
    project.export(MarkedX, to=target, subject=1, session="pre")
    assert not (target / bundle.UNFINISHED).exists() and not (target / "half.json").exists()
    assert (target / "scistack-bundle.json").exists()


def test_an_export_to_a_link_to_no_folder_is_refused_before_writing(project, tmp_path):
    # (the whole bundle was written beside it, then the rename failed: "made by another process")
    MarkedX.save(1.0, subject=1, session="pre")
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(ExportError, match=r"symbolic link to .*gone, which does not exist"):
        project.export(MarkedX, to=tmp_path / "out", subject=1, session="pre")
    assert sorted(p.name for p in tmp_path.iterdir() if ".export-" in p.name) == []


def test_a_mark_whose_pid_now_runs_another_process_is_left_over(project, tmp_path, monkeypatch):
    """A mark left by a killed export named its pid alone: once that pid was given to another
    process (pids are used again, after a restart at once), the folder stayed blocked for good
    ("another export is writing into"). The mark holds when its process started too
    (`_proc.pid_started`): a pid that runs a process started at another time is left over."""
    from scistack import export as export_module
    from scistack.export import bundle
    from scistack.objects._proc import pid_started, process_place

    MarkedX.save(1.0, subject=1, session="pre")
    target = tmp_path / "out"
    target.mkdir()
    other = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(300)"])  # (the pid's new owner)
    try:
        started = pid_started(other.pid)
        assert started.isdigit(), "the start of a process is read from /proc (Linux)"
        (target / bundle.UNFINISHED).write_text(f"{other.pid} an-export-writing-now {started}\n")
        with pytest.raises(ExportError, match="another export is writing into"):  # (that very process)
            project.export(MarkedX, to=target, subject=1, session="pre")
        (target / bundle.UNFINISHED).write_text(f"{other.pid} an-export-killed-before {int(started) + 1}\n")
        (target / "half.json").write_text("{}")
        marks = []
        write_bundle = export_module.bundle.write_bundle

        def noting_the_mark(db, found, work):
            marks.append((work / bundle.UNFINISHED).read_text())
            return write_bundle(db, found, work)

        monkeypatch.setattr(export_module.bundle, "write_bundle", noting_the_mark)
        project.export(MarkedX, to=target, subject=1, session="pre")
    finally:
        other.kill()
        other.wait()
    assert not (target / bundle.UNFINISHED).exists() and not (target / "half.json").exists()
    assert (target / "scistack-bundle.json").exists()
    pid, _token, start, place = marks[0].split()  # (this export's own mark: its pid, its start, where)
    assert (int(pid), start, place) == (os.getpid(), pid_started(os.getpid()), process_place())


def test_a_mark_made_in_another_place_is_never_judged_by_this_places_pids(project, tmp_path):
    """A mark named its export's pid alone, judged by this machine's processes: a mark another
    machine (or a container beside this host) made in a shared folder, its export writing
    there, was taken for a killed export's whenever its pid ran nothing here, and the folder
    was cleared under it. The mark says where its process runs (`_proc.process_place`):
    another place's refuses, saying how to go on if that export is gone."""
    from scistack.export import bundle
    from scistack.objects._proc import process_place

    MarkedX.save(1.0, subject=1, session="pre")
    target = tmp_path / "out"
    target.mkdir()
    elsewhere = "0123456789abcdef"
    assert elsewhere != process_place()  # (a pid that runs nothing here, at a start, made elsewhere)
    (target / bundle.UNFINISHED).write_text(f"{_dead_pid()} an-export-elsewhere 12345 {elsewhere}\n")
    (target / "half.json").write_text("{}")
    with pytest.raises(ExportError, match=r"(?s)on another machine or in another container.*if no export runs "
                                          r"there any more, empty .*out"):
        project.export(MarkedX, to=target, subject=1, session="pre")
    assert (target / "half.json").exists() and (target / bundle.UNFINISHED).exists()
    # the same mark made here: its process is gone, the folder is cleared
    (target / bundle.UNFINISHED).write_text(f"{_dead_pid()} an-export-here 12345 {process_place()}\n")
    project.export(MarkedX, to=target, subject=1, session="pre")
    assert not (target / "half.json").exists() and (target / "scistack-bundle.json").exists()


def test_a_working_folder_whose_pid_runs_another_process_or_is_another_places_is_kept_or_removed(
        project, tmp_path, monkeypatch):
    """The folder an export writes in beside its target was named by its pid alone: one a
    killed export left stayed for good while its pid ran another process (pids are used
    again, after a restart at once), and a running export's of another machine sharing the
    folder was removed under it whenever its pid ran nothing here. The name holds when its
    process started and where it runs: a pid now running another process is gone, another
    place's is never judged here."""
    from scistack import export as export_module
    from scistack.objects._proc import pid_started, process_place

    MarkedX.save(1.0, subject=1, session="pre")
    here = process_place()
    other = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(300)"])  # (a pid that runs)
    try:
        started = pid_started(other.pid)
        assert started.isdigit(), "the start of a process is read from /proc (Linux)"
        names = {"gone": f".out.export-{other.pid}-{int(started) + 1}-{here}-0badf00d",  # its pid reused
                 "running": f".out.export-{other.pid}-{started}-{here}-0badf00d",
                 "elsewhere": f".out.export-{_dead_pid()}-{started}-0123456789abcdef-0badf00d",
                 "older": f".out.export-{other.pid}-0badf00d"}  # (an older scistack's: its pid alone)
        for name in names.values():
            (tmp_path / name).mkdir()
            (tmp_path / name / "half.json").write_text("{}")
        works = []
        write_bundle = export_module.bundle.write_bundle

        def noting_the_folder(db, found, work):
            works.append(work.name)
            return write_bundle(db, found, work)

        monkeypatch.setattr(export_module.bundle, "write_bundle", noting_the_folder)
        project.export(MarkedX, to=tmp_path / "out", subject=1, session="pre")
    finally:
        other.kill()
        other.wait()
    left = {p.name for p in tmp_path.iterdir() if ".export-" in p.name}
    assert left == {names["running"], names["elsewhere"], names["older"]}
    assert (tmp_path / "out" / "scistack-bundle.json").exists()
    assert re.fullmatch(rf"\.out\.export-{os.getpid()}-{pid_started(os.getpid())}-{here}-[0-9a-f]{{8}}", works[0])


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_a_full_disk_while_marking_an_empty_folder_is_a_storage_full_error_and_leaves_nothing(
        project, tmp_path):
    # (the mark made, its text not written: a bare OSError, ENOSPC, and an empty mark left)
    from scistack.errors import StorageFullError
    from tests.helpers import fill_disk, small_tmpfs

    MarkedX.save(1.0, subject=1, session="pre")
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        target = disk / "out"
        target.mkdir()
        fill_disk(disk)
        with pytest.raises(StorageFullError, match=re.escape(f"the export folder {target} could not grow")
                           + ".*Nothing was exported"):
            project.export(MarkedX, to=target, subject=1, session="pre")
        assert list(target.iterdir()) == []
        for filler in disk.glob("filler*"):
            filler.unlink()
        assert project.export(MarkedX, to=target, subject=1, session="pre").selected == 1


@pytest.mark.parametrize("how", ["chmod", "read-only mount"])
def test_an_export_folder_that_cannot_be_written_is_a_scistack_error_naming_it(project, tmp_path, how):
    """A parent folder that cannot be written (or an empty target in it) came out as a bare
    PermissionError (OSError: Read-only file system on a read-only mount). chmod does not stop
    root, so as root the folder is a tmpfs remounted read-only."""
    from tests.helpers import small_tmpfs

    MarkedX.save(1.0, subject=1, session="pre")
    parent = tmp_path / "locked"
    with contextlib.ExitStack() as undo:
        if how == "chmod":
            (parent / "empty").mkdir(parents=True)
            for folder in (parent / "empty", parent):
                folder.chmod(0o500)
                undo.callback(folder.chmod, 0o700)
            try:  # (root, its CAP_DAC_OVERRIDE: os.geteuid() == 0 but for a root without it)
                (parent / "probe").mkdir()
                (parent / "probe").rmdir()
                pytest.skip("this process writes into a folder chmod 0o500 (root: the read-only mount case runs)")
            except PermissionError:
                pass
        else:
            undo.enter_context(small_tmpfs(parent, "1m"))
            (parent / "empty").mkdir()
            subprocess.run(["mount", "-o", "remount,ro", str(parent)], check=True)
        fix = "chmod u[+]rwx" if how == "chmod" else "mount it read-write"
        for target, named in ((parent / "out", parent), (parent / "empty", parent / "empty")):
            with pytest.raises(ExportError, match=re.escape(f"{named} cannot be written") + f".*{fix}"):
                project.export(MarkedX, to=target, subject=1, session="pre")
        assert sorted(p.name for p in parent.iterdir()) == ["empty"] and not any((parent / "empty").iterdir())


_LOCKED_PARENT_EXPORT = """
import sys
from scistack import BaseVariable, configure_database
from scistack.errors import ExportError

db = configure_database(sys.argv[1], ["subject"])
class LockedX(BaseVariable): pass
LockedX.save(1.0, subject=1)
try:
    db.export(LockedX, to=sys.argv[2], subject=1)
    print("exported")
except ExportError as exc:
    print("ExportError:", exc)
except BaseException as exc:
    print("raw:", type(exc).__name__, exc)
"""


def test_a_target_in_a_folder_that_cannot_be_entered_is_an_export_error(tmp_path):
    """A target whose parent cannot be entered (chmod 0o600: readable, not searchable) came out
    as a bare PermissionError from the dangling-link check, which ran before the folder checks'
    error handling. Root passes any chmod, so as root the export runs in a child without
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv)."""
    parent = tmp_path / "locked"
    parent.mkdir()
    script = tmp_path / "export_into.py"
    script.write_text(_LOCKED_PARENT_EXPORT)
    command = [sys.executable, str(script), str(tmp_path / "db.duckdb"), str(parent / "out")]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:  # (util-linux: on every machine CI runs on, which must run this)
            reason = "root passes chmod and setpriv (util-linux) is not here to drop that"
            if os.environ.get("CI"):
                pytest.fail(f"{reason}, and CI is set: install util-linux")
            pytest.skip(reason)
        command = [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--ambient-caps=-all", *command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    parent.chmod(0o600)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    finally:
        parent.chmod(0o700)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ExportError:"), done.stdout + done.stderr
    assert f"{parent}" in done.stdout and "chmod u+rwx" in done.stdout
    assert list(parent.iterdir()) == []


def test_a_target_name_of_up_to_255_bytes_is_exported(project, tmp_path):
    """The folder an export writes in beside its target adds its pid, start, place and token to
    the target's name: a legal name of 200-255 bytes had failed with "File name too long"."""
    MarkedX.save(1.0, subject=1, session="pre")
    for length in (200, 255):
        target = tmp_path / ("é" * ((length - 1) // 2) + "x" * ((length - 1) % 2 + 1))
        assert len(os.fsencode(target.name)) == length
        assert project.export(MarkedX, to=target, subject=1, session="pre").selected == 1
        assert (target / "scistack-bundle.json").is_file()
    assert sorted(len(os.fsencode(p.name)) for p in tmp_path.iterdir() if p.name.startswith(("é", "x"))) == [200, 255]
