"""Small helpers shared by the tests."""

from __future__ import annotations

import os
from typing import Any


def journal_size(db: Any) -> int:
    """Bytes in a project's ref journal (0 before the first write)."""
    try:
        return os.path.getsize(db.index.journal_path)
    except FileNotFoundError:
        return 0
