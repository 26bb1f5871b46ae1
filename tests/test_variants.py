"""One variant-selection rule for load, for_each, status and why: several version-key
variants at one address are ambiguous everywhere; a variant named (in load, or pinned with
`Fixed`) is the one used, recorded, and compared against."""

from __future__ import annotations

import numpy as np
import pytest

from scistack import BaseVariable, Fixed, for_each, lineage_fcn
from scistack.errors import AmbiguousVersionError
from scistack.report.status import status_grid, why_value


class VtRaw(BaseVariable):
    pass


class VtOut(BaseVariable):
    pass


@lineage_fcn
def vt_mean(x):
    return float(np.mean(x))


def _cell(db, subject):
    return status_grid(db, ["VtOut"]).cell("VtOut", {"subject": subject, "session": "pre"})


def test_a_plain_value_and_a_variant_are_ambiguous_in_load_and_for_each(project):
    VtRaw.save(np.ones(4), subject=1, session="pre")
    VtRaw.save(np.zeros(4), subject=1, session="pre", note="recal")  # newer
    with pytest.raises(AmbiguousVersionError, match="note"):
        VtRaw.load(subject=1, session="pre")
    report = for_each(vt_mean, inputs={"x": VtRaw}, outputs=[VtOut], subject=[1], session=["pre"],
                      progress=False)
    assert report.counts["failed"] == 1 and "note" in report.failures[0].error
    assert "ambiguous" in report.failures[0].error.lower() or "variants" in report.failures[0].error
    with pytest.raises(AmbiguousVersionError, match="variants"):
        why_value(project, "VtRaw", subject=1, session="pre")


@lineage_fcn
def vt_all(values):
    return [float(np.mean(v)) for v in values]


def test_several_variants_below_an_aggregated_input_are_ambiguous_too(project):
    """Iterating fewer keys than the schema hands the function every lower-level value: with a
    plain value and a variant at one session it had got both, mixed, and nothing to tell them
    apart. That combination fails naming the variants; a pinned one is taken."""
    VtRaw.save(np.ones(4), subject=1, session="pre")
    VtRaw.save(np.full(4, 2.0), subject=1, session="post")
    VtRaw.save(np.zeros(4), subject=1, session="post", note="recal")
    for as_table in (False, True):
        report = for_each(vt_all, inputs={"values": VtRaw}, outputs=[VtOut], subject=[1], as_table=as_table,
                          progress=False)
        assert report.counts["failed"] == 1 and "2 variants at subject=1, session='post'" in report.failures[0].error
    for pin, means in ((None, [2.0, 1.0]), ("recal", [0.0])):  # (post, then pre)
        report = for_each(vt_all, inputs={"values": Fixed(VtRaw, note=pin)}, outputs=[VtOut], subject=[1],
                          progress=False)
        assert report.counts["ran"] == 1 and VtOut.load(subject=1).data == means


def test_why_names_the_variant_it_judged(project):
    """`why(Var, ..., note="recal")` printed `Var(subject=1, session='pre') is current`: which
    variant was judged was not said."""
    from scistack import why

    VtRaw.save(np.ones(4), subject=1, session="pre")
    VtOut.save(vt_mean(VtRaw.load(subject=1, session="pre")), subject=1, session="pre", note="recal")
    told = why(VtOut, subject=1, session="pre", note="recal")
    assert str(told).startswith("VtOut(subject=1, session='pre', note='recal') is current")


def test_a_pinned_variant_is_used_and_status_and_why_agree_it_is_current(project):
    VtRaw.save(np.ones(4), subject=1, session="pre")
    VtRaw.save(np.zeros(4), subject=1, session="pre", note="recal")
    report = for_each(vt_mean, inputs={"x": Fixed(VtRaw, note="recal")}, outputs=[VtOut],
                      subject=[1], session=["pre"], progress=False)
    assert report.counts["ran"] == 1 and VtOut.load(subject=1, session="pre").data == 0.0
    assert _cell(project, 1).status == "done"
    assert why_value(project, "VtOut", subject=1, session="pre").status == "current"
    again = for_each(vt_mean, inputs={"x": Fixed(VtRaw, note="recal")}, outputs=[VtOut],
                     subject=[1], session=["pre"], progress=False)
    assert again.counts["cached"] == 1


def test_a_lone_variant_is_used_and_is_not_stale_after_the_run(project):
    VtRaw.save(np.full(4, 2.0), subject=2, session="pre", note="recal")
    report = for_each(vt_mean, inputs={"x": VtRaw}, outputs=[VtOut], subject=[2], session=["pre"],
                      progress=False)
    assert report.counts["ran"] == 1
    assert _cell(project, 2).status == "done"
    VtRaw.save(np.full(4, 3.0), subject=2, session="pre", note="recal")  # the variant changes
    assert _cell(project, 2).status == "stale"


class VtB(BaseVariable):
    pass


@lineage_fcn
def vt_fragile(x):
    if float(x[0]) == 2.0:
        raise ValueError("bad value")
    return float(np.mean(x))


def test_a_failed_each_of_alternative_is_failed_in_status_though_another_has_a_value(project):
    """EachOf(A, B) failing at one address for A only: the cell had been "done" from B's value
    there (a failure was hidden by any newer value at its address, and the stored run items
    did not say which alternative failed). The failure is now told from A's own values only."""
    from scistack import EachOf
    from scistack.report.runs import run_items
    from scistack.report.why import why_at

    for s in (1, 2):
        VtRaw.save(np.full(2, float(s)), subject=s, session="pre")  # A: fails at subject=2
        VtB.save(np.full(2, s + 10.0), subject=s, session="pre")
    report = for_each(vt_fragile, inputs={"x": EachOf(VtB, VtRaw)}, outputs=[VtOut], subject=[1, 2],
                      session=["pre"], progress=False, verbose=False)
    assert report.counts["failed"] == 1
    assert VtOut.load(subject=2, session="pre", x="VtB").data == 12.0
    failed = _cell(project, 2)
    assert failed.status == "failed" and "x='VtRaw'" in failed.reason and "bad value" in failed.reason
    assert _cell(project, 1).status == "done"
    # `scistack runs` names the alternative that failed; `why` of B's value names no failure
    _, items = run_items(project, failed.run)
    assert [i.combo for i in items if i.status == "failed"] == [{"subject": 2, "session": "pre", "x": "VtRaw"}]
    assert "failed" not in str(why_at(project, "VtOut", subject=2, session="pre", x="VtB"))
    VtRaw.save(np.full(2, 3.0), subject=2, session="pre")  # A's input fixed: its rerun computes there
    for_each(vt_fragile, inputs={"x": EachOf(VtB, VtRaw)}, outputs=[VtOut], subject=[1, 2], session=["pre"],
             progress=False, verbose=False)
    assert _cell(project, 2).status == "done"
