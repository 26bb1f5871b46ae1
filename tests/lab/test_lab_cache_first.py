"""Naming what this machine's cache holds but the bucket lost: every path that names a stored
object again (a cached result at a new address, a loaded input in a new call record, a
result computed before the lab project was opened) puts the cached copy back first, so a
colleague's checkout can load what was named."""

from __future__ import annotations

import numpy as np

from scistack import BaseVariable, for_each, lineage_fcn

from .test_lab_objects import LabValue, _bucket, machine  # noqa: F401 - `machine` is a fixture


class LabDoubled(BaseVariable):
    pass


@lineage_fcn
def lab_doubled(value):
    return value * 2


def _lose(s3_server, bucket_url, oid: str) -> None:
    """Delete object `oid` from the bucket: its loose copy, else every pack (a run's objects
    go up in packs); this machine's cache keeps them."""
    client, bucket, prefix, keys = _bucket(s3_server, bucket_url)
    key = f"{prefix}/objects/{oid[:2]}/{oid[2:]}"
    lost = [key] if key in keys else [k for k in keys if k.startswith(f"{prefix}/pack/")]
    assert lost
    for key in lost:
        client.delete_object(Bucket=bucket, Key=key)


def test_a_cached_result_named_at_another_address_is_put_back_when_the_bucket_lost_it(machine, s3_server,
                                                                                        bucket_url):
    """for_each serves the same values at another address from the cache, recorded with their
    own inputs (`_lineage_elsewhere`); it asked `contains`, which the cache answers first, and
    named the output there with no copy in the bucket."""
    machine("a")
    for subject in (1, 2):  # one value at two addresses: one call key
        LabValue.save(np.arange(4.0), subject=subject, session=1)
    for_each(lab_doubled, inputs={"value": LabValue}, outputs=[LabDoubled], subject=[1], session=[1],
             progress=False)
    db = machine("a")
    out = LabDoubled.load(subject=1, session=1).oid
    db.store.wait_uploads()
    _lose(s3_server, bucket_url, out)
    db = machine("a")  # a later session: its cache still holds the output
    report = for_each(lab_doubled, inputs={"value": LabValue}, outputs=[LabDoubled], subject=[2], session=[1],
                      progress=False)
    assert report.cached == 1 and LabDoubled.load(subject=2, session=1).oid == out
    db.store.wait_uploads()
    machine("c")  # a colleague's fresh checkout
    assert LabDoubled.load(subject=2, session=1).data.tolist() == [0.0, 2.0, 4.0, 6.0]
