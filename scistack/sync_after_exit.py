"""`python -m scistack.sync_after_exit PROJECT.duckdb`: bring a project's DuckDB file in step
with its journal, started detached (`Index.close`, or at exit) by a process that ended with a
long tail unsynced. It opens the project as any process does, so the sync fills the views'
values too (`inline.py`). Waits while another process holds the file; gives up quietly after a
while, since any later scistack process syncs what is left.

One runs at a time (`Index.detached_sync_turn`): a process ending while one runs leaves its
tail to it, and it looks again once its turn is over, so a tail written meanwhile is taken up
(a process that finds the turn free syncs, or detaches, itself)."""

from __future__ import annotations

import os
import sys
import time

from scistack.errors import DatabaseLockedError
from scistack.database import Database

PATIENCE = 600.0  # seconds to keep trying while the file is held elsewhere


def main(argv: list[str]) -> int:
    os.environ["SCISTACK_SYNC"] = "foreground"  # this process never detaches another
    db = Database(argv[1])
    deadline = time.monotonic() + PATIENCE
    try:
        while True:
            with db.index.detached_sync_turn() as mine:
                if not mine:
                    return 0  # another one runs: it takes up this tail when its turn ends
                if not _synced(db, deadline):
                    return 1
            if db.index.duckdb_in_step():  # (looked at after the turn: see the module's docstring)
                return 0
    finally:
        db.close()


def _synced(db: Database, deadline: float) -> bool:
    while True:
        try:
            db.index.sync(timeout=30.0)  # (`Database.sync` takes no timeout: this had raised,
            return True  # and only the foreground sync of `close` had done the work)
        except DatabaseLockedError:
            if time.monotonic() > deadline:
                return False
            time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
