"""The byte shuffle of array chunks: unshuffling gives back exactly the payload, for every width."""

import numpy as np
import pytest

from scistack.objects.shuffle import choose, shuffled, unshuffle_into


@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("elements", [0, 1, 3, 100_003])
def test_unshuffle_gives_back_the_payload(width, elements):
    payload = np.random.default_rng(elements).integers(0, 256, width * elements, dtype=np.uint8).tobytes()
    stored = shuffled(payload, width)
    if elements > 1:
        assert stored != payload
    out = np.full(len(payload), 7, dtype=np.uint8)
    unshuffle_into(out, memoryview(b"head" + stored)[4:], width)  # an unaligned source, as inflated
    assert out.tobytes() == payload


def test_unshuffle_writes_into_a_block_of_a_larger_array():
    values = np.arange(-500, 500, dtype=np.int16) * 61
    result = np.zeros(3000, dtype=np.int16)
    unshuffle_into(result[1000:2000].view(np.uint8), shuffled(values.tobytes(), 2), 2)
    assert (result[1000:2000] == values).all() and not result[:1000].any() and not result[2000:].any()


def recording(start: int, rows: int, dtype) -> bytes:
    """bench/large.py's compressible data: 64 channels of a slow signal plus small noise."""
    t = np.arange(start, start + rows)[:, None]
    noise = np.random.default_rng(start).integers(-3, 4, (rows, 64))
    return (200 * np.sin(t / 3000 + np.arange(64)) + noise).astype(dtype).tobytes()


@pytest.mark.parametrize(("dtype", "width"), [(np.int16, 2), (np.float32, 4), (np.float64, 8)])
def test_the_narrowest_width_that_compresses_as_well_is_chosen(dtype, width):
    """int16 compresses about as well at every width (the samples' noise would pick any);
    the 2-byte unshuffle is the cheapest to read."""
    for start in range(0, 8 * 8192, 8192):
        payload = recording(start, 8192, dtype)
        step = len(payload) // 3 // 8 * 8
        samples = [payload[i * step : i * step + (64 << 10)] for i in range(3)]
        assert choose(samples, len(payload), "chunk", 0.1) == width
        assert not choose(samples, len(payload), "npy", 0.1)  # only chunks are shuffled


@pytest.mark.parametrize("width", [2, 4, 8])
def test_shuffled_is_byte_k_of_every_element_in_turn(width):
    """The whole-array integer passes (2 and 4 bytes) and the column copy (8) give what the
    stored format defines, also from a payload not aligned to its elements."""
    payload = np.random.default_rng(width).integers(0, 256, width * 1001, dtype=np.uint8).tobytes()
    expected = b"".join(payload[k::width] for k in range(width))
    assert shuffled(payload, width) == expected
    assert shuffled(memoryview(b"x" + payload)[1:], width) == expected
