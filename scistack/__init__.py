"""scistack: a versioned, queryable, lineage-tracked home for every value a pipeline produces."""

from __future__ import annotations

__version__ = "0.1.0"
