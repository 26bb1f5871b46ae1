"""`python -m scistack.index.detached_sync DB JOURNAL KEYS`: bring a project's DuckDB file in
step with its journal, started detached by a process that ended with a long tail unsynced
(`Index.close`, or at exit). Waits for the file while another process holds it; gives up
quietly after a while, since any later scistack process syncs what is left."""

from __future__ import annotations

import json
import sys
import time

from scistack.errors import DatabaseLockedError
from scistack.index.journal import Journal
from scistack.index.sql import SqlIndex

PATIENCE = 600.0  # seconds to keep trying while the file is held elsewhere


def main(argv: list[str]) -> int:
    db_path, journal_path, keys = argv[1], argv[2], json.loads(argv[3])
    sql = SqlIndex(db_path, keys, Journal(journal_path))
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            sql.sync(timeout=30.0)
            return 0
        except DatabaseLockedError:
            if time.monotonic() > deadline:
                return 1
            time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
