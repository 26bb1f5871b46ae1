"""Raw files in and out of for_each (PathInput, PathOutput, checkout) and EachOf alternatives."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from scistack import (
    BaseVariable,
    EachOf,
    ForEachError,
    InputFileError,
    InvalidMetadataError,
    PathInput,
    PathOutput,
    for_each,
    why,
)
from scistack.index import key_of
from scistack.report.checkout import checkout


class RawTotal(BaseVariable):
    pass


class Doubled(BaseVariable):
    pass


class Plot(BaseVariable):
    pass


class Scaled(BaseVariable):
    pass


class Clean(BaseVariable):
    pass


def total(path):
    return float(np.loadtxt(path, delimiter=",").sum())


def double(x):
    return 2 * x


def _raw(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


RAW = {"1/s_pre.csv": "1,2\n", "1/s_post.csv": "3,4\n", "2/s_pre.csv": "5,6\n", "3/s_pre.csv": "7,8\n"}


def test_discover_lists_combinations_on_disk(project, tmp_path):
    _raw(tmp_path / "raw", {**RAW, "notes.txt": "x", "03/s_pre.csv": "0\n"})
    found = PathInput("{subject}/s_{session}.csv", root="raw/").discover()
    assert found == [{"subject": "03", "session": "pre"}, {"subject": 1, "session": "post"},
                     {"subject": 1, "session": "pre"}, {"subject": 2, "session": "pre"},
                     {"subject": 3, "session": "pre"}]


def test_a_key_found_both_as_ints_and_padded_text_warns_once_naming_the_way_out(project, tmp_path):
    """BIDS-like `sub-01` ... `sub-10` gave '01' (a str) and 10 (an int) in one key, silently
    (and 10 sorted first): a run warns once, naming the key and the values to give as text."""
    from scistack.errors import MixedKeyTypesWarning

    _raw(tmp_path / "raw", {f"sub-{s}/s_{ses}.csv": "1,2\n" for s in ("01", "02", "10") for ses in ("pre", "post")})
    spec = {"path": PathInput("sub-{subject}/s_{session}.csv", root="raw/")}
    with pytest.warns(MixedKeyTypesWarning) as caught:
        for_each(total, inputs=spec, outputs=[RawTotal], subject=[], session=[], verbose=False)
    (warned,) = [w for w in caught if w.category is MixedKeyTypesWarning]  # once, for subject only
    assert warned.filename == __file__  # the user's for_each line
    assert "give subject both zero-padded text ('01'" in str(warned.message)
    assert "for_each(..., subject=['01', '02', '10'])" in str(warned.message)
    assert "delete it first" in str(warned.message)
    RawTotal.delete(subject=10, session="pre")  # (10 the number, saved by the run that warned: text
    RawTotal.delete(subject=10, session="post")  # '10' beside it would be refused as a look-alike)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixedKeyTypesWarning)  # the way out it names: no warning
        done = for_each(total, inputs=spec, outputs=[RawTotal], subject=["01", "02", "10"], session=[],
                        verbose=False)
    assert (done.ran + done.cached, done.missing, done.failed) == (6, 0, 0)


def test_editing_one_raw_file_reruns_exactly_its_combination(project, tmp_path):
    _raw(tmp_path / "raw", RAW)
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw/")}
    first = for_each(total, inputs=spec, outputs=[RawTotal], subject=[], session=[], verbose=False)
    # 3 subjects x 2 sessions found on disk; 2/post and 3/post are not there: missing, not failed
    assert (first.ran, first.missing, first.failed) == (4, 2, 0)
    assert RawTotal.load(subject=2, session="pre").data == 11.0
    os.utime(tmp_path / "raw/1/s_pre.csv", (1, 1))  # touched, same content: nothing re-runs
    again = for_each(total, inputs=spec, outputs=[RawTotal], subject=[], session=[], verbose=False)
    assert (again.ran, again.cached) == (0, 4)
    (tmp_path / "raw/3/s_pre.csv").write_text("70,80\n")
    assert why(RawTotal, subject=3, session="pre").status == "stale"
    assert "raw/3/s_pre.csv changed" in str(why(RawTotal, subject=3, session="pre"))
    assert why(RawTotal, subject=1, session="pre").status == "current"
    edited = for_each(total, inputs=spec, outputs=[RawTotal], subject=[], session=[], verbose=False)
    assert (edited.ran, edited.cached) == (1, 3)
    assert RawTotal.load(subject=3, session="pre").data == 150.0
    record = project.get_provenance(RawTotal, subject=3, session="pre")
    assert record["inputs"]["path"]["path"] == "raw/3/s_pre.csv"


def test_a_raw_file_replaced_in_place_with_its_size_and_mtime_kept_reruns(project, tmp_path):
    """`cp -p`, `shutil.copy2`, `rsync -t --inplace` or an unzip write other bytes of the same
    size into the same inode and set the old mtime back: the hash memo, keyed by (size,
    mtime, inode) alone, served the old content's oid and the run was cached. The ctime (no
    copy can set it) is in the key."""
    import shutil

    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n"})
    _raw(tmp_path / "new", {"1/s_pre.csv": "8,9\n"})
    raw, new = tmp_path / "raw/1/s_pre.csv", tmp_path / "new/1/s_pre.csv"
    for path in (raw, new):
        os.utime(path, ns=(1_767_225_600 * 10**9, 1_767_225_600 * 10**9))
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw/")}
    run = dict(inputs=spec, outputs=[RawTotal], subject=[1], session=["pre"], verbose=False)
    assert for_each(total, **run).ran == 1
    assert RawTotal.load(subject=1, session="pre").data == 3.0
    before = os.stat(raw)
    os.chmod(raw, 0o600)  # the ctime alone changed: the content is hashed again, nothing re-runs
    assert (for_each(total, **run).ran, RawTotal.load(subject=1, session="pre").data) == (0, 3.0)
    shutil.copy2(new, raw)
    after = os.stat(raw)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert why(RawTotal, subject=1, session="pre").status == "stale"
    assert for_each(total, **run).ran == 1
    assert RawTotal.load(subject=1, session="pre").data == 17.0


def test_a_raw_file_rewritten_with_its_stat_kept_just_after_it_was_hashed_reruns(project, tmp_path):
    """Racy clean: the hash memo trusted (size, mtime, inode, ctime) taken just after the file
    was written; a same-size rewrite in the same timestamp tick (coarse clocks: FAT, NFS,
    ext4 before Linux 6.13) or through a dirty mapped page (np.memmap, made here on demand)
    keeps all four, and the old content's oid made the next run cached. A stat within 2 s of
    the file's mtime or ctime is not remembered."""
    import mmap

    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n"})
    raw = tmp_path / "raw/1/s_pre.csv"
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw/")}
    run = dict(inputs=spec, outputs=[RawTotal], subject=[1], session=["pre"], verbose=False)
    with open(raw, "r+b") as handle, mmap.mmap(handle.fileno(), 4) as mapped:
        mapped[:] = b"3,4\n"  # written through a mapping: mtime and ctime set at its first write
        assert for_each(total, **run).ran == 1
        assert RawTotal.load(subject=1, session="pre").data == 7.0
        mapped[:] = b"8,9\n"  # the page still dirty: no new mtime nor ctime (unless written back)
        assert why(RawTotal, subject=1, session="pre").status == "stale"
        assert for_each(total, **run).ran == 1
        assert RawTotal.load(subject=1, session="pre").data == 17.0


def test_the_raw_data_moved_elsewhere_stays_cached(project, tmp_path):
    """A raw file is an input by its content. The function's own read of it was also listed
    as a file it read, checked at its old path on every hit: moving the raw folder (to a
    NAS, a colleague's copy elsewhere) re-ran every combination."""
    _raw(tmp_path / "raw", RAW)
    first = for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="raw/")},
                     outputs=[RawTotal], subject=[], session=[], progress=False)
    assert first.ran == 4
    (tmp_path / "raw").rename(tmp_path / "moved")
    from tests.helpers import journal_size

    project.flush()
    journal, objects = journal_size(project), sorted(project.store.iter_oids())
    planned = for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="moved/")},
                       outputs=[RawTotal], subject=[], session=[], progress=False, dry_run=True)
    project.flush()  # the dry run takes the run's recorded-again path, and records nothing
    assert (planned.would_run, planned.cached) == (0, 4)
    assert (journal_size(project), sorted(project.store.iter_oids())) == (journal, objects)
    again = for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="moved/")},
                     outputs=[RawTotal], subject=[], session=[], progress=False)
    assert (again.ran, again.cached) == (0, 4)
    # recorded again where the files are now: status and why judge them there (they had called
    # every such value stale for good, "raw/1/s_pre.csv is gone")
    from scistack.report.status import status_grid

    assert status_grid(project).counts()["RawTotal"]["stale"] == 0
    assert why(RawTotal, subject=2, session="pre").status == "current"
    (tmp_path / "moved" / "2" / "s_pre.csv").write_text("50,60\n")
    assert why(RawTotal, subject=2, session="pre").status == "stale"
    assert "moved/2/s_pre.csv changed" in str(why(RawTotal, subject=2, session="pre"))
    edited = for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="moved/")},
                      outputs=[RawTotal], subject=[], session=[], progress=False)
    assert (edited.ran, edited.cached) == (1, 3)
    assert RawTotal.load(subject=2, session="pre").data == 110.0


def test_a_renamed_raw_folder_or_a_copy_beside_it_is_one_new_version_judged_where_it_is(project, tmp_path):
    """A run on a copy of the raw folder beside it (still in place), or on the folder renamed,
    all cache hits, names each value again once, a new version whose record names the files
    the run reads: `why` judges them there. (Keeping the ref's first record, judged by the
    cache's later one, had let a later run of another address with the same bytes, whose
    record the cache then names, call an edit of this one's file current: a renamed folder's
    files are shown under other paths, which no later record can be told apart by.)"""
    import shutil

    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "3,4\n"})

    def run(root: str):
        return for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root=root)},
                        outputs=[RawTotal], subject=[], session=[], progress=False)

    def versions() -> list[int]:
        return [len(RawTotal.list_versions(subject=s, session="pre")) for s in (1, 2)]

    assert run("raw/").ran == 2
    shutil.copytree(tmp_path / "raw", tmp_path / "copy")
    assert run("copy/").cached == 2 and versions() == [2, 2]
    (tmp_path / "copy").rename(tmp_path / "moved")
    assert (run("moved/").cached, run("moved/").cached) == (2, 2)
    assert versions() == [3, 3]
    assert why(RawTotal, subject=2, session="pre").status == "current"
    (tmp_path / "moved/2/s_pre.csv").write_text("30,40\n")
    assert "moved/2/s_pre.csv changed" in str(why(RawTotal, subject=2, session="pre"))
    assert why(RawTotal, subject=1, session="pre").status == "current"


def test_two_raw_files_with_the_same_bytes_moved_are_each_judged_where_they_are(project, tmp_path):
    """Two combinations whose raw files hold the same bytes share one call key and one cache
    entry. Once their folder moved, the run records each again; the ref of the first, kept
    (no new version), was judged by the cache entry, the second's record: an edit of the
    first's file was "current". The first's ref now names its own record."""
    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "1,2\n"})

    def run(root: str):
        return for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root=root)},
                        outputs=[RawTotal], subject=[], session=[], progress=False)

    assert (run("raw/").ran, run("raw/").ran) == (1, 0)
    (tmp_path / "raw").rename(tmp_path / "moved")
    assert run("moved/").cached == 2
    (tmp_path / "moved/1/s_pre.csv").write_text("5,5\n")
    assert "moved/1/s_pre.csv changed" in str(why(RawTotal, subject=1, session="pre"))
    assert why(RawTotal, subject=2, session="pre").status == "current"
    assert (run("moved/").ran, RawTotal.load(subject=1, session="pre").data) == (1, 10.0)


def test_a_moved_raw_file_run_apart_from_its_twin_is_judged_by_its_own_file(project, tmp_path):
    """Two raw files with the same bytes (one call key, one cache entry), their folder moved,
    run apart: subject 1, then subject 2, whose record the cache entry then names. Subject 1's
    ref had kept its first record (its files gone) and was judged by that entry, subject 2's
    record: an edit of subject 1's file was "current". Now the renamed folder's run names the
    value again with its own record, and the edit is stale."""
    from scistack.report.status import status_grid, status_summary

    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "1,2\n"})

    def run(root: str, subject: int):
        return for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root=root)},
                        outputs=[RawTotal], subject=[subject], session=["pre"], progress=False)

    assert run("raw/", 1).ran == 1
    (tmp_path / "raw").rename(tmp_path / "moved")
    assert run("moved/", 1).cached == 1
    assert run("moved/", 2).cached == 1  # (the same bytes: subject 1's files still there, its
    # record stays the cache entry, and subject 2's names its own)
    first, second = (project.index.current_at("RawTotal", key_of({"subject": s, "session": "pre"}), "{}")
                     for s in (1, 2))
    assert project.index.cache_entries_of([first.call, second.call]) == {  # (what status asks in bulk)
        first.call: first.call}
    assert why(RawTotal, subject=1, session="pre").status == "current"
    (tmp_path / "moved/1/s_pre.csv").write_text("5,5\n")
    assert "moved/1/s_pre.csv changed" in str(why(RawTotal, subject=1, session="pre"))
    assert why(RawTotal, subject=2, session="pre").status == "current"
    assert status_summary(project).counts["RawTotal"]["stale"] == 1
    assert status_grid(project).counts()["RawTotal"]["stale"] == 1
    assert (run("moved/", 1).ran, RawTotal.load(subject=1, session="pre").data) == (1, 10.0)


def test_twin_raw_files_of_a_moved_project_run_apart_stay_current(project, tmp_path, monkeypatch):
    """Two raw files with the same bytes (one call key, one cache entry) in a project moved
    elsewhere (the same shown paths), run apart: each run recorded its address again where the
    files are now and made that record the cache entry, by which status and why judge a ref
    keeping its first record: the other address's ref, its first record's files gone, flipped
    to "stale" at each run, and runs added versions. The entry of another address whose files
    are still there now stays: each value is current, stays so, adds at most one version, and
    an edit of either file is seen."""
    from scistack.report.status import status_grid

    _raw(tmp_path / "a/raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "1,2\n"})

    def run(subjects: list[int]):
        return for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="raw/")},
                        outputs=[RawTotal], subject=subjects, session=["pre"], progress=False)

    def statuses() -> list[str]:
        said = [why(RawTotal, subject=s, session="pre").status for s in (1, 2)]
        assert status_grid(project).counts()["RawTotal"]["stale"] == said.count("stale")
        return said

    monkeypatch.chdir(tmp_path / "a")
    assert (run([1, 2]).ran, statuses()) == (1, ["current", "current"])
    (tmp_path / "b").mkdir()
    (tmp_path / "a/raw").rename(tmp_path / "b/raw")
    monkeypatch.chdir(tmp_path / "b")
    assert (run([1]).cached, statuses()) == (1, ["current", "stale"])  # (subject 2: its files gone)
    for subjects in ([2], [1], [1, 2], [2], [1], [2]):
        assert run(subjects).cached == len(subjects)
        assert statuses() == ["current", "current"], subjects
    versions = [len(RawTotal.list_versions(subject=s, session="pre")) for s in (1, 2)]
    assert max(versions) <= 2
    for edited, said in ((1, ["stale", "current"]), (2, ["current", "stale"])):
        (tmp_path / f"b/raw/{edited}/s_pre.csv").write_text("5,5\n")
        assert statuses() == said
        (tmp_path / f"b/raw/{edited}/s_pre.csv").write_text("1,2\n")
    assert (run([1, 2]).cached, [len(RawTotal.list_versions(subject=s, session="pre")) for s in (1, 2)]) \
        == (2, versions)


def test_a_project_moved_back_and_forth_keeps_its_raw_files_record_and_judges_them_here(tmp_path, monkeypatch):
    """A raw file's place is its path relative to the project's folder; the absolute path is
    where this checkout found it. A project moved to another folder (as a lab project's
    checkouts on two machines hold it, tests/lab/test_lab_raw_places.py) had each run
    record every call again where the files are now (the cache entry flipping at each move),
    and `status` and `why` called every value stale before that run ("raw/1/s_pre.csv is
    gone": the recorded absolute path). Now a move records nothing again, the values stay
    current at one version, an export takes the files here, and an edit of a file here is
    seen and run."""
    import scistack.database as database_module
    from scistack import configure_database
    from scistack.report.status import status_grid

    _raw(tmp_path / "p1/raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "3,4\n"})

    def open_at(folder: str):
        current = database_module.current_database()
        if current is not None:
            current.close()
        database_module._current = None
        monkeypatch.chdir(tmp_path / folder)
        return configure_database(tmp_path / folder / "gait.duckdb", ["subject", "session"])

    def run() -> tuple[int, int]:
        done = for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="raw/")},
                        outputs=[RawTotal], subject=[1, 2], session=["pre"], progress=False)
        return done.ran, done.cached

    def statuses(db) -> list[str]:
        said = [why(RawTotal, subject=s, session="pre").status for s in (1, 2)]
        assert status_grid(db).counts()["RawTotal"]["stale"] == said.count("stale")
        return said

    def entries(db) -> list[tuple[str, str]]:
        refs = [RawTotal.load(subject=s, session="pre").record for s in (1, 2)]
        return [(r.call, db.index.cached_call(db.index.call_key_of(r.call))["call"]) for r in refs]

    try:
        db = open_at("p1")
        assert run() == (2, 0)
        first = entries(db)
        assert all(ref == entry for ref, entry in first)
        for there, here in (("p1", "p2"), ("p2", "p1"), ("p1", "p2")):
            database_module.current_database().close()
            database_module._current = None
            (tmp_path / there).rename(tmp_path / here)
            db = open_at(here)
            assert statuses(db) == ["current", "current"], here  # (it was "stale": "... is gone")
            assert run() == (0, 2)
            assert entries(db) == first, here  # (nothing recorded again: the entry had flipped)
            assert statuses(db) == ["current", "current"]
            assert [len(RawTotal.list_versions(subject=s, session="pre")) for s in (1, 2)] == [1, 1]
        # an export with its raw files copies this checkout's (it had looked at the recorded path)
        assert db.export(all_current=[RawTotal], to=tmp_path / "bundle", raw_files=True).raw_missing == []
        (tmp_path / "p2/raw/1/s_pre.csv").write_text("5,5\n")
        assert statuses(db) == ["stale", "current"]
        assert "raw/1/s_pre.csv changed" in str(why(RawTotal, subject=1, session="pre"))
        assert run() == (1, 1)
        assert RawTotal.load(subject=1, session="pre").data == 10.0
        assert statuses(db) == ["current", "current"]
    finally:
        current = database_module.current_database()
        if current is not None:
            current.close()
        database_module._current = None


def _three_twins_run_on_a_copy_and_back(project, tmp_path: Path):
    """Subjects 1, 2, 3 with raw files of the same bytes (one call key, one cache entry) run
    from raw/, then from a copy of the folder beside it, raw2/, then from raw/ again; returns
    (run, statuses, versions)."""
    import shutil

    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "1,2\n", "3/s_pre.csv": "1,2\n"})

    def run(root: str) -> tuple[int, int]:
        done = for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root=root)},
                        outputs=[RawTotal], subject=[1, 2, 3], session=["pre"], progress=False)
        return done.ran, done.cached

    def statuses() -> list[str]:
        from scistack.report.status import status_grid

        said = [why(RawTotal, subject=s, session="pre").status for s in (1, 2, 3)]
        assert status_grid(project).counts()["RawTotal"]["stale"] == said.count("stale")
        return said

    def versions() -> list[int]:
        return [len(RawTotal.list_versions(subject=s, session="pre")) for s in (1, 2, 3)]

    assert run("raw/") == (1, 2)
    shutil.copytree(tmp_path / "raw", tmp_path / "raw2")
    assert (run("raw2/"), statuses(), versions()) == ((0, 3), ["current"] * 3, [2, 2, 2])
    assert (run("raw/"), statuses()) == ((0, 3), ["current"] * 3)
    return run, statuses, versions


def test_a_twin_run_on_a_copy_and_back_is_judged_by_the_file_it_read_last(project, tmp_path):
    """The cache entry of three twins (raw files with the same bytes) named subject 3's record
    of raw/; the run on the copy raw2/ names each ref with its own record of raw2/ (the entry,
    its files still there, stays). Back on raw/, subject 3's hit was its own entry, in place:
    nothing was named again, its ref kept its record of raw2/, and status and why called an
    edit of raw/3/s_pre.csv, the file just run, "current". Its ref names the entry's record
    again now (one new version, as its twins')."""
    run, statuses, versions = _three_twins_run_on_a_copy_and_back(project, tmp_path)
    for subject in (1, 2, 3):
        (tmp_path / f"raw/{subject}/s_pre.csv").write_text("5,5\n")
        assert statuses() == ["stale" if s == subject else "current" for s in (1, 2, 3)], subject
        assert f"input path: raw/{subject}/s_pre.csv changed" in str(why(RawTotal, subject=subject, session="pre"))
        (tmp_path / f"raw/{subject}/s_pre.csv").write_text("1,2\n")
    assert (run("raw/"), statuses(), versions()) == ((0, 3), ["current"] * 3, [3, 3, 3])


def test_a_twin_run_on_a_deleted_copy_and_back_is_current(project, tmp_path):
    """As above, the copy raw2/ then deleted: subject 3's ref, still naming its record of
    raw2/, was "stale" for ever, every run from raw/ all cache hits naming nothing again."""
    import shutil

    run, statuses, versions = _three_twins_run_on_a_copy_and_back(project, tmp_path)
    shutil.rmtree(tmp_path / "raw2")
    for _ in range(2):
        assert (run("raw/"), statuses(), versions()) == ((0, 3), ["current"] * 3, [3, 3, 3])


def test_a_kept_ref_s_call_is_not_computed_again_after_fsck_drops_its_lost_entry(project, tmp_path, monkeypatch):
    """A moved project: the ref keeps its first record, and the cache entry names the record
    made where the raw files are now. That record lost, `fsck --repair` dropped the entry and
    the next run computed the call again (a new version), though the ref's own record and the
    value were whole. The entry now names the ref's record: the next run records the call
    where its files are, computing nothing, and the ref keeps its version."""
    from scistack.fsck import fsck

    _raw(tmp_path / "a/raw", {"1/s_pre.csv": "1,2\n"})

    def run() -> tuple[int, int]:
        done = for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="raw/")},
                        outputs=[RawTotal], subject=[1], session=["pre"], progress=False)
        return done.ran, done.cached

    monkeypatch.chdir(tmp_path / "a")
    assert run() == (1, 0)
    (tmp_path / "b").mkdir()
    (tmp_path / "a/raw").rename(tmp_path / "b/raw")
    monkeypatch.chdir(tmp_path / "b")
    assert run() == (0, 1)
    ref = RawTotal.load(subject=1, session="pre").record
    entry = project.index.cached_call(project.index.call_key_of(ref.call))
    assert entry["call"] != ref.call  # (kept: judged by the entry, the files where they are now)
    project.flush()
    project.store.delete(entry["call"])
    repaired = fsck(project, repair=True).repaired
    assert run() == (0, 1)  # (it was (1, 0): computed again)
    assert any("now names another record of the call" in r for r in repaired), repaired
    assert len(RawTotal.list_versions(subject=1, session="pre")) == 1
    assert why(RawTotal, subject=1, session="pre").status == "current"
    (tmp_path / "b/raw/1/s_pre.csv").write_text("5,5\n")
    assert "raw/1/s_pre.csv changed" in str(why(RawTotal, subject=1, session="pre"))
    assert run() == (1, 0)
    assert fsck(project).ok


def scaled_total(path, x):
    return x * float(np.loadtxt(path, delimiter=",").sum())


def test_a_later_record_under_the_same_shown_paths_is_judged_only_with_the_same_inputs(project, tmp_path,
                                                                                      monkeypatch):
    """One raw file read by every subject with a value saved per subject, the same at two
    subjects (one call key). Run from another folder (the same shown path, another absolute
    one: a moved project), subject 1 keeps its record; subject 2, run apart, makes its own
    record the cache entry. Subject 1 had been judged by that record (the same shown path),
    which names subject 2's value: a change of subject 1's was "current"."""
    from scistack.report.status import status_grid

    for where in ("a", "b"):
        _raw(tmp_path / where / "raw", {"calib.csv": "1,2\n"})
    for s in (1, 2):
        Clean.save(3.0, subject=s, session="pre")

    def run(subject: int):
        return for_each(scaled_total, inputs={"path": PathInput("calib.csv", root="raw"), "x": Clean},
                        outputs=[Scaled], subject=[subject], session=["pre"], progress=False)

    monkeypatch.chdir(tmp_path / "a")
    assert run(1).ran == 1
    monkeypatch.chdir(tmp_path / "b")
    assert (run(1).cached, run(2).cached) == (1, 1)
    assert len(Scaled.list_versions(subject=1, session="pre")) == 1  # (kept: the same shown path)
    assert why(Scaled, subject=1, session="pre").status == "current"
    Clean.save(4.0, subject=1, session="pre")
    assert why(Scaled, subject=1, session="pre").status == "stale"
    assert status_grid(project).cell("Scaled", {"subject": 1, "session": "pre"}).status == "stale"
    assert why(Scaled, subject=2, session="pre").status == "current"


def test_a_moved_raw_file_whose_cached_output_is_gone_runs_again(project, tmp_path):
    """A cached call met where its raw files moved, its output lost from the store since (a
    lab's bucket lost it): it had been counted cached, still naming the lost output, and
    loading the value then failed. A dry run before it says the same (it had said cached)."""
    import time

    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n"})
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw/")}
    for_each(total, inputs=spec, outputs=[RawTotal], subject=[], session=[], progress=False)
    lost = RawTotal.load(subject=1, session="pre").oid
    (tmp_path / "raw").rename(tmp_path / "moved")
    project.store.delete_many([lost], older_than=time.time() + 60)
    assert not project.store.contains(lost)
    moved = dict(inputs={"path": PathInput("{subject}/s_{session}.csv", root="moved/")},
                 outputs=[RawTotal], subject=[], session=[], progress=False)
    # the dry run plans what the run then does (it had said cached: dry runs skipped the check)
    planned = for_each(total, dry_run=True, **moved)
    assert (planned.would_run, planned.cached) == (1, 0)
    again = for_each(total, **moved)
    assert (again.ran, again.cached) == (1, 0)
    assert RawTotal.load(subject=1, session="pre").data == 3.0


def test_downstream_of_a_raw_file_follows_it(project, tmp_path):
    _raw(tmp_path / "raw", RAW)
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw")}
    for_each(total, inputs=spec, outputs=[RawTotal], subject=[1, 2], session=["pre"], verbose=False)
    for_each(double, inputs={"x": RawTotal}, outputs=[Doubled], subject=[1, 2], session=["pre"], verbose=False)
    (tmp_path / "raw/2/s_pre.csv").write_text("1,1\n")
    counts = [for_each(f, inputs=i, outputs=[o], subject=[1, 2], session=["pre"], verbose=False).ran
              for f, i, o in ((total, spec, RawTotal), (double, {"x": RawTotal}, Doubled))]
    assert counts == [1, 1]
    assert Doubled.load(subject=2, session="pre").data == 4.0


def test_bad_templates_and_paths_are_refused(project, tmp_path):
    _raw(tmp_path / "raw", RAW)
    with pytest.raises(InvalidMetadataError, match="not schema keys"):
        for_each(total, inputs={"path": PathInput("{trial}.csv", root="raw")}, outputs=[RawTotal],
                 subject=[1], verbose=False)
    with pytest.raises(InvalidMetadataError, match="iterate"):
        for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="raw")},
                 outputs=[RawTotal], subject=[1], verbose=False)
    with pytest.raises(ForEachError, match="escapes the root"):
        for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="raw")},
                 outputs=[RawTotal], subject=[".."], session=["x"], verbose=False, on_error="raise")
    with pytest.raises(InputFileError, match="escapes the root"):
        PathInput("{subject}.csv", root="raw").bound("path", {"subject": "../../etc/passwd"})
    with pytest.raises(InputFileError, match="not a folder"):
        for_each(total, inputs={"path": PathInput("{subject}.csv", root="nowhere")}, outputs=[RawTotal],
                 subject=[], verbose=False)
    with pytest.raises(InvalidMetadataError, match=r"does not name \['session'\], so every session of an"):
        for_each(plot, inputs={"values": RawTotal, "dest": PathOutput("{subject}.png", root="figs")},
                 outputs=[Plot], subject=[1], session=["pre", "post"], verbose=False)  # one file for both
    assert RawTotal.load_all() == []  # nothing saved by the refused runs


def test_an_unreadable_file_fails_its_combination_with_the_fix(project, tmp_path):
    _raw(tmp_path / "raw", RAW)
    broken = tmp_path / "raw/2/s_pre.csv"
    broken.unlink()
    broken.symlink_to(broken)  # a symlink loop: unreadable for every user, root included
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw")}
    report = for_each(total, inputs=spec, outputs=[RawTotal], subject=[1, 2], session=["pre"], verbose=False)
    assert (report.ran, report.failed) == (1, 1)
    assert "cannot read raw/2/s_pre.csv" in report.failures[0].error
    with pytest.raises(ForEachError, match="readable file"):
        for_each(total, inputs=spec, outputs=[RawTotal], subject=[2], session=["pre"], verbose=False,
                 on_error="raise")


def plot(values, dest):
    with open(dest, "w") as f:
        f.write(f"plot of {float(values)}\n")


def test_path_output_is_stored_and_checked_out(project, tmp_path):
    RawTotal.save(3.0, subject=1, session="pre")
    RawTotal.save(4.0, subject=2, session="pre")
    spec = {"values": RawTotal, "dest": PathOutput("{subject}/plot_{session}.txt", root="figs")}
    report = for_each(plot, inputs=spec, outputs=[Plot], subject=[1, 2], session=["pre"], verbose=False)
    assert report.ran == 2
    assert Plot.load(subject=2, session="pre").data == b"plot of 4.0\n"
    assert for_each(plot, inputs=spec, outputs=[Plot], subject=[1, 2], session=["pre"], verbose=False).cached == 2
    written = checkout(project, "Plot", tmp_path / "out", subject=2)
    assert written == [str(tmp_path / "out" / "2" / "plot_pre.txt")]
    assert Path(written[0]).read_bytes() == b"plot of 4.0\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "scistack", "checkout", "Plot", "--to", "cli_out"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli_out/1/plot_pre.txt").read_text() == "plot of 3.0\n"


def test_a_cached_run_writes_a_deleted_output_file_back_and_keeps_an_edited_one(project, tmp_path, caplog):
    """A PathOutput file the user deleted stayed missing after a cached rerun (the call was
    served from the cache, so nothing wrote it), with no word said; a scientist expects the
    run's files on disk after it. An edited one is the user's: never overwritten, but named."""
    RawTotal.save(3.0, subject=1, session="pre")
    RawTotal.save(4.0, subject=2, session="pre")
    spec = {"values": RawTotal, "dest": PathOutput("{subject}/plot_{session}.txt", root="figs")}
    def run(**kw):
        return for_each(plot, inputs=spec, outputs=[Plot], subject=[1, 2], session=["pre"], verbose=False, **kw)
    assert run().ran == 2
    (tmp_path / "figs/1/plot_pre.txt").unlink()
    (tmp_path / "figs/2").rename(tmp_path / "old")
    assert run(dry_run=True).cached == 2 and not (tmp_path / "figs/1/plot_pre.txt").exists()  # writes nothing
    report = run()
    assert (report.ran, report.cached) == (0, 2)
    assert (tmp_path / "figs/1/plot_pre.txt").read_text() == "plot of 3.0\n"
    assert (tmp_path / "figs/2/plot_pre.txt").read_text() == "plot of 4.0\n"
    assert sorted(p.relative_to(tmp_path / "figs").as_posix() for p in (tmp_path / "figs").rglob("*")) == [
        "1", "1/plot_pre.txt", "2", "2/plot_pre.txt"]  # (no temporary file left)
    (tmp_path / "figs/2/plot_pre.txt").write_text("plot of 4.0, edited by hand\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="scistack.foreach"):
        assert run().cached == 2
    assert (tmp_path / "figs/2/plot_pre.txt").read_text() == "plot of 4.0, edited by hand\n"
    assert "1 file(s) a cached call wrote differ" in caplog.text and "plot_pre.txt (Plot)" in caplog.text
    assert "figs/1" not in caplog.text
    for child in (tmp_path / "figs/1").iterdir():  # nowhere to write it back: the call runs again and fails
        child.unlink()
    (tmp_path / "figs/1").rmdir()
    (tmp_path / "figs/1").write_text("a file where the folder was")
    report = run()
    assert report.failed == 1 and "figs/1" in report.failures[0].error


_OPENED: list[str] | None = None  # (the audit hook below notes opened paths while a list)


def _note_opens(event, args):
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


def _opened_during(fn):
    """The paths opened (by anyone in this process) while `fn` ran, and its result."""
    global _OPENED
    if not getattr(_opened_during, "hooked", False):
        sys.addaudithook(_note_opens)  # (cannot be removed: inert while _OPENED is None)
        _opened_during.hooked = True
    _OPENED = []
    try:
        result = fn()
        return _OPENED, result
    finally:
        _OPENED = None


def _past_the_racy_window(paths):
    """Wait until each file's mtime and ctime are more than 2 s old (a stat taken sooner does
    not vouch for the content: a rewrite in the same timestamp tick keeps it)."""
    newest = max(max(os.stat(p).st_mtime_ns, os.stat(p).st_ctime_ns) for p in paths)
    time.sleep(max(0.0, (newest + 2_100_000_000 - time.time_ns()) / 1e9))


def test_a_cached_rerun_judges_its_output_files_by_their_stat_not_their_content(project, tmp_path, caplog,
                                                                                  monkeypatch):
    """A fully cached rerun read every PathOutput file whole in every new process, to see
    whether it still held the stored bytes (the hash memo lives one process): 16 files of
    64 MB took 2-3 s against 0.01 s. The project keeps each file's stat when it was last
    hashed (.scistack/output-stats.json); an edit, a same-size one with its mtime set back
    too, is still seen, and a deleted file still written back."""
    from scistack.foreach import filestats

    RawTotal.save(3.0, subject=1, session="pre")
    RawTotal.save(4.0, subject=2, session="pre")
    spec = {"values": RawTotal, "dest": PathOutput("{subject}/plot_{session}.txt", root="figs")}
    files = [tmp_path / "figs/1/plot_pre.txt", tmp_path / "figs/2/plot_pre.txt"]

    def run():
        monkeypatch.setattr(filestats, "_hashes", {})  # (a new process: no hash remembered in memory)
        return for_each(plot, inputs=spec, outputs=[Plot], subject=[1, 2], session=["pre"], verbose=False)
    caplog.set_level("WARNING", logger="scistack.foreach")
    assert run().ran == 2
    _past_the_racy_window(files)
    assert run().cached == 2  # (hashed once: the files were never checked since they were written)
    opened, report = _opened_during(run)
    assert report.cached == 2
    assert [p for p in opened if "figs" in p] == [] and "differ" not in caplog.text
    files[0].write_text("plot of 3.1\n")  # the same size, and its mtime set back: the ctime moved
    os.utime(files[0], ns=(os.stat(files[1]).st_atime_ns, os.stat(files[1]).st_mtime_ns))
    files[1].write_text("plot of 4.0, edited\n")
    caplog.clear()
    assert run().cached == 2
    assert "2 file(s) a cached call wrote differ" in caplog.text
    assert [f.read_text() for f in files] == ["plot of 3.1\n", "plot of 4.0, edited\n"]
    files[1].unlink()
    caplog.clear()
    assert run().cached == 2
    assert files[1].read_text() == "plot of 4.0\n" and "1 file(s) a cached call wrote differ" in caplog.text


def test_the_output_stat_memo_keeps_no_racy_stat_and_survives_damage(tmp_path, monkeypatch):
    """A stat taken within 2 s of the file's mtime or ctime (or before them: a clock behind
    the file server's) is not remembered: a rewrite of the same size in the same timestamp
    tick keeps the whole stat. A damaged memo file costs hashes, never a wrong answer."""
    from scistack.codeid import files
    from scistack.foreach import filestats
    from scistack.objects.hashing import hash_bytes, object_header

    folder = tmp_path / ".scistack"
    folder.mkdir()
    path = tmp_path / "out.bin"
    path.write_bytes(b"abc")
    oid = hash_bytes(object_header("bytes", 3) + b"abc")
    later = time.time_ns() + 3600 * 10**9  # its mtime an hour ahead: racy whatever the clock says
    os.utime(path, ns=(later, later))
    memo = filestats.FileStats(folder)
    assert memo.holds(str(path), oid) and not memo.holds(str(path), "0" * 64)
    memo.save()
    assert not (folder / filestats.MEMO_NAME).exists()
    monkeypatch.setattr(files, "_RACY_NS", -3700 * 10**9)  # (as if that hour had passed)
    memo = filestats.FileStats(folder)
    assert memo.holds(str(path), oid)
    memo.save()
    hashed = []
    monkeypatch.setattr(filestats, "_content_oid", lambda p, size: hashed.append(p))
    monkeypatch.setattr(filestats, "_hashes", {})  # (a new process: only the memo file vouches)
    assert filestats.FileStats(folder).holds(str(path), oid) and hashed == []  # its stat vouches
    assert not filestats.FileStats(folder).holds(str(path), "0" * 64) and hashed == []
    path.write_bytes(b"abcd")  # another size than the content the memo names: other bytes, no hash
    assert not filestats.FileStats(folder).holds(str(path), oid) and hashed == []
    for damage in (b"{not json", b"[]", b'{"version": 1, "files": {"%s": [1, "x"]}}' % str(path).encode()):
        (folder / filestats.MEMO_NAME).write_bytes(damage)
        hashed.clear()
        assert filestats.FileStats(folder).holds(str(path), oid) is False and hashed == [str(path)]
    memo = filestats.FileStats(path)  # (a folder it cannot write in: nothing saved, nothing raised)
    memo._new[str(path)] = [1, 2, 3, 4, oid]
    memo.save()


def test_each_alternative_writes_its_own_file_named_by_the_eachof_parameter(project, tmp_path):
    """EachOf alternatives wrote one PathOutput path: the last alternative's file replaced
    the others' on disk (and checkout wrote them all to that one path)."""
    RawTotal.save(3.0, subject=1, session="pre")
    Doubled.save(6.0, subject=1, session="pre")
    with pytest.raises(InvalidMetadataError, match=r"does not name \['values'\], so every EachOf alternative"
                                                   r".*'{subject}_{values}.txt'"):
        for_each(plot, inputs={"values": EachOf(RawTotal, Doubled), "dest": PathOutput("{subject}.txt", root="figs")},
                 outputs=[Plot], subject=[1], session=["pre"], verbose=False)
    spec = {"values": EachOf(RawTotal, Doubled), "dest": PathOutput("{subject}/{values}.txt", root="figs")}
    report = for_each(plot, inputs=spec, outputs=[Plot], subject=[1], session=["pre"], verbose=False)
    assert report.ran == 2
    assert (tmp_path / "figs/1/RawTotal.txt").read_text() == "plot of 3.0\n"
    assert (tmp_path / "figs/1/Doubled.txt").read_text() == "plot of 6.0\n"
    assert Plot.load(subject=1, session="pre", values="Doubled").data == b"plot of 6.0\n"
    assert for_each(plot, inputs=spec, outputs=[Plot], subject=[1], session=["pre"], verbose=False).cached == 2
    written = checkout(project, "Plot", tmp_path / "out", subject=1)
    assert sorted(Path(w).read_text() for w in written) == ["plot of 3.0\n", "plot of 6.0\n"]


def forget(values, dest):
    return None


def test_a_path_output_not_written_fails(project):
    RawTotal.save(3.0, subject=1, session="pre")
    spec = {"values": RawTotal, "dest": PathOutput("{subject}.txt", root="figs")}
    report = for_each(forget, inputs=spec, outputs=[Plot], subject=[1], session=["pre"], verbose=False)
    assert report.failed == 1 and "did not write it" in report.failures[0].error
    with pytest.raises(InvalidMetadataError, match="output variable"):
        for_each(forget, inputs=spec, outputs=[], subject=[1], session=["pre"], verbose=False)


def scale(signal, factor):
    return signal * factor


def test_each_of_runs_once_per_alternative_tagged_by_a_version_key(project):
    RawTotal.save(2.0, subject=1, session="pre")
    Clean.save(5.0, subject=1, session="pre")
    spec = {"signal": EachOf(RawTotal, Clean), "factor": 10}
    report = for_each(scale, inputs=spec, outputs=[Scaled], subject=[1], session=["pre"], verbose=False)
    assert report.ran == 2
    assert [i.combo for i in report.items] == [{"subject": 1, "session": "pre", "signal": "RawTotal"},
                                               {"subject": 1, "session": "pre", "signal": "Clean"}]
    assert Scaled.load(subject=1, session="pre", signal="RawTotal").data == 20.0
    assert Scaled.load(subject=1, session="pre", signal="Clean").data == 50.0
    assert for_each(scale, inputs=spec, outputs=[Scaled], subject=[1], session=["pre"], verbose=False).cached == 2
    Clean.save(6.0, subject=1, session="pre")
    again = for_each(scale, inputs=spec, outputs=[Scaled], subject=[1], session=["pre"], verbose=False)
    assert (again.ran, again.cached) == (1, 1)
    assert Scaled.load(subject=1, session="pre", signal="Clean").data == 60.0
    with pytest.raises(InvalidMetadataError, match="two alternatives"):
        EachOf(RawTotal)


def test_the_raw_files_example_reruns_exactly_one_combination(tmp_path, python_env):
    script = Path(__file__).resolve().parents[1] / "examples" / "raw_files.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "example")], env=python_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "first run: read_force ran 6 cached 0; peak ran 6 cached 0" in lines
    assert "second run: read_force ran 0 cached 6; peak ran 0 cached 6" in lines
    assert "after editing raw/3/s_pre.csv: read_force ran 1 cached 5; peak ran 1 cached 5" in lines
    assert "  - input path: raw/3/s_pre.csv changed" in lines
    exported = (tmp_path / "example" / "peak_force.csv").read_text().splitlines()
    assert exported[0].startswith("subject,session,data") and len(exported) == 7
    peaks = {tuple(row.split(",")[:2]): float(row.split(",")[2]) for row in exported[1:]}
    assert peaks[("3", "pre")] == 999.0 and peaks[("3", "post")] < 999.0  # the edited file's new peak


def size_of(path):
    return os.path.getsize(path)  # a stat, no open: only the PathInput identity sees the content


def test_two_files_with_the_same_bytes_keep_their_own_paths(project, tmp_path):
    """Two raw files with the same bytes make one call (the second a cache hit). Its result
    had been saved naming the first file: `status` and `why` then re-hashed that one, and
    called the second's result done after the second file changed. And the first's result,
    its file changed in place, was judged by the second's record (the one its cache entry
    names, taken for the same file moved) and called done."""
    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "1,2\n"})
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw/")}
    for subjects in ([1], [1, 2]):  # subject 2 a cache hit of subject 1
        report = for_each(total, inputs=spec, outputs=[RawTotal], subject=subjects, session=["pre"], verbose=False)
    assert (report.ran, report.cached) == (0, 2)
    assert project.get_provenance(RawTotal, subject=2, session="pre")["inputs"]["path"]["path"] == "raw/2/s_pre.csv"
    (tmp_path / "raw/2/s_pre.csv").write_text("9,9\n")
    assert why(RawTotal, subject=2, session="pre").status == "stale"
    assert why(RawTotal, subject=1, session="pre").status == "current"
    # the first file changed while the second (whose record the cache entry names) holds the
    # old bytes: that record is another address's, not this one's file moved elsewhere
    (tmp_path / "raw/2/s_pre.csv").write_text("1,2\n")
    (tmp_path / "raw/1/s_pre.csv").write_text("8,8\n")
    assert why(RawTotal, subject=1, session="pre").status == "stale"
    assert why(RawTotal, subject=2, session="pre").status == "current"
    from scistack.report.status import status_summary

    summary = status_summary(project)
    assert summary.counts["RawTotal"]["stale"] == 1
    assert {c.reason for c in summary.problems} == {"input path: raw/1/s_pre.csv changed"}


def test_status_names_a_changed_raw_file(project, tmp_path):
    from scistack.report.status import status_grid, status_summary

    _raw(tmp_path / "raw", RAW)
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw")}
    for_each(size_of, inputs=spec, outputs=[RawTotal], subject=[1, 2], session=["pre"], verbose=False)
    for_each(double, inputs={"x": RawTotal}, outputs=[Doubled], subject=[1, 2], session=["pre"], verbose=False)
    (tmp_path / "raw/2/s_pre.csv").write_text("9,9\n")  # same size, other content
    summary = status_summary(project)
    assert summary.counts["RawTotal"]["stale"] == 1 and summary.counts["Doubled"]["stale"] == 1
    assert summary.counts == status_grid(project).counts()
    reasons = {c.var: c.reason for c in summary.problems}
    assert reasons["RawTotal"] == "input path: raw/2/s_pre.csv changed"
    assert reasons["Doubled"] == "input x (RawTotal) is stale"
    assert for_each(size_of, inputs=spec, outputs=[RawTotal], subject=[1, 2], session=["pre"],
                    verbose=False).ran == 1
    from scistack.fsck import fsck
    from scistack.gc import collect_garbage

    assert fsck(project).problems == ()  # the raw files themselves are not objects: not "missing"
    collect_garbage(project, grace_seconds=0)
    assert fsck(project).problems == () and RawTotal.load(subject=2, session="pre").data == 4


def copy_upper(path, dest):
    with open(path) as src, open(dest, "w") as out:
        out.write(src.read().upper())


def test_raw_files_in_and_out_in_worker_processes(project, tmp_path):
    _raw(tmp_path / "raw", {"1/s_pre.csv": "a,b\n", "2/s_pre.csv": "c,d\n"})
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw"),
            "dest": PathOutput("{subject}/{session}.txt", root="upper")}
    report = for_each(copy_upper, inputs=spec, outputs=[Plot], subject=[], session=["pre"], workers=2,
                      verbose=False)
    assert report.ran == 2, report.failures
    assert Plot.load(subject=2, session="pre").data == b"C,D\n"
    assert (tmp_path / "upper/1/pre.txt").read_text() == "A,B\n"


def test_raw_file_inputs_need_a_database(no_database, tmp_path):
    with pytest.raises(InvalidMetadataError, match="need a database"):
        for_each(total, inputs={"path": PathInput("{subject}.csv", root=tmp_path)}, outputs=[], subject=[1])


def test_a_cached_rerun_keys_its_raw_files_by_their_stat_not_their_content(project, tmp_path, monkeypatch):
    """Every run in a new process hashed each PathInput file whole before finding its calls
    cached (the hash memo lives one process): a rerun over 100 GB of recordings read 100 GB.
    The project's memo of files (.scistack/output-stats.json) keys a raw file by its whole
    stat; a same-size edit with its mtime set back (the ctime moves) still reruns."""
    from scistack.foreach import filestats

    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "3,4\n"})
    files = [tmp_path / "raw/1/s_pre.csv", tmp_path / "raw/2/s_pre.csv"]
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw/")}

    def run():
        monkeypatch.setattr(filestats, "_hashes", {})  # (a new process: no hash remembered in memory)
        return for_each(total, inputs=spec, outputs=[RawTotal], subject=[1, 2], session=["pre"], verbose=False)
    assert run().ran == 2  # (the files were just written: racy stats, not remembered)
    _past_the_racy_window(files)
    assert run().cached == 2  # hashed, and remembered now
    opened, report = _opened_during(run)
    assert report.cached == 2 and [p for p in opened if os.sep + "raw" + os.sep in p] == []
    stamp = os.stat(files[0])
    files[0].write_text("5,2\n")  # the same size, and its mtime set back: only the ctime moved
    os.utime(files[0], ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    again = run()
    assert (again.ran, again.cached) == (1, 1) and RawTotal.load(subject=1, session="pre").data == 7.0


def test_status_why_and_export_key_raw_files_by_the_projects_memo_not_their_content(project, tmp_path,
                                                                                     monkeypatch):
    """`status`, `why` and an export with raw files hashed every PathInput file whole in each
    new process, without the project's memo of files that for_each keys them by: every
    `scistack status` over 100 GB of recordings read 100 GB. They ask the memo now (a file
    whose whole stat it remembers is not read), and an export reads each raw file once,
    hashing it as it copies (it read it whole, copied it, then read the copy back)."""
    from scistack.foreach import filestats
    from scistack.report.status import status_grid, status_summary

    _raw(tmp_path / "raw", {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "3,4\n"})
    files = [tmp_path / "raw/1/s_pre.csv", tmp_path / "raw/2/s_pre.csv"]
    spec = {"path": PathInput("{subject}/s_{session}.csv", root="raw/")}
    assert for_each(total, inputs=spec, outputs=[RawTotal], subject=[1, 2], session=["pre"], verbose=False).ran == 2
    _past_the_racy_window(files)
    assert for_each(total, inputs=spec, outputs=[RawTotal], subject=[1, 2], session=["pre"],
                    verbose=False).cached == 2  # (hashed, remembered in the project's memo)

    def new_process():
        monkeypatch.setattr(filestats, "_hashes", {})
        filestats._OF_PROJECT.pop(project, None)

    def raw_opens(fn):
        new_process()
        opened, result = _opened_during(fn)
        return [p for p in opened if os.sep + "raw" + os.sep in p and "bundle" not in p], result

    opened, grid = raw_opens(lambda: status_grid(project))
    assert opened == [] and grid.counts()["RawTotal"]["done"] == 2
    opened, summary = raw_opens(lambda: status_summary(project))
    assert opened == [] and summary.counts["RawTotal"]["done"] == 2
    opened, report = raw_opens(lambda: why(RawTotal, subject=1, session="pre"))
    assert opened == [] and report.status == "current"
    new_process()
    opened, _ = _opened_during(lambda: project.export(all_current=[RawTotal], to=tmp_path / "bundle",
                                                      raw_files=True))
    assert sorted(p for p in opened if "s_pre.csv" in p and "bundle" not in p) == sorted(map(str, files))
    written = (str(tmp_path / "bundle"), str(tmp_path / ".bundle.export-"))  # (or the folder beside it)
    copies = [p for p in opened if p.startswith(written) and ("s_pre.csv" in p or ".tmp" in p)]
    assert len(copies) == 2  # each copy written once, not read back
    assert (tmp_path / "bundle/raw/raw/1/s_pre.csv").read_text() == "1,2\n"
    files[1].write_text("5,6\n")  # changed: still seen by status, why and an export
    opened, grid = raw_opens(lambda: status_grid(project))
    assert grid.counts()["RawTotal"]["stale"] == 1 and opened == [str(files[1])]
    assert why(RawTotal, subject=2, session="pre").status == "stale"
    report = project.export(all_current=[RawTotal], to=tmp_path / "bundle2", raw_files=True)
    assert report.raw_missing == ["raw/2/s_pre.csv: changed since the call read it"]
    assert not (tmp_path / "bundle2/raw/raw/2/s_pre.csv").exists()


def test_the_memo_of_files_is_saved_without_reading_it_again_unless_another_process_saved(tmp_path,
                                                                                          monkeypatch):
    """Every save of the project's memo of files read and parsed the whole file again, and
    wrote it all with `json`: with 100,000 files (19 MB) a run adding one entry paid 0.8 s.
    A save now writes what the process holds when the file's stat is the one it read (or
    wrote) last; when another process saved since, it reads that first and keeps both."""
    from scistack.codeid import files as codeid_files
    from scistack.foreach import filestats
    from scistack.objects.hashing import hash_bytes, object_header

    monkeypatch.setattr(codeid_files, "_RACY_NS", -3600 * 10**9)  # (no stat racy: each remembered)
    folder = tmp_path / ".scistack"
    folder.mkdir()
    made = {}
    for name in ("a", "b", "c", "d", "e", "caf\udce9"):
        path = tmp_path / name
        try:
            path.write_bytes(name.encode("utf-8", "surrogateescape"))
        except (OSError, UnicodeEncodeError):  # (a file system refusing a name that is not UTF-8)
            continue
        made[name] = (str(path), hash_bytes(object_header("bytes", len(name.encode("utf-8", "surrogateescape")))
                                            + name.encode("utf-8", "surrogateescape")))
    memo_file = str(folder / filestats.MEMO_NAME)

    def reads_of_the_memo(fn):
        opened, _ = _opened_during(fn)
        return [p for p in opened if p == memo_file]

    first = filestats.FileStats(folder)
    assert first.holds(*made["a"])
    assert reads_of_the_memo(first.save) == [memo_file]  # (none yet: looked for)
    second = filestats.FileStats(folder)
    assert second.holds(*made["b"])  # (the memo read here, once)
    assert reads_of_the_memo(second.save) == []  # nobody saved since: not read again
    assert second.holds(*made["c"]) and reads_of_the_memo(second.save) == []  # (its own write: known)
    third, fourth = filestats.FileStats(folder), filestats.FileStats(folder)
    assert third.holds(*made["d"]) and fourth.holds(*made["e"])
    third.save()
    assert reads_of_the_memo(fourth.save) == [memo_file]  # another process saved since: merged
    if "caf\udce9" in made:  # a name that is not UTF-8 is kept too (orjson refuses it: json writes it)
        assert fourth.holds(*made["caf\udce9"])
        fourth.save()
    entries, _, _ = filestats._read(folder / filestats.MEMO_NAME)
    assert sorted(entries) == sorted(path for path, _ in made.values())
    hashed = []
    monkeypatch.setattr(filestats, "_content_oid", lambda p, size: hashed.append(p))
    monkeypatch.setattr(filestats, "_hashes", {})  # (a new process: only the memo file vouches)
    fresh = filestats.FileStats(folder)
    assert all(fresh.holds(*made[name]) for name in made) and hashed == []


def test_the_memos_two_parts_are_read_together_and_each_saved_and_merged(tmp_path, monkeypatch):
    """The memo file holds two parts: "files" (raw and written files by oid) and "inputs" (call
    records' file inputs a run verified, `codeid.files.verified_stats`). A save that only
    verified inputs writes them (no file hashed), and without reading the file again when no
    other process saved since it read both parts; when another did, both parts are merged
    with that process's; a new process takes the inputs back (`trust_inputs`)."""
    from scistack.codeid import files as codeid_files
    from scistack.foreach import filestats
    from scistack.objects.hashing import hash_bytes, object_header

    monkeypatch.setattr(codeid_files, "_RACY_NS", -3600 * 10**9)  # (no stat racy: each remembered)
    monkeypatch.setattr(filestats, "_hashes", {})
    folder = tmp_path / ".scistack"
    folder.mkdir()
    memo_file = str(folder / filestats.MEMO_NAME)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"abc")
    raw_oid = hash_bytes(object_header("bytes", 3) + b"abc")

    def verified(name):  # (as `changed_files` notes a racy record's file it verified)
        path = tmp_path / name
        path.write_text(name)
        st = os.stat(path)
        key = (str(path), *codeid_files.stat_stamp(st))
        codeid_files._VERIFIED[key] = "d-" + name
        return key

    def reads_of_the_memo(fn):
        opened, _ = _opened_during(fn)
        return [p for p in opened if p == memo_file]

    monkeypatch.setattr(codeid_files, "_VERIFIED", {})
    first = filestats.FileStats(folder)
    first.trust_inputs()  # (none yet)
    a = verified("a.cfg")
    first.save()  # nothing hashed, an input verified: written
    files_part, inputs_part, _ = filestats._read(folder / filestats.MEMO_NAME)
    assert files_part == {} and inputs_part == {a[0]: [*a[1:], "d-a.cfg"]}
    second, third = filestats.FileStats(folder), filestats.FileStats(folder)
    assert second.holds(str(raw), raw_oid)  # (both parts read here)
    assert reads_of_the_memo(second.trust_inputs) == []  # (not read again for its other part)
    third.trust_inputs()
    c = verified("c.cfg")
    assert reads_of_the_memo(third.save) == []  # (nobody saved since third read it)
    assert reads_of_the_memo(second.save) == [memo_file]  # (third saved since: merged)
    files_part, inputs_part, _ = filestats._read(folder / filestats.MEMO_NAME)
    assert files_part == {str(raw): [*codeid_files.stat_stamp(os.stat(raw)), raw_oid]}
    assert inputs_part == {a[0]: [*a[1:], "d-a.cfg"], c[0]: [*c[1:], "d-c.cfg"]}
    assert reads_of_the_memo(third.save) == []  # (nothing new: no write, no read)
    monkeypatch.setattr(codeid_files, "_STAT_OK", {})  # a new process
    filestats.FileStats(folder).trust_inputs()
    assert codeid_files._STAT_OK == {a: "d-a.cfg", c: "d-c.cfg"}


def test_a_raw_file_that_keeps_changing_size_while_read_is_hashed_again_then_refused(tmp_path, monkeypatch):
    """`file_oid` had its own hash loop, which keyed a file that grew while it was read by
    the header of one size and the bytes of another: a key no content has, recorded as the
    call's input. It now asks the one hasher (`filestats._content_oid`), which tells a size
    changed while read: hashed again from a new stat, and refused, naming why, when it keeps
    changing (a recording still being written); nothing is remembered of it."""
    from scistack.foreach import filestats
    from scistack.foreach.paths import file_oid
    from scistack.objects.hashing import hash_bytes, object_header

    path = tmp_path / "rec.bin"
    path.write_bytes(b"abc")
    real, calls = filestats._content_oid, []

    def growing_for(times):
        def hashed(p, size, sink=None):
            calls.append(p)
            return None if len(calls) <= times else real(p, size, sink)
        return hashed
    monkeypatch.setattr(filestats, "_hashes", {})
    monkeypatch.setattr(filestats, "_content_oid", growing_for(1))
    assert file_oid(str(path)) == hash_bytes(object_header("bytes", 3) + b"abc") and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(filestats, "_hashes", {})
    monkeypatch.setattr(filestats, "_content_oid", growing_for(99))
    with pytest.raises(InputFileError, match="cannot read raw/rec.bin: it kept changing size while it was read"):
        file_oid(str(path), "raw/rec.bin")
    assert len(calls) == filestats._TRIES and filestats._hashes == {}
    assert file_oid(str(tmp_path)) is None and file_oid(str(tmp_path / "none")) is None
