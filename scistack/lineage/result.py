"""`LineageResult`: a computed value that carries its lineage and behaves like the value.

Its array is read-only: downstream calls key it by its oid without re-hashing it, so the
data must not change behind that oid (copy it to change it).
"""

from __future__ import annotations

import copy
import operator
import warnings
from typing import Any, Callable

import numpy as np

from scistack.database import Database, SaveInfo
from scistack.lineage.calls import freeze, is_frozen, unwrap_input
from scistack.lineage.context import copy_into_database
from scistack.objects.codec import value_kind
from scistack.summary import summarize


class LineageResult:
    """A computed value with its lineage; behaves like the value where reasonable.

    Arithmetic, comparisons, ``len``, indexing, iteration, ``in``, ``round``, formatting and
    numpy functions (through ``__array__``) act on the value; other attributes are looked up
    on the value (``result.shape``). ``.data`` is the value itself; an array is read-only,
    because downstream calls key it by its oid (copy it to change it).
    """

    __slots__ = ("data", "oid", "call", "_params", "output_index", "function_name", "cached")

    def __init__(
        self,
        data: Any,
        oid: str,
        call: str,
        params: dict[str, Any] | Callable[[], dict[str, Any]],
        output_index: int,
        function_name: str,
        cached: bool,
    ) -> None:
        """`params` may be a function giving them, called when they are first asked for."""
        self.data, self.oid, self.call, self._params = data, oid, call, params
        self.output_index, self.function_name, self.cached = output_index, function_name, cached

    @property
    def params(self) -> dict[str, Any]:
        """The lineage parameters (`fn.param` constants and every upstream call's)."""
        params = self._params
        if callable(params):
            params = self._params = params()
        return params

    @property
    def value(self) -> Any:
        return self.data

    def __scistack_input__(self) -> tuple:
        return self.data, self.oid, None, {}, self.call, self.params

    def __scistack_saveinfo__(self, db: Database) -> Any:
        copy_into_database(db, self)
        call = self.call
        if not db.store.contains(call):  # computed here, then collected by a gc of this process
            warnings.warn(
                f"{self.function_name}: the call record of this result ({call[:12]}) was collected by gc "
                "before the result was saved, so it is saved without that lineage; compute it again "
                "to record it", stacklevel=4)
            call = None
        return SaveInfo(self.oid, value_kind(self.data), summarize(self.data), call, self.params)

    def __repr__(self) -> str:
        state = "cached" if self.cached else "computed"
        return f"<{self.function_name} -> {summarize(self.data)} ({state}, call {self.call[:12]})>"

    def __format__(self, spec: str) -> str:
        return format(self.data, spec) if spec else str(self)

    def _fields(self) -> tuple:
        return (self.data, self.oid, self.call, self.params, self.output_index,
                self.function_name, self.cached)

    def __reduce__(self) -> tuple:
        return (LineageResult, self._fields())

    def __copy__(self) -> LineageResult:
        return LineageResult(*self._fields())

    def __deepcopy__(self, memo: dict) -> LineageResult:
        return LineageResult(
            copy.deepcopy(self.data, memo),
            self.oid,
            self.call,
            dict(self.params),
            self.output_index,
            self.function_name,
            self.cached,
        )

    # -- behave like the value ------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not slots or methods. A slot read before __init__
        # (unpickling, copy) must fail plainly instead of recursing through self.data.
        try:
            data = object.__getattribute__(self, "data")
        except AttributeError:
            raise AttributeError(name) from None
        return getattr(data, name)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return np.asarray(self.data, dtype=dtype)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Any:
        return iter(self.data)

    def __contains__(self, item: Any) -> bool:
        return _unwrap(item) in self.data

    def __getitem__(self, item: Any) -> Any:
        return self.data[item]

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __complex__(self) -> complex:
        return complex(self.data)

    def __index__(self) -> int:
        return operator.index(self.data)

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self.data) if ndigits is None else round(self.data, ndigits)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __eq__(self, other: Any) -> Any:
        return self.data == _unwrap(other)

    __hash__ = None  # type: ignore[assignment]


def _binary(op: Callable) -> tuple[Callable, Callable]:
    def forward(self: LineageResult, other: Any) -> Any:
        return op(self.data, _unwrap(other))

    def reverse(self: LineageResult, other: Any) -> Any:
        return op(_unwrap(other), self.data)

    return forward, reverse


for _name, _op in [
    ("add", operator.add),
    ("sub", operator.sub),
    ("mul", operator.mul),
    ("truediv", operator.truediv),
    ("floordiv", operator.floordiv),
    ("mod", operator.mod),
    ("pow", operator.pow),
    ("matmul", operator.matmul),
    ("and", operator.and_),
    ("or", operator.or_),
    ("xor", operator.xor),
    ("lshift", operator.lshift),
    ("rshift", operator.rshift),
]:
    _fwd, _rev = _binary(_op)
    setattr(LineageResult, f"__{_name}__", _fwd)
    setattr(LineageResult, f"__r{_name}__", _rev)
for _name, _op in [
    ("lt", operator.lt),
    ("le", operator.le),
    ("gt", operator.gt),
    ("ge", operator.ge),
    ("ne", operator.ne),
]:
    setattr(LineageResult, f"__{_name}__", _binary(_op)[0])
LineageResult.__divmod__, LineageResult.__rdivmod__ = _binary(divmod)  # type: ignore[attr-defined]
LineageResult.__neg__ = lambda self: -self.data  # type: ignore[attr-defined]
LineageResult.__pos__ = lambda self: +self.data  # type: ignore[attr-defined]
LineageResult.__abs__ = lambda self: abs(self.data)  # type: ignore[attr-defined]
LineageResult.__invert__ = lambda self: ~self.data  # type: ignore[attr-defined]


_unwrap = unwrap_input


def immutable_output(value: Any, inputs: list[Any]) -> Any:
    """A result is keyed by its oid downstream, so its array must not change: make it read-only.

    A fresh array is frozen in place; one that views or is memory of someone else's
    (an input passed straight through, a view of a caller's array) is copied first.
    """
    if not isinstance(value, np.ndarray) or is_frozen(value):
        return value
    if value.base is None and not any(value is v for v in inputs):
        return freeze(value)
    return freeze(value.copy())
