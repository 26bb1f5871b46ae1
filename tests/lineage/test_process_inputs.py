"""What a cached call reads from the process besides its code and inputs: functions made by
exec or eval (no module holds them), environment variables read by a name that is not a
literal, process-wide numeric options. Each had been served stale from the cache."""

from __future__ import annotations

import math

import numpy as np

from scistack import BaseVariable, for_each, lineage_fcn
from scistack.codeid.identity import function_identity


class ExX(BaseVariable):
    pass


class ExY(BaseVariable):
    pass


def _made(text: str, namespace: dict) -> object:
    exec(text, namespace)
    return namespace


def test_a_function_made_by_exec_or_eval_is_identified_by_its_code_not_as_a_library_function():
    """exec into {} and eval(..., {"np": np}) make functions whose __module__ is None; they had
    been taken for library functions of "builtins", identified by name alone."""
    first = _made("def g(x):\n    return x + 10\n", {})["g"]
    second = _made("def g(x):\n    return x + 20\n", {})["g"]
    a, b = function_identity(first), function_identity(second)
    assert a.module == "<exec>" and "library" not in a.note and a.digest != b.digest
    assert not any(label.startswith("pkg:builtins") for label, _ in a.deps)
    sqrt, double = eval("lambda v: np.sqrt(v)", {"np": np}), eval("lambda v: v * 2", {"np": np})
    assert function_identity(sqrt).digest != function_identity(double).digest
    # a library's namespace lent to the text: __module__ is "math", the code is not math's
    floor, ceil = eval("lambda v: floor(v)", dict(vars(math))), eval("lambda v: ceil(v)", dict(vars(math)))
    assert function_identity(floor).module == "<exec>"
    assert function_identity(floor).digest != function_identity(ceil).digest
    # and as a helper of another exec'd function (its globals hold it)
    outer = [_made(f"def h(x):\n    return x * {k}\n\ndef f(x):\n    return h(x)\n", {})["f"] for k in (2, 3)]
    assert function_identity(outer[0]).digest != function_identity(outer[1]).digest


def test_an_edited_exec_function_runs_again_and_why_says_it_cannot_be_compared(project):
    ExX.save(1.0, subject=1, session="a")
    for k in (10, 20):
        g = _made(f"def g(x):\n    return x + {k}\n", {})["g"]
        for_each(g, inputs={"x": ExX}, outputs=[ExY], subject=[1], session=["a"], verbose=False)
        assert ExY.load(subject=1, session="a").data == 1.0 + k
    for k in (2, 3):
        q = _made(f"@lineage_fcn\ndef q(x):\n    return x * {k}\n", {"lineage_fcn": lineage_fcn})["q"]
        assert q(2.0).data == 2.0 * k
    for formula in ("lambda v: np.sqrt(v)", "lambda v: v * 2"):  # also as a constant input
        fn = eval(formula, {"np": np})
        for_each(lambda x, fn: fn(x), inputs={"x": ExX, "fn": fn}, outputs=[ExY], subject=[1],
                 session=["a"], verbose=False)
        assert ExY.load(subject=1, session="a").data == fn(1.0)  # (1.0, then 2.0)
    from scistack.report.why import not_found_reason
    reason = not_found_reason("<exec>", "g")
    assert "exec or eval" in reason and "define it in a module" in reason
