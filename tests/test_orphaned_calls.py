"""`rm` names the cache entries a deletion orphans (every output named before, one not after)
from the index's counts of the plan's oids alone; held here to the definition, computed
from every record, over random histories (outputs of one content under several names and
calls, versions, deletions)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scistack import BaseVariable, for_each, lineage_fcn
from scistack.errors import VariableNotFoundError
from scistack.report.removal import orphaned_calls, removal_plan


class OcIn(BaseVariable):
    pass


class OcOut(BaseVariable):
    pass


class OcConst(BaseVariable):
    pass


@lineage_fcn
def oc_doubled(x):
    return x * 2


@lineage_fcn
def oc_constant(x):
    return 1.0  # one content for every input: one oid under many names and calls


@lineage_fcn
def oc_both(x):
    return x * 2, 1.0  # an entry of two outputs: one may be unnamed while the other is


def _by_definition(db, plan) -> list[str]:
    """The keys of the entries `plan` orphans, from every record (what rm computed before)."""
    gone = {(r.var, r.addr_key, r.version) for r in plan}
    before, after = set(), set()
    for var in db.index.variables():
        for r in db.index.records(var):
            before.add(r.oid)
            if (r.var, r.addr_key, r.version) not in gone:
                after.add(r.oid)
    lost = before - after
    return sorted(e["key"] for e in db.index.calls()
                  if e.get("outs") and set(e["outs"]) <= before and lost.intersection(e["outs"]))


SUBJECT = st.integers(1, 3)
OPS = st.lists(st.one_of(
    st.tuples(st.just("save"), SUBJECT, st.integers(0, 2)),
    st.tuples(st.just("run"), SUBJECT, st.sampled_from([oc_doubled, oc_constant, oc_both])),
    st.tuples(st.just("delete"), SUBJECT, st.sampled_from([OcOut, OcConst, OcIn])),
), min_size=1, max_size=10)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_orphaned_calls_match_their_definition(project, ops):
    for var in (OcIn, OcOut, OcConst):
        try:
            var.delete(all=True)
        except VariableNotFoundError:
            pass
    for op, subject, arg in ops:
        if op == "save":
            OcIn.save(np.arange(3.0) + arg, subject=subject, session="a")
        elif op == "run":
            outs = {oc_doubled: [OcOut], oc_constant: [OcConst], oc_both: [OcOut, OcConst]}[arg]
            for_each(arg, inputs={"x": OcIn}, outputs=outs, subject=[subject], session=["a"], progress=False)
        else:
            try:
                arg.delete(subject=subject)
            except VariableNotFoundError:
                pass
    for var in ("OcIn", "OcOut", "OcConst"):
        for subject in (1, 2, 3):
            for cascade in (False, True):
                try:
                    plan = removal_plan(project, var, cascade=cascade, subject=subject, session="a")
                except VariableNotFoundError:
                    continue
                got = sorted(e["key"] for e in orphaned_calls(project, plan))
                assert got == _by_definition(project, plan), (var, subject, cascade)
