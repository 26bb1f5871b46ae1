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


def older_fold(db: Any, script: str) -> tuple[Any, str]:
    """Close the project and turn its fold into an older layout's with `script` (SQL); returns
    the fold's path and a mark left in it, to show (`migrated_in_place`) that the next open
    migrates that file in place rather than rebuilding it. The script must undo every later
    layout's change from 13 down (before 13: `calls.origins`); layout 14's (`var_calls.n`) is
    undone here first. A migration that failed on a column already there rebuilt the file,
    and the tests, comparing inodes, passed where the new file happened to get the old one's."""
    import sqlite3
    import uuid

    path = db.root / ".scistack" / "fold.sqlite"
    db.close()
    mark = uuid.uuid4().hex
    con = sqlite3.connect(path)
    con.executescript("DROP INDEX var_calls_by_n; ALTER TABLE var_calls DROP COLUMN n; "
                      "UPDATE meta SET value = '13' WHERE key = 'fold_version';" + script)
    con.execute("INSERT INTO meta VALUES ('test_mark', ?)", (mark,))
    con.commit()
    con.close()
    return path, mark


def migrated_in_place(path: Any, mark: str) -> bool:
    """Whether the fold at `path` is the file `older_fold` marked (not one rebuilt since)."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT value FROM meta WHERE key = 'test_mark'").fetchone() == (mark,)
    finally:
        con.close()
