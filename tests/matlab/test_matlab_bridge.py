"""`scistack matlab-plan` / `matlab-commit` without Octave: the files MATLAB would write are
written here, so the bridge's rules (normalisation, identity, call keys, statuses, records)
are checked quickly and on machines without Octave. test_octave.py runs the real thing.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scistack import BaseVariable
from scistack.database import Database
from scistack.errors import InvalidMetadataError, InvalidNameError, LineageError, SchemaMismatchError
from scistack.lineage.calls import key_from_oids
from scistack.matlab_bridge import commit, matlab_function, normalise_matlab_source, plan
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.hashing import hash_bytes, hash_object
from scistack.objects.npy import encode_npy
from scistack.objects.store import hash_value


class BridgeRaw(BaseVariable):
    pass


def test_normalise_strips_comments_but_not_strings_or_code():
    text = (
        "function y = f(x)  \r\n"
        "% a comment\r\n"
        "\r\n"
        "  y = x';   % transpose, then a comment\n"
        "  s = 'it''s 50% off';  # octave comment\n"
        '  t = "100% ""sure""";\n'
        "%{\n"
        "block\n"
        "  %{\n"
        "  nested\n"
        "  %}\n"
        "%}\n"
        "  z = [1, 2, ... the rest is a comment\n"
        "       3];\n"
        "end\n"
    )
    assert normalise_matlab_source(text) == (
        "function y = f(x)\n"
        "  y = x';\n"
        "  s = 'it''s 50% off';\n"
        '  t = "100% ""sure""";\n'
        "  z = [1, 2, ...\n"
        "       3];\n"
        "end\n"
    )


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_identity_is_the_digest_of_the_normalised_text(tmp_path):
    f = _write(
        tmp_path, "bandpass.m", "function y = bandpass(signal, low_hz)\ny = signal + low_hz;\nend\n"
    )
    fn = matlab_function(f)
    normal = "function y = bandpass(signal, low_hz)\ny = signal + low_hz;\nend\n"
    assert fn.identity == hash_bytes(normal.encode()) == fn.main.digest
    assert fn.main.code == hash_object("code", [normal.encode()])
    assert (
        fn.name == "bandpass"
        and fn.params == ("signal", "low_hz")
        and fn.module == "matlab:bandpass.m"
    )
    _write(
        tmp_path,
        "bandpass.m",
        "function y = bandpass(signal, low_hz) % doc\n\ny = signal + low_hz;  \nend",
    )
    assert matlab_function(f).identity == fn.identity
    _write(
        tmp_path, "bandpass.m", "function y = bandpass(signal, low_hz)\ny = signal - low_hz;\nend\n"
    )
    assert matlab_function(f).identity != fn.identity


def test_helpers_count_and_packages_are_labelled(tmp_path):
    f = _write(tmp_path, "+lab/step.m", "function [a, b] = step(x, varargin)\na = x; b = 1;\nend\n")
    h = _write(tmp_path, "helper.m", "function y = helper(x)\ny = x;\nend\n")
    alone, with_helper = matlab_function(f), matlab_function(f, [str(h)])
    assert alone.module == "matlab:+lab/step.m" and alone.params == ("x", "varargin")
    assert with_helper.identity == hash_bytes(
        dumps_canonical(
            {
                "deps": [["helper:matlab:helper.m", with_helper.helpers[0].digest]],
                "source": alone.identity,
            }
        )
    )
    _write(tmp_path, "helper.m", "function y = helper(x)\ny = 2 * x;\nend\n")
    assert matlab_function(f, [str(h)]).identity != with_helper.identity
    script = _write(tmp_path, "script.m", "x = 1;\n")
    with pytest.raises(LineageError, match="not a function file"):
        matlab_function(script)


# -- a MATLAB run, written by hand -----------------------------------------------------------
@pytest.fixture
def project(tmp_path):
    db = Database(tmp_path / "proj" / "gait.duckdb", ["subject", "session"])
    with db.batch():
        for subject in (1, 2):
            for session in ("pre", "baseline"):
                oid = db.store.put_value(np.arange(4.0) * subject)
                db.index.put_ref(
                    "BridgeRaw", {"subject": subject, "session": session}, {}, oid, "npy"
                )
    fn = _write(
        tmp_path, "code/scale.m", "function y = scale(signal, base, k)\ny = signal * k;\nend\n"
    )
    yield db, fn
    db.close()


def _stage(db: Database, name: str, request: dict, payloads: dict[str, bytes]) -> Path:
    folder = db.root / ".scistack" / "staging" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, data in payloads.items():
        (folder / file).write_bytes(data)
    (folder / "plan.json").write_bytes(dumps_canonical(request) + b"\n")
    return folder


def _request(db: Database, fn: Path, **changes) -> dict:
    request = {
        "children": [],
        "format": 1,
        "function": {"file": str(fn), "helpers": [], "name": "scale"},
        "inputs": {
            "signal": {"var": "BridgeRaw"},
            "base": {"var": "BridgeRaw", "fixed": {"session": "baseline"}},
            "k": {"kind": "json", "payload": "payload-0.bin"},
        },
        "iterate": [["subject", [1, 2, 3]], ["session", ["pre"]]],
        "order": ["signal", "base", "k"],
        "outputs": ["BridgeOut"],
        "schema_keys": db.schema_keys,
        "writer": "scistack-matlab",
    }
    request.update(changes)
    return request


def _npy(value: np.ndarray) -> bytes:
    return b"".join(bytes(p) for p in encode_npy(value))


def test_plan_then_commit_records_lineage_and_caches(project):
    db, fn = project
    folder = _stage(db, "run1", _request(db, fn), {"payload-0.bin": b"2.0"})
    planned = plan(db, folder / "plan.json")
    assert json.loads((folder / "plan-result.json").read_text()) == planned
    assert [c["status"] for c in planned["combos"]] == ["run", "run", "missing"]
    assert planned["arguments"] == ["signal", "base", "k"]
    assert planned["combos"][2]["detail"] == [
        "no BridgeRaw at subject=3, session='baseline' (input base)",
        "no BridgeRaw at subject=3, session='pre' (input signal)",
    ]
    const_oid = hash_object("json", [b"2.0"])
    assert planned["constants"] == {"k": {"oid": const_oid, "const": 2.0}}
    first = planned["combos"][0]
    signal_oid = first["inputs"]["signal"]["oid"]
    base_oid = first["inputs"]["base"]["oid"]
    assert first["inputs"]["base"]["addr"] == {"subject": 1, "session": "baseline"}
    assert first["key"] == key_from_oids(
        planned["function"]["identity"], {"signal": signal_oid, "base": base_oid, "k": const_oid}
    )
    assert first["params"] == {"scale.k": 2.0}

    outputs = [np.arange(4.0) * 2, np.arange(4.0) * 4]
    payloads = {f"payload-{i + 1}.bin": _npy(v) for i, v in enumerate(outputs)}
    for file, data in payloads.items():
        (folder / file).write_bytes(data)
    results = {
        "children": [],
        "duration": 0.5,
        "env": {"language": "matlab", "octave": "7.3.0"},
        "format": 1,
        "results": [
            {
                "index": i,
                "status": "ran",
                "outputs": [{"kind": "npy", "payload": f"payload-{i + 1}.bin"}],
                "started": 1790000000.25,
                "duration": 0.01,
            }
            for i in range(2)
        ],
        "writer": "scistack-matlab",
    }
    (folder / "results.json").write_bytes(dumps_canonical(results))
    done = commit(db, folder / "results.json")
    assert done["counts"] == {"ran": 2, "cached": 0, "missing": 1, "failed": 0}
    assert done["outputs"][0] == [hash_value(outputs[0])]
    record = db.index.current_at("BridgeOut", '{"session":"pre","subject":1}', "{}")
    assert record is not None and record.oid == hash_value(outputs[0])
    assert record.params == {"scale.k": 2.0} and record.summary == "float64[4]"
    call = db.store.get_value(record.call)
    assert call["function"]["module"] == f"matlab:{fn.name}"
    assert call["function"]["identity"] == planned["function"]["identity"]
    assert db.store.get_value(call["function"]["code"]) == fn.read_text()
    assert call["inputs"]["k"] == {"oid": const_oid, "const": 2.0}
    assert call["inputs"]["signal"]["var"] == "BridgeRaw"
    assert call["env"]["language"] == "matlab" and call["env"]["octave"] == "7.3.0"
    from scistack.ui import api  # the web view says what ran it (it said "Python ?")
    assert api.value(db, "BridgeOut", {"subject": 1, "session": "pre"})["provenance"]["runtime"] == "Octave 7.3.0"
    assert call["started"] == "2026-09-21T14:13:20.250000Z"
    assert db.index.cached_call(first["key"])["outs"] == [hash_value(outputs[0])]
    runs = [e for e in _journal(db) if e["op"] == "run"]
    assert runs[-1]["function"] == "scale" and runs[-1]["outputs"] == ["BridgeOut"]

    again = _stage(db, "run2", _request(db, fn), {"payload-0.bin": b"2.0"})
    replanned = plan(db, again / "plan.json")
    assert [c["status"] for c in replanned["combos"]] == ["cached", "cached", "missing"]
    assert replanned["combos"][0]["restore"] is False


def test_commit_refuses_code_edited_since_the_plan(project):
    db, fn = project
    folder = _stage(db, "run", _request(db, fn), {"payload-0.bin": b"2.0"})
    plan(db, folder / "plan.json")
    fn.write_text("function y = scale(signal, base, k)\ny = signal * k + 1;\nend\n")
    (folder / "results.json").write_bytes(dumps_canonical({"format": 1, "results": []}))
    before = (db.root / ".scistack" / "refs.log").read_bytes()
    with pytest.raises(LineageError, match="changed between the plan and the commit"):
        commit(db, folder / "results.json")
    assert (db.root / ".scistack" / "refs.log").read_bytes() == before


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"iterate": [["trial", [1]]]}, InvalidMetadataError, "schema keys only"),
        (
            {"inputs": {"signal": {"var": "BridgeRaw", "fixed": {"trial": 1}}}},
            InvalidMetadataError,
            "pins",
        ),
        (
            {"inputs": {"sig": {"var": "BridgeRaw"}}, "order": ["sig"]},
            InvalidMetadataError,
            "no parameter 'sig'",
        ),
        (
            {"inputs": {"k": {"kind": "json", "payload": "payload-0.bin"}}, "order": ["k"]},
            InvalidMetadataError,
            "but not 'signal', 'base'",
        ),
        (
            {"inputs": {"k": {"kind": "table", "payload": "payload-0.bin"}}},
            Exception,
            "cannot be ingested",
        ),
        ({"schema_keys": ["subject"]}, SchemaMismatchError, "schema keys"),
        ({"iterate": []}, InvalidMetadataError, "at least one schema key"),
        ({"outputs": []}, InvalidMetadataError, "at least one output"),
        ({"outputs": ["BridgeRaw"]}, InvalidMetadataError, r"BridgeRaw is both an input \(inputs\['signal'\]\)"),
        (
            {"inputs": {"signal": {"var": "BridgeRaw", "fixed": {"session": ["pre", "post"]}}}},
            InvalidMetadataError,
            "pins several values",
        ),
        ({"format": 2}, InvalidMetadataError, "format 2"),
        ({"outputs": ["BRIDGERAW"]}, InvalidNameError,
         "'BRIDGERAW' differs from the project's variable 'BridgeRaw' only by case"),
        ({"outputs": ["BridgeRaw_all"]}, InvalidNameError,
         "'BridgeRaw_all' would take the name of the SQL view BridgeRaw_all"),
        ({"outputs": ["NewOut", "NEWOUT"]}, InvalidNameError, "'NewOut' and 'NEWOUT' differ only by case"),
    ],
)
def test_bad_plans_are_refused_with_clear_errors(project, change, error, match):
    db, fn = project
    folder = _stage(db, "bad", _request(db, fn, **change), {"payload-0.bin": b"2.0"})
    with pytest.raises(error, match=match):
        plan(db, folder / "plan.json")


def test_a_version_key_pin_picks_a_variant_and_an_ambiguous_input_says_how_in_matlab(project):
    """`scistack.Fixed(RawEMG(), 'note', 'recal')` (and `'note', []`: null, the variant saved
    without a note) picks a variant, as Python's Fixed(RawEMG, note=...) does; the plan had
    refused every pin but a schema key, and an ambiguous input's message gave Python's
    syntax only, so a MATLAB for_each over such an input had no way out."""
    db, fn = project
    recal = db.store.put_value(np.arange(4.0) * 10)
    db.index.put_ref("BridgeRaw", {"subject": 1, "session": "pre"}, {"note": "recal"}, recal, "npy")
    plain = db.index.current_at("BridgeRaw", '{"session":"pre","subject":1}', "{}").oid
    for pin, oid in (("recal", recal), (None, plain)):
        request = _request(db, fn, iterate=[["subject", [1]], ["session", ["pre"]]])
        request["inputs"]["signal"]["fixed"] = {"note": pin}
        folder = _stage(db, f"pin-{pin}", request, {"payload-0.bin": b"2.0"})
        (combo,) = plan(db, folder / "plan.json")["combos"]
        assert combo["inputs"]["signal"]["oid"] == oid
    # an ambiguous input fails its combination alone (as in Python), not the whole plan: the
    # other combinations run, and the failure says how to pick a variant in MATLAB
    db.index.put_ref("BridgeRaw", {"subject": 2, "session": "pre"}, {}, recal, "npy")
    folder = _stage(db, "ambiguous", _request(db, fn, iterate=[["subject", [1, 2]], ["session", ["pre"]]]),
                    {"payload-0.bin": b"2.0"})
    result = plan(db, folder / "plan.json")
    one, two = result["combos"]
    assert one["status"] == "failed" and two["status"] == "run"
    assert re.search(r"^input signal: .*In MATLAB: scistack.Fixed\(BridgeRaw\(\), '<version key>'", one["error"])
    assert result["counts"]["failed"] == 1
    ran = {"format": 1, "results": [
        {"index": 1, "status": "ran", "outputs": [{"kind": "npy", "payload": "payload-1.bin"}]}]}
    (folder / "payload-1.bin").write_bytes(_npy(np.zeros(2)))
    (folder / "results.json").write_bytes(dumps_canonical(ran))
    done = commit(db, folder / "results.json")
    assert (done["counts"]["failed"], done["counts"]["ran"]) == (1, 1)
    assert "failed session='pre', subject=1: input signal: BridgeRaw has 2 variants" in done["summary"]


def _journal(db: Database) -> list[dict]:
    return [
        json.loads(line) for line in (db.root / ".scistack" / "refs.log").read_text().splitlines()
    ]


def test_cached_outputs_that_are_no_longer_current_are_restored(project):
    db, fn = project
    request = _request(db, fn, iterate=[["subject", [1]], ["session", ["pre"]]])
    folder = _stage(
        db, "first", request, {"payload-0.bin": b"2.0", "payload-1.bin": _npy(np.zeros(2))}
    )
    plan(db, folder / "plan.json")
    ran = {
        "format": 1,
        "results": [
            {"index": 0, "status": "ran", "outputs": [{"kind": "npy", "payload": "payload-1.bin"}]}
        ],
    }
    (folder / "results.json").write_bytes(dumps_canonical(ran))
    out = commit(db, folder / "results.json")["outputs"][0][0]
    other = db.store.put_value(np.ones(2))
    db.index.put_ref(
        "BridgeOut", {"subject": 1, "session": "pre"}, {}, other, "npy"
    )  # saved over it
    again = _stage(db, "again", request, {"payload-0.bin": b"2.0"})
    (replanned,) = plan(db, again / "plan.json")["combos"]
    assert replanned["status"] == "cached" and replanned["restore"] is True
    (again / "results.json").write_bytes(dumps_canonical({"format": 1, "results": []}))
    assert commit(db, again / "results.json")["counts"]["cached"] == 1
    current = db.index.current_at("BridgeOut", '{"session":"pre","subject":1}', "{}")
    assert current.oid == out and current.call is not None and current.version == 3


def test_a_cached_result_a_gc_freed_after_the_plan_is_not_named_by_the_commit(project):
    """The plan calls a cached output `restore`; a gc then frees it (its only name dropped by a
    retention rule, its cache entry with it). The commit named it with no object behind it (it
    raised, reading the freed record); now it freshens first, as Python's `_restore` does, and
    the combination fails, saying to run again."""
    db, fn = project
    again, _, other = _gone_restore(db, fn)
    (again / "results.json").write_bytes(dumps_canonical({"format": 1, "results": []}))
    done = commit(db, again / "results.json")
    assert done["counts"]["failed"] == 1 and done["outputs"] == [None]
    assert db.index.current_at("BridgeOut", '{"session":"pre","subject":1}', "{}").oid == other


def test_the_same_values_at_another_address_are_served_with_their_own_lineage(project):
    """Subject 3 holds subject 1's raw values: one call key. The plan had called subject 3
    cached and named subject 1's call record (its lineage, parameters); then it ran there,
    and at every re-run one of the two ran again (the cache entry names one record of the
    call). Subject 3 is served subject 1's result with a record naming its own inputs (as
    Python's for_each serves it), and re-runs find both cached. A Thunk call does the same."""
    db, fn = project
    for session in ("pre", "baseline"):
        db.index.put_ref("BridgeRaw", {"subject": 3, "session": session}, {},
                         db.store.put_value(np.arange(4.0)), "npy")
    first = _stage(db, "first", _request(db, fn, iterate=[["subject", [1]], ["session", ["pre"]]]),
                   {"payload-0.bin": b"2.0", "payload-1.bin": _npy(np.arange(4.0) * 2)})
    key = plan(db, first / "plan.json")["combos"][0]["key"]
    (first / "results.json").write_bytes(dumps_canonical({"format": 1, "results": [
        {"index": 0, "status": "ran", "outputs": [{"kind": "npy", "payload": "payload-1.bin"}]}]}))
    ran = commit(db, first / "results.json")["calls"][0]
    again = _stage(db, "again", _request(db, fn, iterate=[["subject", [1, 3]], ["session", ["pre"]]]),
                   {"payload-0.bin": b"2.0"})
    combos = plan(db, again / "plan.json")["combos"]
    assert [(c["status"], c["restore"]) for c in combos] == [("cached", False), ("cached", True)]
    assert combos[1]["own"]["inputs"]["signal"]["addr"] == {"subject": 3, "session": "pre"}
    (again / "results.json").write_bytes(dumps_canonical({"format": 1, "results": []}))
    own = commit(db, again / "results.json")["calls"][1]
    assert own != ran and db.index.cached_call(key)["call"] == ran  # the entry stays
    record = db.index.current_at("BridgeOut", '{"session":"pre","subject":3}', "{}")
    assert record.call == own and record.params == {"scale.k": 2.0}
    assert db.store.get_value(own)["inputs"]["signal"]["addr"] == {"subject": 3, "session": "pre"}
    for name in ("third", "fourth"):
        rerun = _stage(db, name, _request(db, fn, iterate=[["subject", [1, 3]], ["session", ["pre"]]]),
                       {"payload-0.bin": b"2.0"})
        combos = plan(db, rerun / "plan.json")["combos"]
        assert [(c["status"], c["restore"]) for c in combos] == [("cached", False), ("cached", False)]


def test_the_same_values_twice_in_one_run_are_computed_once_and_served_with_their_own_lineage(project):
    """A subject's raw values at pre and baseline are the same: (1, pre) and (1, baseline) make
    one call key (signal and base alike). Each combination was planned against the call cache
    alone, so MATLAB ran both. The plan names the first (`same`); MATLAB reports the later one
    "cached" once that one ran and the commit records it with its own inputs (as Python's
    `_finish_same`), across partial commits too. When the first failed the later one runs."""
    db, fn = project
    request = _request(db, fn, iterate=[["subject", [1, 2]], ["session", ["pre", "baseline"]]])
    folder = _stage(db, "twice", request, {"payload-0.bin": b"2.0"})
    combos = plan(db, folder / "plan.json")["combos"]
    assert [(c["status"], c.get("same")) for c in combos] == [("run", None), ("run", 0), ("run", None), ("run", 2)]
    assert combos[1]["key"] == combos[0]["key"] and combos[3]["key"] == combos[2]["key"]
    (folder / "payload-1.bin").write_bytes(_npy(np.arange(4.0) * 2))
    (folder / "payload-2.bin").write_bytes(_npy(np.arange(4.0) * 4))
    ran = {"status": "ran", "started": 1790000000.0, "duration": 0.5, "labels": [[]]}
    results = [{"index": 0, **ran, "outputs": [{"kind": "npy", "payload": "payload-1.bin"}]},
               {"index": 1, "status": "cached", "duration": 0}]

    def _commit(partial: bool, rows: list) -> dict:
        (folder / "results.json").write_bytes(dumps_canonical({"format": 1, "partial": partial, "results": rows}))
        return commit(db, folder / "results.json")

    assert _commit(True, results)["summary"] == "for_each(scale): 1 ran so far, recorded"
    failed = {"index": 2, "status": "failed", "error": "boom"}
    for rows, match in [([{"index": 2, "status": "cached"}], "the plan names none"),
                        ([failed, {"index": 3, "status": "cached"}], "result 2 did not run")]:
        with pytest.raises(InvalidMetadataError, match=match):
            _commit(True, results + rows)
    results += [failed, {"index": 3, **ran, "outputs": [{"kind": "npy", "payload": "payload-2.bin"}]}]
    done = _commit(False, results)
    assert done["counts"] == {"ran": 2, "cached": 1, "missing": 0, "failed": 1}
    assert done["outputs"][1] == done["outputs"][0] == [hash_value(np.arange(4.0) * 2)]
    assert done["calls"][1] != done["calls"][0]
    for (subject, session), call in [((1, "pre"), done["calls"][0]), ((1, "baseline"), done["calls"][1])]:
        addr = {"subject": subject, "session": session}
        record = db.index.current_at("BridgeOut", dumps_canonical(addr).decode(), "{}")
        assert record.call == call and record.params == {"scale.k": 2.0} and record.version == 1
        tree = db.store.get_value(call)
        assert tree["inputs"]["signal"]["addr"] == addr and tree["outputs"] == [record.oid]
        assert tree["started"] == "2026-09-21T14:13:20.000000Z"  # the call that computed it
    rerun = _stage(db, "rerun", request, {"payload-0.bin": b"2.0"})
    combos = plan(db, rerun / "plan.json")["combos"]
    assert [(c["status"], c.get("restore")) for c in combos] == [
        ("cached", False), ("cached", False), ("cached", True), ("cached", False)]


def test_partial_commits_record_as_the_run_goes_and_the_last_counts_them(project):
    """MATLAB commits what finished so far during a long loop ("partial": no run report),
    then once at the end (or when interrupted) with every result: an interrupted run keeps
    what its commits recorded, and nothing is recorded twice."""
    db, fn = project
    folder = _stage(db, "long", _request(db, fn), {"payload-0.bin": b"2.0"})
    plan(db, folder / "plan.json")
    outputs = [np.arange(4.0) * 2, np.arange(4.0) * 4]
    results = []
    for i, value in enumerate(outputs):
        (folder / f"payload-{i + 1}.bin").write_bytes(_npy(value))
        results.append({"index": i, "status": "ran", "outputs": [{"kind": "npy", "payload": f"payload-{i + 1}.bin"}]})
        (folder / "results.json").write_bytes(dumps_canonical({"format": 1, "partial": True, "results": results}))
        partial = commit(db, folder / "results.json")
        assert partial["partial"] is True and partial["outputs"][i] == [hash_value(value)]
        record = db.index.current_at("BridgeOut", f'{{"session":"pre","subject":{i + 1}}}', "{}")
        assert record.oid == hash_value(value) and record.version == 1  # recorded at once, once
    assert not [e for e in _journal(db) if e["op"] == "run"]
    (folder / "results.json").write_bytes(dumps_canonical({"format": 1, "results": results}))
    done = commit(db, folder / "results.json")
    assert done["counts"] == {"ran": 2, "cached": 0, "missing": 1, "failed": 0}
    assert done["outputs"][:2] == [[hash_value(v)] for v in outputs]
    assert [r.version for r in db.index.records("BridgeOut")] == [1, 1]
    assert [e["function"] for e in _journal(db) if e["op"] == "run"] == ["scale"]


KILLED_COMMIT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from scistack.cli import main
    from tests.helpers import interrupt_when, kill_self
    results = Path(sys.argv[1])
    folder, journal = results.parent, results.parents[2] / "refs.log"
    start = journal.stat().st_size
    ready = {
        "before the journal": lambda: (folder / "committing.json").is_file(),
        "after the journal": lambda: journal.stat().st_size > start,
        "after committed.json": lambda: (folder / "committed.json").is_file(),
    }[sys.argv[2]]
    with interrupt_when(ready, "scistack/matlab_bridge/commit.py", kill_self):
        main(["matlab-commit", str(results)], standalone_mode=False)
""")


def _killed_commit(results: Path, point: str, python_env: dict) -> None:
    """`scistack matlab-commit` in a child, SIGKILLed at `point` (a tracing hook)."""
    child = subprocess.run([sys.executable, "-c", KILLED_COMMIT, str(results), point], env=python_env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr


def _two_results(folder: Path, outputs: list, partial: bool) -> Path:
    results = []
    for i, value in enumerate(outputs):
        (folder / f"payload-{i + 1}.bin").write_bytes(_npy(value))
        results.append({"index": i, "status": "ran", "started": 1790000000.0 + i, "duration": 0.01,
                        "outputs": [{"kind": "npy", "payload": f"payload-{i + 1}.bin"}]})
    staged = {"format": 1, "partial": partial, "results": results}
    (folder / "results.json").write_bytes(dumps_canonical(staged))
    return folder / "results.json"


@pytest.mark.parametrize("point", ["before the journal", "after the journal", "after committed.json"])
def test_a_commit_killed_anywhere_is_recorded_once_when_it_is_retried(project, python_env, point):
    """MATLAB tells the user to retry a final commit that failed (a kill, a crash): the retry
    records what the killed one had not, and nothing it had (the run report counted once, no
    second version of any output), wherever the kill came."""
    db, fn = project
    folder = _stage(db, "killed", _request(db, fn), {"payload-0.bin": b"2.0"})
    plan(db, folder / "plan.json")
    outputs = [np.arange(4.0) * 2, np.arange(4.0) * 4]
    results = _two_results(folder, outputs, partial=False)
    _killed_commit(results, point, python_env)
    done = commit(db, results)
    assert done["counts"] == {"ran": 2, "cached": 0, "missing": 1, "failed": 0}
    assert done["outputs"][:2] == [[hash_value(v)] for v in outputs]
    assert json.loads((folder / "commit-result.json").read_text())["run_id"] == done["run_id"]
    assert [(r.oid, r.version) for r in db.index.records("BridgeOut")] == [(hash_value(v), 1) for v in outputs]
    assert [e["run_id"] for e in _journal(db) if e["op"] == "run"] == [done["run_id"]]
    assert not (folder / "committing.json").exists()


def test_a_value_saved_after_a_killed_partial_commit_is_not_buried_by_the_next(project, python_env):
    """A partial commit killed after its batch reached the journal, then a value saved at one
    of its addresses by someone else: the next commit knows the combination is recorded and
    does not record the old result again as a newer version over the new value."""
    db, fn = project
    folder = _stage(db, "buried", _request(db, fn), {"payload-0.bin": b"2.0"})
    plan(db, folder / "plan.json")
    outputs = [np.arange(4.0) * 2, np.arange(4.0) * 4]
    _killed_commit(_two_results(folder, outputs, partial=True), "after the journal", python_env)
    fixed = np.arange(4.0) * 3
    db.index.put_ref("BridgeOut", {"subject": 1, "session": "pre"}, {}, db.store.put_value(fixed), "npy")
    done = commit(db, _two_results(folder, outputs, partial=False))
    assert done["counts"] == {"ran": 2, "cached": 0, "missing": 1, "failed": 0}
    current = db.index.current_at("BridgeOut", '{"session":"pre","subject":1}', "{}")
    assert current.oid == hash_value(fixed) and current.version == 2
    assert [r.version for r in db.index.versions_at("BridgeOut", '{"session":"pre","subject":1}')] == [1, 2]


def test_what_an_interrupted_run_did_not_reach_is_skipped_and_says_why(project):
    db, fn = project
    folder = _stage(db, "cut", _request(db, fn), {"payload-0.bin": b"2.0", "payload-1.bin": _npy(np.ones(4))})
    plan(db, folder / "plan.json")
    (folder / "results.json").write_bytes(dumps_canonical({"format": 1, "results": [
        {"index": 0, "status": "ran", "outputs": [{"kind": "npy", "payload": "payload-1.bin"}]}]}))
    done = commit(db, folder / "results.json")
    assert "  skipped session='pre', subject=2: not run: the run stopped before it" in done["summary"]


def _gone_restore(db: Database, fn: Path, subjects: tuple = (1,)) -> tuple[Path, str, str]:
    """A run (of `subjects`) whose plan calls subject 1's cached result `restore`, then a gc
    frees it: the staging folder of that run, the freed output, and the value saved over it."""
    from scistack.gc import collect_garbage

    request = _request(db, fn, iterate=[["subject", [1]], ["session", ["pre"]]])
    folder = _stage(db, "first", request, {"payload-0.bin": b"2.0", "payload-1.bin": _npy(np.zeros(2))})
    plan(db, folder / "plan.json")
    (folder / "results.json").write_bytes(dumps_canonical({"format": 1, "results": [
        {"index": 0, "status": "ran", "outputs": [{"kind": "npy", "payload": "payload-1.bin"}]}]}))
    out = commit(db, folder / "results.json")["outputs"][0][0]
    other = db.store.put_value(np.ones(2))
    db.index.put_ref("BridgeOut", {"subject": 1, "session": "pre"}, {}, other, "npy")  # saved over it
    request = _request(db, fn, iterate=[["subject", list(subjects)], ["session", ["pre"]]])
    again = _stage(db, "again", request, {"payload-0.bin": b"2.0"})
    replanned = plan(db, again / "plan.json")["combos"][0]
    assert replanned["restore"] is True
    collect_garbage(db, grace_seconds=0, keep_versions=1)
    assert not db.store.contains(out)
    return again, out, other


def test_a_restore_a_partial_commit_found_gone_is_failed_in_the_final_commit_too(project):
    """The first (partial) commit of a run tries the restores and finds the output freed: the
    combination failed. The final commit does not try again (the restores are done), and had
    reported it cached, handing MATLAB and the run report the freed output; `committed.json`
    now says which restores were gone."""
    db, fn = project
    again, out, other = _gone_restore(db, fn)
    (again / "results.json").write_bytes(
        dumps_canonical({"format": 1, "partial": True, "results": []}))
    assert commit(db, again / "results.json")["outputs"] == [None]
    (again / "results.json").write_bytes(dumps_canonical({"format": 1, "results": []}))
    done = commit(db, again / "results.json")
    assert done["counts"]["failed"] == 1 and done["counts"]["cached"] == 0
    assert done["outputs"] == [None] and done["calls"] == [None]
    assert out not in json.dumps(db.store.get_value(db.index.runs()[-1].items))
    assert db.index.current_at("BridgeOut", '{"session":"pre","subject":1}', "{}").oid == other


def test_a_restore_found_gone_by_a_killed_partial_commit_is_failed_in_the_next(project, python_env):
    """A partial commit that records subject 2's result and finds subject 1's restore gone,
    killed after its batch reached the journal: the next commit learns from its intent that
    the restores are done, and which were gone (not only that they were done: it had then
    reported the gone one cached, with the freed output)."""
    db, fn = project
    again, out, _ = _gone_restore(db, fn, subjects=(1, 2))
    (again / "payload-1.bin").write_bytes(_npy(np.arange(4.0) * 2))
    ran = {"index": 1, "status": "ran", "outputs": [{"kind": "npy", "payload": "payload-1.bin"}]}
    (again / "results.json").write_bytes(
        dumps_canonical({"format": 1, "partial": True, "results": [ran]}))
    _killed_commit(again / "results.json", "after the journal", python_env)
    (again / "results.json").write_bytes(dumps_canonical({"format": 1, "results": [ran]}))
    done = commit(db, again / "results.json")
    assert done["counts"] == {"ran": 1, "cached": 0, "missing": 0, "failed": 1}
    assert done["outputs"][0] is None and out not in json.dumps(done)


def _bad_second_result(folder: Path, outputs: list, partial: bool) -> Path:
    results = _two_results(folder, outputs, partial)
    (folder / "payload-2.bin").write_bytes(b"not an npy")
    return results


@pytest.mark.parametrize("failure", ["a bad payload", "Ctrl-C"])
def test_a_commit_failing_mid_batch_records_nothing_and_its_retry_buries_nothing(project, failure):
    """A commit that fails after recording its first result (the second's payload does not
    decode, or a Ctrl-C) had journalled that result (a batch flushes on an error) with no
    `committing.json` or `committed.json` saying so: the retry recorded it again, a second
    version over a value saved at the address meanwhile. The batch is now all or nothing."""
    from scistack.errors import UnsupportedValueError
    from tests.helpers import interrupt_when

    db, fn = project
    folder = _stage(db, "midfail", _request(db, fn), {"payload-0.bin": b"2.0"})
    plan(db, folder / "plan.json")
    outputs = [np.arange(4.0) * 2, np.arange(4.0) * 4]
    addr = '{"session":"pre","subject":1}'
    if failure == "a bad payload":
        with pytest.raises(UnsupportedValueError, match="payload-2.bin does not decode"):
            commit(db, _bad_second_result(folder, outputs, partial=True))
    else:
        results = _two_results(folder, outputs, partial=True)
        def recorded() -> bool:  # the first result is held by the batch
            return db.index.in_batch and bool(db.index.versions_at("BridgeOut", addr))

        with pytest.raises(KeyboardInterrupt), \
                interrupt_when(recorded, "scistack/matlab_bridge/commit.py"):
            commit(db, results)
    assert db.index.versions_at("BridgeOut", addr) == []  # nothing of it journalled
    assert not (folder / "committed.json").exists() and not (folder / "committing.json").exists()
    fixed = np.arange(4.0) * 3
    db.index.put_ref("BridgeOut", {"subject": 1, "session": "pre"}, {}, db.store.put_value(fixed), "npy")
    done = commit(db, _two_results(folder, outputs, partial=False))
    assert done["counts"] == {"ran": 2, "cached": 0, "missing": 1, "failed": 0}
    versions = db.index.versions_at("BridgeOut", addr)
    assert [(r.oid, r.version) for r in versions] == [(hash_value(fixed), 1),
                                                      (hash_value(outputs[0]), 2)]
