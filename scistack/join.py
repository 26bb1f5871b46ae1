"""`scistack.join(A, B, where=...)`: variables side by side on their shared schema keys.

Each variable contributes its current records (as `load_all(as_df=True)`), its value in a
column named after it, and its version/fn/created_at/oid as `<Var>_version` etc. Rows pair
up on the schema keys both have, so a variable saved per subject is repeated on each of that
subject's sessions (broadcast); a variable saved at several levels gives each row its finest
value covering it (a session's own calibration where it has one, else its subject's), as
`for_each` takes an input. Other columns both have (a lineage parameter of a shared
upstream step) are suffixed `_<Var>`.

`where` and keys select as in `load_all`: each variable applies the parts (top-level ANDs) it
has the columns for, so `where="low_hz = 10"` joins each one's low_hz=10 branch, also when a
later branch is newer; the parts naming a value or a column of several variables not all of
which could apply it are checked on the joined rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scistack.database import Database, get_database
from scistack.errors import InvalidMetadataError, QueryError
from scistack.lineage.running import refuse_load_inside
from scistack.variables import BaseVariable
from scistack.index.views import param_columns, value_type
from scistack.selection import names_column, value_types
from scistack.where import FIXED, conjuncts, matching_rows


def join(*variables: type[BaseVariable], where: str | tuple | None = None, **metadata: Any) -> Any:
    """A DataFrame of the variables' current values joined on shared schema keys.

    `metadata` selects joined rows by column (`subject=[1, 2]`: any of); `where` is a SQL
    condition over the keys, the fixed columns and the variables' scalar values
    (`where="MaxActivation > 0.5"`). Raises `InvalidMetadataError` when two variables share
    no schema key, or a variable is given twice.
    """
    if len(variables) < 2 or not all(isinstance(v, type) and issubclass(v, BaseVariable) and v is not BaseVariable
                                     for v in variables):
        raise InvalidMetadataError(
            f"join needs two or more BaseVariable classes, e.g. scistack.join(MaxActivation, StepLength); got {variables!r}")
    names = [v.__name__ for v in variables]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidMetadataError(f"join: {', '.join(twice)} given twice; name each variable once")
    refuse_load_inside(f"scistack.join({', '.join(names)})", names[0])
    db = get_database()
    parts = conjuncts(where) if where is not None else []
    written = where[0] if isinstance(where, tuple) else where  # (errors quote it, not the parts left below)
    frames, took_part, took_key = [], [], []
    for var in variables:
        frame, parts_taken, keys_taken = _load_selected(db, var, parts, metadata)
        frames.append((var.__name__, frame.rename(
            columns={"data": var.__name__, **{c: f"{var.__name__}_{c}" for c in FIXED}})))
        took_part.append(parts_taken)
        took_key.append(keys_taken)
    columns_of = [{c.lower() for c in frame.columns} for _, frame in frames]
    # a part (or key) each variable with its columns applied itself is not checked again: a
    # lineage parameter two of them have is suffixed in the joined rows (`low_hz_Peak`)
    left = [i for i, (_, _, names) in enumerate(parts) if not _applied(
        [i in taken for taken in took_part], [bool(names & cols) for cols in columns_of])]
    left_keys = [k for k in metadata if not _applied(
        [k in taken for taken in took_key], [k.lower() in cols for cols in columns_of])]
    levels = {name: _mark_levels(frame, name, db.schema_keys) for name, frame in frames}
    name, result = frames[0]
    for other, frame in frames[1:]:
        keys = [k for k in db.schema_keys if k in result.columns and k in frame.columns]
        if not keys:
            raise InvalidMetadataError(
                f"{name} and {other} share no schema key (schema {db.schema_keys}); a join needs "
                "at least one, e.g. both saved per subject")
        clash = (set(result.columns) & set(frame.columns)) - set(keys)
        result = _merged(result.rename(columns={c: f"{c}_{name}" for c in clash}),
                         frame.rename(columns={c: f"{c}_{other}" for c in clash}), keys)
        name = other
    result = _finest_only(result, levels, db.schema_keys)
    for key in left_keys:  # after the join: a coarser variable lacks the key
        wanted = metadata[key]
        if key not in result.columns:
            raise InvalidMetadataError(f"join: {key!r} is not a column of the joined variables "
                                       f"({', '.join(map(str, result.columns))})")
        wanted = list(wanted) if isinstance(wanted, (list, tuple, set, range)) else [wanted]
        result = result[result[key].isin(wanted)]
    where = (" AND ".join(f"({parts[i][0]})" for i in left), [v for i in left for v in parts[i][1]])
    if left and len(result):
        # values take part when they are plain scalars (`where="MaxActivation > 0.5"`), texts
        # and a number column with a None (pandas holds both as objects) too
        # (a value column typed as its view types it, from every record of its variable: dicts,
        # or lists beside other values, are JSON there, `"Trial"->>'label' = 'a'`; it had been
        # left out as no scalars, "'Trial' is not a column here")
        types = {n: value_types(db, n) for n in names if n in result.columns and names_column(where, n)}
        meta = [c for c in result.columns if c not in names or _scalars(result[c])
                or value_type(types.get(c, ())) == "JSON"]
        columns = {c: result[c].tolist() for c in meta}
        # (a key's bool beside numbers as text, a value column's as JSON, as in the views)
        types = {n: found for n, found in types.items() if n in columns}
        result = result.iloc[matching_rows(columns, where, len(result), values=names, types=types,
                                           shown=written)]
    order = [k for k in db.schema_keys if k in result.columns]
    return result.sort_values(order, kind="stable").reset_index(drop=True) if order else result


_SCALAR_TYPES = (str, int, float, bool)


def _scalars(column: Any) -> bool:
    """Whether a value column holds only scalars SQL compares (None among them): an object
    column of arrays or frames stays out of `where`."""
    return column.dtype != object or all(v is None or isinstance(v, _SCALAR_TYPES) for v in column.tolist())


def _load_selected(db: Database, var: type[BaseVariable], parts: list[tuple[str, list[Any], set[str]]],
                   metadata: dict[str, Any]) -> tuple[Any, set[int], set[str]]:
    """`var`'s current records as a frame, selected first by the `where` parts and keys it can
    apply itself: those naming only schema keys it has in every record (their columns keep
    their name and values in the joined rows), its version keys and its lineage parameters.
    Selected so, `where="low_hz = 10"` picks each variable's low_hz=10 branch, as
    `load_all(where=...)` does, not the newest rows then filtered (which found nothing when a
    later branch was newer); and a join of 1,000 addresses of two 300k-value variables reads
    1,000 values each, not all (5.9 -> 0.8 s at 1M refs). Returns the frame and the indices of
    the parts and the keys it applied."""
    name = var.__name__
    levels = db.index.levels(name, live=True)
    everywhere = {k for k in db.schema_keys if levels and all(k in level.split(",") for level in levels)}
    schema = {k.lower() for k in db.schema_keys}
    vkeys, params = db.index.vkey_names(name), db.index.param_names(name)
    taken = schema | {k.lower() for k in vkeys} | set(FIXED) | {"value", "data"}
    own = {k.lower() for k in everywhere} | {k.lower() for k in vkeys} | {
        column.lower() for _, column in param_columns(params, lambda c: c.lower() not in taken)}
    keys = {k for k in metadata if k in everywhere or (k not in db.schema_keys and (
        k in vkeys or k.lower() in own or any(p.rsplit(".", 1)[-1] == k for p in params)))}
    mine = [i for i, (_, _, names) in enumerate(parts) if names and names <= own]
    selection = {k: metadata[k] for k in keys}
    if mine:
        selection["where"] = (" AND ".join(f"({parts[i][0]})" for i in mine), [v for i in mine for v in parts[i][1]])
    try:
        return _held_keys_only(var.load_all(as_df=True, **selection), db.schema_keys), set(mine), keys
    except QueryError:  # a column its current records lack after all: checked on the joined rows
        frame = var.load_all(as_df=True, **{k: metadata[k] for k in keys if k in everywhere})
        return _held_keys_only(frame, db.schema_keys), set(), keys & everywhere


def _held_keys_only(frame: Any, schema_keys: list[str]) -> Any:
    """The frame without the schema keys none of its rows holds (`load_all` keeps them, all
    None): a variable saved per subject has no session to join on, and is broadcast."""
    if not len(frame):
        return frame
    return frame.drop(columns=[k for k in schema_keys if k in frame.columns and frame[k].isna().all()])


_LEVEL = "__level_{}"  # a variable saved at several levels: the keys of each row's record


def _mark_levels(frame: Any, name: str, schema_keys: list[str]) -> tuple[set[frozenset], set[frozenset]] | None:
    """For a variable saved at several levels (a subject's calibration, and a session's own
    in places), each row's set of keys in a column of its own; its (levels, addresses), to
    keep a coarser value only where no finer one of its own covers the joined row."""
    keys = [k for k in schema_keys if k in frame.columns]
    rows = [frozenset(k for k, has in zip(keys, row) if has) for row in frame[keys].notna().to_numpy()]
    if len(set(rows)) < 2:
        return None
    frame[_LEVEL.format(name)] = rows
    values = frame[keys].to_numpy(dtype=object)
    addresses = {frozenset((k, v) for k, v in zip(keys, row) if k in level) for row, level in zip(values, rows)}
    return set(rows), addresses


class _Bool:
    """A bool key value that equals only the same bool: pandas' merge matched subject=True
    with subject=1 (True == 1 and hash(True) == hash(1) in Python), where the views, where=
    and load tell them apart."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = bool(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Bool) and other.value == self.value

    def __hash__(self) -> int:
        return hash((_Bool, self.value))


def _has_bools(column: Any) -> bool:
    if column.dtype.kind == "b":
        return True
    return column.dtype == object and any(type(v) is bool or isinstance(v, np.bool_) for v in column)


def _merged(left: Any, right: Any, keys: list[str]) -> Any:
    """`left` joined with `right` on the schema keys both have; a key holding bools is
    matched by type as well as value (`_Bool`)."""
    apart = [k for k in keys if _has_bools(left[k]) or _has_bools(right[k])]
    if not apart:
        return _merged_on(left, right, keys)
    left, right = left.copy(), right.copy()
    for k in apart:
        for frame in (left, right):
            frame[k] = frame[k].map(lambda v: _Bool(v) if type(v) is bool or isinstance(v, np.bool_) else v)
    merged = _merged_on(left, right, keys)
    for k in apart:
        merged[k] = merged[k].map(lambda v: v.value if isinstance(v, _Bool) else v)
    return merged


def _merged_on(left: Any, right: Any, keys: list[str]) -> Any:
    """`left` joined with `right` on the schema keys both have. Where a side holds rows at
    several levels (keys left empty), each pair of levels joins on the keys both rows have,
    so a subject's value meets each of that subject's sessions (a plain merge matched it
    with none, and a join with such a variable lost every row but its finest ones)."""
    if not (left[keys].isna().to_numpy().any() or right[keys].isna().to_numpy().any()):
        return left.merge(right, on=keys, how="inner")
    import pandas as pd

    pieces = []
    for left_keys, lefts in _by_level(left, keys):
        for right_keys, rights in _by_level(right, keys):
            on = [k for k in keys if k in left_keys and k in right_keys]
            if on:  # a key only one row has: that row's value
                pieces.append(lefts.drop(columns=[k for k in keys if k in right_keys - left_keys]).merge(
                    rights.drop(columns=[k for k in keys if k not in right_keys]), on=on, how="inner"))
    return pd.concat(pieces, ignore_index=True) if pieces else left.iloc[:0].merge(right.iloc[:0], on=keys)


def _by_level(frame: Any, keys: list[str]) -> list[tuple[set[str], Any]]:
    """The frame's rows grouped by which of `keys` they have."""
    groups: dict[tuple[bool, ...], list[int]] = {}
    for i, has in enumerate(map(tuple, frame[keys].notna().to_numpy())):
        groups.setdefault(has, []).append(i)
    return [({k for k, h in zip(keys, has) if h}, frame.iloc[rows]) for has, rows in groups.items()]


def _finest_only(result: Any, levels: dict[str, Any], schema_keys: list[str]) -> Any:
    """The joined rows where each variable saved at several levels gives its finest value
    covering the row, as `for_each` takes an input (a session's own calibration, not its
    subject's, where it has one); the level columns dropped."""
    marked = {name: found for name, found in levels.items() if found is not None}
    if not marked:
        return result
    keys = [k for k in schema_keys if k in result.columns]
    values = result[keys].to_numpy(dtype=object)
    present = result[keys].notna().to_numpy()
    keep = [True] * len(result)
    for name, (var_levels, addresses) in marked.items():
        for i, (row, has, level) in enumerate(zip(values, present, result[_LEVEL.format(name)])):
            address = {k: v for k, v, h in zip(keys, row, has) if h}
            if keep[i] and any(frozenset((k, address[k]) for k in finer) in addresses
                               for finer in var_levels if level < finer <= address.keys()):
                keep[i] = False
    rows = [i for i, kept in enumerate(keep) if kept]  # (`result[[]]` would pick no columns)
    return result.iloc[rows].drop(columns=[_LEVEL.format(name) for name in marked])


def _applied(took: list[bool], has_columns: list[bool]) -> bool:
    """Whether a selection was applied by every variable that has its columns (and one did)."""
    return any(took) and all(t or not has for t, has in zip(took, has_columns))
