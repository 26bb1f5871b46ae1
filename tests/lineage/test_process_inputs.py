"""What a cached call reads from the process besides its code and inputs: functions made by
exec or eval (no module holds them), environment variables read by a name that is not a
literal, process-wide numeric options. Each had been served stale from the cache."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scistack import BaseVariable, for_each, lineage_fcn
from scistack.codeid.identity import function_identity
from scistack.errors import ForEachError, VariableNotFoundError


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


def _module(tmp_path, monkeypatch, name: str, text: str):
    import importlib
    import sys

    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def test_environment_variables_read_by_a_constant_s_name_or_another_name_of_os_environ_are_inputs(
    tmp_path, monkeypatch
):
    """os.getenv(NAME) with NAME = "K" is the variable K, as a literal is; ENV = os.environ
    read by key, and a getenv whose name is a parameter, had been no input at all."""
    mod = _module(tmp_path, monkeypatch, "env_steps", (
        "import os\nfrom os import getenv as ge\nNAME = 'PI_K'\nENV = os.environ\nGET = os.environ.get\n"
        "def setting(name):\n    return os.getenv(name)\n"
        "def by_const(x):\n    return x + float(os.getenv(NAME))\n"
        "def by_alias(x):\n    return x + float(ENV['PI_K']) + float(ENV.get('PI_J', 0)) + ('PI_I' in ENV)\n"
        "def by_param(x):\n    return x + float(setting('PI_K'))\n"
        "def by_getter(x):\n    return x + float(GET('PI_K'))\n"
        "def by_renamed(x):\n    return x + float(ge(NAME))\n"
        "def copied(x):\n    return x + len(dict(ENV))\n"
    ))
    monkeypatch.setenv("PI_K", "1")
    for name in ("by_const", "by_alias", "by_renamed", "by_getter"):
        first = function_identity(getattr(mod, name))
        assert "data:os.environ['PI_K']" in dict(first.deps) and not first.unverifiable, name
        monkeypatch.setenv("PI_K", "2")
        assert function_identity(getattr(mod, name)).digest != first.digest, name
        monkeypatch.setenv("PI_K", "1")
    alias = dict(function_identity(mod.by_alias).deps)
    assert "data:os.environ['PI_J']" in alias and "data:os.environ['PI_I']" in alias
    for name in ("by_param", "copied"):  # which variable is not known: unverifiable
        assert [what for what, _ in function_identity(getattr(mod, name)).unverifiable] in (
            ["os.environ"], ["env_steps.ENV"]), name


def test_a_function_without_source_that_names_the_environment_reads_all_of_it():
    """Its bytecode says it names os.environ or getenv, not which variable: unverifiable."""
    g = _made("import os\ndef g(x):\n    return x + float(os.getenv('PI_K', '0'))\n", {})["g"]
    assert [what for what, _ in function_identity(g).unverifiable] == ["os.environ"]


def test_numpy_error_modes_that_change_results_and_decimal_s_context_are_keyed(tmp_path, monkeypatch):
    """np.seterr(divide="raise") turns inf into a FloatingPointError, a decimal precision
    rounds otherwise: a cached result had been served under either. Modes that change only
    diagnostics (ignore, warn) and the defaults change nothing."""
    import decimal

    mod = _module(tmp_path, monkeypatch, "opt_steps", (
        "import decimal\n"
        "def ratio(x):\n    return x / 3\n"
        "def third(x):\n    return str(decimal.Decimal(x) / decimal.Decimal(3))\n"
    ))
    plain = function_identity(mod.ratio)
    assert not any(label.startswith("option:") for label, _ in plain.deps)
    with np.errstate(all="ignore"):
        assert function_identity(mod.ratio).digest == plain.digest
    with np.errstate(divide="raise"):
        raising = function_identity(mod.ratio)
        assert dict(raising.deps)["option:numpy.seterr"] == "divide=raise"
        assert raising.digest != plain.digest
    assert function_identity(mod.ratio).digest == plain.digest  # (the memo's guard: walked again)
    default = function_identity(mod.third)
    with decimal.localcontext() as ctx:
        ctx.prec = 5
        assert function_identity(mod.third).digest != default.digest
        assert function_identity(mod.ratio).digest == plain.digest  # (it does not reach decimal)
    decimal.getcontext().rounding = decimal.ROUND_DOWN
    try:
        assert function_identity(mod.third).digest != default.digest
    finally:
        decimal.getcontext().rounding = decimal.ROUND_HALF_EVEN
    assert function_identity(mod.third).digest == default.digest


def test_a_result_computed_without_numpy_raising_is_not_served_when_it_raises(project):
    ExX.save(0.0, subject=1, session="a")

    @lineage_fcn
    def inverse(x):
        try:
            return float(np.float64(1.0) / np.float64(x))
        except FloatingPointError:
            return -1.0

    with np.errstate(divide="ignore"):
        assert inverse(ExX.load(subject=1, session="a")).data == float("inf")
    with np.errstate(divide="raise"):
        assert inverse(ExX.load(subject=1, session="a")).data == -1.0


def test_workers_run_each_call_under_the_callers_numeric_options(project, tmp_path, monkeypatch):
    """The call keys are computed here, under np.seterr(divide="raise") and a decimal precision
    of 5; the workers (spawned: numpy's and decimal's defaults) had computed inf and 28 digits,
    stored under those keys, and a run here under the same options was served them."""
    import decimal

    mod = _module(tmp_path, monkeypatch, "opt_pool_steps", (
        "import decimal\nimport numpy as np\nfrom scistack import lineage_fcn\n"
        "@lineage_fcn\n"
        "def both(x):\n"
        "    try:\n        inverse = float(np.float64(1.0) / np.float64(x - x))\n"
        "    except FloatingPointError:\n        inverse = -1.0\n"
        "    return f'{inverse} {decimal.Decimal(2) / decimal.Decimal(3)}'\n"
    ))
    for subject in (1, 2):
        ExX.save(float(subject), subject=subject, session="a")
    with np.errstate(divide="raise"), decimal.localcontext() as ctx:
        ctx.prec = 5
        here = mod.both.fn(1.0)
        assert here == "-1.0 0.66667"
        pooled = for_each(mod.both, inputs={"x": ExX}, outputs=[ExY], subject=[1, 2], session=["a"],
                          workers=2, progress=False, verbose=False)
        assert pooled.ran == 2 and [ExY.load(subject=s, session="a").data for s in (1, 2)] == [here, here]
        again = for_each(mod.both, inputs={"x": ExX}, outputs=[ExY], subject=[1, 2], session=["a"],
                         progress=False, verbose=False)
        assert (again.ran, again.cached) == (0, 2)
    with np.errstate(divide="ignore"):  # (the defaults: keyed apart, computed under them)
        plain = for_each(mod.both, inputs={"x": ExX}, outputs=[ExY], subject=[1, 2], session=["a"],
                         workers=2, progress=False, verbose=False)
        assert plain.ran == 2
        assert ExY.load(subject=1, session="a").data == "inf 0.6666666666666666666666666667"


def test_a_numpy_error_callback_no_worker_can_be_sent_is_refused_before_anything_runs(project):
    """np.seterr(...="call") runs its callback on an error: a worker without it would not."""
    ExX.save(1.0, subject=1, session="a")
    with np.errstate(divide="call", call=lambda kind, flag: None):
        with pytest.raises(ForEachError, match=r"its callback .* cannot be sent to the workers"):
            for_each(_halve, inputs={"x": ExX}, outputs=[ExY], subject=[1], session=["a"], workers=2,
                     progress=False, verbose=False)
    with pytest.raises(VariableNotFoundError):
        ExY.load(subject=1, session="a")


def _halve(x):
    return x / 2


def test_a_worker_whose_environment_differs_from_the_callers_runs_nothing(project, tmp_path, monkeypatch):
    """The call key holds the caller's PI_POOL_SCALE; a worker started before it was set (a
    Dask worker has its own environment) computed with its own, and that result was saved
    under the caller's value: a run here was served 2.0 where a call gives 20.0."""
    import concurrent.futures as cf
    import multiprocessing
    import os

    mod = _module(tmp_path, monkeypatch, "env_pool_steps", (
        "import os\nfrom scistack import lineage_fcn\n@lineage_fcn\n"
        "def scaled(x):\n    return x * float(os.environ.get('PI_POOL_SCALE', '1'))\n"
    ))
    monkeypatch.delenv("PI_POOL_SCALE", raising=False)
    ExX.save(2.0, subject=1, session="a")
    run = dict(inputs={"x": ExX}, outputs=[ExY], subject=[1], session=["a"], progress=False, verbose=False)
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(os.getpid).result()  # (its worker started: without the variable)
        monkeypatch.setenv("PI_POOL_SCALE", "10")
        report = for_each(mod.scaled, executor=pool, **run)
        assert [i.status for i in report.items] == ["failed"]
        assert "PI_POOL_SCALE, which is unset in this worker process but '10' where" in report.items[0].error
    with pytest.raises(VariableNotFoundError):
        ExY.load(subject=1, session="a")
    assert for_each(mod.scaled, workers=1, **run).ran == 1  # (started now: the caller's environment)
    assert ExY.load(subject=1, session="a").data == 20.0


_NOTEBOOK_RUN = """
import sys
import numpy as np
from scistack import BaseVariable, configure_database, for_each
from scistack.errors import ForEachError
import nb_steps

configure_database(sys.argv[1], ["subject"])
class NbX(BaseVariable): pass
class NbY(BaseVariable): pass
NbX.save(1.0, subject=1)

class Log:
    def write(self, message):
        pass

def on_error(kind, flag):
    pass

np.seterr(divide="log")
np.seterrcall(Log())
report = for_each(nb_steps.inverse, inputs={"x": NbX}, outputs=[NbY], subject=[1], workers=2,
                  progress=False, verbose=False)
print("log:", [(i.status, i.error) for i in report.items])
np.seterr(divide="call")
np.seterrcall(on_error)
try:
    for_each(nb_steps.inverse, inputs={"x": NbX}, outputs=[NbY], subject=[1], workers=2, progress=False,
             verbose=False)
    print("call: ran")
except ForEachError as exc:
    print("call: refused:", exc)
"""


def test_a_numpy_error_handler_defined_in_a_notebook_is_not_sent_to_worker_processes(tmp_path):
    """A "log" object or "call" callback defined in a __main__ with no file (Jupyter, python -c)
    pickles by a reference no worker can import: every combination had failed, blamed on the
    function ("must be importable by the workers"). "log" is diagnostics: dropped, the run runs;
    "call" is refused before anything runs, naming the callback."""
    import os
    import subprocess
    import sys

    (tmp_path / "nb_steps.py").write_text("import numpy as np\n\ndef inverse(x):\n    return np.float64(0.0) / x\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *(p for p in sys.path if p)])}
    done = subprocess.run([sys.executable, "-c", _NOTEBOOK_RUN, str(tmp_path / "nb.duckdb")], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "log: [('ran', None)]", done.stdout
    assert lines[1].startswith("call: refused:") and "cannot be sent to the workers" in lines[1], done.stdout
    assert "__main__ with no file" in lines[1], done.stdout


def test_a_thread_pool_calls_the_callers_own_numpy_log_object(project):
    """A thread pool shares the caller's objects: its "log" collector had been handed a pickled
    copy, so the messages of the run's errors reached nobody."""
    import concurrent.futures as cf

    class Collector:
        def __init__(self) -> None:
            self.messages: list[str] = []

        def write(self, message: str) -> None:
            self.messages.append(message)

    ExX.save(0.0, subject=1, session="a")
    collector = Collector()
    with np.errstate(divide="log", invalid="log", call=collector), cf.ThreadPoolExecutor(1) as pool:
        report = for_each(_reciprocal, inputs={"x": ExX}, outputs=[ExY], subject=[1], session=["a"],
                          executor=pool, progress=False, verbose=False)
    assert report.ran == 1
    assert collector.messages and "divide by zero" in collector.messages[0]


def _reciprocal(x):
    return np.float64(1.0) / x


def test_a_thread_pools_run_leaves_no_chunking_pinned_for_the_next_project(project, tmp_path):
    """run_chunk pins the caller's project's chunk policy in a worker process; run on a thread
    pool of the caller's own process it pinned it there for good, so every project the
    process opened after chunked its values by the first one's policy."""
    import concurrent.futures as cf

    from scistack import configure_database
    from scistack.objects.chunking import current_policy, set_chunking

    ExX.save(2.0, subject=1, session="a")
    with cf.ThreadPoolExecutor(1) as pool:
        assert for_each(_reciprocal, inputs={"x": ExX}, outputs=[ExY], subject=[1], session=["a"],
                        executor=pool, progress=False, verbose=False).ran == 1
    first = project.chunk_policy()
    try:
        set_chunking(threshold=first.threshold + 1000)
        configure_database(tmp_path / "second" / "p.duckdb", ["subject"])
        assert current_policy().threshold == first.threshold + 1000
    finally:
        set_chunking()
