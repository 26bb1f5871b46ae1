"""Table mode ("scifor"): `for_each` on plain DataFrames, with no database and no lineage.

```python
set_schema(["subject", "session"])
results = for_each(bandpass, inputs={"signal": raw_df, "low_hz": 20},
                   subject=[1, 2, 3], session=["pre", "post"])
```
Each DataFrame input is filtered to the combination's rows (on the schema columns it has);
a single-row frame passes the cell of the column named as the input (`inputs={"emg": df}`
with an `emg` column; one table can feed several inputs), else of a `data` column, else
itself. The results come back as one
DataFrame: the combination's keys plus one column per output (named by `outputs`, else
`result`).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import sys
import time
import traceback
from typing import Any

from scistack.errors import ForEachError, InvalidMetadataError
from scistack.foreach.report import ComboResult, RunReport

log = logging.getLogger("scistack.foreach")

_schema: list[str] = []


def set_schema(keys: list[str]) -> None:
    """Declare which DataFrame columns identify a combination (table mode only)."""
    if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        raise InvalidMetadataError(f"set_schema takes a list of column names, e.g. [\"subject\"], not {keys!r}")
    _schema[:] = list(keys)


def get_schema() -> list[str]:
    """The table-mode schema keys."""
    return list(_schema)


def _positional(fn: Any) -> tuple[str, ...]:
    """Parameters `fn` takes by position only (`np.sqrt`'s `x`, `def f(x, /)`), in order: passed
    as keywords they raise, as a database run already knows."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read: every input goes by keyword
        return ()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY)


def check_collectors(name: str, params: Any, inputs: dict[str, Any]) -> None:
    """Refuse an input named after the `*args` or `**kwargs` parameter itself: inputs are passed
    by keyword, so `inputs={"signals": EMG}` for `def f(*signals, **opts)` would go into `opts` (and
    `signals` stay empty: a wrong result saved with no error), and without `**opts` every
    combination would fail with a TypeError. `inputs={"opts": X}` for `**opts` would give the
    function `opts == {"opts": X}`, never `X` itself: which one was meant cannot be told."""
    for given in inputs:
        param = params.get(given)
        if param is None:
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise InvalidMetadataError(
                f"inputs[{given!r}]: {given} is {name}'s *{given} parameter, which for_each cannot fill (each "
                f"input is passed by name, as one value of one parameter): give it a named parameter, e.g. "
                f"def step({given}, ...): return {name}({given}, ...) (one parameter per variable; a list "
                f"constant or Merge(A, B) to pass several in one)")
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            raise InvalidMetadataError(
                f"inputs[{given!r}]: {given} is {name}'s **{given} parameter, which collects keyword arguments "
                f"by their own names: name each one in inputs= (e.g. inputs={{..., \"scale\": 2}} arrives as "
                f"{given}[\"scale\"]), or give {name} a named parameter {given!r} for this input")


def run_table_mode(fn: Any, inputs: dict[str, Any], outputs: list[Any], iterables: dict[str, Any],
                   *, as_table: bool, on_error: str = "continue", dry_run: bool = False,
                   verbose: bool = False) -> Any:
    """Run `fn` per combination on filtered DataFrames; return a DataFrame of results.

    A combination whose function raises is left out of the results and the failures are
    summarised in one warning (tracebacks at debug level) (`on_error="continue"`), or the run
    stops with a `ForEachError` ("raise"). `dry_run` calls nothing: it returns the
    combinations with a `status` column (`would_run` or `missing`).
    """
    import pandas as pd

    from scistack.foreach.inputs import is_loaded_input  # noqa: PLC0415 - inputs imports the database

    loaded = [name for name, spec in inputs.items() if is_loaded_input(spec)]
    if loaded:
        raise InvalidMetadataError(
            f"inputs {loaded} load variables, which needs a database: call configure_database(...) "
            "first. Without one, for_each runs on DataFrames (set_schema([...]) and DataFrame inputs)")
    keys = list(iterables)
    unknown = [k for k in keys if _schema and k not in _schema]
    if unknown:
        raise InvalidMetadataError(f"{unknown} are not schema keys {_schema}; call set_schema([...]) first")
    names = [getattr(o, "__name__", str(o)) for o in outputs] or ["result"]
    value_lists = [_as_list(v) or _every_value(inputs, k) for k, v in iterables.items()]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read: nothing to check
        params = {}
    check_collectors(getattr(fn, "__name__", "the function"), params, inputs)
    positional = _positional(fn)
    rows, items, t0 = [], [], time.perf_counter()
    for values in itertools.product(*value_lists):
        combo = dict(zip(keys, values))
        args = {n: _filter(v, combo, as_table, n) for n, v in inputs.items()}
        missing = [n for n, a in args.items() if a is _MISSING]
        status = "missing" if missing else "would_run" if dry_run else "ran"
        item = ComboResult(combo, status, missing=missing)
        items.append(item)
        if missing or dry_run:
            continue
        try:
            keywords = dict(args)
            result = fn(*[keywords.pop(n) for n in positional if n in keywords], **keywords)
            several = isinstance(result, tuple) and len(names) > 1
            parts = [_plain(p) for p in (result if several else (result,))]
            if len(parts) != len(names):
                raise ValueError(f"{getattr(fn, '__name__', 'function')} returned {len(parts)} values for "
                                 f"the {len(names)} outputs {names}")
        except Exception as exc:  # noqa: BLE001 - on_error decides
            _failed(fn, item, exc, on_error)
            continue
        rows.append({**combo, **dict(zip(names, parts))})
    report = RunReport(getattr(fn, "__name__", "function"), items, time.perf_counter() - t0, dry_run=dry_run)
    if report.failures:
        log.warning("%s", report.summary())
    if verbose:
        print(report.headline(), file=sys.stderr, flush=True)
    if dry_run:
        return pd.DataFrame([{**i.combo, "status": i.status} for i in items], columns=[*keys, "status"])
    return pd.DataFrame(rows, columns=[*keys, *names])


def _every_value(inputs: dict[str, Any], key: str) -> list[Any]:
    """`[]`: every value of the key's column in the DataFrame inputs, sorted."""
    import pandas as pd

    seen: dict[Any, None] = {}
    for value in inputs.values():
        if isinstance(value, pd.DataFrame) and key in value.columns:
            seen.update(dict.fromkeys(v.item() if hasattr(v, "item") else v for v in value[key].dropna()))
    return sorted(seen, key=lambda v: (isinstance(v, str), v))


def _failed(fn: Any, item: ComboResult, exc: Exception, on_error: str) -> None:
    """Record a failure on its item (summarised once at the end), or stop the run."""
    name = getattr(fn, "__name__", "function")
    item.status, item.error = "failed", f"{type(exc).__name__}: {exc}"
    item.traceback = "".join(traceback.format_exception(exc))
    if on_error == "raise":
        raise ForEachError(f"for_each({name}) stopped at {item.where}: {item.error}\n{item.traceback}",
                           [item]) from exc
    log.debug("for_each(%s) failed at %s: %s\n%s", name, item.where, item.error, item.traceback)


_MISSING = object()


def _filter(value: Any, combo: dict[str, Any], as_table: bool, name: str = "data") -> Any:
    import pandas as pd

    if not isinstance(value, pd.DataFrame):
        return value
    mask = pd.Series(True, index=value.index)
    for key, wanted in combo.items():
        if key in value.columns:
            mask &= value[key] == wanted
    rows = value[mask]
    if rows.empty:
        return _MISSING
    if len(rows) == 1 and not as_table:
        for column in (name, "data"):
            if column in rows.columns and column not in combo:
                return rows[column].iloc[0]
    return rows.reset_index(drop=True)


def _as_list(values: Any) -> list[Any]:
    """One key's values, numpy scalars unwrapped, each once (first occurrence kept)."""
    values = [values] if isinstance(values, (str, bytes, int, float)) else list(values)
    unique: dict[Any, Any] = {}
    for value in values:
        value = value.item() if hasattr(value, "item") and hasattr(value, "dtype") else value
        unique.setdefault((type(value) is bool, value), value)
    return list(unique.values())


def _plain(value: Any) -> Any:
    """A lineage result's value (a lineage function returns them; the table holds values)."""
    return getattr(value, "data", value) if hasattr(value, "__scistack_input__") else value
