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


def older_fold(db: Any, script: str) -> tuple[Any, int]:
    """Close the project and turn its fold into an older layout's with `script` (SQL); returns
    the fold's path and inode, to show that the next open migrates that file in place."""
    import sqlite3

    path = db.root / ".scistack" / "fold.sqlite"
    db.close()
    con = sqlite3.connect(path)
    con.executescript(script)
    con.close()
    return path, path.stat().st_ino
