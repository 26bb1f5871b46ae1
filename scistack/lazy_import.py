"""Heavy libraries imported when first used, so that `import scistack` and a `scistack status`
do not pay for DuckDB and pyarrow (~0.1 s of a ~0.3 s start) when they never touch them.

`pa = lazy_module("pyarrow", globals(), "pa")` binds a stand-in. Its first attribute access
imports the module and puts the real module in that name of the caller's globals, so every
later access is a plain global lookup. The import itself runs under Python's import lock, so
two threads that reach for the module at once both get it whole.

The standard library's `importlib.util.LazyLoader` (and `lazy_loader`, built on it) does not
serve on Python 3.11: a thread can see the module half loaded (CPython gh-114763, fixed in
3.12.3), and the background DuckDB sync runs in threads.
"""

from __future__ import annotations

import importlib
from typing import Any


class _StandIn:
    """Where a lazily imported module's name points until its first use."""

    __slots__ = ("_name", "_namespace", "_alias")

    def __init__(self, name: str, namespace: dict[str, Any], alias: str) -> None:
        self._name, self._namespace, self._alias = name, namespace, alias

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        if self._namespace.get(self._alias) is self:
            self._namespace[self._alias] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


def lazy_module(name: str, namespace: dict[str, Any], alias: str) -> Any:
    """A stand-in for module `name`, bound as `alias` in `namespace` (a module's `globals()`)."""
    return _StandIn(name, namespace, alias)
