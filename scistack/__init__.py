"""scistack: a versioned, queryable, lineage-tracked home for every value a pipeline produces."""

from __future__ import annotations

__version__ = "0.1.0"

from scistack.database import Database, configure_database, get_database  # noqa: E402
from scistack.errors import *  # noqa: E402,F401,F403
from scistack.variables import BaseVariable  # noqa: E402

__all__ = ["BaseVariable", "Database", "configure_database", "get_database", "__version__"]
