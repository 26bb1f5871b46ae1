"""Whether a function's ``__code__``, ``__defaults__`` or ``__kwdefaults__`` may have been set
since a memoised identity read it.

Python raises the audit event ``object.__setattr__`` (``object.__delattr__`` for a delete) for
every such set, however made (``f.__code__ = ...``, ``object.__setattr__``, the descriptor's
``__set__``: an in-place reload such as IPython's autoreload), before the set. Once
``codeid.files``' audit hook is in (`watching`), it calls `note_set` for each. A walk marks
each function (`reading`) before it reads that function's code or defaults; a set of one so
marked makes `STATE` 2 for the rest of the process. A set of a function no walk read cannot
make a memo stale, and leaves `STATE` as it was: a library making a function at import and
setting its defaults (``collections.namedtuple``'s ``__new__.__defaults__``, which pandas'
import does; ``types.coroutine`` setting a ``__code__``, which ``unittest.mock``'s does) had
put every process that imported one after the hook went in on the slow path for good.

So while `STATE` is 1, a function whose code and defaults were read after the hook went in
(`Guards.watched`) still holds them, and a cache hit's guards need not read them again: each
read raises ``object.__getattr__``, which the hook, a Python function, sees (~3k instructions
of a ~230k hit). After a set of a function read, every guard reads them again, as before: a
check that races the set (its event comes first) is the same race the reads always had. A
function is marked before its attributes are read, so a set between the two is seen too.
"""

from __future__ import annotations

from types import FunctionType
from weakref import WeakSet

# 0: no audit hook yet (a set would go unseen); 1: the hook is in, no set of a function read
# seen; 2: one was seen
STATE = [0]
EVENTS = frozenset({"object.__setattr__", "object.__delattr__"})
_ATTRS = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
# the functions whose code or defaults a walk read (or is about to): weakly, so a function
# that dies leaves (a new one at its address is not one of them)
_READ: WeakSet[FunctionType] = WeakSet()


def watching() -> None:
    """The audit hook is in: every set from now on is seen."""
    if STATE[0] == 0:
        STATE[0] = 1


def reading(fn: FunctionType) -> None:
    """A walk is about to read `fn`'s code or defaults (a guard may keep them): a set of them
    from now on makes `STATE` 2."""
    if STATE[0] != 2:  # (2 stays: nothing needs marking then)
        _READ.add(fn)


def note_set(args: tuple) -> None:
    """The hook saw an ``object.__setattr__``/``__delattr__`` event (object, name, ...)."""
    if len(args) > 1 and args[1] in _ATTRS and isinstance(args[0], FunctionType):
        if args[0] in _READ:
            STATE[0] = 2


def unseen_sets_impossible() -> bool:
    """Whether every set of a function's code or defaults from now on will be seen (the value a
    `Guards` is made with, asked before its walk reads them)."""
    return STATE[0] == 1
