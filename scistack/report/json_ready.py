"""Library results as JSON-ready data, for `scistack ... --json` and the web view alike.

One converter for both: the CLI's own had let NaN and infinities through as the bare words
`NaN` and `Infinity`, which are not JSON (`jq` and a browser's `JSON.parse` reject them).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from scistack.index import RefRecord


def json_ready(data: Any) -> Any:
    """Records, dataclasses, containers and numpy values as plain JSON data: NaN and the
    infinities become null (as pandas' `to_json` and JavaScript write them), a complex number
    [real, imag], bytes the hex of their first 200; anything else unknown its `str`."""
    if data is None or isinstance(data, (str, bool, int)):
        return data
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, RefRecord):
        return json_ready(data.to_dict())
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return {f.name: json_ready(getattr(data, f.name)) for f in dataclasses.fields(data)}
    if isinstance(data, dict):
        return {str(k): json_ready(v) for k, v in data.items()}
    if isinstance(data, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in data]
    if isinstance(data, complex):
        return [json_ready(data.real), json_ready(data.imag)]
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data[:200]).hex()
    if hasattr(data, "tolist"):  # a numpy scalar or array
        return json_ready(data.tolist())
    return str(data)
