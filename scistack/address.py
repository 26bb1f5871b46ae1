"""What an address value is: one rule for save, load, for_each and the index.

Schema-key values (and version-key values) are plain scalars: int, str, finite float or bool
(numpy scalars are unwrapped first). They keep their type: `1`, `"1"` and `True` are three
addresses, while `1` and `1.0` are one number.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ADDRESS_TYPES = (bool, int, float, str)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar it holds; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def is_address_value(value: Any) -> bool:
    """Whether `value` (already `plain`) can be an address value."""
    return isinstance(value, ADDRESS_TYPES) and not (isinstance(value, float) and not math.isfinite(value))


def typed(value: Any) -> tuple[str, Any]:
    """A hashable, type-aware form for matching: 1 and 1.0 meet; 1, "1" and True do not."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", value)
    if isinstance(value, (list, dict)):
        return ("json", repr(value))
    return (type(value).__name__, value)
