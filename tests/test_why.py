"""`why` on values computed from aggregated inputs (every record below a partial address)."""

from __future__ import annotations

import numpy as np

from scistack import BaseVariable, for_each, why
from scistack.report.why import why_record


class AggRaw(BaseVariable):
    pass


class AggMean(BaseVariable):
    pass


def average(values):
    return float(np.mean([v.mean() for v in values]))


def test_aggregate_input_is_current_until_a_member_changes(project):
    for subject in (1, 2):
        for session in ("pre", "post"):
            AggRaw.save(np.arange(5.0) + subject, subject=subject, session=session)
    for_each(average, inputs={"values": AggRaw}, outputs=[AggMean], subject=[1, 2])
    assert why(AggMean, subject=1).status == "current"
    AggRaw.save(np.ones(5), subject=1, session="pre")
    report = why(AggMean, subject=1)
    assert report.status == "stale"
    assert [r.kind for r in report.reasons] == ["input"]
    assert why(AggMean, subject=2).status == "current"


def test_why_record_needs_no_class(project):
    AggRaw.save(np.arange(3.0), subject=1, session="pre")
    record = AggRaw.load(subject=1, session="pre").record
    assert why_record(project, "AggRaw", record).status == "raw"


def test_changed_input_is_stale_even_when_the_function_cannot_be_found(project, monkeypatch):
    import scistack.report.why as provenance

    for session in ("pre", "post"):
        AggRaw.save(np.arange(5.0), subject=1, session=session)
    for_each(average, inputs={"values": AggRaw}, outputs=[AggMean], subject=[1])
    AggRaw.save(np.ones(5), subject=1, session="pre")
    monkeypatch.setattr(provenance, "_find_function", lambda module, name: None)
    report = why(AggMean, subject=1)
    assert report.status == "stale"
    assert {r.kind for r in report.reasons} == {"input", "unknown"}
