"""Cluster workers in lab mode: a Dask worker writes outputs straight to the shared bucket and
returns oids; only the calling process records names."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

import scistack.database as database_module
from scistack import BaseVariable, configure_database, for_each
from tests import foreach_fns as fns

ROOT = str(Path(__file__).resolve().parents[2])


class LabClusterIn(BaseVariable):
    pass


class LabClusterOut(BaseVariable):
    pass


def test_dask_workers_upload_outputs_and_the_caller_names_them(tmp_path, monkeypatch, pg_url, bucket_url,
                                                               s3_server):
    import dask.distributed as distributed  # in the test extras: a missing one fails
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in [ROOT, os.environ.get("PYTHONPATH")] if p))
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    db = configure_database(tmp_path / "a" / "gait.duckdb", ["subject"], shared=pg_url, objects=bucket_url)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    try:
        with db.batch():
            for subject in range(6):
                LabClusterIn.save(np.arange(4.0) + subject, subject=subject)
        report = for_each(fns.bandpass, inputs={"signal": LabClusterIn, "low_hz": 3.0}, outputs=[LabClusterOut],
                          subject=range(6), executor=client.get_executor(), chunk_size=2, progress=False)
        assert (report.ran, report.failed) == (6, 0), report.summary()
        oid = LabClusterOut.list_versions(subject=5)[0].oid
        assert not db.store.cache.contains(oid)  # written by a worker, not through this cache
        assert LabClusterOut.load(subject=5).data.tolist() == [15.0, 18.0, 21.0, 24.0]
        again = for_each(fns.bandpass, inputs={"signal": LabClusterIn, "low_hz": 3.0}, outputs=[LabClusterOut],
                         subject=range(6), executor=client.get_executor(), progress=False)
        assert again.cached == 6
    finally:
        client.close()
        cluster.close()
        db.close()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    other = configure_database(tmp_path / "b" / "gait.duckdb", None, shared=pg_url, objects=bucket_url)
    try:
        assert LabClusterOut.load(subject=5).data.tolist() == [15.0, 18.0, 21.0, 24.0]
        assert len(LabClusterOut.list_versions(subject=5)) == 1
    finally:
        other.close()
        database_module._current = None


class LabSession(BaseVariable):
    pass


class LabTrial(BaseVariable):
    pass


class LabCount(BaseVariable):
    pass


def test_split_parts_saved_in_one_checkout_are_cached_in_another(tmp_path, monkeypatch, pg_url, bucket_url,
                                                                 s3_server):
    """A fan-out output (Split) in a lab project: the parts and the split call's cache entry
    travel through the shared journal, so a colleague's rerun restores nothing and runs nothing."""
    from scistack import Split

    def cut():
        return for_each(fns.cut_trials, inputs={"recording": LabSession, "n": 3},
                        outputs=[Split(LabTrial, by="trial"), LabCount], subject=[1, 2], progress=False,
                        verbose=False)

    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    db = configure_database(tmp_path / "a" / "gait.duckdb", ["subject", "trial"], shared=pg_url, objects=bucket_url)
    try:
        for subject in (1, 2):
            LabSession.save(np.arange(9.0) * subject, subject=subject)
        assert cut().ran == 2
    finally:
        db.close()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    other = configure_database(tmp_path / "b" / "gait.duckdb", None, shared=pg_url, objects=bucket_url)
    try:
        again = cut()
        assert (again.ran, again.cached) == (0, 2)
        assert LabTrial.load(subject=2, trial=3).data.tolist() == [12.0, 14.0, 16.0]
        assert len(LabTrial.list_versions(subject=2, trial=3)) == 1
    finally:
        other.close()
        database_module._current = None
