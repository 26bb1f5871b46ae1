"""MATLAB's own journal reader (`scistack.internal.journal`) honours the end a Python writer
publishes in `refs.lock`, as Python's readers do: it cannot take their shared `flock`, and
it had read `refs.log` to its last newline, so the complete lines of an append under way
(which a full disk then takes back) were folded as true. Run under GNU Octave."""

from __future__ import annotations

import os
import subprocess
import time
import zlib
from pathlib import Path

from scistack.index.journal import Journal
from scistack.objects.canonical_json import dumps_canonical
from tests.helpers import require_tool

MATLAB = Path(__file__).resolve().parents[2] / "matlab"


def _put(version: int) -> dict:
    return {"op": "put", "var": "Trial", "addr": {"subject": 1}, "version": version,
            "oid": f"{version:064x}", "kind": "json", "t": "2026-12-07T00:00:00Z"}


def _fold_in_octave(root: Path, *, wait_for: Path | None = None, ready: Path | None = None,
                    background: bool = False):
    """Octave folding the project's journal: prints "<puts> <offset>" (then, with `wait_for`,
    touches `ready`, waits for `wait_for` to exist, and folds again in the same session)."""
    show = "S = scistack.internal.journal(root); printf('%d %d\\n', numel(S.P.version), S.offset); fflush(stdout); "
    script = f"addpath('{MATLAB}'); root = '{root}'; " + show
    if wait_for is not None:
        script += (f"fclose(fopen('{ready}', 'w')); while ~exist('{wait_for}', 'file'), pause(0.02); end; "
                   + show)
    args = [require_tool("octave-cli"), "--no-gui", "--no-init-file", "--quiet", "--eval", script]
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [tuple(map(int, line.split())) for line in proc.stdout.split("\n") if line.strip()]


def _project(tmp_path: Path) -> tuple[Path, Journal]:
    root = tmp_path / "p"
    (root / ".scistack").mkdir(parents=True)
    journal = Journal(root / ".scistack" / "refs.log")
    journal.append([_put(1), _put(2)])  # (under the lock: its end published)
    return root, journal


def _append_raw(journal: Journal, *entries: dict) -> int:
    """Append complete lines without publishing their end: an append under way."""
    with open(journal.path, "ab") as out:
        before = out.tell()
        out.write(b"".join(dumps_canonical(e) + b"\n" for e in entries))
    return before


def test_octave_never_folds_an_append_under_way_that_is_then_taken_back(tmp_path: Path):
    root, journal = _project(tmp_path)
    published = journal.size()
    with journal.locked():
        before = _append_raw(journal, _put(3))  # written, not yet published (a full disk next)
        assert _fold_in_octave(root) == [(2, published)]
        os.truncate(journal.path, before)  # taken back, as `append_lines` does on ENOSPC
    journal.append([_put(3) | {"oid": "e" * 64}])
    assert _fold_in_octave(root) == [(3, journal.size())]
    # a Python reader agrees
    entries, _ = Journal(journal.path).read_from(0)
    assert [e["oid"] for e in entries][-1] == "e" * 64


def test_octave_reads_an_end_published_later_at_the_same_size(tmp_path: Path):
    """A session that stopped at the published end looks again at its next read though the
    journal's size is the same (its state is cached by the size)."""
    root, journal = _project(tmp_path)
    ready, go = tmp_path / "ready", tmp_path / "go"
    with journal.locked():
        _append_raw(journal, _put(3))
        octave = _fold_in_octave(root, wait_for=go, ready=ready, background=True)
        try:
            deadline = time.monotonic() + 120
            while not ready.exists() and octave.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert ready.exists(), octave.communicate()[1] if octave.poll() is not None else "octave is slow"
        except BaseException:
            octave.kill()
            raise
    with journal.locked():
        pass  # the next writer to take the lock publishes the end as it is (the line above: complete)
    go.touch()
    out, err = octave.communicate(timeout=120)
    assert octave.returncode == 0, err
    size = journal.path.stat().st_size
    assert [tuple(map(int, line.split())) for line in out.split("\n") if line.strip()] == [
        (2, size - len(dumps_canonical(_put(3))) - 1), (3, size)]


def test_octave_reads_the_whole_journal_without_a_published_end_and_nothing_new_from_a_garbled_one(
        tmp_path: Path):
    root, journal = _project(tmp_path)
    _append_raw(journal, _put(3))  # an older scistack's append, which publishes nothing
    lock = root / ".scistack" / "refs.lock"
    lock.write_bytes(b"")  # (a lock file that no publishing writer has written)
    assert _fold_in_octave(root) == [(3, journal.path.stat().st_size)]
    lock.unlink()
    assert _fold_in_octave(root) == [(3, journal.path.stat().st_size)]
    lock.write_bytes(b"%020d %020d %08x\n" % (10**6, journal.path.stat().st_ino, 0))  # a checksum that fails
    assert _fold_in_octave(root) == [(0, 0)]
    record = b"%020d %020d" % (10**6, journal.path.stat().st_ino + 1)  # another file's (replaced since)
    lock.write_bytes(record + b" %08x\n" % zlib.crc32(record))
    assert _fold_in_octave(root) == [(3, journal.path.stat().st_size)]
