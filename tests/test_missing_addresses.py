"""The addresses a variable lacks (what `status` lists as missing) are read through each
address's bitmask of variables present, kept by triggers as records come and go; they must
always be what probing every address for the variable's record finds, in the same order."""

from __future__ import annotations

import sqlite3

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scistack import BaseVariable
from scistack.errors import VariableNotFoundError
from scistack.index import key_of
from scistack.index.fold import FOLD_VERSION
from tests.helpers import migrated_in_place, older_fold


class GapA(BaseVariable):
    pass


class GapB(BaseVariable):
    pass


class GapC(BaseVariable):
    pass


VARS = [GapA, GapB, GapC]
PROBE = ("SELECT addr FROM addresses a WHERE NOT EXISTS (SELECT 1 FROM slots c WHERE c.var = ? AND "
         "c.addr = a.addr AND c.live) ORDER BY addr LIMIT ?")


def _probed(db, var: str, limit: int) -> list[str]:
    return [r[0] for r in db.index.judging().con.execute(PROBE, (var, limit))]


def _agrees(db, names: list[str]) -> None:
    judging = db.index.judging()
    live = {name: {r.addr_key for r in db.index.records(name)} for name in names}
    for name in names:
        for limit in (1, 3, 1000):
            assert judging.missing(name, limit) == _probed(db, name, limit), (name, limit)
        for within in (names[:1], names[1:3], names[-2:]):  # among some variables' addresses only
            among = set().union(*(live[w] for w in within))
            assert judging.missing(name, 3, within=within) == sorted(among - live[name])[:3], (name, within)
            assert judging.missing(name, -1, within=within) == sorted(among - live[name]), (name, within)
            assert judging.addresses(within) == len(among), within


OPS = st.lists(st.tuples(st.sampled_from(["save", "save", "delete"]), st.integers(0, 2),
                         st.integers(1, 4), st.sampled_from(["pre", "post"])), max_size=25)


@given(ops=OPS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_missing_agrees_with_probing_every_address(project, ops):
    for var in VARS:
        for record in project.index.records(var.__name__):
            project.index.delete_refs([record])
    for step, (op, v, subject, session) in enumerate(ops):
        if op == "save":
            VARS[v].save(float(step), subject=subject, session=session)
        else:
            try:
                VARS[v].delete(subject=subject, session=session)
            except VariableNotFoundError:
                pass
        _agrees(project, [var.__name__ for var in VARS])


ADDRESSES = st.lists(st.fixed_dictionaries({"subject": st.sampled_from([1, 2, 10, 1.5, -3, True, "a", "B", "b10"])},
                                            optional={"session": st.sampled_from(["pre", "post", 3, 20])}),
                     min_size=1, max_size=12)


@given(addrs=ADDRESSES, others=st.lists(st.integers(0, 11), max_size=4))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_missing_in_schema_order(project, addrs, others):
    """Given the schema keys, the addresses a variable lacks come as `status` lists its rows
    (`address_order`: subject before session, numbers by value before text, an address
    without a key before those with it), not in the order of their JSON text; read through
    the bitmasks or by probing, they agree."""
    from scistack.address import address_order

    for var in VARS:
        for record in project.index.records(var.__name__):
            project.index.delete_refs([record])
    for addr in addrs:
        GapA.save(1.0, **addr)
    GapB.save(1.0, **addrs[0])
    for i in others:  # more sets of variables present: more bitmasks to merge
        GapC.save(1.0, **addrs[i % len(addrs)])
    keys = ["subject", "session"]
    lacking = {key_of(a): a for a in addrs if key_of(a) != key_of(addrs[0])}
    expected = sorted(lacking, key=lambda k: (address_order(lacking[k], keys), k))
    judging = project.index.judging()
    for limit in (1, 3, -1):
        wanted = expected if limit < 0 else expected[:limit]
        assert judging.missing("GapB", limit, keys=keys) == wanted
        assert judging.missing("GapB", limit, within=["GapA", "NoSuchVar"], keys=keys) == wanted  # (probed)


def test_past_63_variables_the_answer_is_the_same(project):
    """A bitmask holds 63 variables; the 64th on reads by probing, and agrees."""
    many = [type(f"Many{i:02d}", (BaseVariable,), {}) for i in range(70)]
    for var in many:
        var.save(1.0, subject=1, session="pre")
    many[0].save(2.0, subject=2, session="pre")
    many[-1].save(2.0, subject=3, session="pre")
    names = [var.__name__ for var in many]
    _agrees(project, names)
    judging = project.index.judging()
    assert judging.missing("Many05", 10) == [key_of({"subject": 2, "session": "pre"}),
                                             key_of({"subject": 3, "session": "pre"})]
    assert judging.missing("Many69", 10) == [key_of({"subject": 2, "session": "pre"})]
    bits = dict(judging.con.execute("SELECT var, bit FROM var_bits"))
    assert bits["Many00"] == 0 and bits["Many69"] == 69  # in the order first saved


def test_a_fold_of_layout_8_gains_the_bitmasks_in_place(project, tmp_path):
    from scistack import configure_database

    for subject in (1, 2, 3):
        GapA.save(1.0, subject=subject, session="pre")
        GapB.save(1.0, subject=subject, session="pre")
    GapC.save(1.0, subject=9, session="pre")
    GapB.delete(subject=2, session="pre")
    path, mark = older_fold(project, "ALTER TABLE calls DROP COLUMN origins; DROP TRIGGER slot_born; DROP TRIGGER slot_revived; "
                             "DROP TRIGGER slot_emptied; "
                             "DROP INDEX addresses_by_vars; ALTER TABLE addresses DROP COLUMN vars; "
                             "DROP TABLE var_bits; UPDATE meta SET value = '8' WHERE key = 'fold_version';")
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    try:
        assert db.index.judging().missing("GapB", 10) == [key_of({"subject": s, "session": "pre"}) for s in (2, 9)]
        _agrees(db, ["GapA", "GapB", "GapC"])
        GapB.save(np.zeros(2), subject=2, session="pre")  # the triggers keep it from here on
        GapC.delete(subject=9, session="pre")
        assert db.index.judging().missing("GapB", 10) == []
        _agrees(db, ["GapA", "GapB", "GapC"])
        assert migrated_in_place(path, mark)  # the same file, not a rebuilt one
        version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'fold_version'").fetchone()
        assert version == (str(FOLD_VERSION),)  # (through 9, 10, 11: object counts, running counts, call facts)
    finally:
        db.close()
