"""MATLAB saves called as statements are queued on disk: an Octave killed right after its
saves returned loses none of them; `scistack ingest <project>/.scistack/queue` (what the next
MATLAB flush runs) records them in save order, readable from Python; two sessions and a
hand-run ingest flushing one queue at once record each save exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from scistack.database import Database
from scistack.objects.canonical_json import dumps_canonical
from tests.helpers import (octave_command, octave_env, octave_for_each_project, require_tool, run_octave,
                           scistack_cli)

MATLAB_TESTS = Path(__file__).resolve().parents[2] / "matlab" / "tests"


def test_saves_survive_a_kill_after_they_returned(tmp_path: Path):
    octave = require_tool("octave-cli")
    project = tmp_path / "p"
    script = (
        "addpath('..'); addpath('vars'); "
        f"scistack.configure_database('{project / 'gait.duckdb'}', {{'subject', 'session'}}); "
        "for k = 1:5, SavedValue().save([k; k + 1], 'subject', k, 'session', 'pre'); end; "
        "SavedValue().save(99, 'subject', 1, 'session', 'pre'); "
        "kill(getpid(), 9);"
    )
    env = octave_env()
    proc = subprocess.run([octave, "--no-gui", "--no-init-file", "--quiet", "--eval", script],
                          cwd=MATLAB_TESTS, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode != 0, "octave should have been killed"
    queue = project / ".scistack" / "queue"
    assert len([p for p in queue.iterdir() if (p / "manifest.json").is_file()]) == 6
    ingest = subprocess.run([scistack_cli(), "--db", str(project), "ingest", str(queue)],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ingest.returncode == 0, ingest.stderr
    assert len(ingest.stdout.split()) == 6
    assert not any(queue.iterdir())
    with Database(project / "gait.duckdb") as db:
        db.index.refresh()
        latest: dict = {}
        for r in db.index.records("SavedValue"):
            if r.addr["subject"] not in latest or r.version > latest[r.addr["subject"]].version:
                latest[r.addr["subject"]] = r
        assert np.array_equal(db.store.get_value(latest[3].oid), [3.0, 4.0])
        assert db.store.get_value(latest[1].oid) == 99  # the later save is the newer version
        assert latest[1].version == 2


def _queue_saves(project: Path, n: int) -> Path:
    """N saves queued as MATLAB queues them (a folder each, manifest.json last)."""
    queue = project / ".scistack" / "queue"
    for k in range(n):
        folder = queue / f"20261204T000000000-{k:08d}-t{k}"
        folder.mkdir(parents=True)
        (folder / "payload-0.bin").write_bytes(f"{k}.0".encode())
        manifest = {"children": [], "format": 1, "schema_keys": ["subject", "session"],
                    "items": [{"addr": {"session": "pre", "subject": k}, "kind": "json",
                               "payload": "payload-0.bin", "vkeys": {}}],
                    "var": "SavedValue", "writer": "scistack-matlab"}
        (folder / "manifest.json").write_bytes(dumps_canonical(manifest) + b"\n")
    return queue


def test_two_sessions_flushing_one_queue_record_each_save_once(tmp_path: Path):
    octave = require_tool("octave-cli")
    project = tmp_path / "p"
    Database(project / "gait.duckdb", ["subject", "session"]).close()
    queue = _queue_saves(project, 150)
    env = octave_env()
    script = ("addpath('..'); addpath('vars'); "  # configure_database flushes the queue it finds
              f"scistack.configure_database('{project / 'gait.duckdb'}', {{'subject', 'session'}}); "
              "scistack.flush();")
    racers = [  # two MATLAB sessions opening the project at once, and a hand-run ingest
        *(subprocess.Popen([octave, "--no-gui", "--no-init-file", "--quiet", "--eval", script],
                           cwd=MATLAB_TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True) for _ in range(2)),
        subprocess.Popen([scistack_cli(), "--db", str(project), "ingest", str(queue)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]
    outputs = [p.communicate(timeout=300) for p in racers]
    for proc, (out, err) in zip(racers, outputs):
        assert proc.returncode == 0, f"{out}\n{err}"
    assert not any(queue.iterdir())
    with Database(project / "gait.duckdb") as db:
        db.index.refresh()
        records = db.index.records("SavedValue")
        assert sorted(r.addr["subject"] for r in records) == list(range(150))  # none twice
        assert {r.version for r in records} == {1}


def test_save_refuses_the_version_keys_python_reserves():
    """`save` checks version keys in M before queuing (a refusal at the flush would come too
    late); its copy of the reserved names must be Python's."""
    from scistack.index.sql import RESERVED_NAMES

    text = (MATLAB_TESTS.parent / "+scistack" / "+internal" / "split_meta.m").read_text()
    listed = text.split("function names = reserved_names()")[1].split("end")[0]
    assert set(re.findall(r"'([a-z_]+)'", listed)) == set(RESERVED_NAMES)


def _slow_project(tmp_path: Path) -> tuple[Path, dict]:
    """Ten subjects of Raw, the classes and a slow step (it prints each combination it
    computed) in tmp_path, and the environment Octave runs it in."""
    with Database(tmp_path / "p" / "p.duckdb", ["subject"]) as db:
        for s in range(1, 11):
            db.index.put_ref("Raw", {"subject": s}, {}, db.store.put_value(np.arange(3.0) + s), "npy")
    env = octave_for_each_project(
        tmp_path, ("Raw", "Out"),
        {"slow": "function y = slow(x)\n  pause(0.5);\n  printf('computed %g\\n', x(1)); fflush(stdout);\n"
                 "  y = x * 2;\nend\n"}, ("subject",),
        "r = scistack.for_each(@slow, struct('x', Raw()), {Out()}, 'subject', 1:10);\n"
        "printf('ran=%d cached=%d\\n', r.counts.ran, r.counts.cached);\n")
    return tmp_path, env


def _stop_after(cwd: Path, env: dict, computed: int, sig: int) -> str:
    """Run run.m and send SIG to Octave (and what it started) once COMPUTED combinations
    were computed; returns what it wrote on stderr."""
    proc = subprocess.Popen(octave_command(), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    seen = 0
    for line in proc.stdout:
        seen += line.startswith("computed")
        if seen == computed:
            os.killpg(proc.pid, sig)
            break
    _, err = proc.communicate(timeout=120)
    assert seen == computed, err
    return err


def _rerun(cwd: Path, env: dict) -> tuple[int, int]:
    out = run_octave(cwd, env)
    counts = re.search(r"ran=(\d+) cached=(\d+)", out.stdout)
    assert counts, out.stdout + out.stderr
    return int(counts.group(1)), int(counts.group(2))


def test_a_for_each_stopped_by_ctrl_c_keeps_what_ran(tmp_path: Path):
    """MATLAB's for_each recorded its results with one commit after the loop: Ctrl-C after 3
    or 4 of 10 combinations kept none, and the re-run computed all 10 again. What finished is
    recorded as the loop unwinds (an onCleanup)."""
    cwd, env = _slow_project(tmp_path)
    err = _stop_after(cwd, env, 4, signal.SIGINT)
    assert "was interrupted; what finished is recorded" in err
    ran, cached = _rerun(cwd, env)
    assert cached >= 3 and ran + cached == 10  # (the 4th may be stopped after it printed)


def _interrupt_the_last_commit(tmp_path: Path, after: bool, group: bool = True) -> tuple[Path, dict, str]:
    """Run the slow project with the real CLI wrapped so that its last (not partial) commit
    lingers 5 s, before it runs (`after` False) or once it completed; SIGINT Octave then (and
    what it started, `group`, as a terminal does; MATLAB's Ctrl-C reaches its own process
    only). Returns the project's folder, environment and what Octave wrote on stderr."""
    cwd, env = _slow_project(tmp_path)
    mark = tmp_path / "last-commit"
    linger = f'if [ "$3" = matlab-commit ] && ! grep -q \'"partial"\' "$4" && mkdir {mark} 2>/dev/null; then sleep 5; fi\n'
    run = f'{scistack_cli()} "$@"; rc=$?\n'
    cli = tmp_path / "cli.sh"
    cli.write_text("#!/bin/sh\n" + (run + linger + "exit $rc\n" if after else linger + run + "exit $rc\n"))
    cli.chmod(0o755)
    proc = subprocess.Popen(octave_command(), cwd=cwd, env=dict(env, SCISTACK_CLI=str(cli)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    while not mark.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert mark.exists(), proc.communicate(timeout=60)[1]
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    return cwd, env, proc.communicate(timeout=120)[1]


def test_a_ctrl_c_during_the_last_commit_still_records_the_run(tmp_path: Path):
    """FINISH marked the run recorded before its commit ran: a Ctrl-C reaching Octave and the
    `scistack matlab-commit` it runs (one process group, as at a terminal) while that commit
    ran left the cleanup nothing to do, so nothing was said and nothing recorded (seen in CI
    under load, where the 4th combination's line was read late). The cleanup commits again."""
    cwd, env, err = _interrupt_the_last_commit(tmp_path, after=False)
    assert "was interrupted; what finished is recorded" in err
    assert _rerun(cwd, env) == (0, 10)


@pytest.mark.parametrize("group", [True, False], ids=["terminal", "octave-alone"])
def test_a_ctrl_c_just_after_the_last_commit_records_the_run_once(tmp_path: Path, group: bool):
    """The cleanup commits again after a Ctrl-C during the last commit; one landing after that
    commit had completed (before Octave's system() returned: at a terminal, or MATLAB's Ctrl-C,
    which only its own process sees) journalled a second run. A final commit already made
    returns what it recorded (review of bd02bed)."""
    _, _, err = _interrupt_the_last_commit(tmp_path, after=True, group=group)
    with Database(tmp_path / "p" / "p.duckdb") as db:
        assert len(db.index.runs()) == 1, err


def test_a_killed_for_each_keeps_what_its_commits_recorded(tmp_path: Path):
    """A kill runs no cleanup: what the loop's commits (every SCISTACK_COMMIT_EVERY seconds,
    here after each combination) recorded stays, and the re-run computes only the rest."""
    cwd, env = _slow_project(tmp_path)
    _stop_after(cwd, dict(env, SCISTACK_COMMIT_EVERY="0"), 5, signal.SIGKILL)
    ran, cached = _rerun(cwd, env)
    assert cached >= 4 and ran + cached == 10
