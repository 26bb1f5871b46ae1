"""Merging small packs into larger ones (objects/pack.py `PackSet.merge_small`): by gc, and
by a writer that closes with many packs. Real files throughout; a kill at each step of a
merge (SIGKILL in a subprocess), a reader in another process while packs are merged, and a
property test over any sequence of writes, merges, interrupted merges and deletions."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import blake3
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scistack.objects.local as local_module
from scistack import BaseVariable, configure_database
from scistack.cli import main
from scistack.fsck import fsck
from scistack.gc import collect_garbage
from scistack.objects import pack as pack_module
from scistack.objects.local import LocalObjectStore
from scistack.objects.pack import REPLACES, plan_merge, rebuild_index

from .conftest import PYTHON

HERE = Path(__file__).resolve().parent


class Merged(BaseVariable):
    pass


def pack_dir(db) -> Path:
    return db.store.root / "pack"


def packs_in(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("pack-*.idx"))


def batches(db, count: int, per: int = 4, start: int = 0) -> None:
    """`count` batches of `per` saves each: a pack each."""
    for b in range(start, start + count):
        with db.batch():
            for i in range(per):
                Merged.save(np.arange(i + 3, dtype=np.float64) * b, subject=b, session=f"s{i}")


def stored_bytes(store: LocalObjectStore) -> dict[str, bytes]:
    """Every packed object's stored bytes (what a merge must copy exactly)."""
    return {oid: bytes(store.packs.read(oid)) for oid in store.packs.oids()}


def reopen(db):
    db.close()
    return configure_database(db.path)


# -- the plan -------------------------------------------------------------------------------------
def test_the_plan_merges_packs_outside_a_geometric_progression():
    assert plan_merge({"a": 10, "b": 10, "c": 10}) == ["a", "b", "c"]
    assert plan_merge({"a": 1, "b": 2, "c": 4, "d": 8}) == []  # already a progression
    assert plan_merge({"a": 1}) == []
    # the small ones, and a bigger one smaller than twice their total
    assert plan_merge({"a": 10, "b": 10, "c": 30, "d": 1000}) == ["a", "b", "c"]
    assert sorted(plan_merge({"a": 10, "b": 10, "c": 50, "d": 1000})) == ["a", "b"]
    # bounded: the smallest first
    assert plan_merge({f"p{i}": 10 + i for i in range(10)}, max_packs=3) == ["p0", "p1", "p2"]
    assert plan_merge({f"p{i}": 10 for i in range(10)}, max_bytes=35) == ["p0", "p1", "p2"]


# -- merging keeps every object, byte for byte ----------------------------------------------------
def test_merging_keeps_every_object_byte_for_byte_and_fsck_stays_clean(project):
    batches(project, 12)
    before = stored_bytes(project.store)
    assert len(packs_in(pack_dir(project))) == 12
    stats = project.store.merge_packs()
    assert (stats.packs_merged, stats.packs_written, stats.objects) == (12, 1, len(before))
    names = packs_in(pack_dir(project))
    assert len(names) == 1 and not list(pack_dir(project).glob(f"*{REPLACES}"))
    db = reopen(project)
    try:
        assert stored_bytes(db.store) == before
        assert sorted(v.data.sum() for v in Merged.load_all()) == sorted(
            float(np.arange(i + 3).sum() * b) for b in range(12) for i in range(4))
        assert fsck(db).ok
        # the merged pack describes itself as every pack does: its index rebuilt is identical
        idx = pack_dir(db) / f"{names[0]}.idx"
        written = idx.read_bytes()
        os.chmod(idx, 0o644)
        idx.unlink()
        rebuild_index(pack_dir(db), names[0])
        assert idx.read_bytes() == written
    finally:
        db.close()


def test_an_object_in_two_packs_is_merged_once(project):
    batches(project, 3)
    oid = next(iter(stored_bytes(project.store)))
    data = bytes(project.store.packs.read(oid))
    pack_module.write_pack(pack_dir(project), [(oid, data), (("ab" * 32), b"bytes 1\0x")])  # (not an object:
    # a record whose oid is not its hash, as a damaged pack could hold; a merge copies it as it lies)
    stats = project.store.merge_packs()
    assert stats.packs_merged == 4 and stats.objects == len(stored_bytes(project.store))
    index = project.store.packs
    index.refresh()
    assert len(packs_in(pack_dir(project))) == 1 and bytes(index.read(oid)) == data


def test_a_pack_whose_index_disagrees_with_it_is_not_merged(project):
    batches(project, 4)
    victim = packs_in(pack_dir(project))[1]
    idx = pack_dir(project) / f"{victim}.idx"
    data = bytearray(idx.read_bytes())
    data[16 + 40] ^= 0xFF  # the first entry's offset
    os.chmod(idx, 0o644)
    idx.write_bytes(bytes(data))
    stats = project.store.merge_packs()
    assert stats.packs_merged == 3 and victim in packs_in(pack_dir(project))  # left for fsck


@pytest.mark.parametrize("count", [0, 3, 2**40, 2**64 - 1])
def test_a_pack_whose_index_head_miscounts_its_entries_is_not_merged(project, count):
    """The head's count is read through pack.parse_idx, as every reader reads it: a merge
    that read a count of 2**40 or more had asked the disk for that many entries (MemoryError,
    OverflowError) and failed, gc with it."""
    batches(project, 4)
    victim = packs_in(pack_dir(project))[1]
    idx = pack_dir(project) / f"{victim}.idx"
    data = bytearray(idx.read_bytes())
    data[8:16] = count.to_bytes(8, "little")
    os.chmod(idx, 0o644)
    idx.write_bytes(bytes(data))
    stats = project.store.merge_packs()
    assert stats.packs_merged == 3 and victim in packs_in(pack_dir(project))  # left for fsck


def test_a_full_disk_during_a_merge_changes_nothing(project, monkeypatch):
    batches(project, 5)
    before = stored_bytes(project.store)
    names = packs_in(pack_dir(project))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pack_module, "_write_all_fd", full)
    stats = collect_garbage(project)
    assert stats.packs_merged == 0 and "No space left" in stats.merge_note
    assert packs_in(pack_dir(project)) == names and not list(pack_dir(project).glob(".tmp-*"))
    monkeypatch.undo()
    assert stored_bytes(LocalObjectStore(project.store.root)) == before


# -- gc merges, and says so ---------------------------------------------------------------------
def test_gc_merges_small_packs_and_reports_it(project):
    batches(project, 8)
    project.close()
    result = CliRunner().invoke(main, ["--db", str(project.path), "gc", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would merge 8 small packs into 1" in result.output
    assert len(packs_in(pack_dir(project))) == 8
    result = CliRunner().invoke(main, ["--db", str(project.path), "gc"])
    assert result.exit_code == 0, result.output
    assert "merged 8 small packs into 1" in result.output
    assert len(packs_in(pack_dir(project))) == 1
    db = configure_database(project.path)
    try:
        assert len(Merged.load_all()) == 32 and fsck(db).ok
        midx = db.store.packs
        midx.refresh()
        assert midx._merged[0] is not None and set(midx._merged[0].packs) == set(packs_in(pack_dir(db)))
    finally:
        db.close()


def test_gc_deletes_before_it_merges_and_a_merged_pack_keeps_its_sources_age(project):
    batches(project, 4)
    Merged.delete(subject=0)  # the first pack's values lose their names
    old = time.time_ns() - 30 * 86400 * 10**9
    for path in pack_dir(project).glob("pack-*.pack"):
        os.utime(path, ns=(old, old))
    stats = collect_garbage(project, grace_seconds=86400)
    assert stats.objects_deleted == 4 and stats.packs_merged == 3
    assert [p.stat().st_mtime_ns for p in pack_dir(project).glob("pack-*.pack")] == [old]
    assert len(Merged.load_all()) == 12 and fsck(project).ok


def test_a_merged_pack_has_its_youngest_sources_time_so_gc_grace_goes_on(project):
    """A merged pack had the time of the merge: every unreachable object in it got a new grace
    period (and a writer merging a slice a minute could keep one for ever). It has the time of
    the youngest pack it replaces now."""
    batches(project, 4)
    day, now = 86400 * 10**9, time.time_ns()
    for subject, age in enumerate((40, 30, 20, 10)):
        name, _, _ = project.store.packs.locate(Merged.load(subject=subject, session="s0").oid)
        os.utime(pack_dir(project) / f"{name}.pack", ns=(now - age * day,) * 2)
    Merged.delete(subject=1)  # 30 days old, unnamed
    assert project.store.merge_packs().packs_merged == 4
    [merged] = pack_dir(project).glob("pack-*.pack")
    assert merged.stat().st_mtime_ns == now - 10 * day
    assert collect_garbage(project, grace_seconds=5 * 86400).objects_deleted == 4
    assert len(Merged.load_all()) == 12 and fsck(project).ok


def test_a_pack_refreshed_while_it_is_merged_leaves_the_merged_pack_young(project, monkeypatch):
    """A writer may refresh a pack (re-saving one of its objects) after the merge copied it and
    before it is removed: the merged pack is then made young, never left at the older time."""
    batches(project, 3)
    old = time.time_ns() - 30 * 86400 * 10**9
    for path in pack_dir(project).glob("pack-*.pack"):
        os.utime(path, ns=(old, old))
    writer = LocalObjectStore(project.store.root)  # another writer's view of the same packs
    value = np.arange(3, dtype=np.float64)  # (batch 1's first value, in one of the packs)
    real = pack_module._write_replaces

    def a_save_meanwhile(*args, **kwargs):
        writer.put_value(value)  # its pack made young by name, still there
        return real(*args, **kwargs)

    monkeypatch.setattr(pack_module, "_write_replaces", a_save_meanwhile)
    assert project.store.merge_packs().packs_merged == 3
    [merged] = pack_dir(project).glob("pack-*.pack")
    assert merged.stat().st_mtime > time.time() - 60


# -- the bounded merge of a closing writer ---------------------------------------------------------
def test_a_closing_writer_with_many_packs_merges_some(project, monkeypatch):
    monkeypatch.setattr(local_module, "AUTO_PACK_LIMIT", 5)
    monkeypatch.setattr(local_module, "AUTO_MAX_PACKS", 4)
    batches(project, 9)
    before = stored_bytes(project.store)
    project.close()
    names = packs_in(pack_dir(project))
    assert len(names) == 9 - 4 + 1  # four merged into one: bounded
    db = configure_database(project.path)
    try:
        assert stored_bytes(db.store) == before and fsck(db).ok
        Merged.load_all()
    finally:
        db.close()  # a process that wrote nothing merges nothing
    assert packs_in(pack_dir(project)) == names


def test_a_long_run_merges_its_small_packs_as_it_goes(project, monkeypatch):
    """A for_each flushes a pack about once a second: a 10-hour run kept ~36k packs until its
    close. A writer past the limit merges a bounded slice of them mid-run (at most once every
    `RUN_MERGE_EVERY_S`: here at every flush), so the count stays bounded and nothing changes."""
    monkeypatch.setattr(local_module, "AUTO_PACK_LIMIT", 4)
    monkeypatch.setattr(local_module, "RUN_MERGE_EVERY_S", 0.0)
    counts = []
    for b in range(16):
        batches(project, 1, start=b)
        counts.append(len(packs_in(pack_dir(project))))
    assert max(counts) <= 5 and counts[4] < 5, counts  # (merged as soon as past the limit)
    assert fsck(project).ok
    assert [Merged.load(subject=b, session="s3").data.tolist() for b in (0, 15)] == \
        [[0.0] * 6, [15.0 * k for k in range(6)]]


def test_a_run_merges_no_more_often_than_its_interval(project, monkeypatch):
    monkeypatch.setattr(local_module, "AUTO_PACK_LIMIT", 4)
    batches(project, 9)  # (the interval, a minute, has not passed since the store was opened)
    assert len(packs_in(pack_dir(project))) == 9


def test_a_closing_writer_under_the_limit_merges_nothing(project, monkeypatch):
    monkeypatch.setattr(local_module, "AUTO_PACK_LIMIT", 10)
    batches(project, 9)
    project.close()
    assert len(packs_in(pack_dir(project))) == 9


def test_a_script_that_never_closes_merges_at_exit(tmp_path, python_env):
    script = (
        "import numpy as np, scistack.objects.local as l\n"
        "from scistack import BaseVariable, configure_database\n"
        "l.AUTO_PACK_LIMIT = 3\n"
        "class X(BaseVariable): pass\n"
        f"db = configure_database({str(tmp_path / 'p.duckdb')!r}, ['subject'])\n"
        "for b in range(6):\n"
        "    with db.batch():\n"
        "        X.save(np.arange(5.0) * b, subject=b)\n"
    )
    subprocess.run([PYTHON, "-c", script], env=python_env, check=True, timeout=120)
    assert len(packs_in(tmp_path / ".scistack" / "objects" / "pack")) == 1


def test_a_closing_writer_leaves_the_packs_to_a_merge_already_running(project, monkeypatch):
    monkeypatch.setattr(local_module, "AUTO_PACK_LIMIT", 2)
    batches(project, 5)
    other = pack_module.PackSet(pack_dir(project))
    with other.exclusive(wait=False) as got:  # this process holds it through another handle...
        assert got
        fd = os.open(pack_dir(project) / pack_module.MERGE_LOCK, os.O_RDWR)
        try:  # ...so an flock from a second description is refused, as another process's is
            import fcntl

            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        stats = project.store.merge_packs(auto=True)
    assert stats.skipped and len(packs_in(pack_dir(project))) == 5


# -- a kill at each step --------------------------------------------------------------------------
KILL_AT = {
    # (function of objects/pack.py, which call, before or after it runs)
    "merged pack written, nothing else": ("_write_replaces", 1, "before"),
    "replaces written, index not": ("_write_replaces", 1, "after"),
    "committed, nothing removed": ("_unlink_pack", 1, "before"),
    "two of five packs removed": ("_unlink_pack", 3, "before"),
    "every pack removed, replaces left": ("_remove_replaces", 1, "before"),
}

KILLER = """
import os, signal, sys
from scistack.objects import pack
from scistack.objects.local import LocalObjectStore
name, nth, when = sys.argv[2], int(sys.argv[3]), sys.argv[4]
real, calls = getattr(pack, name), [0]
def hooked(*args, **kwargs):
    calls[0] += 1
    if calls[0] == nth and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*args, **kwargs)
    if calls[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(pack, name, hooked)
LocalObjectStore(sys.argv[1]).merge_packs()
print("not killed")
"""


def killed_merge(project, python_env, point: str) -> tuple[dict[str, bytes], list[str]]:
    """Five packs, merged by another process killed at `point` (the project closed first);
    the packed objects' stored bytes and the packs, as they were before."""
    batches(project, 5)
    before = stored_bytes(project.store)
    sources = packs_in(pack_dir(project))
    project.close()
    name, nth, when = KILL_AT[point]
    done = subprocess.run([PYTHON, "-c", KILLER, str(project.store.root), name, str(nth), when],
                          env=python_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    return before, sources


@pytest.mark.parametrize("point", list(KILL_AT))
def test_a_merge_killed_at_any_step_loses_nothing_and_gc_finishes_it(project, python_env, point):
    before, sources = killed_merge(project, python_env, point)
    db = configure_database(project.path)
    try:
        assert stored_bytes(db.store) == before  # every object, in one pack or two
        assert len(Merged.load_all()) == 20
        assert fsck(db).ok
        stats = collect_garbage(db, grace_seconds=0)  # finishes the merge (and removes a pack
        assert stats.objects_deleted == 0  # without an index: an interrupted write)
        assert not list(pack_dir(db).glob(f"*{REPLACES}")) and not list(pack_dir(db).glob(".tmp-*"))
        left = packs_in(pack_dir(db))
        assert len(left) == 1 and not set(left) & set(sources)
        assert {p.stem for p in pack_dir(db).glob("pack-*.pack")} == set(left)
        assert stored_bytes(LocalObjectStore(db.store.root)) == before
        assert fsck(db).ok
    finally:
        db.close()


@pytest.mark.parametrize("point", [p for p in KILL_AT if p != "merged pack written, nothing else"])
def test_fsck_names_a_merge_killed_midway_and_repair_finishes_it(project, python_env, point):
    """fsck said nothing of the `.replaces` file a killed merge leaves (objects stored twice until
    the next gc or closing writer finished it): it is a note (nothing is lost, fsck stays ok),
    and `--repair` finishes the merge, or rolls it back if it was never committed."""
    before, sources = killed_merge(project, python_env, point)
    [side] = pack_dir(project).glob(f"*{REPLACES}")
    committed = (pack_dir(project) / side.name.replace(REPLACES, ".idx")).exists()
    checked = CliRunner().invoke(main, ["--db", str(project.path), "fsck"])
    assert checked.exit_code == 0, checked.output
    assert f"note: {side.name}: a merge of packs that a killed process left half done" in checked.output
    assert ("is committed and" if committed else "was never committed") in checked.output
    assert "`scistack fsck --repair`, the next gc, or a writer closing after it wrote packs finishes it" \
        in checked.output
    repaired = CliRunner().invoke(main, ["--db", str(project.path), "fsck", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert f"repaired: finished the merge of packs a killed process left half done ({side.name}): " \
        + ("5 of the 5 packs it replaces removed" if point == "committed, nothing removed" else
           "rolled back" if not committed else "") in repaired.output
    assert "note:" not in repaired.output and not side.exists()
    left = packs_in(pack_dir(project))
    assert left == ([side.name.replace(REPLACES, "")] if committed else sources)
    assert stored_bytes(LocalObjectStore(project.store.root)) == before
    again = CliRunner().invoke(main, ["--db", str(project.path), "fsck"])
    assert again.exit_code == 0 and "note:" not in again.output and "repaired:" not in again.output


def test_fsck_repair_rebuilds_a_killed_merges_damaged_index_then_finishes_it(project, python_env):
    before, sources = killed_merge(project, python_env, "committed, nothing removed")
    [side] = pack_dir(project).glob(f"*{REPLACES}")
    merged = side.name.replace(REPLACES, "")
    index = pack_dir(project) / f"{merged}.idx"
    os.chmod(index, 0o644)
    index.write_bytes(index.read_bytes()[:-5])
    checked = CliRunner().invoke(main, ["--db", str(project.path), "fsck"])
    assert checked.exit_code == 1 and f"pack-index: pack index {index}" in checked.output
    assert f"its merged pack {merged} has a damaged index; `scistack fsck --repair` rebuilds it" in checked.output
    repaired = CliRunner().invoke(main, ["--db", str(project.path), "fsck", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert f"repaired: rebuilt {merged}.idx from its pack" in repaired.output
    assert f"({side.name}): 5 of the 5 packs it replaces removed" in repaired.output
    assert packs_in(pack_dir(project)) == [merged] and not side.exists()
    assert stored_bytes(LocalObjectStore(project.store.root)) == before and set(sources).isdisjoint([merged])


def test_a_merged_pack_left_beside_the_packs_it_replaces_is_finished_by_the_next_merge(project):
    """The state a kill after the commit leaves, made by hand: the merged pack and its index
    written, `.replaces` naming the others, which are all still there."""
    batches(project, 4)
    before = stored_bytes(project.store)
    sources = packs_in(pack_dir(project))
    project.close()  # (a closing writer finishes such a merge too: made after it)
    merged = pack_module.write_pack(pack_dir(project), list(before.items()))
    (pack_dir(project) / f"{merged}{REPLACES}").write_text("".join(f"{s}\n" for s in sources))
    db = configure_database(project.path)
    try:
        assert stored_bytes(db.store) == before and fsck(db).ok
        stats = db.store.packs.merge_small(more_than=10**6)  # finishes it, merges nothing more
        assert stats.interrupted == 1 and stats.packs_written == 0
        assert packs_in(pack_dir(db)) == [merged] and stored_bytes(LocalObjectStore(db.store.root)) == before
    finally:
        db.close()


@pytest.mark.parametrize("finish", ["merge", "fsck --repair"])
def test_a_replaces_file_never_removes_a_pack_the_merged_one_does_not_hold(project, finish):
    batches(project, 3)
    sources = packs_in(pack_dir(project))
    first = LocalObjectStore(project.store.root).packs._pack_oids(sources[0])
    partial = pack_module.write_pack(pack_dir(project), [(o, bytes(project.store.packs.read(o))) for o in first[:-1]])
    (pack_dir(project) / f"{partial}{REPLACES}").write_text(f"{sources[0]}\n{sources[1]}\n")
    if finish == "merge":
        assert pack_module.PackSet(pack_dir(project)).merge_small(more_than=10**6).interrupted == 1
    else:
        assert any(f"({partial}{REPLACES}): 0 of the 2 packs it replaces removed" in line
                   for line in fsck(project, repair=True).repaired)
    assert set(sources) <= set(packs_in(pack_dir(project)))


# -- a reader in another process while packs are merged (or repacked by gc) ------------------------
@pytest.mark.parametrize("how", ["merge", "repack"])
def test_a_reader_in_another_process_reads_every_object_while_packs_are_rewritten(tmp_path, python_env, how):
    """Each pack read is found through an index read before; a pack removed in between (a
    merge, gc's repack) had made the read fail with FileNotFoundError."""
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    rng = np.random.default_rng(7)
    expected, doomed = {}, []
    for b in range(150):  # more packs than a process keeps open: most are opened per read
        store.begin_batch()
        for i in range(6):
            payload = rng.bytes(int(rng.integers(10, 3000)))
            expected[store.put("bytes", payload)] = blake3.blake3(payload).hexdigest()
        doomed.append(store.put("bytes", rng.bytes(50)))  # not read: gc's repack drops them
        store.end_batch()
    listing = tmp_path / "expected.txt"
    listing.write_text("".join(f"{o} {d}\n" for o, d in expected.items()))
    stop = tmp_path / "stop"
    reader = subprocess.Popen([PYTHON, str(HERE / "pack_merge_reader.py"), str(root), str(listing), str(stop)],
                              env=python_env, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        rewritten = 0
        for round_ in range(12):  # a few packs at a time, many times over
            if how == "merge":
                rewritten += store.packs.merge_small(max_packs=int(rng.integers(2, 30))).packs_merged
            else:
                store.delete_many(doomed[round_ * 12 : round_ * 12 + 12])
                rewritten += 12
            time.sleep(0.05)
        assert rewritten >= 100
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=120)
    reads, errors, *first = out.split(" ", 2)
    assert int(reads) > len(expected) and int(errors) == 0, first


# -- any sequence of writes, merges, interrupted merges and deletions --------------------------------
OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(1, 6), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("merge"), st.integers(2, 8), st.integers(0, 1)),
    st.tuples(st.just("interrupted"), st.integers(1, 4), st.integers(0, 1)),
    st.tuples(st.just("delete"), st.integers(1, 3), st.integers(0, 2**32 - 1)),
), min_size=1, max_size=14)


class _Killed(Exception):
    pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_every_object_stays_readable_after_any_sequence_of_writes_merges_and_deletions(ops):
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        store = LocalObjectStore(folder)
        model: dict[str, bytes] = {}
        for op, n, seed in ops:
            rng = np.random.default_rng(seed)
            if op == "write":  # a batch: new objects, and maybe one already packed elsewhere
                store.begin_batch()
                for i in range(n):
                    payload = rng.bytes(int(rng.integers(1, 5000)))
                    model[store.put("bytes", payload)] = payload
                if model and seed % 3 == 0:  # a second copy in this pack, as a writer that had not seen
                    again = sorted(model)[seed % len(model)]  # the other pack would store it
                    data = store.packs.read(again)
                    if data is not None:
                        store._buffer_object(again, bytes(data))
                store.end_batch()
            elif op == "merge":
                store.packs.merge_small(max_packs=n, fsync=bool(seed))
            elif op == "interrupted":  # a merge stopped after n unlinks (as a kill would leave it)
                real, calls = pack_module._unlink_pack, [0]

                def cut(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] > n:
                        raise _Killed
                    return real(*args, **kwargs)

                pack_module._unlink_pack = cut
                try:
                    store.packs.merge_small()
                except _Killed:
                    pass
                finally:
                    pack_module._unlink_pack = real
            elif op == "delete" and model:  # gc's repack of the packs holding them
                doomed = [o for o in sorted(model) if rng.random() < 0.3][:n]
                store.delete_many(doomed)
                for oid in doomed:
                    model.pop(oid)
            for view in (store, LocalObjectStore(folder)):  # this process, and a fresh one
                for oid, payload in model.items():
                    assert bytes(view.get(oid).payload) == payload
                assert set(model) <= set(view.iter_oids())
            assert LocalObjectStore(folder).damaged_pack_indexes() == {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
