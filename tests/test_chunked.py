"""Chunked arrays (issue 14): one oid however given, dedupe across versions, lazy partial
reads, gc/fsck/show/lineage over manifests, and clear errors for bad input. Tiny chunk
thresholds make arrays of a few hundred KB span many chunks."""

from __future__ import annotations

import mmap
import os
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from scistack import BaseVariable, lineage_fcn
from scistack.cli import main
from scistack.errors import ChunkReadError, UnsupportedValueError
from scistack.fsck import fsck
from scistack.gc import collect_garbage
from scistack.objects import LocalObjectStore, MemoryObjectStore
from scistack.objects.chunking import chunk_shape, set_chunking
from scistack.objects.lazy import LazyArray
from scistack.objects.store import hash_value
from tests.helpers import evict

THRESHOLD, CHUNK = 16 << 10, 4 << 10


@pytest.fixture(autouse=True)
def tiny_chunks():
    set_chunking(threshold=THRESHOLD, chunk_bytes=CHUNK)
    yield
    set_chunking()


class Rec(BaseVariable):
    pass


class RecOut(BaseVariable):
    pass


class Rec2(BaseVariable):
    pass


def recording(n: int = 20_000, channels: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2000, 2000, (n, channels), dtype=np.int16)


def object_kinds(db) -> dict[str, int]:
    counts: dict[str, int] = {}
    for oid in db.store.iter_oids():
        kind = db.store.kind_of(oid)
        counts[kind] = counts.get(kind, 0) + 1
    return counts



@pytest.mark.parametrize("workers", [None, 2])
def test_for_each_hands_chunked_inputs_over_unread_with_lazy(project, workers):
    """A recording bigger than memory reached the function whole (`for_each` read every chunk);
    `lazy=True` hands it over as `Var.load(lazy=True)` does, in workers too."""
    from scistack import for_each
    from tests import foreach_fns

    x = recording()
    Rec.save(x, subject=1, session="pre")
    report = for_each(foreach_fns.head_mean, inputs={"rec": Rec}, outputs=[RecOut], subject=[1], session=["pre"],
                      lazy=True, workers=workers, progress=False)
    assert (report.ran, report.failed) == (1, 0), report.summary()
    got = RecOut.load(subject=1, session="pre").data
    assert got == {"mean": float(x[:100, 0].mean()), "type": "LazyArray", "chunks_read": 1}
    again = for_each(foreach_fns.head_mean, inputs={"rec": Rec}, outputs=[RecOut], subject=[1], session=["pre"],
                     progress=False)  # the same call: read whole or not, its key is the manifest's oid
    assert again.cached == 1



def test_load_all_gives_chunked_values_unread_with_lazy(project):
    """`Rec.load_all(as_df=True)` of recordings larger than memory read every one whole, and
    `lazy=True` was taken for a key the variable does not have."""
    for subject in (1, 2):
        Rec.save(recording(seed=subject), subject=subject, session="pre")
    Rec.save(7.0, subject=3, session="pre")  # a small value loads as usual
    frame = Rec.load_all(as_df=True, lazy=True)
    assert [type(v).__name__ for v in frame["data"]] == ["LazyArray", "LazyArray", "float"]
    assert all(v.chunks_read == 0 for v in frame["data"][:2])
    np.testing.assert_array_equal(frame["data"][1][:5], recording(seed=2)[:5])
    assert [type(r.data).__name__ for r in Rec.load_all(lazy=True, session="pre")] == ["LazyArray", "LazyArray", "float"]
    assert isinstance(Rec.load_all(as_df=True)["data"][0], np.ndarray)  # whole, as before


# -- identity -------------------------------------------------------------------------------
def test_one_oid_however_the_array_is_given(project, tmp_path):
    x = recording()
    saved = Rec.save(x, subject=1, session="pre")
    assert saved.record.kind == "chunked"
    path = tmp_path / "rec.dat"
    x.tofile(path)
    given_as = {
        "memmap": np.memmap(path, dtype=np.int16, mode="r", shape=x.shape),
        "fortran": np.asfortranarray(x),
        "big-endian": x.astype(">i2"),
        "dask": da.from_array(x, chunks=(777, 3)),
    }
    import zarr  # in the test extras: a missing one fails, never skips
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=x.shape, dtype="int16", chunks=(1000, 8))
    z[:] = x
    given_as["zarr"] = z
    for name, value in given_as.items():
        assert hash_value(value) == saved.oid, name
        again = Rec.save(value, subject=1, session="pre")
        assert again.oid == saved.oid and again.version == 1, name
    loaded = Rec.load(subject=1, session="pre").data
    assert type(loaded) is np.ndarray and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, x)


def test_timestamps_are_chunked_as_zarr_names_them(project, tmp_path):
    """A recording's timestamps are as long as its samples: datetime64/timedelta64 arrays are
    chunked too, with Zarr's `numpy.datetime64` data type (zarr-extensions), so zarr-python
    reads them back as the same dtype; NaT survives; a memmap or dask array gives one oid."""
    import zarr
    from scistack.objects.chunked import parse_manifest
    from scistack.objects.zarr_view import open_zarr

    stamps = np.datetime64("2026-01-01", "ns") + np.arange(30_000) * np.timedelta64(33_333, "ns")
    stamps[7] = np.datetime64("NaT")
    path = tmp_path / "t.dat"
    stamps.tofile(path)
    saved = Rec.save(np.memmap(path, dtype="M8[ns]", mode="r", shape=stamps.shape), subject=1, session="t")
    assert saved.record.kind == "chunked"
    assert Rec.save(da.from_array(stamps, chunks=999), subject=1, session="t").oid == saved.oid
    back = Rec.load(subject=1, session="t").data
    assert back.dtype == np.dtype("M8[ns]") and np.isnat(back[7])
    np.testing.assert_array_equal(back, stamps)
    lazy = Rec.load(subject=1, session="t", lazy=True).data
    np.testing.assert_array_equal(lazy[5:9], stamps[5:9])
    meta = parse_manifest(project.store.get(saved.oid).payload)["zarr"]
    assert meta["data_type"] == {"name": "numpy.datetime64", "configuration": {"unit": "ns", "scale_factor": 1}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python's "no Zarr v3 specification yet"
        z = open_zarr(project.store, saved.oid)
        assert z.dtype == np.dtype("M8[ns]")
        np.testing.assert_array_equal(z[:], stamps)
        # and the metadata is what zarr-python itself writes for this dtype
        own = zarr.create_array(store=zarr.storage.MemoryStore(), shape=(4,), dtype="m8[10ms]", chunks=(2,))
    durations = np.arange(40_000).astype("m8[10ms]")
    meta = parse_manifest(project.store.get(Rec.save(durations, subject=2, session="t").oid).payload)["zarr"]
    assert meta["data_type"] == own.metadata.to_dict()["data_type"]
    assert meta["fill_value"] == own.metadata.to_dict()["fill_value"]
    np.testing.assert_array_equal(Rec.load(subject=2, session="t").data, durations)


def test_small_dask_array_is_the_numpy_array_it_equals(project):
    x = np.arange(100.0)
    assert Rec.save(da.from_array(x, chunks=7), subject=1, session="s").oid == Rec.save(x, subject=1, session="s").oid
    assert Rec.load(subject=1, session="s").record.kind == "npy"


@pytest.mark.parametrize("n", [30_000, 100])
def test_a_dask_array_of_unknown_shape_is_saved_as_the_numpy_array_it_equals(project, n):
    """`x[x > 5]` has chunks of unknown size (shape (nan,)): saving it raised a bare ValueError
    ('cannot convert float NaN to integer'). Its chunk sizes are computed (each block measured,
    none kept), then it is saved as any dask array is: block by block when chunked."""
    x = np.arange(float(n))
    source = da.from_array(x, chunks=1000 if n > 1000 else 10)
    selected = source[source > 5]
    assert np.isnan(selected.shape[0])
    saved = Rec.save(selected, subject=1, session="s")
    assert saved.oid == Rec.save(x[6:], subject=2, session="s").oid
    assert Rec.load(subject=1, session="s").record.kind == ("chunked" if n > 1000 else "npy")
    np.testing.assert_array_equal(Rec.load(subject=1, session="s").data, x[6:])
    assert f"[{n - 6}]" in Rec.load(subject=1, session="s").record.summary


def test_grid_is_a_pure_function_of_shape_and_dtype():
    assert chunk_shape((20_000, 8), 2, CHUNK) == (256, 8)
    assert chunk_shape((10, 3, 4096), 1, CHUNK) == (1, 1, 4096)
    assert chunk_shape((3, 100_000), 8, CHUNK) == (1, 512)
    # growing along the first axis keeps the chunk shape, so earlier chunks dedupe
    assert chunk_shape((40_000, 8), 2, CHUNK) == chunk_shape((20_000, 8), 2, CHUNK)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
    dtype=st.sampled_from(["<i2", ">i4", "<f8", "|b1", "<c16", "<u1", ">f4", "<M8[ns]", ">m8[10ms]", "<M8[D]"]),
    seed=st.integers(0, 2**16),
)
def test_round_trip_any_shape_and_dtype(shape, dtype, seed):
    set_chunking(threshold=64, chunk_bytes=48)  # nearly everything is chunked, edges everywhere
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 100).astype(dtype)
    for store in (MemoryObjectStore(),):
        oid = store.put_value(x)
        assert oid == hash_value(x)
        back = store.get_value(oid)
        assert back.dtype == x.dtype.newbyteorder("<") and back.shape == x.shape
        np.testing.assert_array_equal(back, x)
        lazy = store.open_value(oid)
        if isinstance(lazy, LazyArray):
            key = tuple(slice(rng.integers(0, n), None, int(rng.integers(1, 3))) for n in shape)
            np.testing.assert_array_equal(lazy[key], x[key])


# -- dedupe -----------------------------------------------------------------------------------
def test_unchanged_chunks_are_stored_once_across_versions_and_variables(project):
    x = recording()
    Rec.save(x, subject=1, session="pre")
    before = object_kinds(project)
    y = x.copy()
    y[5000:5100] = 0  # 100 rows in chunks of 256 rows: one or two chunks change
    Rec.save(y, subject=1, session="pre")
    RecOut.save(y, subject=9, session="other")  # same value elsewhere: nothing new
    after = object_kinds(project)
    assert after["chunked"] == before["chunked"] + 1
    assert 1 <= after["chunk"] - before["chunk"] <= 2
    assert Rec.load(subject=1, session="pre", version=1).data[5050, 0] == x[5050, 0]


# -- lazy -------------------------------------------------------------------------------------
def test_lazy_load_reads_only_the_chunks_a_slice_touches(project):
    x = recording()
    Rec.save(x, subject=1, session="pre")
    r = Rec.load(subject=1, session="pre", lazy=True)
    assert isinstance(r.data, LazyArray) and r.data.chunks_read == 0
    part = r.data[3100:3500, 3]  # rows 3072..3583: chunks 12 and 13
    np.testing.assert_array_equal(part, x[3100:3500, 3])
    assert r.data.chunks_read == 2 and r.data.bytes_read == 2 * 256 * 8 * 2
    assert not part.flags.writeable
    # the proof that nothing else is read: remove every chunk but the ones of rows 0..255
    manifest = r.data.manifest
    keep = manifest.oid_at((0, 0))
    for index in manifest.indices():
        oid = manifest.oid_at(index)
        if oid != keep and project.store.path_of(oid).exists():
            os.chmod(project.store.path_of(oid), 0o644)
            os.unlink(project.store.path_of(oid))
    fresh = Rec.load(subject=1, session="pre", lazy=True).data
    np.testing.assert_array_equal(fresh[10:20, :], x[10:20, :])
    with pytest.raises(ChunkReadError, match=r"chunk \[1, 0\].*missing"):
        np.asarray(fresh)


@pytest.mark.parametrize("key", [
    5, -1, (5, 2), slice(None), (slice(100, 9000, 7), slice(None, None, -2)), (Ellipsis, 0),
    (slice(None, None, -1), 3), (slice(19_990, None), slice(1, 2)), (slice(30, 10),),
    ([1, 5, 19_999],), (np.arange(20_000) % 3 == 0, 1),
])
def test_lazy_indexing_agrees_with_numpy(project, key):
    x = recording()
    Rec.save(x, subject=1, session="pre")
    lazy = Rec.load(subject=1, session="pre", lazy=True).data
    np.testing.assert_array_equal(lazy[key], x[key])


def test_lazy_as_numpy_and_as_dask(project):
    x = recording()
    Rec.save(x, subject=1, session="pre")
    lazy = Rec.load(subject=1, session="pre", lazy=True).data
    assert lazy.shape == x.shape and lazy.dtype == x.dtype and len(lazy) == len(x)
    # (numpy's attributes, so code written for an array reads a lazy one: itemsize was missing)
    assert (lazy.ndim, lazy.size, lazy.nbytes, lazy.itemsize) == (x.ndim, x.size, x.nbytes, x.itemsize)
    np.testing.assert_array_equal(np.asarray(lazy), x)
    total = lazy.to_dask()[:, 2].sum().compute()
    assert total == x[:, 2].sum()
    small = Rec.save(np.arange(5), subject=2, session="pre")
    assert isinstance(Rec.load(subject=2, session="pre", lazy=True).data, np.ndarray) and small


def test_a_dict_holding_a_chunked_array_loads_it_lazily(project):
    # the array was stored chunked, but a lazy load read the whole of it (and every chunk of
    # a table) to build the dict; the small arrays beside it were writable
    x = recording()
    Rec.save({"emg": x, "fs": 2000, "trials": [x[:10]], "gain": np.ones(3)}, subject=1, session="pre")
    lazy = Rec.load(subject=1, session="pre", lazy=True).data
    assert lazy["fs"] == 2000 and lazy["emg"].chunks_read == 0
    np.testing.assert_array_equal(lazy["emg"][5:7, 1], x[5:7, 1])
    assert lazy["emg"].chunks_read <= 2 and not lazy["gain"].flags.writeable
    whole = Rec.load(subject=1, session="pre").data
    np.testing.assert_array_equal(whole["emg"], x)
    assert not whole["gain"].flags.writeable and not whole["trials"][0].flags.writeable
    project.sync()  # the views describe it without reading the chunks
    assert project.sql("SELECT kind, value FROM Rec").values.tolist()[0][0] == "json"
    # the lazy dict is the value it was: saved again (or hashed as an input), the same oid
    assert RecOut.save(lazy, subject=1, session="pre").oid == Rec.load(subject=1, session="pre").oid


def test_a_numpy_method_of_a_lazy_array_names_the_ways_to_it(project):
    from scistack.errors import LazyValueError

    Rec.save(recording(), subject=1, session="pre")
    lazy = Rec.load(subject=1, session="pre", lazy=True).data
    with pytest.raises(LazyValueError, match=r"np.asarray\(x\).max .* x.to_dask\(\).max"):
        lazy.max()  # (a bare AttributeError before)
    assert not hasattr(lazy, "T") and lazy.chunks_read == 0  # still an AttributeError: nothing read
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        lazy.nonsense


def test_saving_a_lazy_value_reuses_its_oid_without_reading(project):
    x = recording()
    Rec.save(x, subject=1, session="pre")
    lazy = Rec.load(subject=1, session="pre", lazy=True)
    copy = RecOut.save(lazy, subject=1, session="pre")
    assert copy.oid == lazy.oid and lazy.data.chunks_read == 0


# -- gc, fsck, show ----------------------------------------------------------------------------
def test_gc_follows_manifests_and_removes_orphaned_chunks(project):
    Rec.save(recording(seed=1), subject=1, session="pre")
    Rec.save(recording(seed=2), subject=2, session="pre")
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.objects_deleted == 0
    np.testing.assert_array_equal(Rec.load(subject=1, session="pre").data, recording(seed=1))
    Rec.delete(subject=2, session="pre")
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.objects_deleted == 1 + 79  # the manifest and its 79 chunks (20000/256)
    np.testing.assert_array_equal(Rec.load(subject=1, session="pre").data, recording(seed=1))


def damage(store: LocalObjectStore, oid: str) -> None:
    path = store.path_of(oid)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_bad_chunk_is_named_by_index_and_oid_and_the_others_stay_readable(project):
    x = recording()
    saved = Rec.save(x, subject=1, session="pre")
    lazy = Rec.load(subject=1, session="pre", lazy=True).data
    bad = lazy.manifest.oid_at((3, 0))
    damage(project.store, bad)
    report = fsck(project)
    assert [(p.kind, p.oid) for p in report.problems] == [("corrupt", bad)]
    assert f"chunk [3, 0] of chunked value {saved.oid}" in report.problems[0].detail
    assert report.problems[0].detail.endswith(
        "; its value is Rec at subject=1, session='pre' version 1: run `scistack fsck --repair` to set it "
        "aside, then save it again from its source")
    with pytest.raises(ChunkReadError) as caught:
        Rec.load(subject=1, session="pre")
    assert caught.value.index == (3, 0) and caught.value.oid == bad and bad in str(caught.value)
    fresh = Rec.load(subject=1, session="pre", lazy=True).data
    np.testing.assert_array_equal(fresh[:768], x[:768])
    np.testing.assert_array_equal(fresh[1024:], x[1024:])
    with pytest.raises(ChunkReadError, match=r"chunk \[3, 0\]"):
        fresh[700:800]
    # the way out the error names: the bad chunk set aside, the array saved again stores it
    assert "fsck --repair" in str(caught.value)
    repaired = fsck(project, repair=True)
    assert any(bad[:12] in r for r in repaired.repaired)
    Rec.save(x, subject=1, session="pre")
    np.testing.assert_array_equal(Rec.load(subject=1, session="pre").data, x)
    assert fsck(project).ok


def test_a_chunk_set_aside_is_named_with_its_value_and_the_way_out(project):
    """After `fsck --repair` set a bad chunk aside, fsck lists it missing: with the value it
    belongs to (address in schema order) and what to do, which then works."""
    x = recording()
    Rec.save(x, subject=1, session="pre")
    bad = Rec.load(subject=1, session="pre", lazy=True).data.manifest.oid_at((3, 0))
    damage(project.store, bad)
    fsck(project, repair=True)
    report = fsck(project)
    assert [(p.kind, p.oid) for p in report.problems] == [("missing", bad)]
    assert report.problems[0].detail.endswith(
        "needs it; it is part of the value of Rec at subject=1, session='pre' version 1: save that array again "
        "(the identical array stores the lost chunk), or delete the value (`scistack rm`) and run `scistack gc`")
    assert Rec.save(x, subject=1, session="pre").version == 1  # (the way out it names)
    assert fsck(project).ok


@lineage_fcn
def negated(x):
    return -x


@pytest.mark.parametrize("how", ["corrupt", "lost"])
def test_a_computed_value_with_a_bad_chunk_is_computed_again_by_the_rerun_after_repair(project, how):
    """fsck said "run `scistack fsck --repair` to set it aside, then rerun the step that computed
    it", but --repair kept the cache entry (its manifest was there), so the rerun said "cached"
    and the value stayed unreadable (ChunkReadError, whose advice was the same). The entry is
    dropped: the rerun computes the value, and its save stores the lost chunk again."""
    from scistack import for_each

    def run():
        return for_each(negated, inputs={"x": Rec}, outputs=[RecOut], subject=[1], session=["pre"],
                        progress=False, verbose=False)

    x = recording()
    Rec.save(x, subject=1, session="pre")
    assert run().ran == 1
    bad = RecOut.load(subject=1, session="pre", lazy=True).data.manifest.oid_at((3, 0))
    if how == "lost":
        project.store.delete_many([bad])
    else:  # (for_each's outputs are packed)
        (damage if project.store.path_of(bad).exists() else damage_packed)(project.store, bad)
    (problem,) = fsck(project).problems
    assert problem.oid == bad
    if how == "lost":
        assert "`scistack fsck --repair` drops the cache entry of the step that computed it, then a rerun" \
            in problem.detail
    else:
        assert problem.detail.endswith("run `scistack fsck --repair` to set it aside, then rerun the step that "
                                       "computed it")
    repaired = fsck(project, repair=True)
    assert any("dropped 1 call-cache entry" in r for r in repaired.repaired), repaired.repaired
    assert run().ran == 1
    np.testing.assert_array_equal(RecOut.load(subject=1, session="pre").data, -x)
    assert RecOut.load(subject=1, session="pre").version == 1  # the same value, its ref untouched
    assert fsck(project).ok
    assert run().cached == 1


def test_repair_drops_only_the_entries_whose_outputs_hold_the_bad_chunk(project):
    """A chunk shared by two computed values (identical rows) is lost: both entries go (the
    walk names the chunk with the first value that reached it), an entry whose output holds
    the value in a dict too, and one whose output is sound stays."""
    from scistack import for_each

    @lineage_fcn
    def in_a_dict(x):
        return {"neg": -x, "n": len(x)}

    x = recording()
    shared = x.copy()
    shared[-256:] = 0  # another value: the first 78 chunks are x's
    Rec.save(x, subject=1, session="pre")
    Rec.save(shared, subject=2, session="pre")
    Rec.save(recording(seed=5), subject=3, session="pre")
    assert for_each(negated, inputs={"x": Rec}, outputs=[RecOut], subject=[1, 2, 3], session=["pre"],
                    progress=False, verbose=False).ran == 3
    assert for_each(in_a_dict, inputs={"x": Rec}, outputs=[Rec2], subject=[1], session=["pre"],
                    progress=False, verbose=False).ran == 1
    bad = RecOut.load(subject=1, session="pre", lazy=True).data.manifest.oid_at((3, 0))
    assert RecOut.load(subject=2, session="pre", lazy=True).data.manifest.oid_at((3, 0)) == bad
    project.store.delete_many([bad])
    repaired = fsck(project, repair=True)
    assert any("dropped 3 call-cache entries" in r for r in repaired.repaired), repaired.repaired
    again = for_each(negated, inputs={"x": Rec}, outputs=[RecOut], subject=[1, 2, 3], session=["pre"],
                     progress=False, verbose=False)
    assert (again.ran, again.cached) == (2, 1)
    assert for_each(in_a_dict, inputs={"x": Rec}, outputs=[Rec2], subject=[1], session=["pre"],
                    progress=False, verbose=False).ran == 1
    np.testing.assert_array_equal(Rec2.load(subject=1, session="pre").data["neg"], -x)
    assert fsck(project).ok


def damage_packed(store: LocalObjectStore, oid: str) -> None:
    """Flip a byte of a packed object's record, inside its pack."""
    name, offset, length = store.packs.locate(oid)
    path = store.packs.directory / f"{name}.pack"
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset + length - 5)
        byte = handle.read(1)
        handle.seek(offset + length - 5)
        handle.write(bytes([byte[0] ^ 1]))


@pytest.mark.parametrize("lazy", [True, False])
def test_a_session_reads_the_good_copy_stored_after_another_process_repaired_a_packed_chunk(
        project, python_env, lazy):
    """A chunk saved in a batch (so packed) was damaged; `scistack fsck --repair` in another
    process rewrote the pack without it, and a save in this session stored a good copy. A fresh
    process read it, but this session kept raising ChunkReadError 'is corrupt' until restarted:
    it read the chunk from the pack it had mapped before the repair (unlinked, still mapped)."""
    import subprocess
    import sys

    x = recording()
    with project.batch():
        Rec.save(x, subject=1, session="pre")
    bad = Rec.load(subject=1, session="pre", lazy=True).data.manifest.oid_at((9, 0))
    damage_packed(project.store, bad)
    with pytest.raises(ChunkReadError, match="is corrupt"):
        Rec.load(subject=1, session="pre", lazy=True).data[9 * 256]
    done = subprocess.run([sys.executable, "-m", "scistack", "--db", str(project.path), "fsck", "--repair"],
                          env=python_env, capture_output=True, text=True, timeout=120)
    assert f"moved damaged object {bad[:12]}" in done.stdout, done.stdout + done.stderr
    Rec.save(x, subject=1, session="pre")
    loaded = Rec.load(subject=1, session="pre", lazy=lazy).data
    np.testing.assert_array_equal(loaded[:] if lazy else loaded, x)


def test_a_damaged_packed_chunk_is_never_served_while_no_good_copy_exists(project, python_env):
    """Looking again after a damaged packed copy finds the same damage: still an error."""
    x = recording()
    with project.batch():
        Rec.save(x, subject=1, session="pre")
    bad = Rec.load(subject=1, session="pre", lazy=True).data.manifest.oid_at((2, 0))
    damage_packed(project.store, bad)
    for _ in range(2):
        with pytest.raises(ChunkReadError, match=r"chunk \[2, 0\].*is corrupt"):
            Rec.load(subject=1, session="pre")


CHUNKING_ELSEWHERE = """
import sys, warnings
import numpy as np
warnings.simplefilter("always")
from scistack import BaseVariable, configure_database, for_each
from tests import foreach_fns
class Rec(BaseVariable): pass
class RecOut(BaseVariable): pass
if __name__ == "__main__":
    db = configure_database(sys.argv[1])
    x = np.random.default_rng(0).integers(-2000, 2000, (20_000, 8), dtype=np.int16)
    saved = Rec.save(x, subject=1, session="pre")
    report = for_each(foreach_fns.bandpass, inputs={"signal": Rec, "low_hz": 3}, outputs=[RecOut], subject=[1],
                      session=["pre"], workers=int(sys.argv[2]), progress=False, verbose=False)
    out = RecOut.load(subject=1, session="pre")
    print(len(Rec.list_versions(subject=1, session="pre")), report.ran, report.cached, out.record.kind, out.oid)
"""


@pytest.mark.parametrize("env", [{}, {"SCISTACK_CHUNK_THRESHOLD": str(1 << 30)}], ids=["unset", "other"])
def test_a_process_with_other_chunking_uses_the_projects(project, tmp_path, python_env, env):
    """The chunking threshold and budget are part of a value's identity, and a process whose
    environment chose others (a colleague's shell, a cluster job without the variables) gave
    identical data a new oid: a new version of unchanged data, and every cached call missed. The
    project records its chunking the first time it is needed, and every process uses that one
    (for_each's worker processes too); one that asked for another is warned."""
    import json
    import subprocess
    import sys

    x = recording()
    Rec.save(x, subject=1, session="pre")
    config = json.loads((project.path.parent / ".scistack" / "config.json").read_text())
    assert config["chunking"] == {"threshold": THRESHOLD, "chunk_bytes": CHUNK}
    project.close()
    script = tmp_path / "elsewhere.py"
    script.write_text(CHUNKING_ELSEWHERE)
    base = {k: v for k, v in python_env.items() if not k.startswith("SCISTACK_CHUNK")}
    outs = []
    for workers in (1, 2):  # (a first run computes, in this process; then from workers: a cache hit)
        done = subprocess.run([sys.executable, str(script), str(project.path), str(workers)], env={**base, **env},
                              capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
        assert done.returncode == 0, done.stderr
        versions, ran, cached, kind, oid = done.stdout.split()
        assert (versions, kind) == ("1", "chunked")
        assert (ran, cached) == (("1", "0") if workers == 1 else ("0", "1"))
        outs.append(oid)
        assert ("The project's are used" in done.stderr) == bool(env)
    assert outs[0] == outs[1]


def test_for_each_workers_store_with_the_projects_chunking(project, tmp_path, python_env):
    """A worker process stores its outputs with the chunking its parent's project recorded,
    whatever its own environment says (it had chosen from its environment)."""
    import subprocess
    import sys

    Rec.save(recording(), subject=1, session="pre")  # the project records 16 KiB / 4 KiB
    project.close()
    script = tmp_path / "elsewhere.py"
    script.write_text(CHUNKING_ELSEWHERE)
    base = {k: v for k, v in python_env.items() if not k.startswith("SCISTACK_CHUNK")}
    done = subprocess.run([sys.executable, str(script), str(project.path), "2"], env=base,
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    versions, ran, cached, kind, oid = done.stdout.split()
    assert (versions, ran, kind) == ("1", "1", "chunked")
    np.testing.assert_array_equal(np.asarray(project_value(project, oid)), recording() * 3)


def project_value(project, oid):
    from scistack import configure_database

    return configure_database(project.path).store.get_value(oid)


def test_show_summarises_from_the_manifest_without_reading_chunks(project):
    saved = Rec.save(recording(), subject=1, session="pre")
    for oid, _ in [(o, 0) for o in project.store.iter_oids() if project.store.kind_of(o) == "chunk"]:
        os.chmod(project.store.path_of(oid), 0o644)
        os.unlink(project.store.path_of(oid))
    project.sync()
    result = CliRunner().invoke(main, ["--db", str(project.path), "show", saved.oid[:12]])
    assert result.exit_code == 0, result.output
    assert "chunked array int16 [20000x8], 79 chunks of [256x8]" in result.output


def test_the_web_view_previews_a_chunked_value_by_its_first_rows(project):
    # it read the whole value (an 8 GB recording: 8 GB into the web server) to preview it
    from scistack.report import history
    from scistack.ui.api import value

    x = recording()
    Rec.save(x, subject=1, session="pre")
    Rec.save({"emg": x, "fs": 2000}, subject=2, session="pre")
    lazy = Rec.load(subject=1, session="pre", lazy=True).data
    first = {lazy.manifest.oid_at((0, 0)), lazy.manifest.oid_at((1, 0))}
    for oid in [o for o in project.store.iter_oids() if project.store.kind_of(o) == "chunk" and o not in first]:
        os.chmod(project.store.path_of(oid), 0o644)
        os.unlink(project.store.path_of(oid))  # only the first 512 rows can be read now
    history.PREVIEW_ROWS = 300
    try:
        shown = value(project, "Rec", {"subject": 1, "session": "pre"})
    finally:
        history.PREVIEW_ROWS = 10_000
    assert shown["describe"]["type"] == "chunked array" and shown["describe"]["shape"] == [20000, 8]
    assert shown["describe"]["preview"] == "the first 300 rows" and shown["preview"]["kind"] == "image"
    nested = value(project, "Rec", {"subject": 2, "session": "pre"})  # its array lazy: nothing read
    assert nested["describe"]["type"] == "dict" and "LazyArray(int16[20000, 8]" in nested["describe"]["repr"]


def test_the_sql_view_describes_a_chunked_value_from_its_manifest_alone(project):
    """The views' sync must never load a large value whole (an 8 GB recording would need
    8 GB of RAM in a background thread): with every chunk gone, the row still describes it."""
    Rec.save(recording(), subject=1, session="pre")
    for oid in [o for o in project.store.iter_oids() if project.store.kind_of(o) == "chunk"]:
        os.chmod(project.store.path_of(oid), 0o644)
        os.unlink(project.store.path_of(oid))
    project.sync()
    row = project.sql("SELECT shape, dtype, kind FROM Rec WHERE subject = 1").iloc[0]
    assert row["shape"].tolist() == [20000, 8] and row["dtype"] == "int16" and row["kind"] == "chunked"


# -- lineage ---------------------------------------------------------------------------------------
@lineage_fcn
def channel_mean(signal):
    return float(np.asarray(signal[:, 0]).mean())


def test_lineage_keys_a_large_input_by_its_manifest_oid(project):
    x = recording()
    saved = Rec.save(x, subject=1, session="pre")
    for lazy in (True, False):
        loaded = Rec.load(subject=1, session="pre", lazy=lazy)
        result = channel_mean(loaded)
        assert result.data == pytest.approx(x[:, 0].mean())
        RecOut.save(result, subject=1, session="pre")
    provenance = project.get_provenance(RecOut, subject=1, session="pre")
    assert provenance["inputs"]["signal"]["oid"] == saved.oid
    assert len(RecOut.list_versions(subject=1, session="pre")) == 1  # the second call was a cache hit
    # a cache hit never reads the input's chunks: it works with every chunk gone
    for oid in [o for o in project.store.iter_oids() if project.store.kind_of(o) == "chunk"]:
        os.chmod(project.store.path_of(oid), 0o644)
        os.unlink(project.store.path_of(oid))
    lazy = Rec.load(subject=1, session="pre", lazy=True)
    assert channel_mean(lazy).data == pytest.approx(x[:, 0].mean()) and lazy.data.chunks_read == 0


# -- bad input -------------------------------------------------------------------------------------
def test_object_dtype_dask_and_structured_memmap_are_refused_before_reading(project, tmp_path):
    def never():
        raise AssertionError("the dask array was computed")

    lazy_objects = da.from_delayed(dask.delayed(never)(), shape=(100_000,), dtype=object)
    with pytest.raises(UnsupportedValueError, match="dask array of dtype object"):
        Rec.save(lazy_objects, subject=1, session="pre")
    path = tmp_path / "s.dat"
    np.zeros(10_000, dtype=[("a", "<i4"), ("b", "<f8")]).tofile(path)
    structured = np.memmap(path, dtype=[("a", "<i4"), ("b", "<f8")], mode="r")
    with pytest.raises(UnsupportedValueError, match="structured"):
        Rec.save(structured, subject=1, session="pre")
    objects = np.memmap(tmp_path / "o.dat", dtype=object, mode="w+", shape=(100_000,))
    with pytest.raises(UnsupportedValueError, match="dtype object"):
        Rec.save(objects, subject=1, session="pre")
    assert object_kinds(project) == {}


def test_an_interrupted_save_names_nothing_and_gc_removes_its_chunks(project):
    kept = Rec.save(recording(seed=3), subject=1, session="pre")
    before = set(project.store.iter_oids())
    # a source that fails halfway: a lazy array from elsewhere whose chunk 40 of 79 is lost
    elsewhere = MemoryObjectStore()
    source = elsewhere.open_value(elsewhere.put_value(recording(seed=4)))
    elsewhere.delete(source.manifest.oid_at((40, 0)))
    with pytest.raises(ChunkReadError, match=r"chunk \[40, 0\]"):
        Rec.save(source, subject=2, session="pre")
    added = set(project.store.iter_oids()) - before
    assert len(added) >= 30 and {project.store.kind_of(o) for o in added} == {"chunk"}  # no manifest
    with pytest.raises(LookupError):
        Rec.load(subject=2, session="pre")
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.objects_deleted == len(added)
    assert set(project.store.iter_oids()) == before
    np.testing.assert_array_equal(Rec.load(subject=1, session="pre").data, recording(seed=3))
    assert kept.oid in before


def test_a_failing_dask_source_names_nothing(project):
    def broken_block():
        raise OSError("the network drive went away")

    good = da.from_array(recording(seed=4)[:10_000], chunks=(2048, 8))
    bad = da.from_delayed(dask.delayed(broken_block)(), shape=(10_000, 8), dtype=np.int16)
    with pytest.raises(OSError, match="network drive"):
        Rec.save(da.concatenate([good, bad]), subject=2, session="pre")
    assert "chunked" not in object_kinds(project)
    with pytest.raises(LookupError):
        Rec.load(subject=2, session="pre")


FULL_DISK_SCRIPT = """
import resource, signal, sys
import numpy as np
from scistack import configure_database, BaseVariable
from scistack.errors import StorageFullError
from scistack.objects.chunking import set_chunking
set_chunking(threshold=16 << 10, chunk_bytes=64 << 10)
db = configure_database(sys.argv[1])
class Rec(BaseVariable): pass
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, 32 << 10))
noise = np.random.default_rng(0).integers(0, 2**62, (40_000, 8))  # incompressible, 2.5 MB
try:
    Rec.save(noise, subject=2, session="pre")
except StorageFullError as exc:
    print("refused:", exc)
    sys.exit(3)
"""


def test_a_full_disk_mid_save_is_a_clear_error_and_loses_nothing(project, tmp_path, python_env):
    import subprocess
    import sys

    set_chunking(threshold=16 << 10, chunk_bytes=64 << 10)  # the project records the script's chunking
    kept = recording(n=1000)
    Rec.save(kept, subject=1, session="pre")
    project.close()
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(project.path)], env=python_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "file-size limit is full" in done.stdout and "Nothing was named" in done.stdout
    from scistack import configure_database

    db = configure_database(project.path)
    np.testing.assert_array_equal(Rec.load(subject=1, session="pre").data, kept)
    with pytest.raises(LookupError):
        Rec.load(subject=2, session="pre")
    assert fsck(db).ok
    db.close()


def test_chunks_round_trip_through_packs_in_a_batch(project):
    x = recording()
    with project.batch():
        saved = Rec.save(x, subject=1, session="pre")
    assert list(Path(project.store.packs.directory).glob("*.pack"))
    np.testing.assert_array_equal(Rec.load(subject=1, session="pre").data, x)
    assert saved.oid == hash_value(x)


def test_gc_keeps_the_chunks_of_a_large_array_inside_a_container(project):
    x = recording()
    Rec.save({"signal": x, "rate": 30_000}, subject=1, session="pre")  # json -> chunked child
    collect_garbage(project, grace_seconds=0)
    loaded = Rec.load(subject=1, session="pre").data
    np.testing.assert_array_equal(loaded["signal"], x)


KILLED_SCRIPT = """
import sys, time
import dask, dask.array as da
import numpy as np
from scistack import configure_database, BaseVariable
from scistack.objects.chunking import set_chunking
set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)
db = configure_database(sys.argv[1])
class Rec(BaseVariable): pass
def slow_block(i):
    time.sleep(0.2)
    return np.full((256, 8), i, dtype=np.int16)
blocks = [da.from_delayed(dask.delayed(slow_block)(i), shape=(256, 8), dtype=np.int16) for i in range(200)]
Rec.save(da.concatenate(blocks), subject=2, session="pre")   # ~20 s: killed long before
print("finished")
"""


def test_a_save_killed_halfway_names_nothing(project, tmp_path, python_env):
    import signal
    import subprocess
    import sys
    import time

    Rec.save(recording(n=1000), subject=1, session="pre")
    before = set(project.store.iter_oids())
    project.close()
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    child = subprocess.Popen([sys.executable, str(script), str(project.path)], env=python_env)
    store = LocalObjectStore(project.store.root)
    give_up = time.monotonic() + 60
    while len(set(store.iter_oids()) - before) < 5 and time.monotonic() < give_up:
        time.sleep(0.05)  # wait for real chunks on disk (not a timing assertion)
    child.send_signal(signal.SIGKILL)
    child.wait()
    added = set(store.iter_oids()) - before
    assert len(added) >= 5 and {store.kind_of(o) for o in added} == {"chunk"}
    from scistack import configure_database

    db = configure_database(project.path)
    with pytest.raises(LookupError):
        Rec.load(subject=2, session="pre")
    assert collect_garbage(db, grace_seconds=0).objects_deleted == len(added)
    assert set(db.store.iter_oids()) == before
    db.close()


@pytest.mark.parametrize("data", ["phase-shifted", "in-phase", "noise"])
def test_megabyte_chunks_decode_straight_into_the_result(project, data):
    """Chunks of 1 MB are stored shuffled (slow signals, phase-shifted per channel), zstd
    (the same slow signal on every channel: zstd finds the repeats) or raw (noise), and are read
    into the result array itself or, for an edge or a partial chunk, through a kept buffer."""
    set_chunking(threshold=2 << 20, chunk_bytes=1 << 20)
    n, rng = 300_000, np.random.default_rng(7)
    if data == "noise":
        x = rng.integers(-32768, 32767, (n, 8), dtype=np.int16)
    else:
        phase = np.arange(8) if data == "phase-shifted" else np.zeros(8)
        x = (200 * np.sin(np.arange(n)[:, None] / 3000 + phase) + rng.integers(-3, 4, (n, 8))).astype(np.int16)
    Rec.save(x, subject=1, session="pre")
    lazy = Rec.load(subject=1, session="pre", lazy=True).data
    assert lazy.chunks == (65536, 8) and len(set(lazy.manifest.oids)) == 5
    first = project.store.path_of(lazy.manifest.oid_at((0, 0))).read_bytes()[:4]
    assert first == {"phase-shifted": b"\x50\x2a\x4d\x18", "in-phase": b"\x28\xb5\x2f\xfd", "noise": b"chun"}[data]
    np.testing.assert_array_equal(Rec.load(subject=1, session="pre").data, x)
    for rows, cols in ((slice(65000, 140000), slice(None)), (slice(1, 299_999), slice(3, 5)),
                       (slice(262_144, None), 2)):
        np.testing.assert_array_equal(lazy[rows, cols], x[rows, cols])
    bad = lazy.manifest.oid_at((2, 0))
    path = project.store.path_of(bad)
    os.chmod(path, 0o644)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(ChunkReadError, match=r"chunk \[2, 0\]"):
        Rec.load(subject=1, session="pre")
    np.testing.assert_array_equal(lazy[:131072], x[:131072])  # the others still read


def test_a_lazy_value_collected_by_gc_while_in_hand_says_so(project):
    """Loaded lazily, its records deleted and collected: reading a chunk then fails naming
    the chunk, and says the likely cause (a gc after the delete) besides damage."""
    Rec.save(recording(), subject=1, session="pre")
    r = Rec.load(subject=1, session="pre", lazy=True)
    Rec.delete(subject=1, session="pre")
    collect_garbage(project, grace_seconds=0)
    with pytest.raises(ChunkReadError, match=r"chunk \[0, 0\].*missing.*gc has collected it"):
        r.data[0:10, 0]


class _ReadLog(LocalObjectStore):
    """A real store that also notes the prefetch hints it is given and the files it reads ahead."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.hinted: list[str] = []
        self.read: list[str] = []
        self.direct: list[bool] = []

    def prefetch(self, oid: str) -> None:
        self.hinted.append(oid)
        super().prefetch(oid)

    def read_stored(self, oid: str, buffer, *, direct: bool = True):
        self.read.append(oid)
        self.direct.append(direct)
        return super().read_stored(oid, buffer, direct=direct)


def test_a_whole_read_reads_every_chunk_file_ahead_and_a_few_chunks_are_hinted(tmp_path):
    """A whole read of many chunks reads each chunk's file once, apart from decoding it (on
    reader threads, ahead); a read of a few chunks hints them to the store instead. A chunk
    that is gone is read the ordinary way, and the read names it."""
    store = _ReadLog(tmp_path / "objects")
    x = recording(n=20_000)
    oid = store.put_value(x)
    manifest = store.open_value(oid).manifest
    chunks = [manifest.oid_at(i) for i in manifest.indices()]
    assert len(chunks) > 8
    np.testing.assert_array_equal(store.get_value(oid), x)
    assert sorted(store.read) == sorted(chunks) and store.hinted == []
    lazy = store.open_value(oid)
    np.testing.assert_array_equal(lazy[0:1000], x[0:1000])  # 4 chunks of 256 rows
    assert sorted(store.hinted) == sorted(chunks[:4]) and len(store.read) == len(chunks)
    missing = manifest.oid_at((3, 0))
    os.chmod(store.path_of(missing), 0o644)
    os.unlink(store.path_of(missing))
    with pytest.raises(ChunkReadError, match=r"chunk \[3, 0\].*missing"):
        store.get_value(oid)


@pytest.mark.parametrize("cached", [True, False], ids=["page-cache", "disk"])
@pytest.mark.parametrize("data", ["phase-shifted", "in-phase", "noise"])
def test_chunk_files_read_ahead_decode_to_the_array_and_a_bad_one_is_named(tmp_path, data, cached, monkeypatch):
    """Chunks of 1 MB stored shuffled, zstd or raw, their files read ahead of the decoding
    (from the page cache, or from the disk past it), decode to the array, edge chunk too. A
    damaged one fails the whole read naming its index and oid; the others stay readable."""
    from scistack.objects import chunked

    monkeypatch.setattr(chunked, "_DIRECT_FROM", 0)  # (a read as big as the machine's memory)
    set_chunking(threshold=2 << 20, chunk_bytes=1 << 20)
    n, rng = 600_000, np.random.default_rng(7)
    if data == "noise":
        x = rng.integers(-32768, 32767, (n, 8), dtype=np.int16)
    else:
        phase = np.arange(8) if data == "phase-shifted" else np.zeros(8)
        x = (200 * np.sin(np.arange(n)[:, None] / 3000 + phase) + rng.integers(-3, 4, (n, 8))).astype(np.int16)
    store = _ReadLog(tmp_path / "objects")
    oid = store.put_value(x)
    manifest = store.open_value(oid).manifest
    assert manifest.chunks == (65536, 8) and len(set(manifest.oids)) == 10
    first = store.path_of(manifest.oids[0]).read_bytes()[:4]
    assert first == {"phase-shifted": b"\x50\x2a\x4d\x18", "in-phase": b"\x28\xb5\x2f\xfd", "noise": b"chun"}[data]
    if not cached:
        evict(store.path_of(o) for o in manifest.oids)
    got = store.get_value(oid)
    np.testing.assert_array_equal(got, x)
    assert sorted(store.read) == sorted(manifest.oids)
    bad = manifest.oid_at((2, 0))
    path = store.path_of(bad)
    os.chmod(path, 0o644)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    if not cached:
        evict([path])
    with pytest.raises(ChunkReadError, match=r"chunk \[2, 0\]") as caught:
        store.get_value(oid)
    assert caught.value.index == (2, 0) and caught.value.oid == bad and bad in str(caught.value)
    lazy = store.open_value(oid)
    np.testing.assert_array_equal(lazy[:131072], x[:131072])  # the others still read
    np.testing.assert_array_equal(lazy[196608:], x[196608:])


def test_only_a_whole_read_bigger_than_a_quarter_of_memory_goes_past_the_page_cache(tmp_path, monkeypatch):
    """Past the page cache, every load of an array went to the disk again, however often a
    script ran: only a read bigger than a quarter of the machine's memory asks for that."""
    from scistack.objects import chunked

    assert chunked._DIRECT_FROM >= (1 << 30) // 4  # (a quarter of any machine this runs on)
    store = _ReadLog(tmp_path / "objects")
    x = recording(n=20_000)
    oid = store.put_value(x)
    chunks = len(store.open_value(oid).manifest.oids)
    for direct_from, direct in ((1 << 40, False), (0, True)):
        monkeypatch.setattr(chunked, "_DIRECT_FROM", direct_from)
        store.direct.clear()
        np.testing.assert_array_equal(store.get_value(oid), x)
        assert store.direct == [direct] * chunks


def cached_pages(path) -> int:
    """How many of a file's pages are in the page cache (`mincore` over a mapping of it)."""
    import ctypes
    import mmap

    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mapped:
        address = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
        vector = ctypes.create_string_buffer(-(-size // mmap.PAGESIZE))
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vector) == 0, ctypes.get_errno()
    return sum(byte & 1 for byte in vector.raw)


def _noise_in_chunks(tmp_path, chunks: int, chunk_bytes: int):
    """A store holding `chunks` incompressible chunks of `chunk_bytes` (stored raw)."""
    set_chunking(threshold=chunk_bytes // 2, chunk_bytes=chunk_bytes)
    x = np.random.default_rng(3).integers(-32768, 32767, (chunks * chunk_bytes // 16, 8), dtype=np.int16)
    store = _ReadLog(tmp_path / "objects")
    oid = store.put_value(x)
    files = [store.path_of(o) for o in store.open_value(oid).manifest.oids]
    assert len(files) == chunks and store.path_of(oid).exists()
    return store, oid, x, files


def _evicted(files) -> None:
    evict(files)
    if any(cached_pages(f) for f in files):
        pytest.skip("this file system keeps pages posix_fadvise(DONTNEED) drops elsewhere (tmpfs?)")


@pytest.mark.parametrize("asked_by", ["cachestat", "mincore"])
def test_a_whole_read_past_the_page_cache_leaves_chunk_files_not_cached_out_of_it(tmp_path, monkeypatch, asked_by):
    """A read past the page cache tested each file with a cache-only read (`RWF_NOWAIT`),
    which failed on a file not cached but first started the kernel's readahead of it: the
    chunk was read from disk twice, into the cache and past it. Now nothing is read into
    the cache: asked by `cachestat`, else (an older kernel) by `mincore`."""
    from scistack.objects import chunked, local, pagecache

    if not (local._DIRECT and local._NOWAIT):
        pytest.skip("this platform has no O_DIRECT or RWF_NOWAIT reads")
    if asked_by == "mincore":
        monkeypatch.setattr(pagecache, "_has_cachestat", False)
    monkeypatch.setattr(chunked, "_DIRECT_FROM", 0)  # (a read as big as the machine's memory)
    store, oid, x, files = _noise_in_chunks(tmp_path, 8, 1 << 20)
    _evicted(files)
    np.testing.assert_array_equal(store.get_value(oid), x)
    assert store.direct == [True] * 8
    deadline = time.monotonic() + 0.5  # (readahead starts with the probe: half a file at once, all of it ~0.1 s later)
    while time.monotonic() < deadline:
        assert [cached_pages(f) for f in files] == [0] * 8
        time.sleep(0.05)


def test_a_read_past_the_page_cache_copies_a_file_wholly_cached_and_reads_any_other_from_disk(tmp_path, monkeypatch):
    """A file wholly in the page cache is copied from there; one not cached, or cached only
    in part, is read from the disk once (`O_DIRECT`); the bytes are the file's each time."""
    from scistack.objects import local

    if not (local._DIRECT and local._NOWAIT):
        pytest.skip("this platform has no O_DIRECT or RWF_NOWAIT reads")
    store, oid, x, files = _noise_in_chunks(tmp_path, 1, 4 << 20)
    direct: list[str] = []
    read_direct = local._read_direct
    monkeypatch.setattr(local, "_read_direct", lambda path, *rest: direct.append(path) or read_direct(path, *rest))
    chunk, = store.open_value(oid).manifest.oids
    buffer = np.frombuffer(mmap.mmap(-1, (5 << 20)), dtype=np.uint8)
    whole = files[0].read_bytes()
    pages = -(-len(whole) // mmap.PAGESIZE)
    assert cached_pages(files[0]) == pages
    assert bytes(store.read_stored(chunk, buffer)) == whole and direct == []
    _evicted(files)
    assert bytes(store.read_stored(chunk, buffer)) == whole and direct == [str(files[0])]
    with open(files[0], "rb") as f:  # (its first half cached, its second dropped)
        f.read()
        os.posix_fadvise(f.fileno(), len(whole) // 2 // mmap.PAGESIZE * mmap.PAGESIZE, 0, os.POSIX_FADV_DONTNEED)
    assert 0 < cached_pages(files[0]) < pages
    assert bytes(store.read_stored(chunk, buffer)) == whole and len(direct) == 2


def test_chunk_files_read_ahead_where_the_system_has_no_direct_or_cache_only_reads(tmp_path, monkeypatch):
    """Without `O_DIRECT` and `RWF_NOWAIT` (another platform, a file system without them)
    the files read ahead are read the ordinary way, through the page cache."""
    from scistack.objects import local

    monkeypatch.setattr(local, "_DIRECT", 0)
    monkeypatch.setattr(local, "_NOWAIT", 0)
    store = _ReadLog(tmp_path / "objects")
    x = recording(n=20_000)
    oid = store.put_value(x)
    evict(store.path_of(o) for o in store.open_value(oid).manifest.oids)
    np.testing.assert_array_equal(store.get_value(oid), x)
    assert len(store.read) == len(store.open_value(oid).manifest.oids)
