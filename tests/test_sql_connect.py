"""A read-only query while this process's own background sync holds the DuckDB file."""

from __future__ import annotations

import threading
import time

from scistack import BaseVariable


class SqlConnA(BaseVariable):
    pass


def test_read_only_query_waits_for_a_read_write_connection_in_the_same_process(project):
    SqlConnA.save(1, subject=1)
    project.sync()
    sql = project.index._sql
    ready, done = threading.Event(), threading.Event()

    def hold() -> None:
        with sql.connect():
            ready.set()
            time.sleep(0.3)
        done.set()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    with sql.connect(read_only=True) as con:  # used to raise ConnectionException at once
        assert done.is_set()
        assert con.execute("SELECT count(*) FROM scistack.refs").fetchone()[0] == 1
    thread.join()
