"""`python -m scistack.sync_after_exit PROJECT.duckdb`: bring a project's DuckDB file in step
with its journal, started detached (`Index.close`, or at exit) by a process that ended with a
long tail unsynced. It opens the project as any process does, so the sync fills the views'
values too (`inline.py`). Waits while another process holds the file; gives up quietly after a
while, since any later scistack process syncs what is left."""

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
            try:
                db.sync(timeout=30.0)
                return 0
            except DatabaseLockedError:
                if time.monotonic() > deadline:
                    return 1
                time.sleep(1.0)
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
