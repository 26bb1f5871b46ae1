"""`rm --cascade` finds what was computed from the deleted values from the index's call facts;
held here to the definition it replaced (every record of every variable and every call
record read), over random histories: chains of functions, per-subject aggregates of the
sessions, one content under several names, versions and deletions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scistack import BaseVariable, Merge, configure_database, for_each, lineage_fcn
from scistack.errors import VariableNotFoundError
from scistack.report.history import CallReader
from scistack.report.removal import removal_plan
from tests.helpers import migrated_in_place, older_fold


class CsIn(BaseVariable):
    pass


class CsOut(BaseVariable):
    pass


class CsConst(BaseVariable):
    pass


class CsNext(BaseVariable):
    pass


class CsSum(BaseVariable):
    pass


class CsMerged(BaseVariable):
    pass


@lineage_fcn
def cs_doubled(x):
    return x * 2


@lineage_fcn
def cs_constant(x):
    return 1.0  # one content for every input: one value under many names


@lineage_fcn
def cs_next(x):
    return float(np.sum(x)) + 1


@lineage_fcn
def cs_sum(x):  # at the subject level: every session's value of the subject
    return float(sum(np.sum(v) for v in x))


@lineage_fcn
def cs_merged(both):
    assert isinstance(both, pd.DataFrame), both
    return float(both["CsConst"].iloc[0])  # CsConst's value: one content per subject


def _by_definition(db, plan):
    """The slots `rm --cascade` deleted before: from every record and every call record."""
    calls, dependents = CallReader(db), {}
    everything = [r for v in db.index.variables() for r in db.index.records(v)]
    for record in everything:
        info = calls.get(record.call)
        for item in info.inputs if info else ():
            for oid in item.members or (item.oid,):
                dependents.setdefault((item.var, oid), []).append(record)
    chosen = {(r.var, r.addr_key, r.version): r for r in plan}
    frontier = list(plan)
    while frontier:
        gone = {(r.var, r.oid) for r in frontier}
        named = {(r.var, r.oid) for r in everything if (r.var, r.addr_key, r.version) not in chosen}
        frontier = []
        for key in gone - named:
            for dep in dependents.get(key, []):
                slot = (dep.var, dep.addr_key, dep.version)
                if slot not in chosen:
                    chosen[slot] = dep
                    frontier.append(dep)
    return sorted(chosen)


SUBJECT = st.integers(1, 2)
SESSION = st.sampled_from(["a", "b"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("save"), SUBJECT, SESSION, st.integers(0, 2)),
    st.tuples(st.just("run"), SUBJECT, SESSION, st.sampled_from(["doubled", "constant", "next", "sum"])),
    st.tuples(st.just("delete"), SUBJECT, SESSION, st.sampled_from([CsIn, CsOut, CsNext])),
), min_size=1, max_size=12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
@example(ops=[("save", 1, "a", 0), ("save", 1, "b", 1), ("run", 1, "a", "doubled"), ("run", 1, "b", "doubled"),
              ("run", 1, "a", "sum"), ("run", 1, "a", "next"), ("run", 1, "a", "constant")])
def test_cascade_matches_its_definition(project, ops):
    for var in (CsIn, CsOut, CsConst, CsNext, CsSum):
        try:
            var.delete(all=True)
        except VariableNotFoundError:
            pass
    for op, subject, session, arg in ops:
        if op == "save":
            CsIn.save(np.arange(3.0) + arg, subject=subject, session=session)
        elif op == "run" and arg == "sum":
            for_each(cs_sum, inputs={"x": CsOut}, outputs=[CsSum], subject=[subject], progress=False)
        elif op == "run":
            fn, src, out = {"doubled": (cs_doubled, CsIn, CsOut), "constant": (cs_constant, CsIn, CsConst),
                            "next": (cs_next, CsOut, CsNext)}[arg]
            for_each(fn, inputs={"x": src}, outputs=[out], subject=[subject], session=[session], progress=False)
        else:
            try:
                arg.delete(subject=subject, session=session)
            except VariableNotFoundError:
                pass
    for var in ("CsIn", "CsOut", "CsConst"):
        for subject in (1, 2):
            for session in ("a", "b"):
                try:
                    plan = removal_plan(project, var, subject=subject, session=session)
                except VariableNotFoundError:
                    continue
                got = removal_plan(project, var, cascade=True, subject=subject, session=session)
                assert sorted((r.var, r.addr_key, r.version) for r in got) == _by_definition(project, plan), \
                    (var, subject, session)


def test_cascade_follows_merged_inputs_and_chains(project):
    """A value computed from a merge of two variables goes with either of them (the old
    cascade missed it: a merge's members are in its call record, not in its input's own
    oid); so does what was computed from that value."""
    for subject in (1, 2):
        CsIn.save(np.arange(3.0) + subject, subject=subject, session="a")
        CsConst.save(float(subject), subject=subject, session="a")
    for_each(cs_merged, inputs={"both": Merge(CsIn, CsConst)}, outputs=[CsMerged], subject=[1, 2],
             session=["a"], progress=False)
    for_each(cs_next, inputs={"x": CsMerged}, outputs=[CsNext], subject=[1, 2], session=["a"], progress=False)

    plan = removal_plan(project, "CsConst", cascade=True, subject=1, session="a")
    assert sorted((r.var, r.addr["subject"]) for r in plan) == [("CsConst", 1), ("CsMerged", 1), ("CsNext", 1)]
    plan = removal_plan(project, "CsIn", cascade=True, subject=2, session="a")
    assert sorted((r.var, r.addr["subject"]) for r in plan) == [("CsIn", 2), ("CsMerged", 2), ("CsNext", 2)]


def test_a_fold_of_layout_11_learns_the_gathered_variables(tmp_path, monkeypatch):
    """Layout 11 learned call facts without the variables an aggregate gathers: the
    migration forgets the facts, so they are learned again with them."""
    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    for offset, session in enumerate(("a", "b")):
        CsOut.save(np.arange(3.0) + offset, subject=1, session=session)
    for_each(cs_sum, inputs={"x": CsOut}, outputs=[CsSum], subject=[1], progress=False)
    assert [r.var for r in removal_plan(db, "CsOut", cascade=True, subject=1, session="a")] == ["CsOut", "CsSum"]
    path, mark = older_fold(db, "DELETE FROM call_gathers; ALTER TABLE calls DROP COLUMN origins; UPDATE meta SET value = '11' WHERE key = 'fold_version';")
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    try:
        assert [r.var for r in removal_plan(db, "CsOut", cascade=True, subject=1, session="a")] == ["CsOut", "CsSum"]
        assert migrated_in_place(path, mark)  # migrated in place, not rebuilt
    finally:
        db.close()


def test_undelete_cascade_brings_back_what_rm_cascade_removed(project):
    """`rm --cascade` said "undo: scistack undelete Raw ..." and that brought back only the
    named variable, leaving what was computed from it deleted. The hint now names
    `--cascade`, which brings back the records deleted together with it that were computed
    from it (transitively), and no record deleted on another occasion."""
    from click.testing import CliRunner

    from scistack.cli import main

    for offset, session in enumerate(("a", "b")):
        CsIn.save(np.arange(3.0) + offset, subject=1, session=session)
    for_each(cs_doubled, inputs={"x": CsIn}, outputs=[CsOut], subject=[1], session=["a", "b"], progress=False)
    for_each(cs_next, inputs={"x": CsOut}, outputs=[CsNext], subject=[1], session=["a", "b"], progress=False)
    CsNext.delete(subject=1, session="b")  # computed from what rm deletes below, but deleted on its own

    def cli(*args):
        done = CliRunner().invoke(main, ["--db", str(project.path), *args])
        assert done.exit_code == 0, done.output
        return done.output

    before = {v: sorted((r.addr_key, r.version, r.oid) for r in project.index.records(v))
              for v in ("CsIn", "CsOut", "CsNext")}
    out = cli("rm", "CsIn", "subject=1", "session=b", "--cascade", "--yes")
    assert "undo (until gc): scistack undelete --cascade CsIn subject=1 session=b" in out
    assert [r.addr["session"] for v in ("CsIn", "CsOut") for r in project.index.records(v)] == ["a", "a"]
    for _ in range(2):  # a second rm and undelete bring back what the second rm removed, once
        out = cli("undelete", "--cascade", "CsIn", "subject=1", "session=b")
        assert "2 record(s) back" in out and "\n" not in out.strip()
        after = {v: sorted((r.addr_key, r.oid) for r in project.index.records(v)) for v in before}
        assert after == {v: sorted((a, o) for a, _, o in rows) for v, rows in before.items()}
        cli("rm", "CsIn", "subject=1", "session=b", "--cascade", "--yes")
    cli("undelete", "--cascade", "CsIn", "subject=1", "session=b")
    out = cli("undelete", "--cascade", "CsIn", "subject=1", "session=b")  # done already
    assert out.startswith("0 record(s) back; 1 back already")


def test_undelete_cascade_undoes_a_loop_of_rm_cascade_whole(project):
    """`rm --cascade` of one session after another, then `undelete --cascade CsIn` (no
    address), brought back the last session only, with what was computed from it. Each
    address's last delete is undone, with the records deleted together with it that were
    computed from them; a record deleted on another occasion stays deleted."""
    from click.testing import CliRunner

    from scistack.cli import main

    for offset, session in enumerate(("a", "b")):
        CsIn.save(np.arange(3.0) + offset, subject=1, session=session)
    for_each(cs_doubled, inputs={"x": CsIn}, outputs=[CsOut], subject=[1], session=["a", "b"], progress=False)
    for_each(cs_next, inputs={"x": CsOut}, outputs=[CsNext], subject=[1], session=["a", "b"], progress=False)
    CsNext.delete(subject=1, session="b")  # on its own, before the loop

    def cli(*args):
        done = CliRunner().invoke(main, ["--db", str(project.path), *args])
        assert done.exit_code == 0, done.output
        return done.output

    for session in ("a", "b"):
        cli("rm", "CsIn", "subject=1", f"session={session}", "--cascade", "--yes")
    assert [project.index.records(v) for v in ("CsIn", "CsOut", "CsNext")] == [[], [], []]
    assert cli("undelete", "--cascade", "CsIn").startswith("5 record(s) back")
    assert {v: sorted(r.addr["session"] for r in project.index.records(v))
            for v in ("CsIn", "CsOut", "CsNext")} == {"CsIn": ["a", "b"], "CsOut": ["a", "b"], "CsNext": ["a"]}
