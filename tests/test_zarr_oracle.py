"""zarr-python as an independent oracle (issue 14): it opens a stored chunked array
read-only from the manifest's Zarr v3 metadata and the chunk objects, and reads the same
values scistack does, for every chunkable dtype and for edge chunks."""

from __future__ import annotations

import numpy as np
import pytest

from scistack import BaseVariable
from scistack.objects.chunking import set_chunking
from scistack.objects.zarr_view import open_zarr

import zarr  # noqa: E402 - in the test extras: a missing one fails, never skips


@pytest.fixture(autouse=True)
def tiny_chunks():
    set_chunking(threshold=4 << 10, chunk_bytes=1 << 10)
    yield
    set_chunking()


class Field(BaseVariable):
    pass


@pytest.mark.parametrize("dtype", ["<i2", "<u1", "|b1", "<f4", "<f8", "<c16", "<i8"])
def test_zarr_reads_what_scistack_stored(project, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((301, 7, 5)) * 50).astype(dtype)  # edge chunks on the first axis
    saved = Field.save(x, subject=1, session=dtype)
    assert saved.record.kind == "chunked"
    z = open_zarr(project.store, saved.oid)
    assert z.shape == x.shape and z.dtype == x.dtype and z.read_only
    assert z.chunks == Field.load(subject=1, session=dtype, lazy=True).data.chunks
    np.testing.assert_array_equal(z[:], x)
    np.testing.assert_array_equal(z[250:301, 3, ::2], x[250:301, 3, ::2])
    with pytest.raises(Exception):
        z[0, 0, 0] = 1
    np.testing.assert_array_equal(open_zarr(project, saved.oid)[:2], x[:2])  # (the database: its store)
