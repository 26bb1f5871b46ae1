"""`RunReport`: what a `for_each` run did, per combination, readable and stored.

The report is what scientists look at when a run ends ("ran 118, cached 2, 4 missing, 1
failed: subject=7 session='post': ValueError ...") and what `scistack` commands show later:
it is journalled as a `run` entry, its per-combination table stored as an object.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from scistack import htmlrepr
from scistack.address import shown_address
from scistack.records import RunRecord
from scistack.objects.canonical_json import dumps_canonical

STATUSES = ("ran", "cached", "missing", "failed", "would_run", "skipped")
_SHOWN = 5


def counts_text(counts: dict[str, int], *, skip_zero: bool = False) -> str:
    """Counts as for_each's summary line says them ("6 ran, 0 cached, 0 missing, 0 failed"),
    in STATUSES order whatever the order of `counts` (a stored run's are in key order): the
    one formatter of for_each's summary and `scistack runs`."""
    order = [s for s in STATUSES if s in counts] + sorted(s for s in counts if s not in STATUSES)
    return ", ".join(f"{counts[s]} {s}" for s in order if counts[s] or not skip_zero)


def _cut(line: str, width: int = 160) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


@dataclass(slots=True)
class ComboResult:
    """The outcome of one combination."""

    combo: dict[str, Any]
    status: str
    duration: float = 0.0
    error: str | None = None
    traceback: str | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        """`subject=1, session='pre'`: the combination as messages show it (as `load` takes it)."""
        return shown_address(self.combo) or "(no keys)"


@dataclass(slots=True)
class RunReport:
    """Counts, per-combination statuses, failures with tracebacks, and timings of a run."""

    function: str
    items: list[ComboResult]
    duration: float
    run_id: str = ""
    dry_run: bool = False
    results: Any = None   # scifor mode: the DataFrame of results

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(item.status for item in self.items)
        return {status: counted.get(status, 0) for status in STATUSES if counted.get(status) or status in
                ("ran", "cached", "missing", "failed")}

    @property
    def failures(self) -> list[ComboResult]:
        return [item for item in self.items if item.status == "failed"]

    def __getattr__(self, name: str) -> int:
        if name in STATUSES:
            return sum(1 for item in self.items if item.status == name)
        raise AttributeError(name)

    def to_frame(self) -> Any:
        """One row per combination: its keys, status, duration and error."""
        import pandas as pd

        keys = list(dict.fromkeys(k for i in self.items for k in i.combo))
        return pd.DataFrame([{**i.combo, "status": i.status, "duration": i.duration, "error": i.error}
                             for i in self.items], columns=[*keys, "status", "duration", "error"])

    def summary(self) -> str:
        """Counts and time, then the combinations that did not run: failed (with the error),
        missing (with the inputs not found) and skipped (with the reason), five of each."""
        lines = [self.headline()]
        for status in ("failed", "missing", "skipped"):
            items = [item for item in self.items if item.status == status]
            for item in items[:_SHOWN]:
                where = item.where
                if status == "missing":
                    why = f"no {', '.join(item.missing)} there" if item.missing else "inputs not found"
                else:
                    why = item.error or ""
                lines.append(_cut(f"  {status} {where}: {why}"))
            if len(items) > _SHOWN:
                lines.append(f"  ... and {len(items) - _SHOWN} more {status} (report.to_frame())")
        return "\n".join(lines)

    def headline(self) -> str:
        """One line: counts and time (what for_each prints when it ends)."""
        counts = counts_text(self.counts)
        head = f"for_each({self.function}): {counts} in {self.duration:.2f} s"
        return "[dry run] " + head if self.dry_run else head

    __str__ = summary

    def __repr__(self) -> str:
        return f"<RunReport {self.headline()}>"

    def _repr_html_(self) -> str:
        """The headline, then the combinations that did not run or come from the cache."""
        shown = [i for i in self.items if i.status not in ("ran", "cached")]
        keys = list(dict.fromkeys(k for i in shown for k in i.combo))
        rows = [[*(i.combo.get(k, "") for k in keys), i.status,
                 ", ".join(i.missing) if i.status == "missing" else i.error or ""] for i in shown[:100]]
        detail = htmlrepr.table([*keys, "status", "why"], rows, more=max(0, len(shown) - 100)) if rows else ""
        return f"<p><b>{htmlrepr.cell(self.headline(), 300)}</b></p>{detail}"

    def to_record(self, items_oid: str | None, t: str, outputs: list[str],
                  inputs: list[str] | None = None) -> RunRecord:
        """The journalled record of this run; `inputs`: the variables it read (sorted; an
        `EachOf` alternative's run names its own), which tell the graph which step of a
        function it was (a run whose every call failed left no call record to say)."""
        extra = {} if inputs is None else {"inputs": sorted(inputs)}
        return RunRecord(self.run_id, self.function, self.counts, round(self.duration, 6), items_oid,
                         self.dry_run, tuple(outputs), t, extra)

    def items_tree(self, vkeys: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Per-combination statuses as plain data (stored as an object, read by `scistack status`).
        `vkeys`: the version keys of an `EachOf` alternative's run, kept in each item beside its
        address ("vkeys"), so `status`, `why` and `runs` tell one alternative's failure from
        another's value at the same address (an item without them: a run with no EachOf)."""
        tag = {"vkeys": vkeys} if vkeys else {}
        return [{"combo": i.combo, "status": i.status, "duration": round(i.duration, 6) if i.duration else 0.0,
                 "error": i.error, "traceback": i.traceback, **tag} for i in self.items]

    def store_items(self, store: Any, vkeys: dict[str, str] | None = None) -> str:
        """Store `items_tree()` as a `json` object; returns its oid.

        The tree holds only str keys (schema keys are identifiers), finite floats, ints, str
        and None (address values are validated), so it is its own canonical tree: encoding
        it directly gives the bytes `put_value` would, without walking 10,000 items twice.
        """
        return store.put("json", dumps_canonical(self.items_tree(vkeys)))
