"""`Split`: one call's result saved at several finer addresses (a fan-out output).

```python
for_each(cut_trials, inputs={"emg": SessionEMG}, outputs=[Split(TrialEMG, by="trial")],
         subject=[1, 2], session=["pre", "post"])
```
`cut_trials` returns `{1: trial_1, 2: trial_2, ...}`; each value is saved as `TrialEMG` at the
combination's address plus `trial=<label>`, with the call's lineage. The labels are only
known once the function has run, which is why a save inside the function was the way before
(and a cache hit skipped it). Here the call record keeps the labels (`extra["split"]`) and
its outputs list every value in order, so a cached re-run restores each trial from the cache,
and gc, `why` and `status` see each trial's value as the call's output.

The call-cache entry of such a call is marked (`filecheck.SPLIT_MARK` in its "fn"): its outputs are
the trials, not what a direct call of the function returns, so a direct call or a for_each
without the same Split computes its own result instead of being served this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scistack.address import address_problem, address_value, shown
from scistack.errors import InvalidMetadataError
from scistack.foreach.inputs import EachOf, is_variable
from scistack.foreach.paths import PathOutput
from scistack.index import key_of
from scistack.lineage.filecheck import is_split
from scistack.records import read_splits


class Split:
    """Save each item of a returned dict as `variable` at the address plus `by=<key>`."""

    __slots__ = ("variable", "by")

    def __init__(self, variable: Any, by: str) -> None:
        if not is_variable(variable):
            raise InvalidMetadataError(
                f"Split takes a variable class first, e.g. Split(Trial, by=\"trial\"), got {variable!r}")
        if not isinstance(by, str) or not by:
            raise InvalidMetadataError(
                f"Split({variable.__name__}, by=...) takes the schema key the returned dict's keys fill, "
                f"e.g. by=\"trial\", got {by!r}")
        self.variable, self.by = variable, by

    def __repr__(self) -> str:
        return f"Split({self.variable.__name__}, by={self.by!r})"


def unsplit(outputs: Sequence[Any]) -> tuple[list[Any], tuple[str | None, ...]]:
    """The output variable classes, and per output the key it is split by (None: not split)."""
    return ([o.variable if isinstance(o, Split) else o for o in outputs],
            tuple(o.by if isinstance(o, Split) else None for o in outputs))


def check_splits(outputs: Sequence[Any], schema_keys: list[str], iterables: dict[str, Any],
                 inputs: dict[str, Any]) -> None:
    """A Split names a schema key that the run does not iterate (the combination leaves it
    open), and receives a returned dict, not a written file (those fill the first outputs)."""
    writes = sum(1 for spec in inputs.values() if isinstance(spec, PathOutput) or (
        isinstance(spec, EachOf) and any(isinstance(p, PathOutput) for p in spec.alternatives)))
    check_split_keys([(repr(o), o.by) if isinstance(o, Split) else (None, None) for o in outputs],
                     schema_keys, list(iterables), writes)


def check_split_keys(splits: Sequence[tuple[str | None, str | None]], schema_keys: list[str],
                     iterated: Sequence[str], writes: int = 0) -> None:
    """`check_splits` for outputs given as (how the output is shown, the key it splits by or
    None): Python's `Split` objects, and MATLAB's `scistack.Split` by name."""
    for position, (shown_as, by) in enumerate(splits):
        if by is None:
            continue
        if position < writes:
            raise InvalidMetadataError(
                f"outputs: {shown_as} is output {position + 1}, which receives a file written through "
                f"PathOutput (written files fill the first {writes} output(s)); put the Split after them")
        if by not in schema_keys:
            raise InvalidMetadataError(
                f"outputs: {shown_as} splits by {by!r}, which is not a schema key {schema_keys}; "
                f"split by a schema key finer than the run's combination (add one with "
                f"db.add_schema_key({by!r}) if the experiment grew a level)")
        if by in iterated:
            raise InvalidMetadataError(
                f"outputs: {shown_as} splits by {by!r}, but the run iterates {by}= too, so every "
                f"combination already has one {by}; leave {by}= out of the iterables (the "
                "function's returned dict then names them), or save a plain output")


def split_items(value: Any, by: str, function: str) -> list[tuple[Any, Any]]:
    """The (label, value) pairs of a dict returned for an output split by `by`, labels as
    addresses hold them."""
    if not isinstance(value, dict):
        raise ValueError(
            f"{function} returned {type(value).__name__} for an output split by {by!r}; return a dict "
            f"from each {by} to its value, e.g. {{1: trial_1, 2: trial_2}}")
    items = []
    for label, item in value.items():  # (1 and 1.0, or np.int64(1), are one key of a dict already)
        label = address_value(label)
        problem = address_problem(label)
        if problem is not None:
            raise ValueError(f"{function} returned a dict whose key {shown(label)} cannot be a {by}: it {problem}")
        items.append((label, item))
    return items


def group_outputs(flat: Sequence[Any], labels: Sequence[Sequence[Any] | None]) -> list[Any]:
    """The flat per-value outputs (as a call record lists them) back per output: an item for
    a plain output, a list of (label, item) for a split one."""
    grouped, at = [], 0
    for these in labels:
        if these is None:
            grouped.append(flat[at])
            at += 1
        else:
            grouped.append(list(zip(these, flat[at:at + len(these)])))
            at += len(these)
    if at != len(flat):
        raise ValueError(f"{len(flat)} outputs for {at} values")
    return grouped


def fitting_layouts(store: Any, hits: Sequence[dict[str, Any]], splits: Sequence[str | None]
                    ) -> list[tuple[tuple | None, ...] | None]:
    """Per cached call `hit` of a run splitting as `splits` says: per output, None or the
    labels of its parts, as that call made them; None when they do not fit (another number
    of values, split otherwise): the combination runs again. The call records are read (in
    bulk, their `split` field only) only when either side splits: a plain hit costs nothing
    more."""
    splitting = any(by is not None for by in splits)
    layouts: list[tuple[tuple | None, ...] | None] = [None] * len(hits)
    asked = []
    for n, hit in enumerate(hits):
        if splitting or is_split(hit):
            asked.append(n)
        elif not splits or len(hit["outs"]) == len(splits):
            layouts[n] = (None,) * len(splits)
    for n, split in zip(asked, read_splits(store, [hits[n]["call"] for n in asked])):
        layouts[n] = _fitting(split, hits[n], splits)
    return layouts


def fitting_layout(store: Any, hit: dict[str, Any], splits: Sequence[str | None]
                   ) -> tuple[tuple | None, ...] | None:
    """`fitting_layouts` of one cached call."""
    return fitting_layouts(store, [hit], splits)[0]


def _fitting(split: list | None, hit: dict[str, Any], splits: Sequence[str | None]
             ) -> tuple[tuple | None, ...] | None:
    if split is None or len(split) != len(splits):
        return None  # (a gc'd or damaged record too: run again)
    layout: list[tuple | None] = []
    for part, by in zip(split, splits):
        if part is None and by is None:
            layout.append(None)
        elif isinstance(part, dict) and by is not None and part.get("by") == by:
            layout.append(tuple(part.get("labels") or ()))
        else:
            return None
    if sum(1 if labels is None else len(labels) for labels in layout) != len(hit["outs"]):
        return None
    return tuple(layout)


def places(outputs: Sequence[str], splits: Sequence[str | None], combo: dict[str, Any], addr_key: str,
           values: Sequence[Any], layout: Sequence[tuple | None]) -> list[tuple[str, dict[str, Any], str, Any]]:
    """(variable, address, address key, value) for each output value (as a call record lists
    them): a plain output's at the combination, each part of a split one at the combination
    plus its label."""
    if not any(by is not None for by in splits):
        return [(var, combo, addr_key, out) for var, out in zip(outputs, values)]
    found = []
    for var, by, out in zip(outputs, splits, group_outputs(values, layout)):
        if by is None:
            found.append((var, combo, addr_key, out))
            continue
        for label, part in out:
            address = {**combo, by: label}
            found.append((var, address, key_of(address), part))
    return found


def split_record(splits: Sequence[str | None], labels: Sequence[Sequence[Any] | None]) -> list | None:
    """The call record's `split` field (None when nothing was split)."""
    if not any(by is not None for by in splits):
        return None
    return [None if by is None else {"by": by, "labels": list(these or ())} for by, these in zip(splits, labels)]
