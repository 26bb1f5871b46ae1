"""Driver for test_one_edit.py, run as a fresh process: ``driver.py PHASE CASE[,CASE...]``.

Phase "before" saves two inputs per case and computes `run` through for_each (subject 1) and
by a direct call (subject 2). Phase "after" (a new process, after the edit) first asks `why`
and `status` about the for_each result, then runs both again and computes the truth by
calling the plain function, without the cache. Prints one JSON object: case -> observations.
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np

from scistack import BaseVariable, configure_database, for_each, why
from scistack.records import read_call
from scistack.report.status import status_grid


def _plain(value: object) -> object:
    return np.asarray(value).tolist()


def main() -> None:
    phase, names = sys.argv[1], sys.argv[2].split(",")
    db = configure_database("db/project.duckdb", ["subject"])
    seen: dict[str, dict[str, object]] = {}
    for name in names:
        source = type(f"In_{name}", (BaseVariable,), {})
        target = type(f"Out_{name}", (BaseVariable,), {})
        run = importlib.import_module(f"c_{name}.pipeline").run
        if phase == "before":
            source.save(np.arange(3.0), subject=1)
            source.save(np.arange(4.0), subject=2)
            report = for_each(run, inputs={"x": source}, outputs=[target], subject=[1])
            direct = run(source.load(subject=2))
            seen[name] = {
                "foreach": report.items[0].status,
                "error": report.items[0].error,
                "value": _plain(target.load(subject=1).data),
                "direct_value": _plain(direct.data),
            }
            continue
        recorded = read_call(db.store, target.load(subject=1).record.call)
        told = why(target, subject=1)
        cell = status_grid(db, [target.__name__]).cell(target.__name__, {"subject": 1})
        truth = _plain(run.fn(np.asarray(source.load(subject=1).data)))
        direct_truth = _plain(run.fn(np.asarray(source.load(subject=2).data)))
        report = for_each(run, inputs={"x": source}, outputs=[target], subject=[1])
        direct = run(source.load(subject=2))
        seen[name] = {
            "recorded_identity": recorded.function.identity,
            "identity_now": run.identity().digest,
            "recorded_files": recorded.extra.get("files"),
            "why": told.status,
            "why_text": str(told),
            "status": cell.status if cell else None,
            "status_reason": cell.reason if cell else None,
            "foreach": report.items[0].status,
            "error": report.items[0].error,
            "value": _plain(target.load(subject=1).data),
            "truth": truth,
            "direct_cached": direct.cached,
            "direct_value": _plain(direct.data),
            "direct_truth": direct_truth,
        }
    db.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
