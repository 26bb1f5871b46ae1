"""gc beside a writer that names an object gc has judged (issue: the tour's gc/resave races).

gc judges an unreachable object by its age, then deletes it later; a real second process that
saves the same value, undeletes it or saves a cached result in between only freshens it (no
second write) and names it. Each test pauses gc at that instant (a wrapper around one of its
steps, running the real step after) while the second process acts and returns: what it
named must still load, or it must say it could not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from scistack import BaseVariable, for_each
from scistack.errors import GarbageCollectionError
from scistack.fsck import fsck
from scistack.gc import collect_garbage
from scistack.objects import pack as pack_module

from .conftest import SCHEMA

MONTH = 30 * 86400


class Resaved(BaseVariable):
    pass


class RaceScaled(BaseVariable):
    pass


def run(python_env, script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], env=python_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


SAVE_AGAIN = """
    import sys, numpy as np
    from scistack import configure_database, BaseVariable
    class Resaved(BaseVariable): pass
    db = configure_database(sys.argv[1], {schema!r})
    Resaved.save(np.arange(float(sys.argv[2])), subject=2, session="again")
    db.close()
""".format(schema=SCHEMA)


def backdate(paths) -> None:
    old = time.time() - MONTH
    for path in paths:
        os.utime(path, (old, old))


def _saved_again_after_the_scan(project, python_env, monkeypatch, target: str) -> None:
    """`target`, a loose object made old, is saved again by a second process just after gc's
    scan read its age (the race: gc then meant to delete it)."""
    backdate([project.store.path_of(target)])
    real = project.store.mtime_of

    def saved_again_after_the_scan(oid):
        age = real(oid)
        if oid == target:
            run(python_env, SAVE_AGAIN, str(project.path), "1000")
        return age

    monkeypatch.setattr(project.store, "mtime_of", saved_again_after_the_scan)


def test_a_value_saved_again_while_gc_runs_is_kept(project, python_env, monkeypatch):
    """Loose: the second process's save finds the file and refreshes its mtime after gc's scan."""
    target = Resaved.save(np.arange(1000.0), subject=1, session="a").oid
    Resaved.delete(subject=1)
    _saved_again_after_the_scan(project, python_env, monkeypatch, target)
    collect_garbage(project)  # the default grace: two weeks
    assert project.store.contains(target)
    assert Resaved.load(subject=2, session="again").data[-1] == 999.0
    assert fsck(project).ok


def test_a_packed_value_saved_again_while_its_pack_is_rewritten_is_kept(project, python_env, monkeypatch):
    """Packed: the save refreshes the pack after gc re-checked it, while the pack is rewritten
    without it (the kept objects are written first): gc puts it back."""
    with project.batch():
        Resaved.save(np.arange(3.0), subject=1, session="kept")
        target = Resaved.save(np.arange(4.0), subject=1, session="doomed").oid
    Resaved.delete(subject=1, session="doomed")
    backdate(project.store.root.glob("pack/pack-*.pack"))
    real, calls = pack_module.write_pack, []

    def saved_again_during_the_rewrite(*args, **kwargs):
        if not calls:
            run(python_env, SAVE_AGAIN, str(project.path), "4")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pack_module, "write_pack", saved_again_during_the_rewrite)
    collect_garbage(project)
    assert calls and project.store.contains(target)
    assert Resaved.load(subject=2, session="again").data[-1] == 3.0
    assert Resaved.load(subject=1, session="kept").data[-1] == 2.0
    assert fsck(project).ok


@pytest.mark.parametrize("where", ["loose", "packed"])
def test_gc_counts_only_the_objects_it_removed_not_one_freshened_and_kept(project, python_env, monkeypatch, where):
    """gc said "deleted N objects" counting every object it had judged, also one a writer
    saved again meanwhile and gc therefore kept (its bytes were already left out): the count
    is now of the objects gone. The race as above: a second process saves the value again
    after gc's scan (loose), or while its pack is rewritten (packed)."""
    gone = Resaved.save(np.arange(5.0), subject=3, session="gone").oid  # loose, deleted: really freed
    if where == "loose":
        target = Resaved.save(np.arange(1000.0), subject=1, session="a").oid
        _saved_again_after_the_scan(project, python_env, monkeypatch, target)
    else:
        with project.batch():
            Resaved.save(np.arange(3.0), subject=1, session="kept")
            target = Resaved.save(np.arange(4.0), subject=1, session="a").oid
        backdate(project.store.root.glob("pack/pack-*.pack"))
        real, calls = pack_module.write_pack, []

        def saved_again_during_the_rewrite(*args, **kwargs):
            if not calls:
                run(python_env, SAVE_AGAIN, str(project.path), "4")
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(pack_module, "write_pack", saved_again_during_the_rewrite)
    Resaved.delete(subject=1, session="a")
    Resaved.delete(subject=3)
    backdate([project.store.path_of(gone)])
    size = os.path.getsize(project.store.path_of(gone))
    stats = collect_garbage(project)
    assert project.store.contains(target) and not project.store.contains(gone)
    assert stats.objects_deleted == 1
    if where == "loose":  # (a pack rewritten, and its records written back, changes what packs take)
        assert stats.bytes_freed == size
    assert fsck(project).ok


AT_THE_GATE = """
    import sys
    from scistack.objects.gate import WritersGate
    real = WritersGate.enter
    def enter(self):  # says when it is about to wait for the gate gc holds
        if not self.held:
            print("at the gate", flush=True)
        real(self)
    WritersGate.enter = enter
    sys.path.insert(0, sys.argv[2])
    import scistack
    from scistack import BaseVariable
    db = scistack.configure_database(sys.argv[1], {schema!r})
    class Resaved(BaseVariable): pass
    class RaceScaled(BaseVariable): pass
""".format(schema=SCHEMA)


def prune_now_while(project, python_env, monkeypatch, script: str, folder, step=None) -> tuple[str, str]:
    """gc --prune=now, started; once it holds the writers' gate, before its `step` (listing
    the objects; or `(owner, name)`), the second process runs `script` up to its first wait at
    the gate; gc then goes on, deletes and ends. The second process's output and errors."""
    owner, name = step or (project.store, "iter_oids")
    real, second, before = getattr(owner, name), [], []

    def with_the_second_process_waiting(*args, **kwargs):
        if not second:
            second.append(subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(AT_THE_GATE) + textwrap.dedent(script),
                 str(project.path), str(folder)], env=python_env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for line in second[0].stdout:  # (lines before it are the script's, kept)
                if line.strip() == "at the gate":
                    break
                before.append(line)
            else:
                raise AssertionError(second[0].communicate())
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, with_the_second_process_waiting)
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.grace_note == "" and stats.objects_deleted
    out, err = second[0].communicate(timeout=120)
    assert second[0].returncode == 0, err
    return "".join(before) + out, err


def test_undelete_waiting_for_a_pruning_gc_reports_the_value_reclaimed(project, python_env, monkeypatch, tmp_path):
    Resaved.save(np.arange(100.0), subject=1, session="a")
    Resaved.delete(subject=1)
    out, err = prune_now_while(project, python_env, monkeypatch, """
        print("undeleted", Resaved.undelete(subject=1))
    """, tmp_path)
    assert "undeleted 0" in out and "reclaimed by gc" in err
    assert fsck(project).ok


SCALE = """
from scistack import lineage_fcn

@lineage_fcn
def scale(x, k):
    return x * k
"""


@pytest.fixture
def scaled_then_deleted(project, tmp_path):
    """`scale` (a module of its own, importable by the second process) run by a for_each, its
    result then deleted: its objects and cache entry unreachable, the entry still there."""
    (tmp_path / "race_fns.py").write_text(SCALE)
    sys.path.insert(0, str(tmp_path))
    try:
        from race_fns import scale
        Resaved.save(np.arange(50.0), subject=1, session="a")
        for_each(scale, inputs={"x": Resaved, "k": 2.0}, outputs=[RaceScaled], subject=[1], session=["a"],
                 verbose=False)
        RaceScaled.delete(subject=1)
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("race_fns", None)


def test_a_cached_result_saved_while_a_pruning_gc_frees_it_is_stored_again(
        project, python_env, monkeypatch, tmp_path, scaled_then_deleted):
    out, _ = prune_now_while(project, python_env, monkeypatch, """
        from race_fns import scale
        result = scale(Resaved.load(subject=1, session="a"), 2.0)
        print("cached", result.cached)
        RaceScaled.save(result, subject=1, session="a")
    """, tmp_path, step=(project.index, "drop_calls"))  # (its cache entry is still there)
    assert "cached True" in out
    assert RaceScaled.load(subject=1, session="a").data[-1] == 98.0
    assert fsck(project).ok


def test_a_for_each_cache_hit_restoring_outputs_a_pruning_gc_frees_computes_again(
        project, python_env, monkeypatch, tmp_path, scaled_then_deleted):
    out, _ = prune_now_while(project, python_env, monkeypatch, """
        from scistack import for_each
        from race_fns import scale
        print(for_each(scale, inputs={"x": Resaved, "k": 2.0}, outputs=[RaceScaled], subject=[1],
                       session=["a"], verbose=False))
    """, tmp_path, step=(project.index, "drop_calls"))
    assert RaceScaled.load(subject=1, session="a").data[-1] == 98.0
    assert fsck(project).ok, out


def test_a_loose_object_a_killed_gc_left_set_aside_is_put_back_by_the_next(project):
    """gc sets a loose object aside for its last look at its age (a writer may have named it
    just before), then puts it back or deletes it. Killed between the two, it left the
    object under a temporary name, which the next gc removed as an old temporary file: a
    value a writer had named was lost. The set-aside name keeps the object's, and the next
    gc puts it back."""
    saved = Resaved.save(np.arange(7.0), subject=1, session="pre")
    path = project.store.path_of(saved.oid)
    assert path.exists()  # (a loose object: one value on its own)
    aside = path.with_name(f".tmp-gc-{path.name}-{_dead_pid()}-0123456789ab")  # as a killed gc left it
    os.rename(path, aside)
    backdate([aside])
    collect_garbage(project, grace_seconds=0)
    assert Resaved.load(subject=1, session="pre").data.tolist() == list(np.arange(7.0))
    assert fsck(project).ok
    saved = Resaved.save(np.arange(9.0), subject=2, session="pre")  # and fsck --repair, asked to
    path = project.store.path_of(saved.oid)
    os.rename(path, path.with_name(f".tmp-gc-{path.name}-{_dead_pid()}-0123456789ab"))
    assert not fsck(project).ok
    assert any("put back 1" in line for line in fsck(project, repair=True).repaired)
    assert fsck(project).ok and Resaved.load(subject=2, session="pre").data.tolist() == list(np.arange(9.0))
    running = path.with_name(f".tmp-gc-{path.name}-{os.getppid()}-0123456789ab")  # a gc at work
    os.rename(path, running)
    assert project.store.restore_set_aside() == 0 and running.exists()  # left to it to finish
    os.rename(running, path)


def test_a_set_aside_object_whose_pid_runs_another_process_or_is_another_places_is_put_back(
        project, python_env):
    """A set-aside name held its gc's pid alone: while that pid ran another process (pids are
    used again, after a restart at once, as in a container), or a process here had the pid of
    a gc of another machine or container sharing the folder, the object stayed aside, missing,
    and gc refused ("missing"). The name holds when that gc started and where it ran
    (`_proc.pid_started`, `process_place`): a running gc's own is left to it, the others are
    put back."""
    from scistack.objects._proc import pid_started, process_place

    saved = Resaved.save(np.arange(6.0), subject=4, session="pre")
    path = project.store.path_of(saved.oid)
    gc = subprocess.Popen([sys.executable, "-c", "import sys, time\n"  # (a gc between its two steps)
                           "from scistack.objects.local import _aside_name\n"
                           "print(_aside_name(sys.argv[1]), flush=True)\ntime.sleep(300)", path.name],
                          env=python_env, stdout=subprocess.PIPE, text=True)
    try:
        running = path.with_name(gc.stdout.readline().strip())  # the name that gc gives it
        started = pid_started(gc.pid)
        assert started.isdigit(), "the start of a process is read from /proc (Linux)"
        os.rename(path, running)
        assert project.store.restore_set_aside() == 0 and running.exists()  # left to it to finish
        os.rename(running, path)
        for left in (f"{gc.pid}-{int(started) + 1}-{process_place()}",  # its pid, another process now
                     f"{gc.pid}-{started}-0123456789abcdef"):  # another place's gc: its pid is not ours
            aside = path.with_name(f".tmp-gc-{path.name}-{left}-0123456789ab")
            os.rename(path, aside)
            assert project.store.restore_set_aside() == 1 and not aside.exists()
            assert Resaved.load(subject=4, session="pre").data.tolist() == list(np.arange(6.0))
    finally:
        gc.kill()
        gc.wait()
        gc.stdout.close()
    os.rename(path, running)  # and the gc's own, once it is gone
    assert project.store.restore_set_aside() == 1 and not running.exists()
    collect_garbage(project, grace_seconds=3600)
    assert fsck(project).ok


@pytest.mark.parametrize("pid", [2**40, 10**30])
def test_a_set_aside_name_with_a_pid_no_process_can_have_fails_neither_gc_nor_fsck(project, pid):
    """The pid is read from a file name, so it may be anything: one too large for os.kill
    made every gc and `fsck --repair` of the project fail with OverflowError. It is answered
    as s3's gc lock answers it (objects/_proc.pid_alive: alive when it cannot be told), so
    the object is left where it is, as a running gc's would be, and named missing."""
    saved = Resaved.save(np.arange(5.0), subject=3, session="pre")
    path = project.store.path_of(saved.oid)
    aside = path.with_name(f".tmp-gc-{path.name}-{pid}-0123456789ab")
    os.rename(path, aside)
    assert project.store.restore_set_aside() == 0 and aside.exists()
    assert not fsck(project, repair=True).ok
    with pytest.raises(GarbageCollectionError, match="missing"):
        collect_garbage(project, grace_seconds=0)
    assert aside.exists()
    os.rename(aside, path)
    assert fsck(project).ok and Resaved.load(subject=3, session="pre").data.tolist() == list(np.arange(5.0))


def _dead_pid() -> int:
    """The pid of a process that has ended (a gc killed)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)
