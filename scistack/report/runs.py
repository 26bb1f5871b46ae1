"""The history of `for_each` runs: counts, durations, and each combination's outcome with
its traceback, as the run reports were journalled (docs/format.md, the `run` entry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scistack.database import Database
from scistack.errors import InvalidMetadataError, RunNotFoundError
from scistack.records import RunRecord


@dataclass(frozen=True, slots=True)
class RunItem:
    """One combination of a run."""

    combo: dict[str, Any]
    status: str
    duration: float
    error: str | None
    traceback: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run: which function, when, how long, how many combinations ended how."""

    run_id: str
    function: str
    t: str
    duration: float
    counts: dict[str, int]
    outputs: tuple[str, ...]
    dry_run: bool


def run_history(db: Database, *, function: str | None = None) -> list[RunSummary]:
    """Every journalled run (of `function` only, if given), newest first. A function with no
    run where others ran is refused, naming those (a mistyped name had read as "no runs")."""
    every = db.index.runs()
    runs = [_summary(r) for r in every if function is None or r.function == function]
    if function is not None and not runs and every:
        raise InvalidMetadataError(
            f"no for_each run of {function!r}; the runs are of {', '.join(sorted({r.function for r in every}))} "
            "(give a function's name as the runs list it)")
    return runs[::-1]


def run_items(db: Database, run_id: str) -> tuple[RunSummary, list[RunItem]]:
    """A run (by id, or a unique prefix of it) and its combinations, failures first."""
    found = [r for r in db.index.runs() if (r.run_id or "").startswith(run_id)] if run_id else []
    if len(found) != 1:
        raise RunNotFoundError(
            f"{len(found)} runs have an id starting with {run_id!r}; `scistack runs` lists them"
        )
    run = found[0]
    try:
        tree = db.store.get_value(run.items) if run.items else []
    except LookupError:  # gc'd, or never stored (a run where everything was cached)
        tree = []
    # (an EachOf alternative's item names its label beside the address)
    items = [RunItem({**i["combo"], **(i.get("vkeys") or {})}, i["status"], float(i.get("duration") or 0.0),
                     i.get("error"), i.get("traceback")) for i in tree]
    items.sort(key=lambda i: i.status != "failed")
    return _summary(run), items


def _summary(run: RunRecord) -> RunSummary:
    return RunSummary(run.run_id or "", run.function or "?", run.t, run.duration, dict(run.counts),
                      tuple(run.outputs or ()), run.dry_run)
