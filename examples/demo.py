"""A real (small) gait-analysis pipeline on scistack: save raw data, filter it, summarise it,
re-run it (everything cached), change a constant (exactly that step re-runs), and look at
the results from Python, SQL and provenance. Run with `make demo`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from scistack import BaseVariable, Fixed, configure_database, for_each, lineage_fcn, why

HERE = Path(__file__).resolve().parent.parent / "demo_project"
shutil.rmtree(HERE, ignore_errors=True)
HERE.mkdir()

db = configure_database(HERE / "gait.duckdb", ["subject", "session"])


class RawEMG(BaseVariable):
    pass


class FilteredEMG(BaseVariable):
    pass


class MaxActivation(BaseVariable):
    pass


class ChangeFromBaseline(BaseVariable):
    pass


@lineage_fcn
def bandpass(signal, low_hz, high_hz):
    """A crude moving-average band-pass: enough to show the machinery."""
    slow = np.convolve(signal, np.ones(int(1000 / low_hz)) / int(1000 / low_hz), mode="same")
    return np.abs(signal - slow) * (high_hz / 450)


@lineage_fcn
def peak(envelope):
    return float(np.max(envelope))


@lineage_fcn
def change(baseline, current):
    return current - baseline


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


section("1. save raw recordings (3 subjects x 3 sessions)")
rng = np.random.default_rng(7)
with db.batch():
    for subject in (1, 2, 3):
        for session in ("baseline", "pre", "post"):
            RawEMG.save(rng.normal(size=2000) * subject, subject=subject, session=session)
print(RawEMG.load(subject=1, session="pre"))

section("2. run the pipeline with for_each")
args = dict(subject=[1, 2, 3], session=["baseline", "pre", "post"], progress=False)
print(for_each(bandpass, inputs={"signal": RawEMG, "low_hz": 20, "high_hz": 450}, outputs=[FilteredEMG], **args))
print(for_each(peak, inputs={"envelope": FilteredEMG}, outputs=[MaxActivation], **args))
print(for_each(change, inputs={"baseline": Fixed(MaxActivation, session="baseline"), "current": MaxActivation},
               outputs=[ChangeFromBaseline], subject=[1, 2, 3], session=["pre", "post"], progress=False))

section("3. run it again: every call is cached")
t0 = time.perf_counter()
print(for_each(bandpass, inputs={"signal": RawEMG, "low_hz": 20, "high_hz": 450}, outputs=[FilteredEMG], **args))
print(f"(re-run took {1000 * (time.perf_counter() - t0):.1f} ms)")

section("4. change a constant: that step re-runs, old results stay loadable")
print(for_each(bandpass, inputs={"signal": RawEMG, "low_hz": 30, "high_hz": 450}, outputs=[FilteredEMG], **args))
print("default now:", FilteredEMG.load(subject=1, session="pre"))
print("by constant:", FilteredEMG.load(subject=1, session="pre", low_hz=20))
print(why(MaxActivation, subject=1, session="pre"))

section("5. re-run the downstream steps: only what changed upstream recomputes")
print(for_each(peak, inputs={"envelope": FilteredEMG}, outputs=[MaxActivation], **args))
print(for_each(change, inputs={"baseline": Fixed(MaxActivation, session="baseline"), "current": MaxActivation},
               outputs=[ChangeFromBaseline], subject=[1, 2, 3], session=["pre", "post"], progress=False))
print(why(MaxActivation, subject=1, session="pre"))

section("6. everything as one DataFrame (a column per key and lineage parameter)")
frame = MaxActivation.load_all(as_df=True)
print(frame[["subject", "session", "low_hz", "high_hz", "data", "fn", "version"]].to_string(index=False))

section("7. plain SQL on the readable view (the DuckDB CLI and DBeaver see the same)")
db.sync()
print(db.sql("SELECT subject, session, value FROM MaxActivation ORDER BY subject, session"))

section("8. provenance of one value")
prov = db.get_provenance(MaxActivation, subject=2, session="post")
print({k: prov[k] for k in ("function_name", "constants", "code_hash", "created_at")})
print("inputs:", {k: (v.get("var"), v.get("addr")) for k, v in prov["inputs"].items()})
print("upstream params:", prov["params"])

db.close()
print(f"\nproject left in {HERE} (try: cd demo_project && ../.venv/bin/scistack log MaxActivation)")
