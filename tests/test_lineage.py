"""Lineage and caching through the public API: decorator, call keys, cache, records, `why`.

Code under test is real: modules are written under ``tmp_path``, imported, edited and
imported afresh (as a new process would see them); persistence is checked with real
subprocesses. A function proves whether it really ran by appending to a file or a list.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import scistack.errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import journal_size, migrated_in_place, older_fold
from scistack import (
    AmbiguousParamError,
    BaseVariable,
    LineageError,
    LineageFunction,
    LineageResult,
    Thunk,
    configure_database,
    lineage_fcn,
    thunk,
    why,
)

PYTHON = sys.executable
_STAMPS = itertools.count(1)


class RawEMG(BaseVariable):
    pass


class FilteredEMG(BaseVariable):
    pass


class Rectified(BaseVariable):
    pass


class Envelope(BaseVariable):
    pass


class Peak(BaseVariable):
    pass


class Trough(BaseVariable):
    pass


class Modules:
    """A throwaway package under tmp_path/src whose modules a test writes, edits and re-imports."""

    def __init__(self, root: Path) -> None:
        self.src = root / "src"
        self.name = f"lin_{uuid.uuid4().hex[:10]}"
        self.dir = self.src / self.name
        self.dir.mkdir(parents=True)
        (self.dir / "__init__.py").write_text("")

    def write(self, module: str, source: str) -> Path:
        """Write `module`.py with a fresh mtime, so importlib and linecache see the edit."""
        path = self.dir / f"{module}.py"
        path.write_text(textwrap.dedent(source))
        stamp = time.time_ns() + next(_STAMPS) * 2_000_000_000
        os.utime(path, ns=(stamp, stamp))
        return path

    def load(self, module: str) -> ModuleType:
        """Import `module` from a fresh copy of the package (as a new process would)."""
        self.purge()
        importlib.invalidate_caches()
        return importlib.import_module(f"{self.name}.{module}")

    def purge(self) -> None:
        for key in [k for k in sys.modules if k == self.name or k.startswith(self.name + ".")]:
            del sys.modules[key]


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    modules = Modules(tmp_path)
    yield modules
    modules.purge()


def counted(calls: list):
    """A lineage function that records each real run in `calls`."""

    @lineage_fcn
    def bandpass(signal, low_hz, high_hz=450.0):
        calls.append((low_hz, high_hz))
        return np.asarray(signal) * low_hz + high_hz

    return bandpass


def raw(value=None, **addr):
    addr = addr or {"subject": 1, "session": "pre"}
    RawEMG.save(np.arange(8.0) if value is None else value, **addr)
    return RawEMG.load(**addr)


# --- the decorator -----------------------------------------------------------------------------


def test_every_spelling_of_the_decorator_makes_a_caching_lineage_function(project) -> None:
    calls = []

    def scale(x, k=2):
        calls.append(k)
        return x * k

    assert thunk is lineage_fcn
    wrapped = [
        lineage_fcn(scale),
        Thunk(scale),
        thunk(scale),
        lineage_fcn()(scale),
        lineage_fcn(version="1")(scale),
    ]
    for fn in wrapped:
        assert isinstance(fn, LineageFunction) and fn.__name__ == "scale"
    x = raw()
    first = [fn(x) for fn in wrapped]
    assert [bool(np.array_equal(r.data, np.arange(8.0) * 2)) for r in first] == [True] * 5
    # One function, one identity: the unpinned spellings share a cache entry; the pin has its own.
    assert len(calls) == 2
    assert all(fn(x).cached for fn in wrapped) and len(calls) == 2


def test_the_function_receives_plain_values(project) -> None:
    seen = []

    @lineage_fcn
    def first(signal):
        seen.append(type(signal))
        return signal + 1

    @lineage_fcn
    def second(signal, offset, items):
        seen.append((type(signal), type(offset), [type(i) for i in items]))
        return signal + offset

    loaded = raw()
    step = first(loaded)
    second(step, 1.5, [loaded, step])
    assert seen == [np.ndarray, (np.ndarray, float, [np.ndarray, np.ndarray])]


def test_identical_call_is_served_from_the_cache(project) -> None:
    calls = []
    bandpass = counted(calls)
    x = raw()
    first = bandpass(x, 20)
    again = bandpass(RawEMG.load(subject=1, session="pre"), 20)
    assert calls == [(20, 450.0)]
    assert not first.cached and again.cached
    assert again.call == first.call and again.oid == first.oid
    np.testing.assert_array_equal(again.data, first.data)


def test_a_hit_carries_the_parameters_a_run_does_and_keeps_no_input_alive(project) -> None:
    """A hit's parameters are worked out when asked for (a hit is rarely asked): they must be
    the run's, upstream ones included, after a pickle or a copy too, and the result must not
    hold its input's value to work them out later."""
    import gc
    import weakref

    @lineage_fcn
    def envelope(signal, cutoff, gain=2):
        return np.abs(signal) * cutoff * gain

    bandpass = counted([])
    filtered = bandpass(raw(), 20)
    FilteredEMG.save(filtered, subject=1, session="pre")
    first = envelope(FilteredEMG.load(subject=1, session="pre"), 6.5)
    expected = {"bandpass.low_hz": 20, "bandpass.high_hz": 450.0, "envelope.cutoff": 6.5,
                "envelope.gain": 2}
    assert not first.cached and first.params == expected
    loaded = FilteredEMG.load(subject=1, session="pre")
    held = weakref.ref(loaded.data)
    hits = [envelope(loaded, 6.5) for _ in range(3)]
    del loaded
    gc.collect()
    assert held() is None  # (its params, asked for below, came from the input's record)
    assert all(h.cached for h in hits)
    assert pickle.loads(pickle.dumps(hits[0])).params == expected
    assert copy.deepcopy(hits[1]).params == expected
    assert hits[2].params == expected and hits[2].params is hits[2].params


def test_cache_hit_is_one_index_lookup_and_one_object_read_and_writes_nothing(
    project, monkeypatch
) -> None:
    bandpass = counted([])
    x = raw()
    bandpass(x, 20)
    reads, writes = [], []
    store = project.store
    real_get, real_write = store.get, store._write
    monkeypatch.setattr(store, "get", lambda oid: reads.append(oid) or real_get(oid))
    monkeypatch.setattr(store, "_write", lambda *a: writes.append(a[0]) or real_write(*a))
    journal = journal_size(project)
    hit = bandpass(x, 20)
    assert hit.cached and reads == [hit.oid] and writes == []
    assert journal_size(project) == journal


def test_a_hit_on_the_same_values_at_another_address_names_its_own_input(project) -> None:
    """The same raw values at two subjects make one call key: subject 2's call is served
    from subject 1's, but its lineage (the call record a save names) had been subject 1's.
    It names subject 2's input now; the function still runs once, and a loop that goes
    over both again makes no new version."""
    calls = []
    bandpass = counted(calls)
    for subject in (1, 2):
        raw(np.zeros(4), subject=subject, session="pre")
    for _ in range(2):
        for subject in (1, 2):
            FilteredEMG.save(bandpass(RawEMG.load(subject=subject, session="pre"), 20), subject=subject,
                             session="pre")
    assert calls == [(20, 450.0)]
    for subject in (1, 2):
        prov = project.get_provenance(FilteredEMG, subject=subject, session="pre")
        assert prov["inputs"]["signal"]["addr"] == {"subject": subject, "session": "pre"}, prov
        assert [r.version for r in FilteredEMG.list_versions(subject=subject, session="pre")] == [1]


def test_defaults_are_bound_and_positional_or_keyword_spelling_does_not_matter(project) -> None:
    calls = []
    bandpass = counted(calls)
    x = raw()
    results = [
        bandpass(x, 20),
        bandpass(x, low_hz=20),
        bandpass(low_hz=20, signal=x),
        bandpass(x, 20, 450.0),
        bandpass(x, high_hz=450.0, low_hz=20),
    ]
    assert len(calls) == 1 and len({r.call for r in results}) == 1
    assert bandpass(x, 20, 500.0).call != results[0].call and len(calls) == 2


def test_ignored_arguments_do_not_change_the_key_but_reach_the_function(project) -> None:
    seen = []

    @lineage_fcn(ignore=("verbose",))
    def smooth(signal, window, verbose=False):
        seen.append(verbose)
        return signal * window

    x = raw()
    quiet, loud = smooth(x, 3, verbose=False), smooth(x, 3, verbose=True)
    assert seen == [False] and loud.cached and loud.call == quiet.call
    assert smooth(x, 4, True).cached is False and seen == [False, True]
    record = project.call_record(quiet.call)
    assert "verbose" not in record["constants"] and record["constants"]["window"] == 3


def test_ignore_must_name_a_parameter(project) -> None:
    with pytest.raises(LineageError, match="verbose"):
        lineage_fcn(ignore=("verbose",))(lambda x: x)
    assert lineage_fcn(ignore="verbose")(lambda x, verbose=0: x).ignore == {"verbose"}


def test_version_pin_keeps_the_cache_across_edits_until_the_pin_changes(project, code) -> None:
    source = """
        from scistack import lineage_fcn
        RUNS = []
        @lineage_fcn(version="1")
        def calibrate(x):
            RUNS.append(1)
            return x * 2
    """
    code.write("steps", source)
    mod = code.load("steps")
    first = mod.calibrate(raw())
    Envelope.save(first, subject=1, session="pre")
    code.write("steps", source.replace("x * 2", "x * 3"))
    edited = code.load("steps")
    assert edited.calibrate(raw()).cached and edited.RUNS == []  # pinned: the edit is not seen
    assert why(Envelope, subject=1, session="pre").status == "current"
    code.write("steps", source.replace("x * 2", "x * 3").replace('version="1"', 'version="2"'))
    bumped = code.load("steps")
    result = bumped.calibrate(raw())
    assert not result.cached and bumped.RUNS == [1] and result.call != first.call
    np.testing.assert_array_equal(result.data, np.arange(8.0) * 3)
    assert project.call_record(result.call)["function"]["version"] == "2"
    (reason,) = why(Envelope, subject=1, session="pre").reasons
    assert reason.kind == "version" and "'1' -> '2'" in reason.detail


def test_library_functions_can_be_wrapped(project) -> None:
    mean = Thunk(np.mean)
    x = raw()
    first = mean(x)
    assert first == pytest.approx(3.5) and not first.cached and mean(x).cached
    per_axis = mean(np.ones((2, 3)), axis=0)
    np.testing.assert_array_equal(per_axis, np.ones(3))
    assert mean(np.ones((2, 3)), 0).cached  # positional spelling of axis=0

    add = Thunk(np.add)  # a ufunc: many keyword-only defaults it refuses to receive explicitly
    np.testing.assert_array_equal(add(x, first), np.arange(8.0) + 3.5)

    dumps = lineage_fcn(json.dumps)
    text = dumps({"b": 1, "a": [1, 2]}, indent=2, sort_keys=True)
    assert text.data == json.dumps({"b": 1, "a": [1, 2]}, indent=2, sort_keys=True)
    assert dumps({"b": 1, "a": [1, 2]}, sort_keys=True, indent=2).cached
    assert not dumps({"b": 1, "a": [1, 2]}, indent=3, sort_keys=True).cached

    Peak.save(first, subject=1, session="pre")
    prov = project.get_provenance(Peak, subject=1, session="pre")
    assert prov["function_name"] == "mean" and prov["module"].startswith("numpy")
    assert prov["inputs"]["a"]["var"] == "RawEMG" and "numpy" in prov["env"]["packages"]


def test_star_args_and_star_kwargs_take_loaded_inputs(project) -> None:
    calls = []

    @lineage_fcn
    def total(*parts, **weights):
        calls.append(1)
        return sum(parts) + sum(weights.values())

    x = raw()
    first = total(x, 1.0, w=x)
    np.testing.assert_array_equal(first.data, np.arange(8.0) * 2 + 1)
    assert total(x, 1.0, w=x).cached and not total(x, 2.0, w=x).cached
    record = project.call_record(first.call)
    assert record["inputs"]["w"]["var"] == "RawEMG"
    assert record["inputs"]["parts"]["items"]["parts[0]"]["var"] == "RawEMG"


def test_multiple_outputs_are_saved_separately_with_their_own_lineage(project) -> None:
    calls = []

    @lineage_fcn
    def extremes(signal, scale=1.0):
        calls.append(1)
        return signal.max() * scale, signal.min() * scale

    x = raw()
    peak, trough = extremes(x)
    assert isinstance(extremes(x), tuple) and len(calls) == 1
    Peak.save(peak, subject=1, session="pre")
    Trough.save(trough, subject=1, session="pre")
    p = project.get_provenance(Peak, subject=1, session="pre")
    t = project.get_provenance(Trough, subject=1, session="pre")
    assert p["call"] == t["call"] and p["outputs"] == [peak.oid, trough.oid]
    assert (p["value_oid"], t["value_oid"]) == (peak.oid, trough.oid)
    assert (
        Peak.load(subject=1, session="pre").data == 7.0
        and Trough.load(subject=1, session="pre").data == 0.0
    )
    assert Peak.load(scale=1.0)[0].data == 7.0  # each output is queryable by the call's constants


def test_a_one_element_tuple_stays_a_tuple_on_a_hit(project) -> None:
    @lineage_fcn
    def single(x):
        return (x + 1,)

    miss, hit = single(raw()), single(raw())
    assert isinstance(miss, tuple) and isinstance(hit, tuple) and hit[0].cached


def test_result_behaves_like_its_value(project) -> None:
    @lineage_fcn
    def make(x):
        return x * 2

    r = make(raw())
    a = np.arange(8.0) * 2
    np.testing.assert_array_equal(r + 1, a + 1)
    np.testing.assert_array_equal(1 - r, 1 - a)
    np.testing.assert_array_equal(r * r, a * a)
    np.testing.assert_array_equal(r / 2, a / 2)
    np.testing.assert_array_equal(-r, -a)
    np.testing.assert_array_equal(r > 4, a > 4)
    np.testing.assert_array_equal(r == a, np.ones(8, bool))
    assert np.mean(r) == np.mean(a) and np.asarray(r).dtype == a.dtype
    np.testing.assert_array_equal(np.sqrt(r), np.sqrt(a))
    assert len(r) == 8 and r[3] == 6.0 and list(r[:2]) == [0.0, 2.0] and r.shape == (8,)
    assert 4.0 in r and list(iter(r))[-1] == 14.0
    scalar = make(1.25)
    assert float(scalar) == 2.5 and round(scalar) == 2 and round(scalar, 1) == 2.5
    assert f"{scalar:.2f}" == "2.50" and scalar < 3 and scalar >= 2.5 and scalar != 1
    assert int(make(3)) == 6 and list(range(10))[make(2)] == 4
    clone = pickle.loads(pickle.dumps(r))
    assert clone.oid == r.oid and clone.call == r.call and np.array_equal(clone.data, a)
    assert copy.copy(r).oid == r.oid and copy.deepcopy(r).call == r.call
    assert isinstance(r, LineageResult) and r.function_name == "make"


def test_without_a_database_lineage_and_cache_live_in_memory(
    no_database, tmp_path, monkeypatch
) -> None:
    calls = []

    @lineage_fcn
    def detrend(signal, order=1):
        calls.append("detrend")
        return signal - signal.mean() * order

    @lineage_fcn
    def rms(signal):
        calls.append("rms")
        return float(np.sqrt(np.mean(signal**2)))

    signal = np.linspace(0, 1, 50)
    first = rms(detrend(signal, 1))
    again = rms(detrend(signal, 1))
    assert calls == ["detrend", "rms"] and again.cached and again.call == first.call
    other = detrend(signal, 2)
    assert not rms(other).cached
    # Later, with a database: saving brings the whole in-memory lineage along.
    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "late.duckdb", ["subject"])
    try:
        Envelope.save(first, subject=1)
        prov = db.get_provenance(Envelope, subject=1)
        # function_name is the qualified name (these functions are defined inside the test)
        assert prov["function_name"].endswith(".rms") and "call" in prov["inputs"]["signal"]
        upstream = db.call_record(prov["inputs"]["signal"]["call"])
        assert upstream["function_name"].endswith(".detrend") and upstream["constants"] == {
            "order": 1
        }
        assert prov["params"] == {"detrend.order": 1}
        assert db.store.get_value(upstream["code"]).startswith("def detrend(signal, order=1):")
        assert why(Envelope, subject=1).status == "current"
        # The whole chain entered the database's call cache.
        assert rms(detrend(signal, 1)).cached and len(calls) == 4
        # A result computed in memory and used as an input once the database exists.
        Peak.save(rms(other), subject=1)  # rms runs here; detrend's lineage is brought along
        assert calls[4:] == ["rms"]
        upstream = db.get_provenance(Peak, subject=1)["inputs"]["signal"]["call"]
        assert db.call_record(upstream)["constants"] == {"order": 2}
    finally:
        db.close()


def _total(parts) -> float:
    """The sum of every number inside `parts` (a list or dict, nested or not)."""
    if isinstance(parts, dict):
        parts = list(parts.values())
    if isinstance(parts, list):
        return float(sum(_total(p) for p in parts))
    return float(np.sum(parts))


@lineage_fcn
def _memory_total(parts):
    return _total(parts)


@lineage_fcn
def _memory_doubled(signal):
    return np.asarray(signal) * 2.0


@pytest.mark.parametrize("shape", ["list", "dict", "nested", "result", "used"])
def test_a_result_computed_in_memory_from_a_list_or_dict_argument_is_saved_with_its_lineage(
    shape, no_database, tmp_path, monkeypatch
) -> None:
    """A list or dict argument holding a loaded value is stored as its tree, the loaded value
    a `{"$ref"}` in it. Computed with no database, that tree is in memory but the loaded value
    is not (it is in the project it came from), so the save that copies the lineage over
    decoded the tree and failed with ObjectNotFoundError (and so did a call given that result
    once the database exists, "used"). The tree is copied as it is stored."""
    from scistack.fsck import fsck
    from scistack.gc import collect_garbage
    from scistack.lineage.context import MEMORY
    from scistack.objects.store import hash_value
    from scistack.records import read_call

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "late.duckdb"
    db = configure_database(path, ["subject"])
    RawEMG.save(np.arange(10.0) + 1000.5, subject=1)  # (no other test's constant)
    item = RawEMG.load(subject=1)
    db.close()
    assert not MEMORY.store.contains(item.oid)  # (as in a new process)
    if shape == "result":  # an earlier result computed in memory, not a loaded value
        item = _memory_doubled(item)
    ramp = np.arange(50.0)
    argument = {"list": [item, ramp], "dict": {"emg": item, "ramp": ramp},
                "nested": [[item, 2.0], [[ramp]]], "result": [item, ramp], "used": [item, ramp]}[shape]
    result = _memory_total(argument)
    expected = float(np.sum(item.data) + ramp.sum() + (2.0 if shape == "nested" else 0.0))
    assert result == expected

    db = configure_database(path, ["subject"])
    try:
        if shape == "used":  # an input of a call in the project: its lineage is brought along
            Envelope.save(_memory_doubled(result), subject=1)
            expected *= 2
        else:
            Envelope.save(result, subject=1)
        assert Envelope.load(subject=1).data == expected
        parts = read_call(db.store, result.call).arguments["parts"]
        assert parts.items and parts.names_tree
        (named,) = parts.items.values()
        assert (named.var, named.call) == (("RawEMG", None) if shape != "result" else (None, item.call))
        if shape == "result":  # its own lineage came along: it reads the loaded value
            assert read_call(db.store, item.call).arguments["signal"].var == "RawEMG"
        assert why(Envelope, subject=1).status == "current"
        kept = [parts.oid, hash_value(ramp), named.oid, result.oid, result.call]
        assert fsck(db).ok
        collect_garbage(db, grace_seconds=0)
        assert all(db.store.contains(oid) for oid in kept)
        assert fsck(db).ok and Envelope.load(subject=1).data == expected
        assert _memory_total(argument).cached  # the call entered the project's cache
    finally:
        db.close()


@pytest.mark.parametrize("in_list", [False, True])
def test_a_result_computed_in_memory_from_another_project_s_value_is_refused_naming_the_fix(
    in_list, no_database, tmp_path, monkeypatch
) -> None:
    """The input loaded from another project is in neither this one nor memory: the save had
    failed with ObjectNotFoundError (in a list), or saved a call record naming an object this
    project lacks (alone: fsck found it missing). It is refused, naming the way out, which
    works: saved here too, the same data is the same object."""
    from scistack.fsck import fsck

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    db = configure_database(tmp_path / "a" / "first.duckdb", ["subject"])
    RawEMG.save(np.arange(10.0) + 2000.5, subject=3)
    item = RawEMG.load(subject=3)
    db.close()
    result = _memory_total([item, np.arange(50.0)] if in_list else item)
    db = configure_database(tmp_path / "b" / "second.duckdb", ["subject"])
    try:
        with pytest.raises(LineageError, match=r"_memory_total: input 'parts(\[0\])?' \(the RawEMG "
                           r"value at subject=3.* not in .*b nor in memory.* another project.*"
                           r"RawEMG.save\(value"):
            Envelope.save(result, subject=1)
        assert not list(Envelope.load_all()) and fsck(db).ok
        RawEMG.save(item, subject=3)
        Envelope.save(result, subject=1)
        assert Envelope.load(subject=1).data == result.data and fsck(db).ok
    finally:
        db.close()


# --- call keys ---------------------------------------------------------------------------------

_constants = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 9), max_size=3),
)


@lineage_fcn
def _three(a, b, c=0):
    return a


def _key(*args, **kwargs) -> str:
    return _three.key_for(_three.bind_inputs(args, kwargs)[1])


def _spelled(value) -> tuple:
    return (type(value), repr(value))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=_constants, b=_constants, c=_constants, order=st.permutations(["a", "b", "c"]))
def test_call_key_ignores_argument_spelling_and_order(no_database, a, b, c, order) -> None:
    values = {"a": a, "b": b, "c": c}
    shuffled = {name: values[name] for name in order}
    keys = {_key(a, b, c), _key(**shuffled), _key(a, b=b, c=c), _key(a, c=c, b=b)}
    assert len(keys) == 1
    if c == 0 and type(c) is int:
        assert _key(a, b) in keys  # the default is bound


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=st.tuples(_constants, _constants), second=st.tuples(_constants, _constants))
def test_different_constants_give_different_keys(no_database, first, second) -> None:
    same = [_spelled(v) for v in first] == [_spelled(v) for v in second]
    assert (_key(*first) == _key(*second)) == same


def test_equal_looking_constants_of_different_types_do_not_share_a_key(no_database) -> None:
    keys = {_key(v, 0) for v in (1, 1.0, True, "1", b"1", np.int64(1), [1], (1,))}
    assert len(keys) == 8


def test_an_input_loaded_from_the_store_is_keyed_by_its_known_oid(project, monkeypatch) -> None:
    import scistack.lineage.calls as calls_module
    from scistack.objects.hashing import payload_length

    big = raw(np.ones(100_000))  # 800 kB
    hashed = []
    hash_value, hash_object = calls_module.hash_value, calls_module.hash_object
    monkeypatch.setattr(
        calls_module,
        "hash_value",
        lambda v: hashed.append(getattr(v, "nbytes", 8)) or hash_value(v),
    )
    monkeypatch.setattr(
        calls_module,
        "hash_object",
        lambda kind, parts: hashed.append(payload_length(parts)) or hash_object(kind, parts),
    )
    calls_module._CONSTANTS.clear()  # constants are memoised: hash them afresh here
    _key(big, 2)
    assert 0 < sum(hashed) < 1000  # the constants only; never the loaded array
    hashed.clear()
    _key(np.ones(100_000), 2)
    assert sum(hashed) >= 800_000  # the same array in memory must be hashed


# --- persistence across processes ------------------------------------------------------------

STEPS = """
    import os
    import numpy as np
    from scistack import lineage_fcn

    @lineage_fcn
    def bandpass(signal, low_hz, high_hz=450):
        with open(os.environ["RUNS_FILE"], "a") as log:
            log.write("ran\\n")
        return np.asarray(signal) * low_hz + high_hz
"""

SCRIPT = """
    import json, os, socket, sys
    host = os.environ.get("FAKE_HOST")
    if host:
        socket.gethostname = lambda: host
    import numpy as np
    from scistack import BaseVariable, configure_database
    from {pkg}.steps import bandpass

    class RawEMG(BaseVariable): pass
    class FilteredEMG(BaseVariable): pass

    db = configure_database(sys.argv[1], ["subject", "session"])
    if sys.argv[2] == "save":
        RawEMG.save(np.arange(5.0), subject=1, session="pre")
    result = bandpass(RawEMG.load(subject=1, session="pre"), 20)
    if sys.argv[2] == "save":
        FilteredEMG.save(result, subject=1, session="pre")
    prov = db.get_provenance(FilteredEMG, subject=1, session="pre")
    print(json.dumps({{"cached": result.cached, "call": result.call, "host": prov["env"]["host"],
                      "function": prov["function_name"], "low_hz": prov["constants"]["low_hz"],
                      "input": prov["inputs"]["signal"]["var"], "cwd": os.getcwd()}}))
    db.close()
"""


def _run(script: Path, cwd: Path, env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [PYTHON, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cache_and_provenance_persist_across_processes(tmp_path, code, python_env) -> None:
    code.write("steps", STEPS)
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(pkg=code.name)))
    runs = tmp_path / "runs.log"
    env = {
        **python_env,
        "RUNS_FILE": str(runs),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([str(code.src), python_env["PYTHONPATH"]]),
    }
    db_path = str(tmp_path / "gait.duckdb")
    first = _run(script, tmp_path, {**env, "FAKE_HOST": "lab-pc"}, db_path, "save")
    assert first["cached"] is False and first["host"] == "lab-pc"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Another process, another working directory, another host: the environment is not in the key.
    second = _run(script, elsewhere, {**env, "FAKE_HOST": "cluster-node-7"}, db_path, "load")
    assert second["cached"] is True and second["call"] == first["call"]
    assert runs.read_text().count("ran") == 1
    assert (
        second["function"] == "bandpass" and second["low_hz"] == 20 and second["input"] == "RawEMG"
    )
    assert second["host"] == "lab-pc"  # the record says where it really ran


HITS = """
    import json, sys
    import numpy as np
    from scistack import BaseVariable, configure_database, for_each
    from {pkg}.steps import bandpass

    class RawEMG(BaseVariable): pass
    class FilteredEMG(BaseVariable): pass

    db = configure_database(sys.argv[1], ["subject", "session"])
    if sys.argv[2] == "make":  # subject 1 by for_each, 2 by a direct call; 3 holds 1's values
        for subject in (1, 2, 3):
            RawEMG.save(np.arange(5.0) + (subject == 2), subject=subject, session="pre")
        for_each(bandpass, inputs={{"signal": RawEMG, "low_hz": 20}}, outputs=[FilteredEMG], subject=[1],
                 session=["pre"])
        FilteredEMG.save(bandpass(RawEMG.load(subject=2, session="pre"), 20), subject=2, session="pre")
    out = {{}}
    for subject in (1, 2, 3):
        signal = RawEMG.load(subject=subject, session="pre")
        kinds, get = [], db.store.get
        db.store.get = lambda oid: kinds.append(get(oid).kind) or get(oid)
        result = bandpass(signal, 20)
        db.store.get = get
        out[subject] = {{"cached": result.cached, "kinds": kinds, "call": result.call}}
    print(json.dumps(out))
    db.close()
"""


@pytest.mark.parametrize("layout", ["current", "older"])
def test_a_hit_in_a_new_process_reads_no_call_record_to_know_it_names_its_inputs(
        tmp_path, code, python_env, layout) -> None:
    """A cache entry keeps a digest of where its record's inputs came from: a hit in another
    process on inputs of the same origins (a for_each's or a direct call's) reads its output
    only. The same values at another address still have their own record made. A fold of
    the layout before the digest (`calls` without `origins`) is migrated in place: its
    entries know no digest, so their records are read, with the same answers."""
    code.write("steps", STEPS)
    script = tmp_path / "hits.py"
    script.write_text(textwrap.dedent(HITS.format(pkg=code.name)))
    env = {**python_env, "RUNS_FILE": str(tmp_path / "runs.log"), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(code.src), python_env["PYTHONPATH"]])}
    db_path = str(tmp_path / "gait.duckdb")
    made = _run(script, tmp_path, env, db_path, "make")
    if layout == "older":
        db = configure_database(db_path, ["subject", "session"])
        path, mark = older_fold(db, "ALTER TABLE calls DROP COLUMN origins; "
                                     "UPDATE meta SET value = '12' WHERE key = 'fold_version';")
    hits = _run(script, tmp_path, env, db_path, "hit")
    if layout == "older":
        assert migrated_in_place(path, mark)  # migrated in place, not rebuilt
    assert (tmp_path / "runs.log").read_text().count("ran") == 2
    for subject in ("1", "2"):
        assert hits[subject]["cached"] and hits[subject]["call"] == made[subject]["call"]
        assert hits[subject]["kinds"] == (["npy"] if layout == "current" else ["call", "npy"]), hits
    # subject 3: subject 1's values, so 1's result, under a record of its own (read to know)
    assert hits["3"]["cached"] and hits["3"]["call"] != made["1"]["call"]
    assert hits["3"]["kinds"][0] == "call"


RANDOM_STEPS = """
    import os
    import numpy as np
    from scistack import lineage_fcn

    def noisy(signal, seed):
        with open(os.environ["RUNS_FILE"], "a") as log:
            log.write("ran\\n")
        np.random.seed(seed)  # (a Cython function of numpy.random, as default_rng)
        return np.asarray(signal) + np.random.default_rng(seed).normal(size=len(signal))
"""

RANDOM_SCRIPT = """
    import json, sys
    import numpy as np
    if sys.argv[2] == "random-first":
        import numpy.random
    from scistack import BaseVariable, configure_database, for_each, lineage_fcn
    from {pkg}.steps import noisy

    class RawEMG(BaseVariable): pass
    class Noisy(BaseVariable): pass

    db = configure_database(sys.argv[1], ["subject"])
    if sys.argv[2] == "save":
        for subject in (1, 2):
            RawEMG.save(np.arange(4.0) * subject, subject=subject)
    imported = "numpy.random" in sys.modules
    step = lineage_fcn(noisy)
    direct = [step(RawEMG.load(subject=1), 7).cached for _ in range(2)]
    looped = [for_each(noisy, inputs={{"signal": RawEMG, "seed": 7}}, outputs=[Noisy], subject=[2]).ran
              for _ in range(2)]
    print(json.dumps({{"imported": imported, "direct": direct, "looped": looped}}))
    db.close()
"""


def test_numpy_random_in_a_step_is_cached_however_late_numpy_random_was_imported(
        tmp_path, code, python_env) -> None:
    """np.random.seed and default_rng are Cython functions, whose type's module has no file:
    it was taken for project code and a call crashed (AttributeError: 'getset_descriptor' has
    no 'co_filename'). And numpy.random, imported by the first call only, changed the
    function's identity: the second call ran again, and the first of every new process."""
    code.write("steps", RANDOM_STEPS)
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(RANDOM_SCRIPT.format(pkg=code.name)))
    runs = tmp_path / "runs.log"
    env = {
        **python_env,
        "RUNS_FILE": str(runs),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([str(code.src), python_env["PYTHONPATH"]]),
    }
    db_path = str(tmp_path / "rng.duckdb")
    first = _run(script, tmp_path, env, db_path, "save")
    assert first == {"imported": False, "direct": [False, True], "looped": [1, 0]}
    assert _run(script, tmp_path, env, db_path, "random-first") == {
        "imported": True, "direct": [True, True], "looped": [0, 0]}
    assert _run(script, tmp_path, env, db_path, "again") == {
        "imported": False, "direct": [True, True], "looped": [0, 0]}
    assert runs.read_text().count("ran") == 2  # once per subject, in the first process


# --- code edits --------------------------------------------------------------------------------

PIPELINE = """
    import numpy as np
    from scistack import lineage_fcn
    RUNS = []
    GAIN = 2

    def helper(x):
        return x * GAIN

    @lineage_fcn
    def bandpass(signal, low_hz):
        RUNS.append(low_hz)
        return helper(signal) + low_hz
"""


def _edit(code: Modules, old: str, new: str) -> ModuleType:
    code.write("pipeline", PIPELINE.replace(old, new))
    return code.load("pipeline")


def test_comment_and_formatting_edits_are_cache_hits(project, code) -> None:
    code.write("pipeline", PIPELINE)
    first = code.load("pipeline").bandpass(raw(), 20)
    mod = _edit(
        code,
        "        return helper(signal) + low_hz",
        "        # add the offset\n\n        return (helper(signal)  +  low_hz)  # done",
    )
    again = mod.bandpass(raw(), 20)
    assert again.cached and mod.RUNS == [] and again.call == first.call


def test_function_edit_recomputes_and_the_new_result_becomes_the_default(project, code) -> None:
    code.write("pipeline", PIPELINE)
    old = code.load("pipeline").bandpass(raw(), 20)
    FilteredEMG.save(old, subject=1, session="pre")
    mod = _edit(code, "helper(signal) + low_hz", "helper(signal) - low_hz")
    new = mod.bandpass(raw(), 20)
    assert not new.cached and mod.RUNS == [20]
    FilteredEMG.save(new, subject=1, session="pre")
    current = FilteredEMG.load(subject=1, session="pre")  # one value, not an ambiguity
    assert current.version == 2 and current.oid == new.oid
    assert FilteredEMG.load(subject=1, session="pre", version=1).oid == old.oid
    by_param = FilteredEMG.load(low_hz=20)
    assert [v.oid for v in by_param] == [new.oid]
    report = why(FilteredEMG, subject=1, session="pre", version=1)
    assert report.status == "stale" and {r.kind for r in report.reasons} == {"superseded", "code"}
    assert why(FilteredEMG, subject=1, session="pre").status == "current"


def test_helper_edit_recomputes_and_why_names_the_helper_with_a_diff(project, code) -> None:
    code.write("pipeline", PIPELINE)
    FilteredEMG.save(code.load("pipeline").bandpass(raw(), 20), subject=1, session="pre")
    mod = _edit(code, "return x * GAIN", "return x * GAIN + 1")
    report = why(FilteredEMG, subject=1, session="pre")
    assert report.status == "stale"
    (reason,) = report.reasons
    assert reason.kind == "helper" and reason.name == f"{code.name}.pipeline.helper"
    assert "-    return x * GAIN\n+    return x * GAIN + 1\n" in reason.diff
    assert "helper" in str(report) and "+    return x * GAIN + 1" in str(report)
    assert not mod.bandpass(raw(), 20).cached and mod.RUNS == [20]


def test_constant_edit_recomputes_and_why_names_the_constant(project, code) -> None:
    code.write("pipeline", PIPELINE)
    FilteredEMG.save(code.load("pipeline").bandpass(raw(), 20), subject=1, session="pre")
    mod = _edit(code, "GAIN = 2", "GAIN = 3")
    (reason,) = why(FilteredEMG, subject=1, session="pre").reasons
    assert reason.kind == "constant" and reason.name == f"{code.name}.pipeline.GAIN"
    assert "2 -> 3" in reason.detail
    assert not mod.bandpass(raw(), 20).cached


NOT_RELOADED = """
    from scistack import lineage_fcn

    class A:
        def k(self):
            return 2

    class B:
        def k(self):
            return 3

    class Cfg:
        K = 2

    class Scaler(A):
        def scale(self, x):
            return x * self.k()

    def times(x):
        return x * 2

    @lineage_fcn
    def by_function(x):
        return times(x)

    @lineage_fcn
    def by_attribute(x):
        return x * Cfg.K

    @lineage_fcn
    def by_base(x):
        return Scaler().scale(x)
"""


@pytest.mark.parametrize(
    "step, old, new",
    [
        ("by_function", "return x * 2", "return x * 3"),
        ("by_attribute", "K = 2", "K = 3"),
        ("by_base", "class Scaler(A)", "class Scaler(B)"),
    ],
)
def test_a_file_edited_but_not_reloaded_never_files_old_results_under_the_new_code(
    project, code, step, old, new
) -> None:
    """A notebook imports the module, the file is edited, the session does not reload: the
    run computes with the code in memory, so the text on disk must not name its result, or
    the new code in a fresh process is served the old code's result."""
    code.write("steps", NOT_RELOADED)
    in_memory = getattr(code.load("steps"), step)
    code.write("steps", NOT_RELOADED.replace(old, new))
    first = in_memory(10)
    assert first.data == 20 and not first.cached
    fresh = getattr(code.load("steps"), step)(10)
    assert not fresh.cached and fresh.data == 30


def test_two_lambdas_of_one_module_are_not_taken_for_each_other_in_the_process_that_ran_them(
    project, code
) -> None:
    """`p1 = lambda ...` and `p2 = lambda ...` share the name `<lambda>`: the process that ran
    both had judged p1's values by p2's code (stale right after the run). Two functions of one
    such name are not known by it, here as in another process: `why` says what to do."""
    from scistack import for_each

    code.write("steps", "p1 = lambda x: x * 3\np2 = lambda x: x + 100\n")
    steps = code.load("steps")
    RawEMG.save(10.0, subject=1, session="pre")
    for step, out in ((steps.p1, FilteredEMG), (steps.p2, Rectified)):
        for_each(step, inputs={"x": RawEMG}, outputs=[out], subject=[1], session=["pre"], verbose=False)
    for out in (FilteredEMG, Rectified):
        report = why(out, subject=1, session="pre")
        assert report.status != "stale", report


def test_function_edit_is_shown_as_a_unified_diff(project, code) -> None:
    code.write("pipeline", PIPELINE)
    FilteredEMG.save(code.load("pipeline").bandpass(raw(), 20), subject=1, session="pre")
    _edit(code, "helper(signal) + low_hz", "helper(signal) * low_hz")
    (reason,) = why(FilteredEMG, subject=1, session="pre").reasons
    assert reason.kind == "code" and reason.name == "bandpass"
    assert reason.diff.startswith("--- bandpass (when computed)\n+++ bandpass (now)\n")
    assert (
        "-    return helper(signal) + low_hz\n+    return helper(signal) * low_hz\n" in reason.diff
    )


def test_why_follows_results_that_were_never_saved(project, code) -> None:
    code.write(
        "pipeline",
        PIPELINE
        + """
    @lineage_fcn
    def rectify(signal):
        return abs(signal)
    """,
    )
    mod = code.load("pipeline")
    Rectified.save(mod.rectify(mod.bandpass(raw(), 20)), subject=1, session="pre")
    assert why(Rectified, subject=1, session="pre").status == "current"
    code.write(
        "pipeline",
        (
            PIPELINE
            + """
    @lineage_fcn
    def rectify(signal):
        return abs(signal)
    """
        ).replace("GAIN = 2", "GAIN = 5"),
    )
    code.load("pipeline")
    report = why(Rectified, subject=1, session="pre")
    (reason,) = report.reasons
    assert report.status == "stale" and reason.kind == "constant" and "GAIN" in reason.name
    assert "upstream bandpass" in reason.detail


# --- provenance and queries ----------------------------------------------------------------------


def test_get_provenance_describes_function_constants_inputs_code_and_environment(
    project, code
) -> None:
    code.write("pipeline", PIPELINE)
    mod = code.load("pipeline")
    x = raw()
    FilteredEMG.save(mod.bandpass(x, 20), subject=1, session="pre")
    prov = project.get_provenance(FilteredEMG, subject=1, session="pre")
    assert prov["function_name"] == "bandpass" and prov["module"] == f"{code.name}.pipeline"
    assert prov["constants"] == {"low_hz": 20}
    assert prov["inputs"] == {
        "signal": {"var": "RawEMG", "addr": {"subject": 1, "session": "pre"}, "oid": x.oid}
    }
    assert prov["code_hash"] == mod.bandpass.identity().digest
    assert project.store.get_value(prov["code"]) == mod.bandpass.identity().source
    env = prov["env"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["host"] and env["user"] and env["packages"]["numpy"] == np.__version__
    assert prov["created_at"].endswith("Z") and prov["duration"] >= 0
    RawEMG.save(np.ones(3), subject=2, session="pre")
    assert project.get_provenance(RawEMG, subject=2, session="pre") is None


def test_call_record_is_a_canonical_json_object_and_indexed_in_duckdb(project) -> None:
    from scistack.objects.canonical_json import dumps_canonical

    bandpass = counted([])
    x = raw()
    result = bandpass(x, 20)
    stored = project.store.get(result.call)
    assert stored.kind == "call"
    assert dumps_canonical(json.loads(bytes(stored.payload))) == bytes(stored.payload)
    record = json.loads(bytes(stored.payload))
    assert record["inputs"]["signal"] == {
        "oid": x.oid,
        "var": "RawEMG",
        "addr": {"subject": 1, "session": "pre"},
    }
    assert (
        record["inputs"]["low_hz"]["const"] == 20 and record["inputs"]["high_hz"]["const"] == 450.0
    )
    assert record["outputs"] == [result.oid] and "env" in record and "started" in record
    assert project.store.get(record["function"]["code"]).kind == "code"
    key = bandpass.key_for(bandpass.bind_inputs((x, 20), {})[1])
    project.sync()
    rows = project.sql("SELECT key, call FROM calls").values.tolist()
    assert [key, result.call] in rows


def test_load_selects_by_constants_of_the_call_and_of_upstream_calls(project) -> None:
    @lineage_fcn
    def bandpass(signal, low_hz):
        return signal + low_hz

    @lineage_fcn
    def envelope(signal, cutoff):
        return abs(signal) * cutoff

    x = raw()
    for low in (10, 20):
        f = bandpass(x, low)
        FilteredEMG.save(f, subject=1, session="pre", variant=f"low{low}")
        Envelope.save(envelope(f, 6), subject=1, session="pre", variant=f"low{low}")
    assert FilteredEMG.load(low_hz=20)[0].metadata["variant"] == "low20"
    assert FilteredEMG.load(**{"bandpass.low_hz": 10})[0].metadata["variant"] == "low10"
    assert Envelope.load(low_hz=20)[0].metadata["variant"] == "low20"  # an upstream constant
    assert (
        Envelope.load(**{"bandpass.low_hz": 10, "envelope.cutoff": 6})[0].metadata["variant"]
        == "low10"
    )
    # as the views, DataFrames and where= name them: the column names select too
    assert Envelope.load(bandpass_low_hz=10, envelope_cutoff=6)[0].metadata["variant"] == "low10"
    assert {r.metadata["variant"] for r in Envelope.load_all(bandpass_low_hz=[10, 20])} == {"low10", "low20"}
    with pytest.raises(scistack.errors.UnknownMetadataKeyError, match="did you mean 'bandpass_low_hz'"):
        Envelope.load(bandpass_low=10)


def test_numpy_scalar_constants_are_parameters_with_their_object_oids(project) -> None:
    """`low_hz` taken from `np.arange` is an np.int64: a lineage parameter like the int,
    keyed by the oid it always had as a stored object (calls cached before still match)."""
    from scistack.lineage.calls import describe
    from scistack.objects.store import hash_value

    @lineage_fcn
    def bandpass(signal, low_hz):
        return signal + low_hz

    x = raw()
    for low in np.arange(10, 30, 10):  # np.int64
        FilteredEMG.save(bandpass(x, low), subject=1, session="pre", variant=f"low{low}")
    FilteredEMG.save(bandpass(x, np.float32(0.5)), subject=1, session="pre", variant="half")
    assert FilteredEMG.load(low_hz=20)[0].metadata["variant"] == "low20"
    assert FilteredEMG.load(low_hz=0.5)[0].metadata["variant"] == "half"
    assert FilteredEMG.load(subject=1, session="pre", variant="low10").record.params == {"bandpass.low_hz": 10}
    for value in (np.int64(7), np.uint8(7), np.float32(1.5), np.bool_(True), np.float16(np.inf)):
        assert describe("v", value).oid == hash_value(value)


def test_a_bare_name_shared_by_two_upstream_functions_is_ambiguous(project) -> None:
    @lineage_fcn
    def bandpass(signal, window):
        return signal * window

    @lineage_fcn
    def smooth(signal, window):
        return signal + window

    Envelope.save(smooth(bandpass(raw(), 3), 5), subject=1, session="pre")
    with pytest.raises(AmbiguousParamError) as err:
        Envelope.load(window=3)
    assert "bandpass.window" in str(err.value) and "smooth.window" in str(err.value)
    assert Envelope.load(**{"bandpass.window": 3})[0].version == 1


# --- staleness ---------------------------------------------------------------------------------


def test_a_resaved_input_is_never_served_the_old_result(project) -> None:
    calls = []
    bandpass = counted(calls)
    FilteredEMG.save(bandpass(raw(np.zeros(4)), 20), subject=1, session="pre")
    assert why(FilteredEMG, subject=1, session="pre").status == "current"
    fresh = bandpass(raw(np.ones(4)), 20)
    assert not fresh.cached and len(calls) == 2
    np.testing.assert_array_equal(fresh.data, np.full(4, 470.0))
    report = why(FilteredEMG, subject=1, session="pre")
    (reason,) = report.reasons
    assert report.status == "stale" and reason.kind == "input" and reason.name == "signal"
    assert "RawEMG" in reason.detail and "version 2" in reason.detail


def test_values_keyed_by_oid_cannot_change_behind_the_key(project) -> None:
    calls = []
    bandpass = counted(calls)
    loaded = raw()
    with pytest.raises(ValueError, match="read-only"):
        loaded.data[0] = 99.0  # a loaded array is read-only: its oid must stay true
    miss, hit = bandpass(loaded, 20), bandpass(loaded, 20)
    for result in (miss, hit):
        with pytest.raises(ValueError, match="read-only"):
            result.data[0] = 99.0
    mine = np.ones(8)
    saved = RawEMG.save(mine, subject=2, session="pre")
    assert bandpass(saved, 20).cached is False  # the caller's own array: verified, then used
    assert bandpass(RawEMG.load(subject=2, session="pre"), 20).cached  # same oid, same key
    mine *= 2  # changed in place after saving: keying it by the old oid would poison the cache
    with pytest.raises(LineageError, match="changed in place"):
        bandpass(saved, 20)
    assert len(calls) == 2 and mine.flags.writeable


def test_a_function_returning_its_argument_does_not_freeze_the_callers_array(project) -> None:
    passthrough = lineage_fcn(lambda x: x)
    mine = np.arange(3.0)
    result = passthrough(mine)
    assert mine.flags.writeable and not result.data.flags.writeable
    mine[0] = 5.0
    assert result.data[0] == 0.0


def test_why_on_a_raw_value_says_raw(project) -> None:
    raw()
    report = why(RawEMG, subject=1, session="pre")
    assert report.status == "raw" and report.function is None


def test_a_garbage_collected_output_is_computed_again(project) -> None:
    calls = []
    bandpass = counted(calls)
    first = bandpass(raw(), 20)
    project.store.delete(first.oid)
    again = bandpass(raw(), 20)
    assert not again.cached and len(calls) == 2 and project.store.contains(again.oid)


# --- the git environment --------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_git_commit_dirty_flag_and_diff_are_recorded(project, tmp_path, monkeypatch) -> None:
    repo = tmp_path / "analysis"
    pkg = repo / f"gitpkg_{uuid.uuid4().hex[:8]}"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "steps.py").write_text(textwrap.dedent(STEPS))
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "steps")
    commit = _git(repo, "rev-parse", "HEAD").strip()
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(repo))
    monkeypatch.setenv("RUNS_FILE", str(tmp_path / "runs.log"))
    helper = Modules.__new__(Modules)
    helper.name = pkg.name
    try:
        clean = importlib.import_module(f"{pkg.name}.steps").bandpass(raw(), 20)
        git = project.call_record(clean.call)["env"]["git"]
        assert git == {"commit": commit, "dirty": False}
        (pkg / "steps.py").write_text(textwrap.dedent(STEPS).replace("+ high_hz", "- high_hz"))
        stamp = time.time_ns() + 5_000_000_000
        os.utime(pkg / "steps.py", ns=(stamp, stamp))
        helper.purge()
        importlib.invalidate_caches()
        dirty = importlib.import_module(f"{pkg.name}.steps").bandpass(raw(), 20)
        git = project.call_record(dirty.call)["env"]["git"]
        assert git["commit"] == commit and git["dirty"] is True
        diff = project.store.get(git["diff"])
        assert diff.kind == "bytes" and bytes(diff.payload).decode() == _git(repo, "diff", "HEAD")
        assert "-    return np.asarray(signal) * low_hz + high_hz" in bytes(diff.payload).decode()
        (pkg / "extra.py").write_text("def twice(x):\n    return x * 2\n")
        extra = importlib.import_module(f"{pkg.name}.extra")
        untracked = lineage_fcn(extra.twice)(raw())
        git = project.call_record(untracked.call)["env"]["git"]
        assert git["dirty"] is True and git["untracked"] == [f"{pkg.name}/extra.py"]
        # the environment is built once per git state and shared by the calls that follow; the
        # diff is put in each call's own store (a second project, the same dirty state)
        steps = importlib.import_module(f"{pkg.name}.steps")
        assert project.call_record(steps.bandpass(raw(), 30).call)["env"]["git"]["diff"]  # (the state now)
        other = configure_database(tmp_path / "other" / "o.duckdb", ["subject", "session"])
        try:
            again = steps.bandpass(raw(), 20)
            git = other.call_record(again.call)["env"]["git"]
            assert other.store.get(git["diff"]).payload == diff.payload
        finally:
            other.close()
    finally:
        helper.purge()


def test_a_source_file_copied_over_with_its_mtime_is_seen_in_the_next_calls_diff(project, tmp_path,
                                                                                monkeypatch) -> None:
    # the git state is kept for 10 s while the function's source file keeps its stat: that stat
    # was (mtime, size), which a `cp -p` of another version of the same size keeps, so the next
    # call recorded the diff of the version before. The whole stat (ctime too) is compared now
    from tests.helpers import same_size_rewrite

    repo = tmp_path / "analysis"
    pkg = repo / f"gitpkg_{uuid.uuid4().hex[:8]}"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "steps.py").write_text(textwrap.dedent(STEPS))
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "steps")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(repo))
    monkeypatch.setenv("RUNS_FILE", str(tmp_path / "runs.log"))
    helper = Modules.__new__(Modules)
    helper.name = pkg.name

    def diff_of_a_call(low_hz: int) -> str:
        helper.purge()
        importlib.invalidate_caches()
        done = importlib.import_module(f"{pkg.name}.steps").bandpass(raw(), low_hz)
        git = project.call_record(done.call)["env"]["git"]
        return bytes(project.store.get(git["diff"]).payload).decode()

    try:
        (pkg / "steps.py").write_text(textwrap.dedent(STEPS).replace("+ high_hz", "- high_hz"))
        assert "+    return np.asarray(signal) * low_hz - high_hz" in diff_of_a_call(20)
        same_size_rewrite(pkg / "steps.py", textwrap.dedent(STEPS).replace("+ high_hz", "* high_hz"))
        assert "+    return np.asarray(signal) * low_hz * high_hz" in diff_of_a_call(30)
    finally:
        helper.purge()


# --- never stale, over random histories ---------------------------------------------------------

_EDITED = """
from scistack import lineage_fcn

K = {k}


def helper(x):
    return x * {h}


@lineage_fcn
def shifted(signal, c):
    return helper(signal) + K + c{extra}
"""

EDIT_OPS = st.lists(st.tuples(st.sampled_from(["raw", "same_raw", "run", "direct", "edit_k", "edit_helper",
                                               "edit_body", "gc"]),
                              st.integers(1, 3), st.sampled_from([0, 10])), min_size=1, max_size=14)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=EDIT_OPS)
def test_no_history_of_edits_saves_and_gc_is_served_a_stale_value(project, code, ops) -> None:
    """Inputs saved again (changed or not), the function's module constant, helper and body
    edited, gc: every for_each over the stored values and every direct call gives what the
    code as it is now computes from the values as they are now."""
    from scistack import for_each
    from scistack.gc import collect_garbage

    for var in ("RawEMG", "FilteredEMG"):
        project.index.delete_refs(list(project.index.records(var)))
    state = {"k": 1, "h": 2, "extra": ""}
    code.write("edited", _EDITED.format(**state))
    mod, values = code.load("edited"), {}

    def expected(subject: int, c: int) -> np.ndarray:
        out = values[subject] * state["h"] + state["k"] + c
        return out * 1.0 + 0.5 if state["extra"] else out

    for step, (op, subject, c) in enumerate(ops):
        if op in ("raw", "same_raw"):
            values[subject] = np.arange(3.0) * subject + (step if op == "raw" else 0)
            RawEMG.save(values[subject], subject=subject, session="pre")
        elif op.startswith("edit"):
            key, choices = {"edit_k": ("k", [1, 2, 3]), "edit_helper": ("h", [2, 4]),
                            "edit_body": ("extra", ["", " * 1.0 + 0.5"])}[op]
            state[key] = choices[(choices.index(state[key]) + 1) % len(choices)]
            code.write("edited", _EDITED.format(**state))
            mod = code.load("edited")
        elif op == "gc":
            collect_garbage(project, grace_seconds=0)
        elif op == "run" and values:
            for_each(mod.shifted, inputs={"signal": RawEMG, "c": c}, outputs=[FilteredEMG], progress=False,
                     subject=[], session=["pre"])
            for s in values:
                np.testing.assert_array_equal(FilteredEMG.load(subject=s, session="pre").data, expected(s, c))
        elif op == "direct" and subject in values:
            result = mod.shifted(RawEMG.load(subject=subject, session="pre"), c)
            np.testing.assert_array_equal(result.data, expected(subject, c))
