"""`scistack ls` sizes: the bulk lookup of childless objects (`leaf_sizes`) must give the bytes
a walk of every object and its children gives, for every kind of value, packed or loose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scistack import BaseVariable, configure_database
from scistack.objects.chunking import set_chunking
from scistack.report.history import _bytes_on_disk, list_variables


class SizedValue(BaseVariable):
    pass


VALUES = [
    0.5, 7, "a label", "x" * 5000, True, None, [1, 2, 3], {"gain": 2.0, "name": "emg"},
    {"signal": np.arange(50.0), "rate": 1000},  # a json object naming a child
    [np.ones(4), np.zeros(3)],
    np.arange(20.0), np.arange(100_000, dtype=np.int16),  # compressible: stored zstd
    np.random.default_rng(0).standard_normal(3000),  # above the tiny chunking threshold
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    {"$ref": "not an oid, only a key"},
]


@pytest.fixture
def project(tmp_path):
    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    yield db
    db.close()
    set_chunking()


@pytest.mark.parametrize("batched", [True, False], ids=["packed", "loose"])
def test_listed_bytes_equal_a_walk_of_every_object(project, batched):
    if batched:
        with project.batch():
            for subject, value in enumerate(VALUES):
                SizedValue.save(value, subject=subject)
    else:
        for subject, value in enumerate(VALUES):
            SizedValue.save(value, subject=subject)
    known, refs = project.index.stored_sizes("SizedValue")  # nothing measured yet: every object
    assert known == 0 and len(refs) == len(VALUES)
    walked = sum(_bytes_on_disk(project, oid, kind) for oid, kind in refs)
    [listed] = [s for s in list_variables(project) if s.name == "SizedValue"]
    assert listed.size_bytes == walked
    leaves = project.store.leaf_sizes([oid for oid, _ in refs])
    found = [size for size in leaves if size is not None]
    if batched:  # the bulk path is taken for the small childless ones, and only for them
        assert len(found) >= 6
        assert sum(found) < walked
    for (oid, kind), size in zip(refs, leaves):
        if size is not None:
            assert size == project.store.size_of(oid) == _bytes_on_disk(project, oid, kind)
