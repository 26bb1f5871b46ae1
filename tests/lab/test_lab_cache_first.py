"""Naming what this machine's cache holds but the bucket lost: every path that names a stored
object again (a cached result at a new address, a loaded input in a new call record, a
result computed before the lab project was opened) puts the cached copy back first, so a
colleague's checkout can load what was named."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import scistack.database as database_module
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
    keys = sorted(_bucket(s3_server, bucket_url)[3])
    planned = for_each(lab_doubled, inputs={"value": LabValue}, outputs=[LabDoubled], subject=[2], session=[1],
                       progress=False, dry_run=True)  # the run's decision, by looking only: nothing put back
    assert planned.cached == 1 and sorted(_bucket(s3_server, bucket_url)[3]) == keys
    report = for_each(lab_doubled, inputs={"value": LabValue}, outputs=[LabDoubled], subject=[2], session=[1],
                      progress=False)
    assert report.cached == 1 and LabDoubled.load(subject=2, session=1).oid == out
    db.store.wait_uploads()
    machine("c")  # a colleague's fresh checkout
    assert LabDoubled.load(subject=2, session=1).data.tolist() == [0.0, 2.0, 4.0, 6.0]


class LabQuadrupled(BaseVariable):
    pass


def test_a_loaded_input_the_bucket_lost_is_put_back_by_the_call_that_names_it(machine, s3_server, bucket_url):
    """A new call record names its loaded input's value and the call record that made it;
    `bring_inputs` put them again only when the store lacked them, asked with `contains`,
    which a lab's cache answers first: the record named objects no colleague could read."""
    db = machine("a")
    LabValue.save(np.arange(4.0), subject=1, session=1)
    doubled = LabDoubled.save(lab_doubled(LabValue.load(subject=1, session=1)), subject=1, session=1)
    db.store.wait_uploads()
    value, made_by = doubled.oid, doubled.call
    _lose(s3_server, bucket_url, value)
    _lose(s3_server, bucket_url, made_by)
    db = machine("a")  # a later session: its cache still holds both
    LabQuadrupled.save(lab_doubled(LabDoubled.load(subject=1, session=1)), subject=1, session=1)
    db.store.wait_uploads()
    c = machine("c")  # a colleague's fresh checkout reads the new record's whole lineage
    assert c.store.get_value(value).tolist() == [0.0, 2.0, 4.0, 6.0]
    assert c.call_record(made_by)["function"]["name"] == "lab_doubled"


@lineage_fcn
def lab_scaled(value, gains):
    return value * gains


def test_an_array_constant_the_bucket_lost_is_put_back_by_the_next_call_that_names_it(machine, s3_server,
                                                                                   bucket_url):
    """`store_constants` put an array constant only when `contains` said the store lacked it."""
    from scistack.objects.store import hash_value

    gains = np.array([1.0, 2.0, 3.0])
    db = machine("a")
    LabValue.save(np.ones(3), subject=1, session=1)
    LabValue.save(np.zeros(3), subject=2, session=1)
    LabDoubled.save(lab_scaled(LabValue.load(subject=1, session=1), gains), subject=1, session=1)
    db.store.wait_uploads()
    _lose(s3_server, bucket_url, hash_value(gains))
    db = machine("a")  # a later session: its cache still holds the constant
    LabDoubled.save(lab_scaled(LabValue.load(subject=2, session=1), gains), subject=2, session=1)
    db.store.wait_uploads()
    c = machine("c")
    assert c.store.get_value(hash_value(gains)).tolist() == gains.tolist()


def test_a_result_computed_before_the_lab_project_was_opened_is_put_back_when_the_bucket_lost_it(
        machine, s3_server, bucket_url):
    """A result computed with no database is copied in when saved (`copy_into_database`); a
    value object the store `contains` was not copied, and a lab's cache answers first."""
    db = machine("a")
    LabDoubled.save(np.arange(4.0) * 2, subject=1, session=1)  # the same value, saved directly
    db.store.wait_uploads()
    value = LabDoubled.load(subject=1, session=1).oid
    _lose(s3_server, bucket_url, value)
    db.close()  # no database: lineage in this process's memory
    result = lab_doubled(np.arange(4.0))
    assert result.oid == value
    db = machine("a")  # a later session: its cache still holds the value
    LabQuadrupled.save(result, subject=2, session=1)
    db.store.wait_uploads()
    machine("c")
    assert LabQuadrupled.load(subject=2, session=1).data.tolist() == [0.0, 2.0, 4.0, 6.0]


def _staged(db, name: str, document: dict, file: str) -> Path:
    from scistack.objects.canonical_json import dumps_canonical

    folder = db.root / ".scistack" / "staging" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_bytes(dumps_canonical(document) + b"\n")
    return folder / file


def test_a_matlab_run_restoring_a_cached_result_puts_it_back_when_the_bucket_lost_it(machine, s3_server,
                                                                                   bucket_url, tmp_path):
    """A MATLAB run's plan calls a cached output that is no longer current `restore` (asked
    with `contains`, which a lab's cache answers first) and its commit named it again: with
    no copy in the bucket, no colleague could load it."""
    from scistack.matlab_bridge import commit, plan
    from scistack.objects.npy import encode_npy

    fn = tmp_path / "code" / "lab_twice.m"
    fn.parent.mkdir()
    fn.write_text("function y = lab_twice(signal)\ny = signal * 2;\nend\n")
    db = machine("a")
    LabValue.save(np.arange(3.0), subject=1, session=1)
    request = {"children": [], "format": 1, "function": {"file": str(fn), "helpers": [], "name": "lab_twice"},
               "inputs": {"signal": {"var": "LabValue"}}, "iterate": [["subject", [1]], ["session", [1]]],
               "order": ["signal"], "outputs": ["LabDoubled"], "schema_keys": db.schema_keys,
               "writer": "scistack-matlab"}
    plan(db, _staged(db, "first", request, "plan.json"))
    (db.root / ".scistack" / "staging" / "first" / "payload-1.bin").write_bytes(
        b"".join(bytes(p) for p in encode_npy(np.arange(3.0) * 2)))
    ran = {"format": 1, "results": [{"index": 0, "status": "ran",
                                     "outputs": [{"kind": "npy", "payload": "payload-1.bin"}]}]}
    out = commit(db, _staged(db, "first", ran, "results.json"))["outputs"][0][0]
    LabDoubled.save(np.ones(2), subject=1, session=1)  # saved over it
    db.store.wait_uploads()
    _lose(s3_server, bucket_url, out)  # (the commit's batch went up as a pack)
    db = machine("a")  # a later session: its cache still holds the output
    (again,) = plan(db, _staged(db, "again", request, "plan.json"))["combos"]
    assert again["status"] == "cached" and again["restore"] is True
    assert commit(db, _staged(db, "again", {"format": 1, "results": []}, "results.json"))["counts"]["cached"] == 1
    db.store.wait_uploads()
    machine("c")
    assert LabDoubled.load(subject=1, session=1).data.tolist() == [0.0, 2.0, 4.0]


def test_a_stored_value_matlab_names_is_put_back_when_the_bucket_lost_it(machine, s3_server, bucket_url):
    """MATLAB saves a Thunk's result by its oid (a queued manifest item naming a stored value);
    ingest asked `contains`, which a lab's cache answers first."""
    from scistack.ingest import ingest_manifest

    db = machine("a")
    value = LabValue.save(np.arange(5.0), subject=1, session=1).oid
    db.store.wait_uploads()
    _lose(s3_server, bucket_url, value)
    db = machine("a")  # a later session: its cache still holds the value
    manifest = {"children": [], "format": 1, "schema_keys": db.schema_keys, "var": "LabDoubled",
                "writer": "scistack-matlab", "items": [{"addr": {"subject": 5, "session": 1}, "oid": value,
                                                        "vkeys": {}}]}
    assert ingest_manifest(db, _staged(db, "saved", manifest, "manifest.json")) == [value]
    db.store.wait_uploads()
    machine("c")
    assert LabDoubled.load(subject=5, session=1).data.tolist() == list(np.arange(5.0))


def test_a_loaded_result_saved_elsewhere_puts_back_the_call_record_the_bucket_lost(machine, s3_server,
                                                                                  bucket_url):
    """A loaded variable saved at another address names the call record that made it; it was
    asked `contains` (the value itself was freshened), and a lab's cache answers first."""
    db = machine("a")
    LabValue.save(np.arange(4.0), subject=1, session=1)
    made_by = LabDoubled.save(lab_doubled(LabValue.load(subject=1, session=1)), subject=1, session=1).call
    db.store.wait_uploads()
    _lose(s3_server, bucket_url, made_by)
    db = machine("a")  # a later session: its cache still holds the record
    saved = LabQuadrupled.save(LabDoubled.load(subject=1, session=1), subject=7, session=1)
    assert saved.call == made_by
    db.store.wait_uploads()
    c = machine("c")
    assert c.call_record(made_by)["function"]["name"] == "lab_doubled"


def test_a_loaded_dict_saved_elsewhere_puts_back_an_array_the_bucket_lost(machine, s3_server, bucket_url):
    """A dict of arrays is a dict object naming one object per array. Saving the loaded dict
    again freshened the dict's object only: an array the bucket had lost, still cached here,
    was named at the new address with no copy there, and a colleague's load failed."""
    from scistack.objects.codec import child_oids

    db = machine("a")
    saved = LabValue.save({"emg": np.arange(6.0), "fs": 2000}, subject=1, session=1)
    db.store.wait_uploads()
    (array,) = [oid for oid, _ in child_oids("json", db.store.get(saved.oid).payload)]
    _lose(s3_server, bucket_url, array)
    machine("a")  # a later session: its cache still holds the dict and its array
    LabValue.save(LabValue.load(subject=1, session=1), subject=2, session=1)
    database_module.current_database().store.wait_uploads()
    machine("c")  # a colleague's fresh checkout
    assert LabValue.load(subject=2, session=1).data["emg"].tolist() == list(np.arange(6.0))
