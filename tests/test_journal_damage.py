"""A journal line of the wrong shape (another language's buggy writer) is skipped and named;
it never makes the project unusable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
from click.testing import CliRunner

from scistack import BaseVariable
from scistack.cli import main
from scistack.database import Database
from scistack.errors import GarbageCollectionError, UnreadableJournalWarning
from scistack.fsck import fsck
from scistack.gc import find_reachable

BAD_LINES = [
    b'{"op":"put","var":"DamY"}',
    b"[1,2,3]",
    b'{"op":"put","var":"DamY","addr":{"subject":2},"oid":"x","kind":"json","t":"z"}',
    b'{"op":"del","var":"DamY","addr":{"subject":1},"version":"1"}',
    b'{"op":"call","key":7,"call":"c"}',
    b'"just a string"',
]


class DamY(BaseVariable):
    pass


@pytest.mark.parametrize("line", BAD_LINES)
def test_a_wrong_shaped_line_is_skipped_named_and_keeps_gc_safe(project, line):
    DamY.save(1.0, subject=1, session="pre")
    with open(project.index.journal_path, "ab") as journal:
        journal.write(line + b"\n")
    DamY.save(2.0, subject=3, session="pre")
    assert sorted(v.data for v in DamY.load_all()) == [1.0, 2.0]
    assert project.sql("SELECT count(*) AS n FROM DamY")["n"][0] == 2
    problems = [p for p in fsck(project).problems if p.kind == "journal"]
    assert len(problems) == 1 and "line 2 is skipped" in problems[0].detail
    with pytest.raises(GarbageCollectionError, match="1 line"):
        find_reachable(project)


def test_fsck_quarantine_moves_bad_lines_aside_and_gc_works_again(project, monkeypatch):
    import scistack.fsck as fsck_module

    monkeypatch.setattr(fsck_module, "_JOURNAL_BLOCK", 37)  # lines cut across the blocks fsck reads
    DamY.save(1.0, subject=1, session="pre")
    with open(project.index.journal_path, "ab") as journal:
        journal.write(BAD_LINES[0] + b"\n" + b'{"op":"put","var":"Da' + b"\n")  # wrong shape; torn
    DamY.save(2.0, subject=3, session="pre")
    size = project.index.journal_path.stat().st_size
    before = fsck(project)
    assert [p.line for p in before.problems if p.kind == "journal"] == [2, 3]
    result = CliRunner().invoke(main, ["--db", str(project.path), "fsck", "--quarantine"])
    assert result.exit_code == 0, result.output
    assert "moved journal line 2 to refs.log.quarantine" in result.output
    assert project.index.journal_path.stat().st_size == size  # no other line's offset moved
    kept = [json.loads(line) for line in project.index.journal_path.with_name("refs.log.quarantine")
            .read_text().splitlines()]
    assert [k["line"] for k in kept] == [2, 3] and kept[0]["text"] == BAD_LINES[0].decode()
    assert fsck(project).ok
    find_reachable(project)  # gc no longer refuses
    DamY.save(3.0, subject=4, session="pre")
    assert sorted(v.data for v in DamY.load_all()) == [1.0, 2.0, 3.0]


def test_integers_beyond_64_bits_and_invalid_utf8_read_as_they_always_did(tmp_path):
    """The journal is parsed by orjson, which would make a huge integer a float: such lines go
    to `json`, as do lines orjson refuses (invalid UTF-8 is read with replacement characters)."""
    from scistack.index.journal import Journal

    journal = Journal(tmp_path / "refs.log")
    big = [2**70, -(2**63) - 1, 2**64]
    journal.append([{"op": "put", "var": "V", "addr": {"subject": n}, "version": 1, "oid": "a" * 64,
                     "kind": "json", "t": "2026-01-01T00:00:00Z"} for n in big])
    with open(journal.path, "ab") as handle:
        handle.write(b'{"op":"run","note":"caf\xe9"}\n')
    entries, _ = journal.read_from(0)
    got = [e["addr"]["subject"] for e in entries[:3]]
    assert got == big and all(type(n) is int for n in got)
    assert entries[3]["note"] == "caf\ufffd" and journal.skipped_lines == 0


def test_the_journal_size_follows_a_replaced_or_removed_file(tmp_path):
    """`size` fstat()s a kept descriptor; a journal renamed over or removed is looked up again."""
    from scistack.index.journal import Journal

    path = tmp_path / "refs.log"
    journal = Journal(path)
    assert journal.size() == 0
    path.write_text("a\n")
    assert journal.size() == 2
    (tmp_path / "new.log").write_text("abcdef\n")
    os.replace(tmp_path / "new.log", path)
    assert journal.size() == 7
    path.unlink()
    assert journal.size() == 0
    path.write_text("xy\n")
    assert journal.size() == 3
    journal.close()


def test_fsck_judges_a_line_as_readers_read_it_and_never_quarantines_a_name_they_use(project):
    """Another writer's put whose string holds a byte that is not UTF-8 (a Latin-1 "é") is read by
    every reader, with a replacement character. fsck reported it as unparseable, and
    `--quarantine` would have moved aside a name the project was using."""
    DamY.save(1.0, subject=1, session="pre")
    line = project.index.journal_path.read_bytes().splitlines()[0]
    entry = json.loads(line)
    entry |= {"addr": {"session": "caf\u00e9", "subject": 1}, "version": 1}
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("latin-1")
    assert b"\xe9" in text
    with open(project.index.journal_path, "ab") as journal:
        journal.write(text + b"\n")
    assert [v.data for v in DamY.load_all(session="caf\ufffd")] == [1.0]
    assert not [p for p in fsck(project).problems if p.kind == "journal"]
    result = CliRunner().invoke(main, ["--db", str(project.path), "fsck", "--quarantine"])
    assert result.exit_code == 0, result.output
    assert "moved journal line" not in result.output
    assert [v.data for v in DamY.load_all(session="caf\ufffd")] == [1.0]


def test_status_and_ls_warn_of_unreadable_lines_in_every_process_until_fsck_moves_them_aside(project, python_env):
    """The index folds past a line no reader can take once, for every process after it: what
    the line held is in no view, so a value looks missing. `status` says so (on stderr: its
    report stays as it was) in each later process too, until fsck moves the line aside."""
    DamY.save(1.0, subject=1, session="pre")
    with open(project.index.journal_path, "ab") as journal:
        journal.write(BAD_LINES[0] + b"\n" + b'{"op":"put","var":"Da' + b"\n")  # wrong shape; torn
    DamY.save(2.0, subject=3, session="pre")
    status = ["--db", str(project.path), "status"]
    first = CliRunner().invoke(main, status)
    assert first.exit_code == 0, first.output
    assert "warning: 2 journal lines could not be read" in first.stderr and "warning" not in first.stdout
    project.close()  # another process: the fold is past the lines, and still knows of them
    again = CliRunner().invoke(main, status)
    assert "warning: 2 journal lines could not be read" in again.stderr
    listed = CliRunner().invoke(main, ["--db", str(project.path), "ls", "--json"])  # the other overview
    assert "warning: 2 journal lines" in listed.stderr and json.loads(listed.stdout)
    real = subprocess.run([sys.executable, "-m", "scistack", *status], env=python_env, capture_output=True,
                          text=True, timeout=120)  # (a process of its own: pytest keeps warnings from stderr)
    assert real.returncode == 0, real.stderr
    assert real.stderr.count("2 journal lines could not be read") == 1, real.stderr  # one line, not a warning too
    with pytest.warns(UnreadableJournalWarning, match="2 journal lines could not be read"):
        Database(project.path).close()  # a script or notebook is told when it opens the project
    assert CliRunner().invoke(main, ["--db", str(project.path), "fsck", "--quarantine"]).exit_code == 0
    after = CliRunner().invoke(main, status)
    assert after.exit_code == 0 and "warning" not in after.stderr, after.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableJournalWarning)
        Database(project.path).close()


def test_while_a_writer_holds_the_journal_readers_stop_at_the_end_it_published(tmp_path):
    # an append under way may yet be taken back (a full disk): a reader in another process or
    # thread reads no further than the end the holder published, and nothing new when none
    # was (the project's first append); the holder itself, and anyone once it lets go, all
    from scistack.index.journal import Journal

    path = tmp_path / "refs.log"
    writer, reader = Journal(path), Journal(path)
    try:
        with writer.locked():
            with open(path, "ab") as journal:
                journal.write(b'{"op":"run"}\n')  # as an append under way writes it
            assert reader.read_lines(0) == (b"", 0)
        writer.append_lines([b'{"op":"run","n":1}\n'])
        done = path.stat().st_size
        with writer.locked():
            with open(path, "ab") as journal:
                journal.write(b'{"op":"run","n":2}\n')
            assert reader.read_lines(0)[1] == done
            assert reader.read_lines(0, 8)[1] == 13  # (a slice: still whole lines)
            assert writer.read_lines(0)[1] == path.stat().st_size
        assert reader.read_lines(0)[1] == path.stat().st_size
    finally:
        writer.close()
        reader.close()
