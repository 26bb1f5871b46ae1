"""Export a lineage closure as a bundle and import it back (issue 22), through the public API
and the CLI, with real files; every crate is checked by the RO-Crate validator
(`roc-validator`, offline: its HTTP cache is seeded with the RO-Crate context shipped in the
`rocrate` package) against the Process Run Crate profile, REQUIRED checks."""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from scistack import BaseVariable, configure_database, for_each
from scistack.cli import main
from scistack.errors import BundleError

PIPELINE = """
import numpy as np
from scistack import lineage_fcn

@lineage_fcn
def bandpass(signal, low_hz):
    return signal * low_hz

@lineage_fcn
def peak(filtered):
    return float(np.max(filtered))
"""


class XRaw(BaseVariable):
    pass


class XFiltered(BaseVariable):
    pass


class XPeak(BaseVariable):
    pass


class XOther(BaseVariable):
    pass


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    name = f"exppipe_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(PIPELINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    return importlib.import_module(name)


def run(module, subjects=(1, 2), sessions=("pre", "post")):
    for_each(module.bandpass, inputs={"signal": XRaw, "low_hz": 20}, outputs=[XFiltered], progress=False,
             subject=list(subjects), session=list(sessions))
    return for_each(module.peak, inputs={"filtered": XFiltered}, outputs=[XPeak], progress=False,
                    subject=list(subjects), session=list(sessions))


@pytest.fixture
def source(tmp_path, pipeline):
    db = configure_database(tmp_path / "src" / "p.duckdb", ["subject", "session"])
    for subject in (1, 2):
        for session in ("pre", "post"):
            XRaw.save(np.arange(6.0) * subject + (session == "post"), subject=subject, session=session)
    XOther.save({"unrelated": True}, subject=1, session="post")
    run(pipeline)
    yield db
    db.close()


@pytest.fixture(scope="session")
def validator_cache(tmp_path_factory):
    """A requests-cache database holding the RO-Crate 1.1 context, so validation is offline."""
    import requests
    import requests_cache
    import rocrate
    import urllib3

    path = tmp_path_factory.mktemp("rocv") / "http_cache"
    session = requests_cache.CachedSession(cache_name=str(path), backend="sqlite")
    context = (Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_bytes()
    url = "https://w3id.org/ro/crate/1.1/context"
    response = requests.Response()
    response.status_code, response.reason, response.url, response._content = 200, "OK", url, context
    response.headers["Content-Type"] = "application/ld+json"
    response.request = requests.Request("GET", url).prepare()
    response.raw = urllib3.HTTPResponse(body=io.BytesIO(context), status=200, preload_content=False,
                                        request_url=url)
    session.cache.save_response(response)
    session.close()
    return path


def validate(bundle: Path, cache: Path) -> list[str]:
    from rocrate_validator import services
    from rocrate_validator.models import ValidationSettings

    result = services.validate(ValidationSettings(
        rocrate_uri=str(bundle), profile_identifier="process-run-crate", requirement_severity="REQUIRED",
        offline=True, cache_path=cache))
    return [f"{issue.severity}: {issue.message}" for issue in result.get_issues()]


def journal_size(db) -> int:
    db.flush()
    path = db.index.journal_path
    return path.stat().st_size if path.exists() else 0


def test_a_value_exports_with_exactly_its_lineage_and_a_valid_crate(source, tmp_path, validator_cache):
    bundle = tmp_path / "paper"
    report = source.export(XPeak, bundle, subject=1, session="post")
    assert (report.chosen, report.values, report.calls) == (1, 3, 2)
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and "objects" not in p.parts}
    assert {"XPeak/subject=1/session=post.json", "XFiltered/subject=1/session=post.npy",
            "XRaw/subject=1/session=post.npy", "README.md", "ro-crate-metadata.json", "provenance.json",
            "scistack-bundle.json"} == files  # nothing of subject 2, other sessions or XOther
    np.testing.assert_array_equal(np.load(bundle / "XFiltered/subject=1/session=post.npy"),
                                  (np.arange(6.0) + 1) * 20)
    assert json.loads((bundle / "XPeak/subject=1/session=post.json").read_text()) == 120.0
    crate = json.loads((bundle / "ro-crate-metadata.json").read_text())
    graph = {e["@id"]: e for e in crate["@graph"]}
    actions = [e for e in graph.values() if e["@type"] == "CreateAction"]
    assert len(actions) == 2 and all(graph[a["instrument"]["@id"]]["@type"] == "SoftwareApplication" for a in actions)
    peak = graph["XPeak/subject%3D1/session%3Dpost.json"]
    assert peak["identifier"][0] == f"blake3:{XPeak.load(subject=1, session='post').oid}"
    assert peak["identifier"][1].startswith("sha256:") and peak["encodingFormat"] == "application/json"
    constants = [graph[o["@id"]] for a in actions for o in a["object"] if graph[o["@id"]]["@type"] == "PropertyValue"]
    assert [(c["name"], c["value"]) for c in constants] == [("low_hz", 20)]
    assert validate(bundle, validator_cache) == []
    assert "XPeak" in (bundle / "README.md").read_text()
    prov = json.loads((bundle / "provenance.json").read_text())
    assert len(prov["activity"]) == 2 and len(prov["wasGeneratedBy"]) == 2


def test_the_validator_runs_for_real(source, tmp_path, validator_cache):
    """A crate without the profile it claims fails: the check above can fail."""
    bundle = tmp_path / "b"
    source.export(XPeak, bundle, subject=1, session="post")
    crate = json.loads((bundle / "ro-crate-metadata.json").read_text())
    for entity in crate["@graph"]:
        if entity["@id"] == "./":
            del entity["conformsTo"]
    (bundle / "ro-crate-metadata.json").write_text(json.dumps(crate))
    assert validate(bundle, validator_cache) != []


def test_import_restores_values_lineage_and_cache_with_the_same_oids(source, tmp_path, pipeline):
    bundle = tmp_path / "paper"
    source.export(["XPeak"], bundle, all_current=True)
    expected = {(v.__name__, r.metadata["subject"], r.metadata["session"]): (r.oid, r.data if np.isscalar(r.data)
                else r.data.tolist()) for v in (XRaw, XFiltered, XPeak) for r in v.load_all()}
    provenance = source.get_provenance(XPeak, subject=2, session="pre")
    source.close()
    target = configure_database(tmp_path / "dst" / "p.duckdb", ["subject", "session"])
    try:
        report = target.import_bundle(bundle)
        assert report.refs == 12 and report.calls == 8
        got = {(v.__name__, r.metadata["subject"], r.metadata["session"]): (r.oid, r.data if np.isscalar(r.data)
               else r.data.tolist()) for v in (XRaw, XFiltered, XPeak) for r in v.load_all()}
        assert got == expected
        assert [r.version for r in XPeak.load_all()] == [1, 1, 1, 1]
        assert target.get_provenance(XPeak, subject=2, session="pre")["call"] == provenance["call"]
        assert run(pipeline).cached == 4  # the same code here: all cache hits
        assert target.import_bundle(bundle).refs == 12  # again: nothing new is named
        assert [r.version for r in XPeak.load_all()] == [1, 1, 1, 1]
    finally:
        target.close()


def test_the_cli_exports_and_imports(source, tmp_path):
    bundle = tmp_path / "cli-bundle"
    result = CliRunner().invoke(main, ["--db", str(source.path), "export", "XPeak", "--subject", "2",
                                       "--session", "pre", "--to", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "exported 1 value(s)" in result.output and (bundle / "XPeak/subject=2/session=pre.json").exists()
    source.close()
    target = configure_database(tmp_path / "dst2" / "p.duckdb", ["subject", "session"])
    target.close()
    result = CliRunner().invoke(main, ["--db", str(target.path), "import", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "imported 3 values" in result.output


def test_a_chunked_array_exports_as_zarr(project, tmp_path):
    import zarr

    from scistack.objects.chunking import set_chunking

    set_chunking(threshold=4096, chunk_bytes=2048)
    try:
        value = np.arange(3000, dtype=np.int16).reshape(300, 10)
        XRaw.save(value, subject=1, session="pre")
    finally:
        set_chunking()
    bundle = tmp_path / "z"
    project.export(XRaw, bundle, subject=1, session="pre")
    np.testing.assert_array_equal(zarr.open_array(str(bundle / "XRaw/subject=1/session=pre.zarr"), mode="r")[:],
                                  value)


def test_bad_exports_are_refused_and_write_nothing(source, tmp_path):
    with pytest.raises(BundleError, match="cannot export XPeak: .*no record matching subject=9"):
        source.export(XPeak, tmp_path / "e1", subject=9, session="pre")
    assert not (tmp_path / "e1").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not an empty folder"):
        source.export(XPeak, full, subject=1, session="pre")
    assert [p.name for p in full.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("damage", ["open file", "object", "manifest"])
def test_a_tampered_bundle_is_named_and_imports_nothing(source, tmp_path, damage):
    bundle = tmp_path / "paper"
    source.export(XPeak, bundle, subject=1, session="post")
    if damage == "open file":
        path = bundle / "XFiltered/subject=1/session=post.npy"
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
        match = "XFiltered/subject=1/session=post.npy was changed"
    elif damage == "object":
        path = next(p for p in (bundle / "objects").glob("??/*") if p.is_file())
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
        match = f"objects/{path.parent.name}/{path.name} is damaged"
    else:
        (bundle / "scistack-bundle.json").write_text("{")
        match = "not readable JSON"
    target = configure_database(tmp_path / "dst" / "p.duckdb", ["subject", "session"])
    try:
        before = journal_size(target)
        with pytest.raises(BundleError, match=match):
            target.import_bundle(bundle)
        assert journal_size(target) == before and target.index.variables() == []
    finally:
        target.close()


def test_an_import_into_other_schema_keys_is_refused(source, tmp_path):
    bundle = tmp_path / "paper"
    source.export(XPeak, bundle, subject=1, session="post")
    target = configure_database(tmp_path / "dst" / "p.duckdb", ["animal", "day"])
    try:
        with pytest.raises(BundleError, match=r"schema keys \['subject', 'session'\].*nothing was imported"):
            target.import_bundle(bundle)
        assert target.index.variables() == []
    finally:
        target.close()
    shutil.rmtree(bundle)
    with pytest.raises(BundleError, match="not a scistack bundle"):
        source.import_bundle(tmp_path)
