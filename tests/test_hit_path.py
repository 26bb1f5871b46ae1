"""What a cache hit does not spend (issue 12: a hit after open <= 50 us at 1M refs). Each
test pins one cost taken off the hit's path, so that it does not come back unnoticed; the
results themselves are the same (tests/test_point_reads.py: never stale)."""

from __future__ import annotations

import contextlib
import inspect
import os
import sqlite3
import sys

import pytest

from scistack import BaseVariable, lineage_fcn
from scistack.codeid.identity import function_identity, memo_key
from scistack.lineage.calls import bind, positional_plan


class HitForce(BaseVariable):
    pass


@lineage_fcn
def scaled(x, gain=2.0):
    return float(x) * gain


_EVENTS: list[str] = []
_WATCHING = [False]


def _watch(event: str, args: tuple) -> None:
    if _WATCHING[0]:
        _EVENTS.append(event)


sys.addaudithook(_watch)  # (a hook stays for the process: it records only inside `_watched`)


def _watched(fn):
    _EVENTS.clear()
    _WATCHING[0] = True
    try:
        return fn()
    finally:
        _WATCHING[0] = False


def test_a_cache_hit_raises_no_id_audit_event(project):
    # `id()` raises an audit event, which every hook installed (scistack's own sees the files
    # a call reads) pays in Python; the hit used two (binding's plan, the identity's memo)
    HitForce.save(3.0, subject=1, session="pre")
    x = HitForce.load(subject=1, session="pre")
    assert scaled(x).cached is False
    assert scaled(x).cached is True
    result = _watched(lambda: scaled(x))
    assert (result.data, result.cached) == (6.0, True)
    assert "builtins.id" not in _EVENTS, _EVENTS


def test_a_cache_hit_binds_its_key_without_sqlite_adapters(project):
    # sqlite3 offers a `bytes` parameter to its adapters, and the failed `__adapt__` lookup
    # builds and drops an AttributeError; the key is bound as a bytearray (the same BLOB)
    HitForce.save(5.0, subject=2, session="pre")
    x = HitForce.load(subject=2, session="pre")
    assert scaled(x).cached is False
    assert scaled(x).cached is True
    adapted: list[bytes] = []

    def counted(value: bytes) -> bytes:
        adapted.append(value)
        return value

    sqlite3.register_adapter(bytes, counted)
    try:
        result = scaled(x)
    finally:
        del sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)]
    assert (result.data, result.cached) == (10.0, True)
    assert adapted == []


def test_a_kept_identity_key_finds_the_same_identity():
    def inner(a):
        return a + 1

    key = memo_key(inner)
    assert key is not None
    assert function_identity(inner, key=key) is function_identity(inner)
    inner.__code__ = (lambda a: a + 2).__code__  # an edit: the memo's guards see it
    assert function_identity(inner, key=key).digest == function_identity(inner).digest


@pytest.mark.parametrize("ignore", [frozenset(), frozenset({"b"}), frozenset({"c"})])
@pytest.mark.parametrize("args", [(1, 2), (1, 2, 4)])
def test_a_kept_plan_binds_as_the_general_path(args, ignore):
    def plain(a, b, c=3):
        return a

    sig = inspect.signature(plain)
    bound, inputs = bind(sig, args, {}, ignore, positional_plan(sig))
    general_bound = sig.bind(*args)
    assert bound.arguments == general_bound.arguments
    general_bound.apply_defaults()
    expected = {n: v for n, v in general_bound.arguments.items() if n not in ignore}
    assert list(inputs) == list(expected)
    assert {n: (b.value, b.oid, b.record) for n, b in inputs.items()} == \
        {n: (b.value, b.oid, b.record) for n, b in bind(sig, args, {}, ignore)[1].items()}
    assert {n: b.value for n, b in inputs.items()} == expected


def _counting(monkeypatch, owner, name):
    calls: list[tuple] = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_a_cache_hit_reads_its_packed_output_without_the_oid_regex(project, monkeypatch):
    # the packed copy is served only when it hashes to the oid asked for, which proves the oid
    # well-formed; the regex is for what may reach a path or an error
    from scistack.objects import local

    HitForce.save(7.0, subject=3, session="pre")
    x = HitForce.load(subject=3, session="pre")
    with project.batch():  # (the output packed, as a bench project's are)
        assert scaled(x).cached is False
    assert not project.store.path_of(scaled(x).oid).exists()
    checked = _counting(monkeypatch, local, "is_valid_oid")
    result = scaled(x)
    assert (result.data, result.cached) == (14.0, True)
    assert checked == [], checked
    with pytest.raises(Exception, match="64 lowercase hex"):
        project.store.get(result.oid.upper())


def test_a_cache_hit_makes_no_bound_arguments_and_quotes_its_key_once(project, monkeypatch):
    # the arguments as given are for running the function; a hit's key quotes its names,
    # identity and constants from memory (`calls._QUOTED`)
    from scistack.lineage import calls

    HitForce.save(9.0, subject=4, session="pre")
    x = HitForce.load(subject=4, session="pre")
    assert scaled(x).cached is False
    assert scaled(x).cached is True
    made = _counting(monkeypatch, inspect.BoundArguments, "__init__")
    quoted = _counting(monkeypatch, calls, "_quote")
    result = scaled(x)
    assert (result.data, result.cached) == (18.0, True)
    assert made == [] and quoted == []
    assert scaled(HitForce.load(subject=4, session="pre"), 3.0).cached is False  # a miss still runs


_CODE_SETS = r'''
import sys
sys.path[:0] = [sys.argv[1], sys.argv[3]]
from scistack.codeid import _codesets, files
from scistack.codeid.identity import function_identity
files.install()
assert _codesets.STATE[0] == 1
import mod
first = function_identity(mod.f)
reads = []
sys.addaudithook(lambda event, args: reads.append(args[1:2]) if event == "object.__getattr__" else None)
assert function_identity(mod.f) is first
assert reads == [], reads  # the guards read no code or defaults: no set was seen since
if sys.argv[2] == "code":
    mod.f.__code__ = mod.g.__code__
elif sys.argv[2] == "defaults":
    mod.f.__defaults__ = (5,)
else:
    del mod.f.__kwdefaults__
assert _codesets.STATE[0] == 2
assert function_identity(mod.f).digest != first.digest
assert reads, "the guards read them again"
print("ok")
'''


@pytest.mark.parametrize("what", ["code", "defaults", "kwdefaults"])
def test_a_hits_guards_skip_reading_code_only_while_no_set_was_seen(tmp_path, what):
    # reading a function's __code__ or __defaults__ raises an audit event, which scistack's own
    # hook pays in Python on every hit; once the hook is in, every set of them raises one it
    # sees (`_codesets`), so the guards read them only after a set (an autoreload's edit)
    import subprocess

    import scistack

    (tmp_path / "mod.py").write_text("def f(x, y=2, *, z=3):\n    return x + y + z\n\n"
                                     "def g(x, y=2, *, z=3):\n    return x - y - z\n")
    out = subprocess.run([sys.executable, "-c", _CODE_SETS, str(tmp_path), what,
                          os.path.dirname(os.path.dirname(scistack.__file__))], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


_UNREAD_SETS = r'''
import collections, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from scistack.codeid import _codesets, files
from scistack.codeid.identity import function_identity
files.install()
import mod
first = function_identity(mod.f)
reads = []
sys.addaudithook(lambda event, args: reads.append(args[1:2]) if event == "object.__getattr__" else None)
# sets of functions no walk read: a library's import making a namedtuple with defaults (pandas'),
# asyncio's types.coroutine (unittest.mock's import), an edit of a function f does not call
collections.namedtuple("Version", "major minor", defaults=(0,))
import unittest.mock
fresh = lambda a: a
fresh.__code__ = (lambda a: a + 1).__code__
fresh.__kwdefaults__ = {"k": 1}
del fresh.__defaults__
mod.unused.__code__ = mod.g.__code__
assert _codesets.STATE[0] == 1, "a set of a function never read cannot make a memo stale"
reads.clear()
assert function_identity(mod.f) is first
assert reads == [], reads  # still the fast path: no code or defaults read
mod.helper.__code__ = mod.g.__code__  # an edit (a hot reload) of a helper the walk read
assert _codesets.STATE[0] == 2
assert function_identity(mod.f).digest != first.digest
assert reads, "the guards read them again"
print("ok")
'''


def test_a_set_of_code_or_defaults_of_a_function_no_walk_read_keeps_the_fast_path(tmp_path):
    # a set of a function's code or defaults put every memo on reading them again for the rest
    # of the process, whichever function it was: pandas' import (a namedtuple with defaults),
    # which the index's sync thread makes after scistack's hook is in, did so in most
    # processes. Only a set of one some walk read can make a memo stale (`_codesets.reading`)
    import subprocess

    import scistack

    (tmp_path / "mod.py").write_text("def helper(x, y=2):\n    return x + y\n\n"
                                     "def f(x, *, z=3):\n    return helper(x) + z\n\n"
                                     "def unused(x):\n    return x\n\n"
                                     "def g(x, y=2):\n    return x - y\n")
    out = subprocess.run([sys.executable, "-c", _UNREAD_SETS, str(tmp_path),
                          os.path.dirname(os.path.dirname(scistack.__file__))], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@contextlib.contextmanager
def _pipe_calling_a_helper_class(tmp_path, monkeypatch, helper_class: str, subject: int):
    """(the pipeline module whose lineage function `run(x)` returns `Helper().scale(x)`, its
    helpers module's file, x = HitForce 3.0 at `subject`) once a first call ran and a second
    hit; the modules are forgotten after."""
    import importlib
    import uuid

    name = f"hot_{uuid.uuid4().hex[:8]}"
    helpers = tmp_path / f"{name}_helpers.py"
    helpers.write_text(helper_class)
    (tmp_path / f"{name}.py").write_text(
        f"from scistack import lineage_fcn\nfrom {name}_helpers import Helper\n\n"
        "@lineage_fcn\ndef run(x):\n    return Helper().scale(x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    try:
        pipe = importlib.import_module(name)
        HitForce.save(3.0, subject=subject, session="pre")
        x = HitForce.load(subject=subject, session="pre")
        assert pipe.run(x).cached is False
        assert pipe.run(x).cached is True
        yield pipe, helpers, x
    finally:
        for module in (name, f"{name}_helpers"):
            sys.modules.pop(module, None)


def test_a_methods_code_set_in_place_by_an_autoreload_is_a_miss_with_the_new_result(
        project, tmp_path, monkeypatch):
    # IPython's %autoreload 2 sets an edited method's new __code__ on the class a notebook
    # imported; the lineage function's memoised identity had not guarded the methods' code
    # of the class it calls, and the call was a hit with the old result
    import importlib

    with _pipe_calling_a_helper_class(tmp_path, monkeypatch, "class Helper:\n    def scale(self, x):\n"
                                      "        return float(x) * 2\n", 9) as (pipe, helpers, x):
        old = pipe.Helper
        helpers.write_text(helpers.read_text().replace("* 2", "* 5"))
        os.utime(helpers, (os.stat(helpers).st_mtime + 10,) * 2)
        new = importlib.reload(sys.modules[pipe.Helper.__module__])
        old.scale.__code__ = new.Helper.scale.__code__  # (IPython's update_function)
        result = pipe.run(x)
        assert (result.data, result.cached) == (15.0, False)


@pytest.mark.parametrize("what", ["defaults", "kwdefaults"])
def test_a_methods_defaults_set_in_place_are_a_miss_with_the_new_result(
        project, tmp_path, monkeypatch, what):
    # a lineage function calling Helper().scale(x) was served its old result after
    # Helper.scale.__defaults__ (or __kwdefaults__) was set in place: the class's methods'
    # code was guarded, their defaults were neither guarded nor part of the identity
    with _pipe_calling_a_helper_class(tmp_path, monkeypatch, "class Helper:\n    def scale(self, x, k=2.0, *, "
                                      "offset=0.0):\n        return float(x) * k + offset\n", 10) as (pipe, _, x):
        if what == "defaults":
            pipe.Helper.scale.__defaults__ = (5.0,)
            expected = 15.0
        else:
            pipe.Helper.scale.__kwdefaults__ = {"offset": 1.0}
            expected = 7.0
        result = pipe.run(x)
        assert (result.data, result.cached) == (expected, False)
        assert pipe.run(x).cached is True


def test_hash_bytes_reuses_reset_hashers_and_agrees_with_blake3_in_threads():
    # a cache hit makes three small digests; each took a new blake3 hasher (~1k of its ~7.5k
    # instructions): they are reset and kept, one per thread hashing at once
    import random
    import threading

    import blake3

    from scistack.objects import hashing

    hashing.hash_bytes(b"x")
    kept = list(hashing._HASHERS)
    assert kept and hashing.hash_bytes(b"y") == blake3.blake3(b"y").hexdigest()
    assert list(hashing._HASHERS) == kept  # the same hasher, back among the free ones
    wrong: list[bytes] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            data = rng.randbytes(rng.randrange(0, 3000))
            if hashing.hash_bytes(data) != blake3.blake3(data).hexdigest():
                wrong.append(data)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    with pytest.raises(TypeError):
        hashing.hash_bytes("text")  # type: ignore[arg-type]
    assert hashing.hash_bytes(b"z") == blake3.blake3(b"z").hexdigest()  # (no hasher left half-fed)
