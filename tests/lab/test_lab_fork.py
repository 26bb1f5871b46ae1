"""A lab project used in a forked child (a user's own fork; for_each's pool spawns)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WORKER = str(Path(__file__).parents[1] / "fork_worker.py")


def test_a_forked_childs_lab_save_is_refused_and_its_parent_carries_on(tmp_path, pg_url, bucket_url, python_env,
                                                                         s3_env):
    """A lab save in a forked child waited for ever on the upload pool's threads (the
    parent's); with those reset, the S3 client's requests waited for ever too, and the parent's
    runtime thread, woken for the child's connections on the poller they share, hung or died of
    SIGSEGV (objects/s3.py, `_refuse_in_forked_child`). The child's save is refused, naming
    spawn; a value in the cache loads there; the parent saves, loads and closes."""
    done = subprocess.run([sys.executable, "-X", "faulthandler", WORKER, str(tmp_path), pg_url, bucket_url],
                          env=python_env | s3_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "parent saved, loaded, queried and closed" in done.stdout
