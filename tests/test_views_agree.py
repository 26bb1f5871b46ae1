"""Every per-variable view in DuckDB agrees with the fold of the journal: the newest version of
each (address, version keys), after any mix of saves, re-saves and deletes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scistack.database as database_module
from scistack import BaseVariable, configure_database


class AgreeA(BaseVariable):
    pass


class AgreeB(BaseVariable):
    pass


VARIABLES = {"AgreeA": AgreeA, "AgreeB": AgreeB}
save = st.tuples(st.just("save"), st.sampled_from(sorted(VARIABLES)), st.integers(1, 3),
                 st.sampled_from(["pre", "post"]), st.sampled_from([None, "recal"]), st.integers(0, 2))
delete = st.tuples(st.just("delete"), st.sampled_from(sorted(VARIABLES)), st.integers(1, 3))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(save, delete), min_size=1, max_size=12), st.booleans())
def test_views_agree_with_the_fold(ops, batched):
    with tempfile.TemporaryDirectory() as tmp:
        db = configure_database(Path(tmp) / "agree.duckdb", ["subject", "session"])
        try:
            for op in ops:
                if op[0] == "save":
                    _, var, subject, session, note, value = op
                    extra = {"note": note} if note else {}
                    if batched:
                        with db.batch():
                            VARIABLES[var].save(float(value), subject=subject, session=session, **extra)
                    else:
                        VARIABLES[var].save(float(value), subject=subject, session=session, **extra)
                else:
                    _, var, subject = op
                    try:
                        VARIABLES[var].delete(subject=subject)
                    except LookupError:
                        pass
            for var in VARIABLES:
                fold = sorted((r.addr["subject"], r.addr["session"], r.vkeys.get("note") or "", r.version, r.oid)
                              for r in db.index.select(var, {}, {}, {}))
                if var not in db.index.variables():
                    assert fold == []
                    continue
                frame = db.sql(f'SELECT * FROM "{var}"')
                notes = frame["note"] if "note" in frame else [None] * len(frame)
                view = sorted((int(s), se, n if isinstance(n, str) else "", int(v), o)
                              for s, se, n, v, o in zip(frame["subject"], frame["session"], notes,
                                                        frame["version"], frame["oid"]))
                assert view == fold
        finally:
            db.close()
            database_module._current = None
