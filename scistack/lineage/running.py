"""Which cached call is running in this thread, so that a variable loaded inside it is refused.

A function whose calls are cached gets its inputs from `for_each` or its arguments; a value it
loads itself (`Calibration.load(subject=1)` in its body) is an input the call key cannot see:
after that variable changed, a cache hit served the result computed from the old value. So
such a load is refused, naming the way in that the cache does see.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import warnings

from scistack.errors import LineageError

_RUNNING: ContextVar[str | None] = ContextVar("scistack_running_call", default=None)


def call_running(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, the body of cached function `name`, marked as running in a copy of
    the caller's context: the caller's is never changed, so no interrupt (Ctrl-C) can leave it
    marked. A `set` undone in a `finally` left it marked when the KeyboardInterrupt came between
    the two, and every later for_each and load of the session was refused as inside `name`."""
    return contextvars.copy_context().run(_marked, name, fn, args, kwargs)


def _marked(name: str, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    _RUNNING.set(name)
    return fn(*args, **kwargs)


def refuse_load_inside(call: str, var: str, fix: str | None = None) -> None:
    """Raise when `call` (e.g. `Cal.load()`, reading variable `var`) runs inside the body of a
    cached function (see the module's docstring); `fix` replaces the usual way in."""
    name = _RUNNING.get()
    if name is not None:
        raise LineageError(
            f"{call} inside {name}, whose calls scistack caches: the cache cannot see what a "
            f"function loads itself, so after {var} changed a cache hit would serve the old result. "
            + (fix or f"Pass {var} as an input instead: for_each(..., inputs={{..., \"x\": {var}}}) "
                      f"(or Fixed({var}, subject=1) for one address), or as an argument of the call"))


def refuse_run_inside(call: str) -> None:
    """Raise when `call` (a `for_each`) starts inside the body of a cached function: a cache hit
    of that function would skip the run (its outputs never saved again), and the cache key
    cannot see the variables the run loads."""
    name = _RUNNING.get()
    if name is not None:
        raise LineageError(
            f"{call} inside {name}, whose calls scistack caches: a cache hit of {name} would skip "
            f"this run, and the cache cannot see the variables it loads, so after they changed it "
            f"would serve the old result. Call for_each at the top level of your script, one "
            f"for_each per step, and pass what {name} needs as its inputs")


_warned: set[tuple[str, str]] = set()


def warn_save_inside(var: str) -> None:
    """Warn (once per function and variable in a process) when `var` is saved inside the body
    of a cached function: a cache hit skips the body, so that save is not made again; after an
    edit and its undo, the variable keeps what the other code saved. Not refused (a script may
    mean it), but the warning names the ways that keep lineage: return the value, or a dict of
    parts through `Split`."""
    name = _RUNNING.get()
    if name is None or (name, var) in _warned:
        return
    _warned.add((name, var))
    warnings.warn(
        f"{var}.save() inside {name}, whose calls scistack caches: a cache hit of {name} skips this "
        f"save, so after an edit and its undo {var} keeps what the other code saved, and it has no "
        f"lineage. Return the value instead (outputs=[..., {var}]; a tuple fills several outputs), or "
        f"values at a finer level as a dict through outputs=[Split({var}, by=<the finer schema key>)]",
        stacklevel=3)
