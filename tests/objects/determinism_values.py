"""Values whose oids must not depend on the interpreter (hash seed, set order, dict order).

Several are *built* by iterating a set of str, whose order changes with PYTHONHASHSEED, so a
codec that followed insertion order instead of a canonical order would be caught.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

NAMES = {f"key{i:03d}-\u00e9" for i in range(300)} | {"$tag", "", "Z", "a b", "\U0001f600"}


def values() -> dict[str, Any]:
    many = {name: i for i, name in enumerate(sorted(NAMES))}
    shuffled = {name: many[name] for name in NAMES}  # set order: differs per hash seed
    columns = {name: np.arange(3) + i for i, name in enumerate(sorted(NAMES)[:20])}
    return {
        "dict-many-keys": shuffled,
        "dict-dollar-keys": {name: [name] for name in NAMES if name.startswith("$") or name < "key010"},
        "nested": {"subject": {n: (n, 1.5, None) for n in NAMES if n.endswith("7-\u00e9")}, "v": [1, 2**70]},
        "set-built-list": sorted(NAMES),
        "frame-columns": pd.DataFrame({name: columns[name] for name in NAMES if name in columns}
                                      )[sorted(columns)],
        "frame-dtypes": pd.DataFrame({
            "i": pd.array([1, None], dtype="Int64"), "c": pd.Categorical(["b", "a"]),
            "t": pd.to_datetime([0, 1], utc=True).tz_convert("Europe/Berlin"), "s": ["x", None]}),
        "series": pd.Series([1.5, -0.0], name=("a", 1)),
        "arrow": pa.table({name: [1, None] for name in sorted(NAMES)[:5]}),
        "array": np.arange(24, dtype=">f4").reshape(2, 3, 4).T,
        "scalars": [np.float16(0.1), np.datetime64("NaT", "ns"), np.str_("x"), 1 + 2j, b"\x00"],
        "container-of-children": {n: np.array([len(n)]) for n in sorted(NAMES)[:10]},
    }


def oids() -> dict[str, str]:
    from scistack.objects import MemoryObjectStore

    store = MemoryObjectStore()
    return {name: store.put_value(value) for name, value in values().items()}


if __name__ == "__main__":
    import json

    print(json.dumps({"hash_of_abc": hash("abc"), "oids": oids()}))
