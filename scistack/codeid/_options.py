"""Process-wide numeric options that change what a function returns: part of its identity.

Two are keyed, each only while it is not the default, so a project that never sets them
keeps its identities (and cache) unchanged:

* numpy's floating-point error modes (``np.seterr``, ``np.errstate`` around the call): for
  every project function walked while numpy is imported (an array given as input divides by
  zero without the code naming numpy). Only what changes results counts: a category set to
  ``"raise"`` (a ``FloatingPointError`` instead of ``inf``/``nan``, which code may catch) or
  ``"call"`` (a callback runs); ``"ignore"``, ``"warn"``, ``"print"`` and ``"log"`` differ in
  diagnostics only, so ``np.seterr(all="ignore")`` to silence warnings re-runs nothing.
* decimal's context (``decimal.getcontext().prec = 5``, rounding, exponent limits, clamp,
  traps) for a function whose walk reaches ``decimal`` (a ``decimal`` leaf or a ``Decimal``
  constant).

Each is guarded on every cache hit (`Guards.options`): numpy's by the object its context
variable holds (``seterr`` and ``errstate`` put a new one; ~40 ns), decimal's by the
context's fields (~0.5 us, its functions only). A changed option walks again.

Not keyed (README "Not seen"): display options (``np.set_printoptions``, pandas'
``display.*``), which change only the text of values (``str(array)``); other pandas options
(``mode.copy_on_write``, ``future.*``); warnings filters (``warnings.simplefilter("error")``
turns numpy's "warn" into an exception); ``random`` and numpy's global random state, which
`_data` reports as unverifiable.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator

Option = tuple[Callable[[], object], object]  # (reader, what it read): a guard
_NUMPY_CHANGES = ("raise", "call")  # the modes that change results, not only diagnostics
_DECIMAL_DEFAULT = (28, "ROUND_HALF_EVEN", -999999, 999999, 1, 0,
                    ("DivisionByZero", "InvalidOperation", "Overflow"))


def process_options(labels: Iterable[str], constants: Iterable[object]) -> tuple[
        list[tuple[str, str]], list[Option]]:
    """(deps, guards) of the options a walk with leaf `labels` and `constants` depends on."""
    deps: list[tuple[str, str]] = []
    guards: list[Option] = []
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        reader = _numpy_reader(numpy)
        if reader is not None:
            guards.append((reader, reader()))
            modes = _numpy_modes(numpy)
            if modes:
                deps.append(("option:numpy.seterr", modes))
    decimal = sys.modules.get("decimal")
    if decimal is not None and _reaches_decimal(labels, constants, decimal):
        state = _decimal_state()
        guards.append((_decimal_state, state))
        if state != _DECIMAL_DEFAULT:
            deps.append(("option:decimal.context", repr(state)))
    return deps, guards


def _numpy_reader(numpy: object) -> Callable[[], object] | None:
    """A cheap read of numpy's error state that changes whenever it is set."""
    try:
        from numpy._core import _ufunc_config  # numpy 2: a context variable

        return _ufunc_config._extobj_contextvar.get
    except (ImportError, AttributeError):
        pass
    try:
        from numpy.core import umath  # numpy 1: a per-thread list

        return umath.geterrobj
    except (ImportError, AttributeError):
        return getattr(numpy, "geterr", None)


def _numpy_modes(numpy: object) -> str:
    """The categories whose mode changes results, e.g. "divide=raise" ("": none)."""
    try:
        modes = numpy.geterr()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a numpy without it: nothing to key
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(modes.items()) if v in _NUMPY_CHANGES)


def _reaches_decimal(labels: Iterable[str], constants: Iterable[object], decimal: object) -> bool:
    if any(label.startswith(("pkg:decimal", "pkg:_decimal", "pkg:_pydecimal")) for label in labels):
        return True
    kind = getattr(decimal, "Decimal", None)
    return kind is not None and any(isinstance(value, kind) for value in constants)


def _decimal_state() -> tuple:
    """The fields of this thread's decimal context that change results (not its flags)."""
    import decimal

    ctx = decimal.getcontext()
    traps = tuple(sorted(kind.__name__ for kind, on in ctx.traps.items() if on))
    return (ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax, ctx.capitals, ctx.clamp, traps)


# -- the options a call runs under elsewhere ----------------------------------------------------
# A worker (for_each's process pool, a Dask worker, a thread of another executor) starts with
# its own options: numpy's defaults, decimal's default context. A call key computed here under
# np.seterr(all="raise") or a precision of 5 was stored with a result the worker computed
# under the defaults (inf, 28 digits), and every later lookup here was served it.
_NUMPY_DEFAULT = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}

Snapshot = tuple[dict[str, str] | None, object, tuple | None]  # (numpy modes, its callback, decimal)


def snapshot(sent: bool = True) -> Snapshot | None:
    """This thread's numpy error modes (with ``np.seterrcall``'s callback) and decimal context,
    for `run_under` in a worker; None when neither module is imported. `sent`: the workers are
    other processes, which get a pickled copy of the callback (a thread pool calls the
    caller's own object: a collector of "log" messages had been handed a copy that nobody read).

    Raises ValueError when a mode is "call" and its callback cannot reach a worker process
    (`_unsendable`); a "log" object that cannot is dropped, its modes "warn" (diagnostics)."""
    numpy = sys.modules.get("numpy")
    modes: dict[str, str] | None = None
    handler: object = None
    if numpy is not None:
        try:
            modes, handler = dict(numpy.geterr()), numpy.geterrcall()
        except Exception:  # noqa: BLE001 - a numpy without them: nothing to carry
            modes, handler = None, None
        if modes is None or not any(v in ("call", "log") for v in modes.values()):
            handler = None
        elif handler is not None and sent and (why := _unsendable(handler)):
            if "call" in modes.values():
                raise ValueError(
                    f"np.seterr(...='call') is set and its callback {handler!r} cannot be sent to the workers "
                    f"({why}); define it at the top level of a module, or run without workers=/executor=")
            modes, handler = {k: "warn" if v == "log" else v for k, v in modes.items()}, None
    decimal_state = _decimal_state() if "decimal" in sys.modules else None
    if modes is None and decimal_state is None:
        return None
    return modes, handler, decimal_state


def _unsendable(handler: object) -> str | None:
    """Why `handler` cannot reach a worker process (None: it can): it does not pickle, or it
    pickles by a reference into a ``__main__`` with no file (a notebook, ``python -c``), which
    no worker can import: every combination had failed, blamed on the function."""
    import pickle

    try:
        sent = pickle.dumps(handler)
    except Exception as exc:  # noqa: BLE001 - pickle raises several kinds here
        return f"{type(exc).__name__}: {exc}"
    if b"__main__" in sent and getattr(sys.modules.get("__main__"), "__file__", None) is None:
        return "it is defined in __main__ with no file (a notebook, python -c), which a worker cannot import"
    return None


@contextlib.contextmanager
def run_under(options: Snapshot | None) -> Iterator[None]:
    """Run the block under the options `snapshot` took elsewhere (this thread's only: numpy's
    error state and decimal's context are per thread), as the call key computed there says."""
    if options is None:
        yield
        return
    modes, callback, decimal_state = options
    with contextlib.ExitStack() as stack:
        if modes is not None and (modes != _NUMPY_DEFAULT or callback is not None or "numpy" in sys.modules):
            import numpy

            if callback is not None:
                stack.enter_context(numpy.errstate(call=callback, **modes))
            else:
                stack.enter_context(numpy.errstate(**modes))
        if decimal_state is not None and (decimal_state != _DECIMAL_DEFAULT or "decimal" in sys.modules):
            import decimal

            ctx = stack.enter_context(decimal.localcontext())
            prec, rounding, emin, emax, capitals, clamp, traps = decimal_state
            ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax = prec, rounding, emin, emax
            ctx.capitals, ctx.clamp = capitals, clamp
            for kind in list(ctx.traps):
                ctx.traps[kind] = kind.__name__ in traps
        yield
