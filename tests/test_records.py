"""Typed call records: byte-identical round trips, one constant rule, child oids gc keeps."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scistack import BaseVariable, Fixed, Merge, for_each, lineage_fcn
from scistack.errors import CorruptObjectError, CorruptRecordError, ScistackError
from scistack.gc import collect_garbage
from scistack.objects import hash_object
from scistack.objects.canonical_json import dumps_canonical
from scistack.records import CallInput, CallRecord, FunctionInfo, HelperInfo, read_call
from tests import foreach_fns as fns


class RcRaw(BaseVariable):
    pass


class RcOther(BaseVariable):
    pass


class RcOut(BaseVariable):
    pass


class RcTable(BaseVariable):
    pass


RC_GAIN = 3


def rc_helper(x):
    return x * RC_GAIN


@lineage_fcn
def rc_scale(signal, factor, extra=None):
    if isinstance(signal, list):
        signal = np.sum(signal, axis=0)
    return rc_helper(np.asarray(signal) * np.mean(factor))


def rc_rows(table):
    return float(len(table))


def _call_oids(db) -> list[str]:
    return [oid for oid in db.store.iter_oids() if db.store.kind_of(oid) == "call"]


def _assert_round_trips(db, oid: str) -> CallRecord:
    payload = bytes(db.store.get(oid).payload)
    tree = json.loads(payload)
    record = CallRecord.from_value(tree, oid=oid)
    assert dumps_canonical(record.to_value()) == payload == dumps_canonical(tree)
    assert hash_object("call", [record.to_bytes()]) == oid
    assert read_call(db.store, oid) == record
    assert CallRecord.from_value(record.to_value()) == record
    return record


@pytest.fixture
def computed(project):
    for subject in (1, 2):
        for session in ("pre", "post", "baseline"):
            RcRaw.save(np.arange(6.0) + subject + len(session), subject=subject, session=session)
        for session in ("pre", "post"):
            RcOther.save(float(subject), subject=subject, session=session)
    raw = RcRaw.load(subject=1, session="pre")
    first = rc_scale(raw, 2)  # a loaded variable and a scalar constant
    RcOut.save(first, subject=1, session="pre")
    rc_scale(first, (1, 2), extra=float("nan"))  # an earlier result, tagged constants
    rc_scale([raw, RcRaw.load(subject=2, session="pre")], np.arange(50.0))  # items; big constant
    for_each(fns.minus_baseline, inputs={"signal": RcRaw, "baseline": Fixed(RcRaw, session="baseline")},
             outputs=[RcOut], subject=[1, 2], session=["pre", "post"], progress=False)
    for_each(fns.mean_of_all, inputs={"values": RcRaw}, outputs=[RcOut], subject=[1, 2], progress=False)
    for_each(rc_rows, inputs={"table": Merge(RcRaw, RcOther)}, outputs=[RcTable],
             subject=[1, 2], session=["pre"], progress=False)
    return project


def test_records_written_through_the_api_round_trip_byte_identically(computed) -> None:
    records = [_assert_round_trips(computed, oid) for oid in _call_oids(computed)]
    shapes = set()
    for record in records:
        for item in record.arguments.values():
            shapes |= {k for k in ("var", "call", "const", "items", "members", "merge")
                       if k not in item.absent}
    assert shapes == {"var", "call", "const", "items", "members", "merge"}


def test_call_record_dict_is_built_from_the_typed_record(computed) -> None:
    out = RcOut.load(subject=1, session="pre", version=1)
    prov = computed.call_record(out.call)
    assert prov["constants"] == {"factor": 2, "extra": None}  # defaults are recorded too
    assert set(prov["inputs"]) == {"signal"} and prov["inputs"]["signal"]["var"] == "RcRaw"
    assert prov["function"]["name"] == "rc_scale"
    record = read_call(computed.store, out.call)
    assert set(record.constants) == {"factor", "extra"} and set(record.inputs) == {"signal"}
    assert record.constants["factor"].const == 2 and record.constants["factor"].is_constant
    assert record.function.helpers and record.function.has_helpers


# -- a hand-written record with every input shape ------------------------------------------
O = [f"{i:064x}" for i in range(1, 40)]

HAND = {
    "type": "call",
    "format": 1,
    "function": {
        "name": "bandpass", "module": "mypipe.filters", "identity": "d" * 64, "code": O[0],
        "has_source": True, "version": None, "deps": [["const:mypipe.filters.GAIN", "x"]],
        "helpers": {"helper:mypipe.filters.helper": {"identity": "e" * 64, "code": O[1], "deps": []}},
        "constants": {"const:mypipe.filters.GAIN": "2"}, "note": None,
    },
    "inputs": {
        "signal": {"oid": O[2], "var": "RawEMG", "addr": {"subject": 1, "session": "pre"}, "call": O[3]},
        "result": {"oid": O[4], "call": O[5]},
        "low_hz": {"oid": O[6], "const": 20},
        "none": {"oid": O[7], "const": None},
        "tagged": {"oid": O[8], "const": {"$tuple": [1, {"$float": "nan"}, {"$ref": O[9]}]}},
        "big": {"oid": O[10]},
        "parts": {"oid": O[11], "items": {
            "parts[0]": {"oid": O[12], "var": "RawEMG", "addr": {"subject": 2}},
            "parts[1]": {"oid": O[13], "call": O[14]},
        }},
        "values": {"oid": O[15], "var": "RawEMG", "addr": {"subject": 1}, "members": [O[16], O[17]]},
        "table": {"oid": O[18], "var": "A+B", "merge": [
            {"oid": O[19], "var": "A", "addr": {"subject": 1}, "call": O[20]},
            {"oid": O[21], "var": "B", "addr": {"subject": 1}},
        ]},
    },
    "outputs": [O[22], O[23]],
    "multi": True,
    "params": {"bandpass.low_hz": 20},
    "env": {"python": "3.11.7", "git": {"commit": "abc", "dirty": True, "diff": O[24], "untracked": []}},
    "started": "2026-11-21T06:03:36.123456Z",
    "duration": 0.0123,
    "future": {"kept": [1, 2]},
}


def test_a_hand_written_record_with_every_input_shape_round_trips() -> None:
    record = CallRecord.from_value(HAND)
    assert dumps_canonical(record.to_value()) == dumps_canonical(HAND)
    assert set(record.constants) == {"low_hz", "none", "tagged"}
    assert set(record.inputs) == {"signal", "result", "big", "parts", "values", "table"}
    assert record.constants["none"].has_const and record.constants["none"].const is None
    assert record.function.file is None and "file" in record.function.absent
    assert record.git_diff == O[24]
    assert record.input_oids["table"] == O[18]


def test_child_oids_are_every_oid_the_record_references() -> None:
    record = CallRecord.from_value(HAND)
    aggregate_keys = {O[15], O[18]}  # keys over several records, not objects
    assert record.child_oids() == set(O[:25]) - aggregate_keys
    optional = {ref.oid for ref in record.child_refs() if ref.optional}
    # helper code, constants' own objects, and a container's tree (before 2026-12 never stored)
    assert optional == {O[1], O[6], O[7], O[8], O[11]}
    kinds = {ref.oid: ref.kind for ref in record.child_refs()}
    assert kinds[O[0]] == "code" and kinds[O[24]] == "bytes" and kinds[O[3]] == "call"
    # a container recorded with `refs` (since its tree was stored) names a tree that must be
    # there (its arrays are named in it), and the record names those arrays itself too
    tree = json.loads(json.dumps(HAND))
    tree["inputs"]["parts"]["refs"] = [{"$ref": O[25]}]
    stored = CallRecord.from_value(tree)
    assert dumps_canonical(stored.to_value()) == dumps_canonical(tree)
    assert stored.arguments["parts"].names_tree and not record.arguments["parts"].names_tree
    refs = {ref.oid: ref for ref in stored.child_refs()}
    assert not refs[O[11]].optional and refs[O[25]].in_json and not refs[O[25]].optional


def test_old_and_matlab_shapes_keep_absent_keys_absent() -> None:
    old = json.loads(json.dumps(HAND))
    for key in ("helpers", "note", "constants"):
        del old["function"][key]
    del old["multi"], old["env"]
    record = CallRecord.from_value(old)
    assert not record.function.has_helpers
    assert dumps_canonical(record.to_value()) == dumps_canonical(old)


@pytest.mark.parametrize("mutate, problem", [
    (lambda d: d.pop("inputs"), "lacks the key 'inputs'"),
    (lambda d: d.update(type="json"), "not 'call'"),
    (lambda d: d["function"].pop("identity"), "function lacks the key 'identity'"),
    (lambda d: d["inputs"]["signal"].pop("oid"), "inputs['signal'] lacks the key 'oid'"),
    (lambda d: d.update(outputs="x"), "outputs"),
    (lambda d: d["inputs"].update(bad=[1]), "inputs['bad'] is list"),
    (lambda d: d["inputs"]["values"].update(members=[1]), "non-string oid"),
    (lambda d: d["env"].update(git="dirty"), "env['git']"),
    (lambda d: d.update(format=True), "format"),
])
def test_a_malformed_record_raises_a_scistack_error_naming_the_problem(mutate, problem) -> None:
    tree = json.loads(json.dumps(HAND))
    mutate(tree)
    with pytest.raises(CorruptRecordError, match=problem.replace("[", r"\[").replace("(", r"\(")) as info:
        CallRecord.from_value(tree, oid=O[30])
    assert isinstance(info.value, ScistackError) and isinstance(info.value, CorruptObjectError)
    assert O[30] in str(info.value)


def test_read_call_refuses_a_non_call_object(project) -> None:
    oid = project.store.put_value([1, 2])
    with pytest.raises(CorruptRecordError, match="not a call record"):
        read_call(project.store, oid)
    bad = project.store.put("call", dumps_canonical({"type": "call", "format": 1}))
    with pytest.raises(CorruptRecordError, match="lacks the key 'function'"):
        read_call(project.store, bad)


# -- property: from_value(to_value()) is the identity -------------------------------------
_oids = st.sampled_from(O)
_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text("abc", max_size=3), inner, max_size=3),
    max_leaves=6,
)
_addr = st.dictionaries(st.sampled_from(["subject", "session"]), st.integers(0, 3) | st.text(max_size=3))


def _inputs(depth: int):
    parts = {
        "var": st.text("ABC", min_size=1, max_size=3),
        "addr": _addr,
        "call": _oids,
        "const": _json,
        "members": st.lists(_oids, max_size=3).map(tuple),
    }
    if depth:
        parts["items"] = st.dictionaries(st.text("p[]0", max_size=4), _inputs(depth - 1), max_size=2)
        parts["merge"] = st.lists(_inputs(depth - 1), max_size=2).map(tuple)
    return st.builds(
        lambda oid, chosen: CallInput.make(oid, **chosen),
        _oids,
        st.fixed_dictionaries({}, optional=parts),
    )


_helpers = st.builds(
    HelperInfo, st.none() | _oids, st.none() | _oids,
    st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=2).map(tuple),
)
_functions = st.builds(
    FunctionInfo,
    name=st.text(min_size=1, max_size=5), module=st.text(min_size=1, max_size=5), identity=_oids,
    code=st.none() | _oids, has_source=st.none() | st.booleans(), version=st.none() | st.just("2"),
    deps=st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=2).map(tuple),
    note=st.none() | st.text(max_size=5), file=st.none() | st.text(max_size=5),
    helpers=st.dictionaries(st.text(max_size=5), _helpers, max_size=2),
    constants=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    absent=st.frozensets(st.sampled_from(["file", "helpers", "note"])),
    code_identity=st.none() | _oids,
).map(lambda f: replace(f, **{k: {} if k == "helpers" else None for k in f.absent}))
_records = st.builds(
    CallRecord,
    function=_functions,
    arguments=st.dictionaries(st.text(max_size=5), _inputs(2), max_size=4),
    outputs=st.lists(_oids, max_size=3).map(tuple),
    multi=st.booleans(),
    params=st.dictionaries(st.text(max_size=5), _json, max_size=2),
    env=st.fixed_dictionaries({}, optional={"python": st.just("3.12"),
                                            "git": st.fixed_dictionaries({}, optional={"diff": _oids})}),
    started=st.just("2026-01-01T00:00:00.000000Z"),
    duration=st.floats(0, 10),
)


@settings(max_examples=150, deadline=None)
@given(_records)
def test_from_value_of_to_value_is_the_identity(record: CallRecord) -> None:
    again = CallRecord.from_value(json.loads(record.to_bytes()))
    assert again == record
    assert again.to_bytes() == record.to_bytes()
    assert set(record.inputs) | set(record.constants) == set(record.arguments)
    assert not set(record.inputs) & set(record.constants)
    for name, item in record.arguments.items():
        assert item.is_constant == (name in record.constants)


_STAND_IN = "\x00function\x00"  # what `CallRecord.to_bytes` writes where the function goes


@settings(max_examples=150, deadline=None)
@given(_records, st.sampled_from(["params", "env", "started", "none"]), st.data())
def test_to_bytes_is_the_canonical_text_of_to_value(record: CallRecord, where: str, data) -> None:
    """The function's text is put into the record's at its place; a value equal to the
    stand-in anywhere else must not be taken for that place."""
    if where == "params":
        record = replace(record, params={**record.params, data.draw(st.text(max_size=3)): _STAND_IN})
    elif where == "env":
        record = replace(record, env={**record.env, "function": _STAND_IN})
    elif where == "started":
        record = replace(record, started=_STAND_IN)
    twin = replace(record, outputs=(O[0],))  # another call of the same function (one text, remembered)
    for each in (record, twin, record):
        assert each.to_bytes() == dumps_canonical(each.to_value())


# -- gc keeps what call records reference ---------------------------------------------------
def test_gc_keeps_every_child_of_a_kept_call_record(project) -> None:
    RcRaw.save(np.arange(5.0), subject=1, session="pre")
    out = rc_scale(RcRaw.load(subject=1, session="pre"), np.arange(40.0))  # input + array const
    RcOut.save(rc_scale(out, 3), subject=1, session="pre")  # `out` itself is never saved
    input_oid = RcRaw.load(subject=1, session="pre").oid
    RcRaw.delete(subject=1, session="pre")  # the input now lives only in lineage
    orphan = project.store.put_value(np.arange(999.0))
    record = read_call(project.store, RcOut.load(subject=1, session="pre").call)
    upstream = read_call(project.store, record.arguments["signal"].call)

    stats = collect_garbage(project, grace_seconds=0)

    assert stats.objects_deleted >= 1 and not project.store.contains(orphan)
    assert project.store.contains(input_oid) and input_oid in upstream.child_oids()
    for kept in (record, upstream):
        for ref in kept.child_refs():
            assert ref.optional or project.store.contains(ref.oid), ref
    assert project.store.contains(upstream.arguments["factor"].oid)  # the stored array constant
    assert all(project.store.contains(h.code) for h in upstream.function.helpers.values())


def test_run_records_round_trip_the_journalled_lines_byte_identically(computed) -> None:
    from scistack.records import RunRecord

    lines = [json.loads(line) for line in computed.index.journal_path.read_bytes().splitlines()]
    runs = [entry for entry in lines if entry["op"] == "run"]
    assert len(runs) == 3
    for entry in runs:
        record = RunRecord.from_entry(entry)
        assert dumps_canonical(record.to_entry()) == dumps_canonical(entry)
        assert record.outputs and record.items and computed.store.contains(record.items)
    assert [r.run_id for r in computed.index.runs()] == [e["run_id"] for e in runs]
