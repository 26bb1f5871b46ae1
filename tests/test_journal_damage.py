"""A journal line of the wrong shape (another language's buggy writer) is skipped and named;
it never makes the project unusable."""

from __future__ import annotations

import pytest

from scistack import BaseVariable
from scistack.errors import GarbageCollectionError
from scistack.fsck import fsck
from scistack.gc import find_reachable

BAD_LINES = [
    b'{"op":"put","var":"DamY"}',
    b"[1,2,3]",
    b'{"op":"put","var":"DamY","addr":{"subject":2},"oid":"x","kind":"json","t":"z"}',
    b'{"op":"del","var":"DamY","addr":{"subject":1},"version":"1"}',
    b'{"op":"call","key":7,"call":"c"}',
    b'"just a string"',
]


class DamY(BaseVariable):
    pass


@pytest.mark.parametrize("line", BAD_LINES)
def test_a_wrong_shaped_line_is_skipped_named_and_keeps_gc_safe(project, line):
    DamY.save(1.0, subject=1, session="pre")
    with open(project.index.journal_path, "ab") as journal:
        journal.write(line + b"\n")
    DamY.save(2.0, subject=3, session="pre")
    assert sorted(v.data for v in DamY.load_all()) == [1.0, 2.0]
    assert project.sql("SELECT count(*) AS n FROM DamY")["n"][0] == 2
    problems = [p for p in fsck(project).problems if p.kind == "journal"]
    assert len(problems) == 1 and "line 2 is skipped" in problems[0].detail
    with pytest.raises(GarbageCollectionError, match="1 line"):
        find_reachable(project)
