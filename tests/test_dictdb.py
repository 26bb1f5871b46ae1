"""ISF-style dictionary access: keys, versions, metadata, sub-databases, the registry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import scistack
from scistack import DataBaseKeyError, KeyNotInDataBaseError, lineage_fcn


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """The per-user registry in tmp_path (never the real ~/.config)."""
    monkeypatch.setenv("SCISTACK_CONFIG_DIR", str(tmp_path / "config"))
    yield tmp_path / "config" / "databases.json"
    for db in list(scistack.dictdb._open.values()):
        db.close()
    scistack.dictdb._open.clear()


def test_the_rest_of_a_dicts_methods_work_as_on_a_dict(tmp_path, registry):
    """Code written for a dict called db.get(key, default), db.items(), db.update(...):
    TypeError and AttributeError."""
    db = scistack.open(tmp_path / "sims")
    db.update({("sim", "a"): 1}, b=2)
    assert db.get(("sim", "a"), 0) == 1 and db.get("missing", 0) == 0 and db.get("missing", None) is None
    with pytest.raises(KeyNotInDataBaseError):
        db.get("missing")  # no default given: as db["missing"]
    assert db.setdefault("c", 3) == 3 and db.setdefault("c", 4) == 3
    assert list(db.items()) == [("b", 2), ("c", 3), (("sim", "a"), 1)]
    assert list(db.values()) == [2, 3, 1]
    assert db.pop("c") == 3 and "c" not in db and db.pop("c", "gone") == "gone"
    with pytest.raises(KeyNotInDataBaseError, match="'c' is not in"):
        db.pop("c")


def test_set_get_delete_keys_and_versions(tmp_path, registry):
    db = scistack.open(tmp_path / "sims")
    assert scistack.is_data_base(tmp_path / "sims") and not scistack.is_data_base(tmp_path)
    frame = pd.DataFrame({"t": np.arange(1000), "v": np.linspace(0, 1, 1000)})
    db["simulation", "run_1"] = frame
    db["simulation", "run_2"] = 2
    db["params"] = {"dt": 0.1}
    db[3] = "three"
    pd.testing.assert_frame_equal(db["simulation", "run_1"], frame)
    assert db.keys() == [3, "params", ("simulation", "run_1"), ("simulation", "run_2")]
    assert ("simulation", "run_2") in db and "nope" not in db
    db["simulation", "run_2"] = 20
    assert db["simulation", "run_2"] == 20 and db.get(("simulation", "run_2"), version=1) == 2
    assert db.versions(("simulation", "run_2")) == [1, 2]
    meta = db.metadata(("simulation", "run_2"))
    assert meta["version"] == 2 and {"host", "python", "user"} <= set(meta["env"])
    del db["simulation", "run_2"]
    assert ("simulation", "run_2") not in db
    with pytest.raises(KeyNotInDataBaseError, match="run_2"):
        db["simulation", "run_2"]
    with pytest.raises(KeyError):  # a KeyError as dict users expect
        del db["missing"]
    db.close()
    again = scistack.open(tmp_path / "sims")  # reopened: everything is still there
    assert again["params"] == {"dt": 0.1}


def test_bad_keys_are_refused(tmp_path, registry):
    db = scistack.open(tmp_path / "sims")
    for bad in (1.5, ("a", None), (), ("a", ["b"]), True, tuple("abcdefghi")):
        with pytest.raises(DataBaseKeyError):
            db[bad] = 1
    assert db.keys() == []
    scistack.Database(tmp_path / "plain" / "p.duckdb", ["subject"]).close()  # a project, not a data_base
    with pytest.raises(scistack.InvalidMetadataError, match="not a data_base"):
        scistack.open(tmp_path / "plain")
    with pytest.raises(scistack.NotARepositoryError, match="creates one"):
        scistack.open(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()


@lineage_fcn
def simulate(n):
    return np.arange(n) * 2.0


def test_a_computed_value_keeps_its_lineage(tmp_path, registry):
    db = scistack.open(tmp_path / "sims")
    db["sim"] = simulate(4)
    assert db.metadata("sim")["function"] == "simulate"
    assert list(db["sim"]) == [0.0, 2.0, 4.0, 6.0]



def test_an_entry_read_inside_a_cached_function_is_refused(tmp_path, registry):
    """The function read the data_base itself: after the entry changed, a second call was a
    cache hit serving the result computed from the old value."""
    db = scistack.open(tmp_path / "sims")
    db["sim", "gain"] = 5.0

    @lineage_fcn
    def scaled(x):
        return db["sim", "gain"] * x

    with pytest.raises(scistack.ScistackError, match=r"data_base\[\('sim', 'gain'\)\] inside scaled.*as an argument"):
        scaled(2.0)
    assert db["sim", "gain"] == 5.0  # outside a call, as ever


def test_sub_databases_and_the_registry(tmp_path, registry, python_env):
    db = scistack.open(tmp_path / "sims")
    cell = db.create_sub_db("cell_1")
    cell["spikes"] = [1, 2, 3]
    assert db["cell_1"]["spikes"] == [1, 2, 3] and db["cell_1", "spikes"] == [1, 2, 3]
    assert db.keys() == ["cell_1"] and cell.keys() == ["spikes"]
    assert db.create_sub_db("cell_1").unique_id == cell.unique_id
    with pytest.raises(DataBaseKeyError, match="sub-database"):
        db["cell_1"] = 5
    assert registry.is_file()
    found = scistack.get_db_by_unique_id(cell.unique_id)
    assert found["spikes"] == [1, 2, 3]
    code = (f"import scistack; print(scistack.get_db_by_unique_id({db.unique_id!r})['cell_1', 'spikes'])")
    env = {**python_env, "SCISTACK_CONFIG_DIR": str(registry.parent)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "[1, 2, 3]", done.stderr
    from scistack.fsck import fsck

    assert fsck(scistack.dictdb._open[db.folder]).problems == ()
    with pytest.raises(scistack.NotARepositoryError, match="no data_base"):
        scistack.get_db_by_unique_id("0" * 32)


@pytest.mark.parametrize("racy", [True, False])
def test_a_marker_restored_in_place_with_its_mtime_is_read_again(tmp_path, registry, monkeypatch, racy):
    # the marker was remembered by (mtime, size, inode): one put back in place by `cp -p` (or
    # rewritten by another process in the same timestamp tick) with another sub-database of
    # the same length kept showing the old one. A racy stat is read again at every look; an
    # older one is remembered by its whole stat, whose ctime (no copy can set it) changed
    import json
    import uuid

    from scistack.codeid import files
    from tests.helpers import same_size_rewrite

    monkeypatch.setattr(files, "_RACY_NS", 3600 * 10**9 if racy else 0)
    db = scistack.open(tmp_path / "sims")
    db.create_sub_db("cell_1")
    assert db.keys() == ["cell_1"] and "cell_1" in db
    path = tmp_path / "sims" / ".scistack" / scistack.dictdb.MARKER
    marker = json.loads(path.read_text())
    marker["subs"] = {json.dumps(["cell_2"]): uuid.uuid4().hex}
    same_size_rewrite(path, json.dumps(marker, indent=1, sort_keys=True) + "\n")  # (in place, as cp -p)
    assert db.keys() == ["cell_2"] and "cell_2" in db and "cell_1" not in db
    assert (db.folder in scistack.dictdb._markers) is not racy  # (a racy stat: nothing kept)


def test_a_large_frame_loads_back_as_pandas_or_dask(tmp_path, registry):
    from scistack.objects.chunking import set_chunking

    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)  # "large" at test size
    try:
        db = scistack.open(tmp_path / "sims")
        frame = pd.DataFrame({"t": np.arange(5000), "v": np.linspace(0, 1, 5000)})
        db["big"] = frame
        pd.testing.assert_frame_equal(db["big"], frame)
        lazy = db.get("big", lazy=True)
        assert lazy.row_groups > 1
        pd.testing.assert_frame_equal(lazy.to_dask().compute().reset_index(drop=True), frame)
    finally:
        set_chunking()


def test_a_dictionary_database_chunks_as_it_recorded_whatever_project_is_current(tmp_path, registry, no_database):
    """A dictionary database is no process's current project, so its values were chunked as the
    process's environment said: the same array, assigned under another setting, was a new oid.
    It records its chunking as any project does and its assignments use it."""
    import json

    from scistack.objects.chunking import set_chunking

    x = np.arange(40_000.0).reshape(-1, 4)  # 320 KB
    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)
    try:
        db = scistack.open(tmp_path / "sims")
        db["a"] = x
    finally:
        set_chunking()
    db["b"] = x  # this process's own setting: the default 256 MiB threshold
    from scistack.index import key_of

    oids = {r.oid for k in "ab" for r in db.project.index.versions_at("Entry", key_of({"key_1": k}))}
    assert len(oids) == 1
    config = json.loads((tmp_path / "sims" / ".scistack" / "config.json").read_text())
    assert config["chunking"] == {"threshold": 16 << 10, "chunk_bytes": 4 << 10}
    np.testing.assert_array_equal(db["b"], x)


def test_ctrl_c_as_an_assignment_takes_its_chunking_leaves_the_session_its_own(tmp_path, registry, no_database):
    """A KeyboardInterrupt just after an assignment put its database's recorded chunking in
    force and before the try that undid it left that policy in force for the session: every
    later save of any project, in this thread, chunked by it."""
    from scistack.objects.chunking import _using, current_policy, process_policy, set_chunking

    from .helpers import interrupt_when

    x = np.arange(40_000.0).reshape(-1, 4)
    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)
    try:
        db = scistack.open(tmp_path / "sims")
        db["a"] = x  # records this chunking
    finally:
        set_chunking()
    with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: _using.get() is not None,
                                                         "scistack/objects/chunking.py"):
        db["b"] = x
    assert current_policy() == process_policy()
    db["b"] = x
    np.testing.assert_array_equal(db["b"], x)
