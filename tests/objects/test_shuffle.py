"""The byte shuffle of array chunks: unshuffling gives back exactly the payload, for every width."""

import numpy as np
import pytest

from scistack.objects.shuffle import shuffled, unshuffle_into


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
