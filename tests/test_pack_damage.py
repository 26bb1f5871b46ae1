"""A damaged pack index (truncated, bad magic, a flipped byte) is named, leaves the other packs
readable, and `scistack fsck --repair` rebuilds it from its self-describing pack."""

from __future__ import annotations

import os
import struct
import subprocess
import textwrap

import blake3
import numpy as np
import pytest
from click.testing import CliRunner

from scistack import BaseVariable
from scistack.cli import main
from scistack.database import configure_database
from scistack.errors import CorruptObjectError, ObjectNotFoundError, ScistackError
from scistack.fsck import fsck
from scistack.gc import collect_garbage

from .conftest import PYTHON


class PackedA(BaseVariable):
    pass


class PackedB(BaseVariable):
    pass


def two_packs(project):
    """Two batches, so two packs; returns the index file of the first."""
    with project.batch():
        for i in range(5):
            PackedA.save(float(i), subject=i, session="pre")
    first = sorted((project.store.root / "pack").glob("pack-*.idx"))
    with project.batch():
        for i in range(5):
            PackedB.save(float(i) + 0.5, subject=i, session="pre")
    return first[0]


def damage(path, how):
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[:-5]
    elif how == "magic":
        data[0] ^= 0xFF
    elif how == "flipped":
        data[16 + 3] ^= 0x01  # inside the first entry's oid
    path.write_bytes(bytes(data))


def reopen(project):
    project.close()
    return configure_database(project.path)


@pytest.mark.parametrize("how", ["truncated", "magic", "flipped"])
def test_a_damaged_index_is_named_and_repaired(project, how):
    idx = two_packs(project)
    damage(idx, how)
    db = reopen(project)
    try:
        assert sorted(v.data for v in PackedB.load_all()) == [0.5, 1.5, 2.5, 3.5, 4.5]  # intact pack
        if how != "flipped":
            with pytest.raises(ObjectNotFoundError, match=f"{idx.name}.*fsck --repair"):
                PackedA.load(subject=1, session="pre")
        report = fsck(db)
        named = [p for p in report.problems if p.kind == "pack-index"]
        assert len(named) == 1 and idx.name in named[0].detail
        result = CliRunner().invoke(main, ["--db", str(db.path), "fsck", "--repair"])
        assert result.exit_code == 0, result.output
        assert f"rebuilt {idx.name}" in result.output
        assert fsck(db).ok
        assert sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        db.close()


def test_an_index_rebuilt_from_its_pack_is_byte_identical(project):
    idx = two_packs(project)
    before = idx.read_bytes()
    damage(idx, "truncated")
    db = reopen(project)
    try:
        assert fsck(db, repair=True).ok
        assert idx.read_bytes() == before
    finally:
        db.close()


def test_a_pack_too_damaged_to_rebuild_is_reported_not_raised(project):
    idx = two_packs(project)
    damage(idx, "magic")
    pack = idx.with_suffix(".pack")
    os.chmod(pack, 0o644)
    data = bytearray(pack.read_bytes())
    data[0] ^= 0xFF  # not a pack any more: nothing to rebuild from
    pack.write_bytes(bytes(data))
    db = reopen(project)
    try:
        report = fsck(db, repair=True)
        assert any(p.kind == "pack-index" and "not repaired" in p.detail for p in report.problems)
        with pytest.raises(ScistackError):
            PackedA.load(subject=1, session="pre")
    finally:
        db.close()


def test_a_pack_cut_short_loses_only_its_cut_record(project):
    """A pack missing its last bytes: its index's entry for the cut record points past its end.
    That entry only is left out (the whole index had been refused, every object of the pack
    lost), fsck names the pack, and --repair rebuilds its index from the complete records
    (it had refused, pointing back at itself), so fsck then names the one lost value."""
    idx = two_packs(project)
    pack = idx.with_suffix(".pack")
    os.chmod(pack, 0o644)
    pack.write_bytes(pack.read_bytes()[:-3])
    db = reopen(project)
    try:
        loaded = {}
        for i in range(5):
            try:
                loaded[i] = PackedA.load(subject=i, session="pre").data
            except ScistackError:
                pass
        assert len(loaded) == 4 and all(value == float(i) for i, value in loaded.items())
        named = [p for p in fsck(db).problems if p.kind == "pack-index"]
        assert len(named) == 1 and idx.name in named[0].detail and "outside" in named[0].detail
        report = fsck(db, repair=True)
        assert f"rebuilt {idx.name} from its pack (4 objects)" in " ".join(report.repaired)
        lost = [p for p in fsck(db).problems]
        assert [p.kind for p in lost] == ["missing-ref-object"]
        assert sorted(v.data for v in PackedB.load_all()) == [0.5, 1.5, 2.5, 3.5, 4.5]
    finally:
        db.close()


@pytest.mark.parametrize("record", [0, 2])
def test_a_damaged_record_head_inside_a_whole_pack_is_not_taken_for_a_cut(project, record):
    """One record head's length flipped inside a whole pack (its index intact): every object
    still reads through the index, each verified. fsck --repair took the long length for a
    cut pack and rebuilt the index from the heads before it, losing every object from there
    on (all 5 for the first record); the rebuild is refused now, as before the cut rule, and
    every value still loads."""
    idx = two_packs(project)
    pack = idx.with_suffix(".pack")
    entries = sorted((int(offset), int(length)) for _, offset, length in
                     struct.iter_unpack("<32sQQ", idx.read_bytes()[16:]))
    head = entries[record][0] - 8  # the record's length field: the 8 bytes before its stored bytes
    os.chmod(pack, 0o644)
    data = bytearray(pack.read_bytes())
    data[head + 5] ^= 0x01  # a length of about 2**40
    pack.write_bytes(bytes(data))
    db = reopen(project)
    try:
        assert sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
        report = fsck(db, repair=True)
        assert not any(idx.name in line and "rebuilt" in line for line in report.repaired)
        assert sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        db.close()
    db = configure_database(project.path)
    try:
        assert sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        db.close()


def flip_entry(idx, row, field):
    """Flip the lowest bit of one entry's offset or length in a pack index."""
    os.chmod(idx, 0o644)
    data = bytearray(idx.read_bytes())
    data[16 + 48 * row + {"offset": 32, "length": 40}[field]] ^= 0x01
    idx.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["offset", "length", "index-truncated"])
def test_gc_leaves_a_pack_whose_index_is_damaged_whole(project, how):
    """gc's repack of a pack (a value in it deleted) read each kept object at its index entry
    unchecked: with one entry's offset or length flipped it wrote the wrong bytes as that
    object and removed the pack, and fsck --repair could only set the garbage aside (the value
    lost; without the gc, the rebuilt index served all). A pack whose index is unreadable but
    named by the multi-pack index was removed with every object in it (a repack asked to drop
    an object the multi-pack index finds there: its own index listed nothing to keep). Now
    the pack is left whole, and fsck --repair then serves every value."""
    with project.batch():
        for i in range(20):
            PackedA.save(np.arange(40.0) + i, subject=i, session="pre")
    project.store.packs.consolidate()  # (gc writes it too: the doomed value is found through it)
    [idx] = (project.store.root / "pack").glob("pack-*.idx")
    oids = {i: PackedA.load(subject=i, session="pre").oid for i in range(20)}
    rows = sorted(oids.values())
    if how == "index-truncated":
        damage(idx, "truncated")
    else:
        flip_entry(idx, 7, how)
    doomed = next(i for i, oid in oids.items() if oid != rows[7])
    db = reopen(project)
    try:
        PackedA.delete(subject=doomed, session="pre")
        if how == "index-truncated":  # (gc lists no object of the pack: its repack, asked directly)
            assert db.store.packs.remove({oids[doomed]}) == set()
        else:
            collect_garbage(db, grace_seconds=0)
        report = fsck(db, repair=True)
        assert any(f"rebuilt {idx.name}" in line for line in report.repaired)
        assert fsck(db).ok
        for i in range(20):
            if i != doomed:
                assert list(PackedA.load(subject=i, session="pre").data) == list(np.arange(40.0) + i)
        collect_garbage(db, grace_seconds=0)  # repaired: the repack goes ahead
        assert not db.store.contains(oids[doomed]) and fsck(db).ok
        assert all(PackedA.load(subject=i, session="pre").data[0] == i for i in range(20) if i != doomed)
    finally:
        db.close()


def test_gc_says_which_pack_it_left_whole_and_how_to_repair_it(project):
    """A pack gc's repack left whole (its index does not match its records) was only a log
    warning: `scistack gc` said it deleted what it could, and the unreachable objects of that
    pack stayed unexplained. Its summary (and `collect_garbage`'s stats) now name the pack
    and `scistack fsck --repair`."""
    with project.batch():
        for i in range(6):
            PackedA.save(np.arange(40.0) + i, subject=i, session="pre")
    [idx] = (project.store.root / "pack").glob("pack-*.idx")
    flip_entry(idx, 3, "offset")
    db = reopen(project)
    try:
        PackedA.delete(subject=1, session="pre")
        stats = collect_garbage(db, grace_seconds=0)
        assert stats.packs_left_whole == (idx.stem,)
        PackedA.delete(subject=2, session="pre")
        result = CliRunner().invoke(main, ["--db", str(db.path), "gc", "--prune", "now"])
        assert result.exit_code == 0, result.output
        assert "left 1 pack(s) whole" in result.output and idx.stem in result.output
        assert "scistack fsck --repair" in result.output
        assert fsck(db, repair=True).repaired
        assert collect_garbage(db, grace_seconds=0).packs_left_whole == ()
    finally:
        db.close()


def test_merging_packs_never_copies_a_record_its_damaged_index_misplaces(project):
    """A merge checks each source's entries against its record heads: a pack whose index has a
    flipped offset is left out of the merge (and whole), the others are merged."""
    first = two_packs(project)
    with project.batch():
        for i in range(5):
            PackedB.save(float(i) + 10.5, subject=i, session="post")
    flip_entry(first, 2, "offset")
    db = reopen(project)
    try:
        stats = db.store.packs.merge_small()
        assert stats.packs_merged == 2 and first.exists()
        assert fsck(db, repair=True).repaired and fsck(db).ok
        assert sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert sorted(v.data for v in PackedB.load_all()) == [0.5, 1.5, 2.5, 3.5, 4.5, 10.5, 11.5, 12.5, 13.5, 14.5]
    finally:
        db.close()


def test_a_multi_pack_index_written_from_a_damaged_index_is_rewritten_when_that_is_repaired(project):
    """The multi-pack index written (gc, a merge) while one pack's index had a flipped offset
    kept that offset: after fsck --repair rebuilt the pack's index the object stayed missing
    for ever (gc refused, fsck advised deleting an intact value). Rebuilding a pack's index
    now writes the multi-pack index anew when it names that pack, and fsck compares the
    multi-pack index's entries with the records in the packs, as it does each pack's."""
    from scistack.objects.pack import rebuild_index

    first = two_packs(project)
    oids = [r.oid for r in project.index.records("PackedA")]
    flip_entry(first, 2, "offset")
    db = reopen(project)
    try:
        assert db.store.packs.consolidate()  # as gc does, from the damaged index
        assert fsck(db, repair=True).repaired
        db = reopen(db)
        assert all(db.store.contains(oid) for oid in oids)
        assert fsck(db).ok and sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
        # a pack index rebuilt behind fsck's back (not through `PackSet.rebuild`) after an older
        # scistack wrote the multi-pack index from it damaged: fsck names the stale multi-pack
        # index and --repair writes it anew
        flip_entry(first, 3, "offset")
        db = reopen(db)
        write_stale_midx(first.parent)
        rebuild_index(first.parent, first.stem)
        db = reopen(db)
        named = [p for p in fsck(db).problems if p.kind == "pack-index"]
        assert len(named) == 1 and "multi-pack-index" in named[0].detail and "does not match" in named[0].detail
        fsck(db, repair=True)
        db = reopen(db)
        assert fsck(db).ok and all(db.store.contains(oid) for oid in oids)
    finally:
        db.close()


def write_stale_midx(directory):
    """A multi-pack index copied unchecked from every pack's index, as scistack wrote it
    before it checked each entry against its record head."""
    from scistack.objects.midx import write_midx
    from scistack.objects.pack import _Index

    indexes = [_Index(path.stem, path) for path in sorted(directory.glob("pack-*.idx"))]
    write_midx(directory, [i.name for i in indexes], np.concatenate([i.prefixes() for i in indexes]),
               np.concatenate([np.full(len(i.entries), n, np.uint32) for n, i in enumerate(indexes)]),
               np.concatenate([i.entries["offset"] for i in indexes]),
               np.concatenate([i.entries["length"] for i in indexes]))
    for index in indexes:
        index.close()


def test_the_multi_pack_index_never_copies_an_entry_that_misplaces_its_record(project):
    """An entry whose flipped offset stays inside its pack passes the index's range check; the
    multi-pack index copied it, and kept it after fsck --repair had rebuilt that pack's index
    (the object hidden until fsck named the multi-pack index too). A pack whose index does not
    match its record heads is now left out of the multi-pack index (searched through its own
    index, as before); fsck names that index only, and after --repair every value loads."""
    first = two_packs(project)
    flip_entry(first, 2, "offset")
    db = reopen(project)
    try:
        packs = db.store.packs
        assert packs.consolidate()
        midx = packs._merged[0]
        assert midx is not None and midx.packs == [p.stem for p in sorted(first.parent.glob("pack-*.idx"))
                                                   if p != first]
        assert packs._midx_problem(midx) is None
        named = [p for p in fsck(db).problems if p.kind == "pack-index"]
        assert len(named) == 1 and first.name in named[0].detail, named
        assert fsck(db, repair=True).repaired and fsck(db).ok
        db = reopen(db)
        assert fsck(db).ok
        assert sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert sorted(v.data for v in PackedB.load_all()) == [0.5, 1.5, 2.5, 3.5, 4.5]
    finally:
        db.close()


def test_a_pack_left_out_of_the_multi_pack_index_for_its_damaged_index_does_not_rewrite_it(project, monkeypatch):
    """It stays among the packs left out: counted towards `MIDX_AFTER`, every look at the
    folder had written the multi-pack index anew."""
    from scistack.objects import pack

    first = two_packs(project)
    flip_entry(first, 2, "offset")
    monkeypatch.setattr(pack, "MIDX_AFTER", 4)
    db = reopen(project)
    try:
        db.store.packs.refresh()  # 10 objects left out: written, without the damaged pack
        assert midx_of(db).exists()
        written = midx_of(db).stat()
        for _ in range(2):
            db.store.packs.look_again()
            now = midx_of(db).stat()
            assert (now.st_ino, now.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # not replaced
    finally:
        db.close()


# -- the multi-pack index (objects/midx.py) ---------------------------------------------------
def midx_of(project):
    return project.store.root / "pack" / "multi-pack-index"


def test_the_multi_pack_index_serves_every_packed_object_and_packs_written_since(project):
    two_packs(project)
    assert project.store.packs.consolidate() and midx_of(project).exists()
    with project.batch():  # a third pack, not in the multi-pack index
        for i in range(5):
            PackedB.save(float(i) + 10.5, subject=i, session="post")
    db = reopen(project)
    try:
        packs = db.store.packs
        packs.refresh()
        midx, extras = packs._merged[0], packs._merged[1]
        assert midx is not None and len(midx.packs) == 2 and len(extras) == 1  # mapped, merged
        assert sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert sorted(v.data for v in PackedB.load_all(session="post")) == [10.5, 11.5, 12.5, 13.5, 14.5]
        assert fsck(db).ok
    finally:
        db.close()


def test_the_multi_pack_index_is_written_once_enough_objects_are_left_out(project, monkeypatch):
    from scistack.objects import pack

    monkeypatch.setattr(pack, "MIDX_AFTER", 8)
    two_packs(project)  # 10 packed objects: the next look at the packs writes the index
    db = reopen(project)
    try:
        PackedA.load(subject=2, session="pre")
        assert midx_of(db).exists() and db.store.packs._merged[0].count >= 10
    finally:
        db.close()


def test_a_multi_pack_index_naming_a_removed_pack_still_serves_the_others(project):
    """A pack it names is gone (gc's repack, a merge): its entries are skipped, the other
    packs' are used, and nothing is read from a pack that is not there (all packs' indexes
    merged in memory in every process, until it is written anew, had cost seconds at 36k
    packs)."""
    first = two_packs(project)  # PackedA's pack
    project.store.packs.consolidate()
    db = reopen(project)
    try:
        packs = db.store.packs
        gone = {o for o in packs._pack_oids(first.stem)}
        packs.remove(gone)  # as gc's repack does
        midx = packs._merged[0]
        assert midx is not None and first.stem in midx.packs and packs._gone == {first.stem}
        assert packs._merged[1] == []  # the other pack is served by it, not by its own index
        assert sorted(v.data for v in PackedB.load_all()) == [0.5, 1.5, 2.5, 3.5, 4.5]
        assert all(packs.peek(oid) is None for oid in gone)
    finally:
        db.close()


@pytest.mark.parametrize("how", ["prefix", "offset", "truncated"])
def test_a_damaged_multi_pack_index_hides_nothing_and_is_rebuilt(project, how):
    two_packs(project)
    project.store.packs.consolidate()
    path = midx_of(project)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    head = 24 + 32 * 2  # magic, counts, two pack names
    if how == "prefix":
        data[head + 8 * 3] ^= 0x40  # the 4th smallest prefix
    elif how == "offset":
        data[head + 12 * 10 + 8 * 2] ^= 0x01  # the 3rd entry's offset
    else:
        data = data[:-7]
    path.write_bytes(bytes(data))
    db = reopen(project)
    try:
        assert sorted(v.data for v in PackedA.load_all()) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert sorted(v.data for v in PackedB.load_all()) == [0.5, 1.5, 2.5, 3.5, 4.5]
        named = [p for p in fsck(db).problems if p.kind == "pack-index"]
        if how == "truncated":  # not readable as an index at all: never used, nothing to name
            assert named == []
            return
        assert len(named) == 1 and "multi-pack-index" in named[0].detail
        assert fsck(db, repair=True).problems == [] or fsck(db).ok
        assert fsck(db).ok
    finally:
        db.close()


def test_get_many_reads_every_packed_loose_and_buffered_object_as_get_does(project):
    """The bulk read (the views' inline step, load_all) searches the multi-pack index and the
    packs written since at once; a damaged packed object is that object's error alone."""
    two_packs(project)
    assert project.store.packs.consolidate()
    with project.batch():  # a third pack, outside the multi-pack index
        for i in range(5):
            PackedB.save(float(i) + 10.5, subject=i, session="post")
    PackedA.save(99.5, subject=9, session="loose")  # outside a batch: a loose object
    oids = [r.oid for var in ("PackedA", "PackedB") for r in project.index.records(var)]
    oids.sort(key=lambda oid: project.store.packs.locate(oid) is None)  # the loose one last
    assert project.store.packs.locate(oids[-1]) is None and project.store.packs.locate(oids[-2])
    name, offset, length = project.store.packs.locate(oids[0])
    pack = project.store.root / "pack" / f"{name}.pack"
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as handle:  # the last payload byte of the first object
        handle.seek(offset + length - 1)
        last = handle.read(1)
        handle.seek(offset + length - 1)
        handle.write(bytes([last[0] ^ 0x01]))
    db = reopen(project)
    try:
        with db.batch():
            asked = [*oids, db.store.put_value(123.5), "0" * 64]  # one still in the batch's buffer
            got = db.store.get_many(asked)
        want = []
        for oid in asked:
            try:
                obj = db.store.get(oid)
                want.append((obj.kind, bytes(obj.payload)))
            except Exception as exc:  # noqa: BLE001 - compared with get_many's
                want.append(type(exc))
        assert [type(o) if isinstance(o, Exception) else (o.kind, bytes(o.payload)) for o in got] == want
        assert isinstance(got[0], CorruptObjectError) and got[0].oid == oids[0]
        assert isinstance(got[-1], ObjectNotFoundError)
        assert sum(isinstance(o, Exception) for o in got) == 2 and len(oids) == 16 and got[-2].kind == "json"
        small = db.store.get_many(asked, small_only=True)  # packed ones only: the rest is left unread
        assert [o is None for o in small] == [db.store.packs.locate(oid) is None for oid in asked]
        assert [bytes(o.payload) for o in small[1:-3]] == [bytes(o.payload) for o in got[1:-3]]
        stored = db.store.get_many_stored(asked)  # the views' bulk path: verified bytes or None
        assert stored[0] is None  # the damaged one is left to get_many, which names it
        assert [d is None for d in stored[1:]] == [o is None for o in small[1:]]
        for oid, data, obj in zip(asked[1:], stored[1:], got[1:]):
            if data is not None:
                assert blake3.blake3(data).hexdigest() == oid and data.endswith(bytes(obj.payload))
    finally:
        db.close()


# -- a save beside another process's `fsck --repair` -------------------------------------------------
REPAIRER = textwrap.dedent("""
    import sys
    from scistack import configure_database
    from scistack.fsck import fsck
    db = configure_database(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    print(len(fsck(db, repair=True).repaired), flush=True)
    sys.stdin.readline()
    db.close()
""")


@pytest.fixture
def repairer(project, python_env):
    """Another process with the project open: `repair()` runs its `fsck --repair` now."""
    process = subprocess.Popen([PYTHON, "-c", REPAIRER, str(project.path)], env=python_env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == "ready"

    def repair() -> int:
        process.stdin.write("\n")
        process.stdin.flush()
        return int(process.stdout.readline())

    yield repair
    process.communicate("\n", timeout=60)


def damage_packed(project, oid):
    """Flip a byte of a packed object's record in its pack."""
    name, offset, length = project.store.packs.locate(oid)
    path = project.store.packs.directory / f"{name}.pack"
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset + length - 1)
        last = handle.read(1)
        handle.seek(offset + length - 1)
        handle.write(bytes([last[0] ^ 0x01]))


def test_a_value_saved_again_just_after_another_process_set_it_aside_is_stored_again(project, repairer):
    """A put skips an object its process knows to be packed, and had trusted a pack it made
    young less than a second before: `fsck --repair` in another process rewrote that pack
    without the damaged object meanwhile, and the save named an object no longer on disk."""
    value = np.arange(10.0)
    with project.batch():
        PackedA.save(value, subject=1, session="pre")
        PackedA.save(value + 1, subject=2, session="pre")
    oid = PackedA.load(subject=1, session="pre").oid
    damage_packed(project, oid)
    PackedA.save(value, subject=1, session="pre")  # (its oid is packed: nothing written, the pack made young)
    assert repairer() == 1  # set aside: its pack rewritten without it
    PackedA.save(value, subject=1, session="pre")  # within the second: must store it again
    np.testing.assert_array_equal(PackedA.load(subject=1, session="pre").data, value)
    assert fsck(project).ok


def test_a_loaded_value_saved_after_another_process_set_it_aside_is_stored_again(project, repairer):
    """Saving a loaded value puts it only if the store lacks it: the store had answered from a
    pack another process's `fsck --repair` had removed since, and the ref named a lost object."""
    value = np.arange(10.0)
    with project.batch():
        PackedA.save(value, subject=1, session="pre")
        PackedA.save(value + 1, subject=2, session="pre")
    loaded = PackedA.load(subject=1, session="pre")
    damage_packed(project, loaded.oid)
    assert repairer() == 1
    PackedB.save(loaded, subject=1, session="pre")
    np.testing.assert_array_equal(PackedB.load(subject=1, session="pre").data, value)
    assert fsck(project).ok  # (PackedA's ref names the good copy too)


def test_a_value_this_process_freshened_then_another_process_set_aside_is_stored_again(project, repairer):
    """`freshen` trusts for a quarter hour what this process made young (`_made_young`), but
    still asks `contains`, whose packed answer checks that the pack it knows is still there
    (`PackSet.knows`): a pack another process's `fsck --repair` rewrote without the object is
    gone, so the memory never names a set-aside object. (A guard: it held at 2c92878.)"""
    value = np.arange(10.0)
    with project.batch():
        PackedA.save(value, subject=1, session="pre")
        PackedA.save(value + 1, subject=2, session="pre")
    loaded = PackedA.load(subject=1, session="pre")
    damage_packed(project, loaded.oid)
    PackedB.save(loaded, subject=1, session="pre")  # freshened: young here for a quarter hour
    assert project.store._made_young(loaded.oid)
    assert repairer() == 1
    PackedB.save(loaded, subject=2, session="pre")
    np.testing.assert_array_equal(PackedB.load(subject=2, session="pre").data, value)
    assert fsck(project).ok
