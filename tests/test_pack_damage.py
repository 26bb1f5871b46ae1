"""A damaged pack index (truncated, bad magic, a flipped byte) is named, leaves the other packs
readable, and `scistack fsck --repair` rebuilds it from its self-describing pack."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from scistack import BaseVariable
from scistack.cli import main
from scistack.database import configure_database
from scistack.errors import ObjectNotFoundError, ScistackError
from scistack.fsck import fsck


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
    pack.write_bytes(pack.read_bytes()[:-3])
    db = reopen(project)
    try:
        report = fsck(db, repair=True)
        assert any(p.kind == "pack-index" and "not repaired" in p.detail for p in report.problems)
        with pytest.raises(ScistackError):
            PackedA.load(subject=1, session="pre")
    finally:
        db.close()
