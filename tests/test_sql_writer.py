"""The DuckDB writer thread of a sync (index/writer.py): order kept, first failure raised,
nothing run after it."""

from __future__ import annotations

import duckdb
import pytest

from scistack.index.writer import Writer


def _run(con, sql):
    con.execute(sql)


def test_work_runs_in_order_and_call_returns_after_everything_before(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    writer = Writer(con)
    writer.put(_run, "CREATE TABLE t (n INTEGER)")
    for n in range(50):
        writer.put(_run, f"INSERT INTO t VALUES ({n})")
    rows = writer.call(lambda c: [r[0] for r in c.execute("SELECT n FROM t ORDER BY rowid").fetchall()])
    writer.close()
    assert rows == list(range(50))
    con.close()


def test_the_first_failure_is_raised_and_later_work_does_not_run(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    writer = Writer(con)
    writer.put(_run, "CREATE TABLE t (n INTEGER)")
    writer.put(_run, "INSERT INTO nowhere VALUES (1)")
    writer.put(_run, "INSERT INTO t VALUES (2)")
    with pytest.raises(duckdb.CatalogException, match="nowhere"):
        writer.close()
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    con.close()
