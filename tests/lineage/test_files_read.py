"""Files a lineage function opens are inputs: also when for_each runs it in worker processes,
when the call was made before a database existed (then copied into one), when a memo opened
them in an earlier call of the process, when they were absent, and folders it listed."""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import json
import multiprocessing
import os
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from scistack import BaseVariable, for_each, why
from scistack.records import read_call
from scistack.report.status import status_grid
from tests.helpers import same_size_rewrite


class FrIn(BaseVariable):
    pass


class FrOut(BaseVariable):
    pass


class FrMid(BaseVariable):
    pass


MODULE = """
import os
from scistack import lineage_fcn

HERE = os.path.dirname(__file__)

@lineage_fcn
def calibrated(x):
    with open(os.path.join(HERE, "gain.txt")) as handle:
        return float(x.sum()) * float(handle.read())
"""


def _import(tmp_path: Path, monkeypatch) -> object:
    package = tmp_path / "fr_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(MODULE)
    (package / "gain.txt").write_text("2")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop("fr_pkg.steps", None)
    sys.modules.pop("fr_pkg", None)
    return importlib.import_module("fr_pkg.steps")


def test_files_read_in_workers_are_recorded_and_checked(project, tmp_path, monkeypatch):
    steps = _import(tmp_path, monkeypatch)
    for subject in (1, 2):  # other values each: both run (the same ones would run once)
        FrIn.save(np.arange(3.0) + (subject == 1), subject=subject, session="a")
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=[1, 2], session=["a"], executor=pool)
        first = for_each(steps.calibrated, **run)
        assert [i.status for i in first.items] == ["ran", "ran"]
        record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
        assert [f["path"] for f in record.extra["files"]] == [str(tmp_path / "fr_pkg" / "gain.txt")]

        assert [i.status for i in for_each(steps.calibrated, **run).items] == ["cached", "cached"]
        (tmp_path / "fr_pkg" / "gain.txt").write_text("5")
        assert [i.status for i in for_each(steps.calibrated, **run).items] == ["ran", "ran"]
        assert float(FrOut.load(subject=2, session="a").data) == 15.0


def test_a_call_made_in_memory_keeps_its_files_when_copied_into_a_database(
    tmp_path, monkeypatch, no_database
):
    import scistack.database as database_module
    from scistack import configure_database

    steps = _import(tmp_path, monkeypatch)
    x = np.arange(3.0)
    in_memory = steps.calibrated(x)  # no database yet: cached in this process's memory
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        FrOut.save(in_memory, subject=1)  # brings the call (and its cache entry) along
        assert steps.calibrated(x).cached
        (tmp_path / "fr_pkg" / "gain.txt").write_text("7")
        again = steps.calibrated(x)
        assert not again.cached and float(again.data) == 21.0
    finally:
        db.close()
        database_module._current = None


# --- reads behind a memo, missing files, folder listings ------------------------------------


class Steps:
    """A package of lineage steps under tmp_path, imported afresh (as a new process would)."""

    def __init__(self, tmp_path: Path, monkeypatch) -> None:
        self.name = f"fr_{uuid.uuid4().hex[:10]}"
        self.dir = tmp_path / self.name
        self.dir.mkdir()
        (self.dir / "__init__.py").write_text("")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def write(self, source: str) -> None:
        (self.dir / "steps.py").write_text(textwrap.dedent(source))

    def load(self) -> object:
        """A fresh import: memos start empty, as in a new process."""
        for key in [k for k in sys.modules if k == self.name or k.startswith(self.name + ".")]:
            del sys.modules[key]
        importlib.invalidate_caches()
        return importlib.import_module(f"{self.name}.steps")


def _run(steps: Steps, fn: str = "proc", subjects=(1, 2)) -> tuple[list[str], list[float]]:
    """for_each over the subjects: the statuses, and the values then saved."""
    report = for_each(getattr(steps.load(), fn), inputs={"x": FrIn}, outputs=[FrOut],
                      subject=list(subjects), session=["a"])
    assert not report.failures, report.failures[0].traceback
    return [i.status for i in report.items], [float(FrOut.load(subject=s, session="a").data) for s in subjects]


def _statuses(db, subjects=(1, 2)) -> list[str]:
    grid = status_grid(db, ["FrOut"])
    return [grid.cell("FrOut", {"subject": s, "session": "a"}).status for s in subjects]


def _recorded(db, subject: int) -> list[tuple[str, str]]:
    record = read_call(db.store, FrOut.load(subject=subject, session="a").record.call)
    return [(os.path.basename(f["path"]), f.get("kind", "file")) for f in record.extra.get("files", [])]


def _save_inputs() -> None:
    for subject in (1, 2):
        FrIn.save(10.0 * subject, subject=subject, session="a")


MEMOS = {
    "lru_cache": """
        @functools.lru_cache(maxsize=None)
        def config():
            with open(os.path.join(HERE, "cfg.json")) as f:
                return json.load(f)
    """,
    "global": """
        _CFG = None
        def config():
            global _CFG
            if _CFG is None:
                _CFG = read_json("cfg.json")  # the open is in a plain helper below the memo
            return _CFG
    """,
    "dict": """
        _CACHE = {}
        def config():
            if "cfg" not in _CACHE:
                _CACHE["cfg"] = read_json("cfg.json")
            return _CACHE["cfg"]
    """,
}
HEAD = textwrap.dedent("""
    import functools, json, os
    from scistack import lineage_fcn
    HERE = os.path.dirname(__file__)
    CALLS = []
    def read_json(name):
        with open(os.path.join(HERE, name)) as f:
            return json.load(f)
""")


@pytest.mark.parametrize("memo", sorted(MEMOS))
def test_a_file_read_once_behind_a_memo_is_an_input_of_every_later_call(project, tmp_path, monkeypatch, memo):
    """Only the first call of a process opens a memoised config: every call used it, so every
    call record names it (subject 2 was served the old result forever)."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(MEMOS[memo]) + textwrap.dedent("""
        @lineage_fcn
        def proc(x):
            CALLS.append(x)  # a log the function keeps: not a memo of the subject file below
            return x * config()["k"] + read_json(f"s{int(x)}.json")
    """))
    (steps.dir / "cfg.json").write_text('{"k": 2}')
    for subject in (1, 2):
        (steps.dir / f"s{10 * subject}.json").write_text("0")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    # each call names the memo's file and its own subject's file, not the other subject's
    assert _recorded(project, 1) == [("cfg.json", "file"), ("s10.json", "file")]
    assert _recorded(project, 2) == [("cfg.json", "file"), ("s20.json", "file")]
    assert _run(steps) == (["cached", "cached"], [20.0, 40.0])

    (steps.dir / "cfg.json").write_text('{"k": 3}')
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _statuses(project) == ["done", "done"]


def test_a_memo_per_item_adds_a_bounded_number_of_files_to_later_calls(project, tmp_path, monkeypatch):
    """An lru_cache over per-subject files is a cache per item: each later call had named every
    file it had cached so far (records and hits growing with the loop). Past a few files, a
    memo's files are its own calls' alone."""
    from scistack.codeid import files as files_module

    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        @functools.lru_cache(maxsize=None)
        def subject_file(n):
            return read_json(f"s{n}.json")
        @lineage_fcn
        def proc(x):
            return x + subject_file(int(x))
    """))
    subjects = range(1, files_module._MEMO_FILES + 5)
    for subject in subjects:
        FrIn.save(float(subject), subject=subject, session="a")
        (steps.dir / f"s{subject}.json").write_text("0")
    _run(steps, subjects=subjects)
    named = [len(_recorded(project, s)) for s in subjects]
    assert max(named) <= files_module._MEMO_FILES + 1 and named[-1] == 1, named


def test_a_memo_filled_by_one_step_is_an_input_of_another_step_reaching_it(project, tmp_path, monkeypatch):
    """Two steps share a memoised config; the first fills it, so the second never opens it."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(MEMOS["lru_cache"]) + textwrap.dedent("""
        @lineage_fcn
        def first(x):
            return x + config()["k"]
        @lineage_fcn
        def proc(x):
            return x * config()["k"]
    """))
    (steps.dir / "cfg.json").write_text('{"k": 2}')
    _save_inputs()
    module = steps.load()
    run = dict(inputs={"x": FrIn}, subject=[1, 2], session=["a"])
    for_each(module.first, outputs=[FrMid], **run)
    for_each(module.proc, outputs=[FrOut], **run)  # the same process: the memo is full
    assert _recorded(project, 1) == _recorded(project, 2) == [("cfg.json", "file")]
    (steps.dir / "cfg.json").write_text('{"k": 3}')
    assert _statuses(project) == ["stale", "stale"]


def test_a_file_absent_when_the_call_ran_is_an_input_once_it_appears(project, tmp_path, monkeypatch):
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        @lineage_fcn
        def proc(x):
            try:
                k = read_json("override.json")
            except FileNotFoundError:
                k = 2
            return x * k
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 2) == [("override.json", "absent")]
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "override.json").write_text("3")
    assert _statuses(project) == ["stale", "stale"]
    report = why(FrOut, subject=1, session="a")
    assert [(r.kind, r.name) for r in report.reasons] == [("file", str(steps.dir / "override.json"))]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _recorded(project, 2) == [("override.json", "file")]


LISTINGS = {
    "glob": "sum(json.load(open(p)) for p in sorted(glob.glob(os.path.join(HERE, 'data', '*.json'))))",
    "listdir": "len(os.listdir(os.path.join(HERE, 'data')))",
    "pathlib": "len(list(pathlib.Path(HERE, 'data').iterdir()))",
}


@pytest.mark.parametrize("how", sorted(LISTINGS))
def test_a_folder_listed_is_an_input_and_a_file_added_to_it_misses_the_hit(project, tmp_path, monkeypatch, how):
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + f"import glob, pathlib\n@lineage_fcn\ndef proc(x):\n    return x * {LISTINGS[how]}\n")
    (steps.dir / "data").mkdir()
    for name in ("a", "b"):
        (steps.dir / "data" / f"{name}.json").write_text("1")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert ("data", "listing") in _recorded(project, 1)
    os.utime(steps.dir / "data")  # touched, the same entries: still a hit
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "data" / "c.json").write_text("1")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


def test_folders_listed_by_libraries_and_the_import_system_are_not_inputs(project, tmp_path, monkeypatch):
    """The import system lists the folders it imports from, library code lists its own and
    looks for files that are not there: none of it is the function's input."""
    steps = Steps(tmp_path, monkeypatch)
    (steps.dir / "late.py").write_text("K = 1\n")
    steps.write(HEAD + textwrap.dedent(f"""
        import importlib, pkgutil
        @lineage_fcn
        def proc(x):
            importlib.invalidate_caches()
            late = importlib.import_module("{steps.name}.late")  # lists the package's folder
            modules = list(pkgutil.iter_modules([HERE]))  # a library lists it too
            here = len(os.listdir(os.path.dirname(json.__file__)))  # the standard library
            return x * (late.K + len(os.listdir(os.path.join(HERE, "data"))))
    """))
    (steps.dir / "data").mkdir()
    (steps.dir / "data" / "a.json").write_text("1")
    _save_inputs()
    assert _run(steps, subjects=(1,)) == (["ran"], [20.0])
    # (the module it imported is, by its source: its K is part of the result)
    assert _recorded(project, 1) == [("data", "listing"), ("late.py", "file")]


# --- a folder the step lists and also writes into -------------------------------------------

OUT_STEPS = {
    # skips subjects whose figure is there already (the folder changes with each call's write)
    "done": """
        @lineage_fcn
        def proc(x):
            out = os.path.join(HERE, "out")
            done = set(os.listdir(out))
            name = f"s{int(x)}.png"
            if name not in done:
                with open(os.path.join(out, name), "w") as f:
                    f.write(str(x))
            return x * (1 + len([n for n in done if not n.endswith(".png")]))
    """,
    # globs the folder, the figures the step wrote for the subjects before included
    "glob": """
        @lineage_fcn
        def proc(x):
            out = pathlib.Path(HERE, "out")
            seen = sorted(p.name for p in out.glob("*") if p.suffix != ".png")
            (out / f"s{int(x)}.png").write_text(str(x))
            return x * (1 + len(seen))
    """,
    # writes a temporary file, then renames it into place
    "rename": """
        @lineage_fcn
        def proc(x):
            out = os.path.join(HERE, "out")
            seen = [n for n in os.listdir(out) if not n.endswith(".png")]
            with open(os.path.join(out, "partial"), "w") as f:
                f.write(str(x))
            os.replace(os.path.join(out, "partial"), os.path.join(out, f"s{int(x)}.png"))
            return x * (1 + len(seen))
    """,
}


@pytest.mark.parametrize("how", sorted(OUT_STEPS))
def test_a_folder_the_step_lists_and_writes_into_is_cached_on_the_next_run(project, tmp_path, monkeypatch, how):
    """Each call lists out/ and writes its subject's file there: the folder each call listed
    has changed by the next run, but only by the step's own writes. That run is cached; a file
    someone else adds there makes every call that listed it run again."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "import pathlib\n" + textwrap.dedent(OUT_STEPS[how]))
    (steps.dir / "out").mkdir()
    subjects = (1, 2, 3)
    for subject in subjects:
        FrIn.save(10.0 * subject, subject=subject, session="a")
    assert _run(steps, subjects=subjects) == (["ran"] * 3, [10.0, 20.0, 30.0])
    assert ("out", "listing") in _recorded(project, 1)
    assert _run(steps, subjects=subjects)[0] == ["cached"] * 3
    assert _statuses(project, subjects) == ["done"] * 3

    (steps.dir / "out" / "notes.txt").write_text("by hand")
    assert _statuses(project, subjects) == ["stale"] * 3
    assert _run(steps, subjects=subjects) == (["ran"] * 3, [20.0, 40.0, 60.0])
    assert _run(steps, subjects=subjects)[0] == ["cached"] * 3


def test_a_folder_the_step_writes_into_from_workers_is_cached_on_the_next_run(project, tmp_path, monkeypatch):
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "import pathlib\n" + textwrap.dedent(OUT_STEPS["done"]))
    (steps.dir / "out").mkdir()
    subjects = (1, 2, 3)
    for subject in subjects:
        FrIn.save(10.0 * subject, subject=subject, session="a")
    module = steps.load()
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=list(subjects), session=["a"], executor=pool)
        assert [i.status for i in for_each(module.proc, **run).items] == ["ran"] * 3
        assert [i.status for i in for_each(module.proc, **run).items] == ["cached"] * 3
        (steps.dir / "out" / "notes.txt").write_text("by hand")
        assert [i.status for i in for_each(module.proc, **run).items] == ["ran"] * 3


def test_a_file_another_process_adds_after_the_call_listed_the_folder_misses_the_next_run(
        project, tmp_path, monkeypatch):
    """The folder is recorded as the call listed it: a file another process added while the
    call ran (after the listing) had been recorded as seen, and the old count served."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        import subprocess, sys
        @lineage_fcn
        def proc(x):
            out = os.path.join(HERE, "out")
            seen = os.listdir(out)
            late = os.path.join(out, "late.txt")
            subprocess.run([sys.executable, "-c", f"open({late!r}, 'a').close()"], check=True)
            return x * (1 + len(seen))
    """))
    (steps.dir / "out").mkdir()
    _save_inputs()
    assert _run(steps, subjects=(1,)) == (["ran"], [10.0])
    assert _statuses(project, (1,)) == ["stale"]
    assert _run(steps, subjects=(1,)) == (["ran"], [20.0])
    assert _run(steps, subjects=(1,)) == (["cached"], [20.0])



@pytest.mark.parametrize("memo", sorted(MEMOS))
def test_a_memoised_file_edited_and_run_again_in_the_same_process(project, tmp_path, monkeypatch, memo):
    """The memo still holds the old content: the calls had run again with it (and were saved,
    stale at once, again on every run, silently). An lru_cache is emptied and fills again from
    the file; a memo scistack cannot empty is named in a warning, and a new process fixes it."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(MEMOS[memo]) + textwrap.dedent("""
        @lineage_fcn
        def proc(x):
            return x * config()["k"]
    """))
    (steps.dir / "cfg.json").write_text('{"k": 2}')
    _save_inputs()
    module = steps.load()
    run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=[1, 2], session=["a"])
    assert [i.status for i in for_each(module.proc, **run).items] == ["ran", "ran"]
    (steps.dir / "cfg.json").write_text('{"k": 3}')
    if memo == "lru_cache":
        report = for_each(module.proc, **run)  # the same process: the memo held k=2
        assert [i.status for i in report.items] == ["ran", "ran"]
        assert [float(FrOut.load(subject=s, session="a").data) for s in (1, 2)] == [30.0, 60.0]
        assert [i.status for i in for_each(module.proc, **run).items] == ["cached", "cached"]
    else:
        with pytest.warns(RuntimeWarning, match="config .* keeps in memory what it read from .*cfg.json"):
            for_each(module.proc, **run)  # the same process: the memo holds k=2
        assert _statuses(project) == ["stale", "stale"]  # computed from k=2: never served
        assert _run(steps) == (["ran", "ran"], [30.0, 60.0])  # a fresh import, as a new process
        assert _statuses(project) == ["done", "done"]



@pytest.mark.parametrize("memo", sorted(MEMOS))
def test_a_memo_filled_by_the_script_before_the_first_call_is_an_input_of_the_calls(
        project, tmp_path, monkeypatch, memo):
    """The script fills the memo before its loop: no call opens the file, so no record had
    named it, and the next process served the results made from the old content."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(MEMOS[memo]) + textwrap.dedent("""
        @lineage_fcn
        def proc(x):
            return x * config()["k"]
    """))
    (steps.dir / "cfg.json").write_text('{"k": 2}')
    _save_inputs()
    run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=[1, 2], session=["a"])
    module = steps.load()
    module.config()  # as the script does, before for_each
    assert [i.status for i in for_each(module.proc, **run).items] == ["ran", "ran"]
    assert _recorded(project, 1) == [("cfg.json", "file")]
    (steps.dir / "cfg.json").write_text('{"k": 3}')
    assert _statuses(project) == ["stale", "stale"]
    module = steps.load()  # a new process
    module.config()
    assert [i.status for i in for_each(module.proc, **run).items] == ["ran", "ran"]
    assert [float(FrOut.load(subject=s, session="a").data) for s in (1, 2)] == [30.0, 60.0]



ABSENT_LISTINGS = {
    "glob": "len(glob.glob(os.path.join(HERE, 'extra', '*.json')))",
    "listdir": "_count(os.path.join(HERE, 'extra'))",
    # pathlib tests the folder with is_dir (no audit event) and lists nothing (3.11, 3.12)
    "path_glob": "len(list(pathlib.Path(HERE, 'extra').glob('*.json')))",
    "path_rglob": "len(list(pathlib.Path(HERE, 'extra').rglob('*.json')))",
    "path_glob_in": "len(list(pathlib.Path(HERE).glob('extra/*.json')))",
}


@pytest.mark.parametrize("how", sorted(ABSENT_LISTINGS))
def test_a_folder_absent_when_listed_is_an_input_once_it_is_made(project, tmp_path, monkeypatch, how):
    """glob of a folder nobody had made yet found nothing; once the folder is filled, the
    result computed from nothing is stale (it had been served as a hit)."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(f"""
        import glob, pathlib
        def _count(folder):
            try:
                return len(os.listdir(folder))
            except FileNotFoundError:
                return 0
        @lineage_fcn
        def proc(x):
            return x * (1 + {ABSENT_LISTINGS[how]})
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "extra").mkdir()
    (steps.dir / "extra" / "a.json").write_text("1")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _run(steps)[0] == ["cached", "cached"]


def test_a_folder_the_step_makes_and_fills_itself_stays_cached(project, tmp_path, monkeypatch):
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        import glob
        @lineage_fcn
        def proc(x):
            out = os.path.join(HERE, "own")
            seen = glob.glob(os.path.join(out, "*"))
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, f"s{int(x)}.txt"), "w") as f:
                f.write(str(x))
            return x * (1 + len([p for p in seen if not p.endswith(".txt")]))
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "own" / "notes.md").write_text("by hand")
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])


@pytest.mark.parametrize("how", ["for_each", "direct"])
def test_a_rerun_after_a_file_changed_to_the_same_result_names_the_file_as_it_is(project, tmp_path, monkeypatch,
                                                                               how):
    """A file read by the call changed but the result did not: the call ran again and its
    value was saved as before, naming the old record (one call key, the same inputs), which
    names the file as it was: `status` said stale on every later run, which said cached."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "@lineage_fcn\ndef proc(x):\n    return x * read_json('cfg.json')['k']\n")
    (steps.dir / "cfg.json").write_text('{"k": 2}')
    _save_inputs()

    def run() -> list[str]:
        if how == "for_each":
            return _run(steps)[0]
        module, ran = steps.load(), []
        for subject in (1, 2):
            result = module.proc(FrIn.load(subject=subject, session="a"))
            FrOut.save(result, subject=subject, session="a")
            ran.append("cached" if result.cached else "ran")
        return ran

    assert run() == ["ran", "ran"]
    (steps.dir / "cfg.json").write_text('{"k": 2, "note": "the same k"}')
    assert _statuses(project) == ["stale", "stale"]
    assert run() == ["ran", "ran"]
    assert _statuses(project) == ["done", "done"]
    assert run() == ["cached", "cached"]
    assert _statuses(project) == ["done", "done"]
    assert [float(FrOut.load(subject=s, session="a").data) for s in (1, 2)] == [20.0, 40.0]


NAMES_AFTER_A_WILDCARD = {
    "glob": "len(glob.glob(os.path.join(HERE, 'subjects', '*', 'meta.json')))",
    "path_glob": "len(list(pathlib.Path(HERE, 'subjects').glob('*/meta.json')))",
    "path_glob_dir": "len(list(pathlib.Path(HERE, 'subjects').glob('*/extra/*.json')))",
}


@pytest.mark.parametrize("how", sorted(NAMES_AFTER_A_WILDCARD))
def test_a_name_a_glob_tests_after_a_wildcard_is_an_input(project, tmp_path, monkeypatch, how):
    """glob('*/meta.json') tests s1/meta.json in each folder it matched, with no audit event,
    and never lists s1: the result made while it was missing was served after it appeared."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "import glob, pathlib\n@lineage_fcn\ndef proc(x):\n"
                f"    return x * (1 + {NAMES_AFTER_A_WILDCARD[how]})\n")
    for subject in ("s1", "s2"):
        (steps.dir / "subjects" / subject).mkdir(parents=True)
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])
    assert _run(steps)[0] == ["cached", "cached"]
    made = steps.dir / "subjects" / "s1" / ("extra/a.json" if how.endswith("_dir") else "meta.json")
    made.parent.mkdir(exist_ok=True)
    made.write_text("{}")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _run(steps)[0] == ["cached", "cached"]
    made.unlink()  # gone again: the folder that held it says so
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])


_CFG_STEP = ("import json\nfrom scistack import lineage_fcn\n@lineage_fcn\ndef proc(x):\n"
             "    with open('cfg.json') as f:\n        return x * json.load(f)['k']\n")
# the same by an absolute name (a name relative to the working directory is checked where the
# next run is: `test_a_name_relative_to_the_working_directory_is_checked_where_the_next_run_is`)
_CFG_STEP_ABSOLUTE = _CFG_STEP.replace("import json", "import json, os").replace(
    "open('cfg.json')", "open(os.path.join(os.getcwd(), 'cfg.json'))")


@pytest.mark.parametrize("named", ["absolute", "relative"])
def test_the_same_content_read_in_another_folder_of_the_project_is_a_new_version(project, tmp_path, monkeypatch,
                                                                                 named):
    """A call reads cfg.json in folder alice/, then (alice/ gone) in bob/ with the same content.
    Named by its absolute path: another input, so the save is a new version naming bob's
    record. Compared by content and file name only, the ref kept alice's record, and `why` said
    "stale: file .../alice/cfg.json changed" for ever (every later run was a cached hit of bob's
    record, saving no version). Named relative to the working directory ('cfg.json'): the name
    leads to the same content from bob/, the same input, so bob's run is served alice's record,
    and `why` checks bob's file (`test_the_same_content_under_a_relative_name_...`)."""
    import shutil

    steps = Steps(tmp_path, monkeypatch)
    steps.write(_CFG_STEP if named == "relative" else _CFG_STEP_ABSOLUTE)
    homes = [tmp_path / "alice", tmp_path / "bob"]
    for home in homes:
        home.mkdir()
        (home / "cfg.json").write_text('{"k": 2}')
    FrIn.save(10.0, subject=1, session="a")

    def run_in(home: Path) -> object:
        monkeypatch.chdir(home)
        result = steps.load().proc(FrIn.load(subject=1, session="a"))
        FrOut.save(result, subject=1, session="a")
        return result

    assert float(run_in(homes[0]).data) == 20.0
    shutil.rmtree(homes[0])
    second = run_in(homes[1])
    versions = 2 if named == "absolute" else 1
    assert second.cached == (named == "relative") and float(second.data) == 20.0
    assert len(FrOut.list_versions(subject=1, session="a")) == versions
    assert why(FrOut, subject=1, session="a").status == "current"
    assert run_in(homes[1]).cached  # and so it stays
    assert len(FrOut.list_versions(subject=1, session="a")) == versions
    assert why(FrOut, subject=1, session="a").status == "current"


def test_a_moved_project_checks_its_own_copy_of_the_files_it_read(tmp_path, monkeypatch):
    """A project moved to another folder (as a lab colleague's checkout at another absolute
    path): its call that read cfg.json inside the project is a cache hit, and `why` says
    current, since a record of this project looks for the file at this folder joined to its
    `project_path`. It looked at the old absolute path (gone): the call ran again on every
    run, saved no version (the same value), and `why` said "stale: file .../one/cfg.json
    changed" for ever. An edit of the moved folder's copy is seen (stale, then run again)."""
    import shutil

    import scistack.database as database_module
    from scistack.lineage.filecheck import changed_inputs

    steps = Steps(tmp_path, monkeypatch)
    steps.write(_CFG_STEP_ABSOLUTE)  # (the script is outside the project: its records name it anyway)
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    (first / "cfg.json").write_text('{"k": 2}')
    monkeypatch.delenv("SCISTACK_DB", raising=False)
    monkeypatch.setattr(database_module, "_current", None)

    def run_in(root: Path, compute: bool = True) -> tuple:
        monkeypatch.chdir(root)
        db = database_module.configure_database(root / "gait.duckdb", ["subject", "session"])
        try:
            if root == first:
                FrIn.save(10.0, subject=1, session="a")
            result = None
            if compute:
                result = steps.load().proc(FrIn.load(subject=1, session="a"))
                FrOut.save(result, subject=1, session="a")
                assert read_call(db.store, result.call).function.project in db.project_ids
            verdict = why(FrOut, subject=1, session="a")
            assert _statuses(db, (1,)) == [{"current": "done"}.get(verdict.status, verdict.status)]
            return result, len(FrOut.list_versions(subject=1, session="a")), verdict.status, str(verdict)
        finally:
            db.close()
            database_module._current = None

    made, versions, status, _ = run_in(first)
    assert not made.cached and versions == 1 and status == "current"
    shutil.move(first, second)
    for _ in range(2):
        result, versions, status, _ = run_in(second)
        assert result.cached and float(result.data) == 20.0
        assert versions == 1 and status == "current"

    (second / "cfg.json").write_text('{"k": 3}')
    _, _, status, said = run_in(second, compute=False)
    assert status == "stale" and str(second / "cfg.json") in said
    result, versions, status, _ = run_in(second)
    assert not result.cached and float(result.data) == 30.0
    assert versions == 2 and status == "current"

    # another project's reading of the record (imported): the file where that project read it
    other = tmp_path / "other"
    other.mkdir()
    (other / "cfg.json").write_text('{"k": 3}')
    mine = database_module.Database(second / "gait.duckdb", ["subject", "session"])
    db = database_module.Database(other / "gait.duckdb", ["subject", "session"])
    try:
        assert db.records_project() not in (None, *mine.project_ids)
        assert changed_inputs(mine.store, made.call, mine) == [str(second / "cfg.json")]  # (k was 2)
        assert changed_inputs(mine.store, made.call, db) == [str(first / "cfg.json")]
    finally:
        db.close()
        mine.close()


def test_the_same_file_read_in_another_checkout_of_the_project_adds_no_version(tmp_path, monkeypatch):
    """Two lab machines run one call reading the same file of their own checkouts (other
    absolute paths; here the project moved): the second's save of the same value is no new
    version, since the records also name each file relative to the project's folder."""
    import scistack.database as database_module

    steps = Steps(tmp_path, monkeypatch)
    steps.write(_CFG_STEP_ABSOLUTE)
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    (first / "cfg.json").write_text('{"k": 2}')
    monkeypatch.delenv("SCISTACK_DB", raising=False)

    def run_in(root: Path) -> object:
        monkeypatch.chdir(root)
        db = database_module.configure_database(root / "gait.duckdb", ["subject", "session"])
        try:
            if root == first:
                FrIn.save(10.0, subject=1, session="a")
            result = steps.load().proc(FrIn.load(subject=1, session="a"))
            FrOut.save(result, subject=1, session="a")
            return result, len(FrOut.list_versions(subject=1, session="a"))
        finally:
            db.close()
            database_module._current = None

    monkeypatch.setattr(database_module, "_current", None)
    assert run_in(first)[1] == 1
    first.rename(second)
    config = json.loads((second / ".scistack" / "config.json").read_text())
    config.pop("laptop_id", None)  # (another project's records, read here: each file at its absolute
    (second / ".scistack" / "config.json").write_text(json.dumps(config))  # path, gone: run again)
    result, versions = run_in(second)
    assert not result.cached and float(result.data) == 20.0
    assert versions == 1
    (second / "cfg.json").write_text('{"k": 2, "note": "the same k"}')  # other content: a new
    result, versions = run_in(second)                                   # version, as before
    assert not result.cached and versions == 2


PROBES = {
    "os.path.exists": "os.path.exists(os.path.join(HERE, 'flag'))",
    "os.path.isfile": "os.path.isfile(os.path.join(HERE, 'flag'))",
    "Path.exists": "pathlib.Path(HERE, 'flag').exists()",
    "Path.is_dir": "pathlib.Path(HERE, 'flag').is_dir()",
    "os.access": "os.access(os.path.join(HERE, 'flag'), os.F_OK)",
}


@pytest.mark.parametrize("how", sorted(PROBES))
def test_a_path_looked_for_without_opening_it_is_an_input_once_it_appears(project, tmp_path, monkeypatch, how):
    # `os.path.exists` and the like raise no audit event: a result computed while the path
    # was missing was served after it appeared
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + f"import pathlib\n@lineage_fcn\ndef proc(x):\n    return x * (3 if {PROBES[how]} else 2)\n")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == [("flag", "absent")]
    assert _run(steps)[0] == ["cached", "cached"]
    flag = steps.dir / "flag"
    flag.mkdir() if how == "Path.is_dir" else flag.write_text("")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


def test_the_wrapped_stat_functions_keep_what_the_platform_says_they_support():
    """`os.stat`, `os.lstat` and `os.access` are wrapped once a lineage function exists;
    `os.stat in os.supports_dir_fd` (how a library asks whether it may pass `dir_fd`) had
    turned False, as on a platform without it."""
    import subprocess
    import sys

    code = textwrap.dedent("""
        import os
        sets = (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks, os.supports_effective_ids)
        before = [[f in s for s in sets] for f in (os.stat, os.lstat, os.access)]
        from scistack import lineage_fcn

        @lineage_fcn
        def f(x):
            return x

        assert os.stat.__wrapped__ is not None
        after = [[f in s for s in sets] for f in (os.stat, os.lstat, os.access)]
        assert after == before, (before, after)
        assert any(any(row) for row in after)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_module_imported_by_a_computed_name_is_an_input(project, tmp_path, monkeypatch):
    # `importlib.import_module(name)` with a name computed at run time: the code identity
    # cannot follow it, so an edit of the module was served from the cache (in a new process
    # too); in the process that imported it, the module's old code runs on
    steps = Steps(tmp_path, monkeypatch)
    (steps.dir / "plug_a.py").write_text("K = 2\n")
    steps.write(HEAD + textwrap.dedent("""
        import importlib
        @lineage_fcn
        def proc(x):
            which = "plug_" + "ab"[0]
            return x * importlib.import_module(f"{__package__}.{which}").K
    """))
    _save_inputs()
    held = steps.load()
    run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=[1, 2], session=["a"])
    assert [i.status for i in for_each(held.proc, **run).items] == ["ran", "ran"]
    # the second call found it imported already: named all the same
    assert _recorded(project, 1) == _recorded(project, 2) == [("plug_a.py", "file")]
    assert [i.status for i in for_each(held.proc, **run).items] == ["cached", "cached"]
    (steps.dir / "plug_a.py").write_text("K = 3\n")
    assert _statuses(project) == ["stale", "stale"]
    with pytest.warns(RuntimeWarning, match="plug_a.py changed after proc imported it"):
        assert [i.status for i in for_each(held.proc, **run).items] == ["ran", "ran"]
    assert [float(FrOut.load(subject=s, session="a").data) for s in (1, 2)] == [20.0, 40.0]
    assert _statuses(project) == ["stale", "stale"]  # (computed by the old code in memory)
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])  # as a new process
    assert _run(steps)[0] == ["cached", "cached"]


def test_a_project_source_file_read_for_a_traceback_is_not_an_input(project, tmp_path, monkeypatch):
    # linecache opens a project module's source to format a traceback (also logging.exception
    # and a warning): only the import system's open of a .py is an import. That read had made
    # the whole file an input (a comment-only edit re-ran the call; DESIGN: comments are not
    # edits), and every later call of the process named it, warning it changed after the import
    steps = Steps(tmp_path, monkeypatch)
    (steps.dir / "tb_help.py").write_text("# v1\ndef check(x):\n    raise ValueError(x)\n")
    steps.write(HEAD + textwrap.dedent("""
        import traceback
        from . import tb_help
        @lineage_fcn
        def proc(x):
            try:
                tb_help.check(x)
            except ValueError:
                note = traceback.format_exc()
            return x * 2
    """))
    _save_inputs()
    import linecache

    linecache.clearcache()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == _recorded(project, 2) == []
    (steps.dir / "tb_help.py").write_text("# v2\ndef check(x):\n    raise ValueError(x)\n")
    assert _statuses(project) == ["done", "done"]
    assert _run(steps)[0] == ["cached", "cached"]


def test_the_wrapped_stat_functions_can_still_be_pickled(tmp_path):
    # once a lineage function exists os.stat/lstat/access are wrappers: pickle (multiprocessing,
    # ProcessPoolExecutor().map(os.stat, paths)) raised PicklingError, "not the same object as
    # posix.stat"
    import pickle

    from scistack.codeid import files

    files.install()
    assert os.stat.__wrapped__ is not None
    for fn in (os.stat, os.lstat, os.access, os.readlink, os.open):
        assert pickle.loads(pickle.dumps(fn)) is fn
    assert {os.stat, os.access, os.readlink, os.open} <= os.supports_dir_fd  # (asked before passing dir_fd)
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert list(pool.map(os.stat, [str(tmp_path)]))[0].st_ino == tmp_path.stat().st_ino


FOUND = {  # a test of a path that is there; what it becomes (gone, or a folder made a file)
    "os.path.isfile": ("os.path.isfile(os.path.join(HERE, 'flag'))", "file", "gone"),
    "Path.is_dir": ("pathlib.Path(HERE, 'flag').is_dir()", "folder", "a file"),
    "os.access": ("os.access(os.path.join(HERE, 'flag'), os.F_OK)", "file", "gone"),
}


@pytest.mark.parametrize("how", sorted(FOUND))
def test_a_path_found_without_opening_it_is_an_input_once_it_goes(project, tmp_path, monkeypatch, how):
    # only a path not found had been noted: a result computed while it was there was served
    # after it went (or turned from a folder into a file)
    test, kind, then = FOUND[how]
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + f"import pathlib\n@lineage_fcn\ndef proc(x):\n    return x * (3 if {test} else 2)\n")
    flag = steps.dir / "flag"
    flag.mkdir() if kind == "folder" else flag.write_text("")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _recorded(project, 1) == [("flag", "present")]
    assert _run(steps)[0] == ["cached", "cached"]
    flag.rmdir() if kind == "folder" else flag.unlink()
    if then == "a file":
        flag.write_text("")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])


def test_a_size_or_time_the_code_reads_is_an_input(project, tmp_path, monkeypatch):
    # os.path.getsize/getmtime and os.stat end in a stat of a path found: its size and mtime
    # are inputs (not its content: the file is not read); paths stat'ed by os.makedirs or
    # Path.resolve on their own account are not
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        import pathlib
        @lineage_fcn
        def proc(x):
            os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
            pathlib.Path(HERE, "out").resolve()
            return x * os.path.getsize(os.path.join(HERE, "data.bin"))
    """))
    (steps.dir / "data.bin").write_bytes(b"12")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == [("data.bin", "stat")]
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "data.bin").write_bytes(b"123")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _run(steps)[0] == ["cached", "cached"]


ENTRY_KINDS = {
    "scandir": "sum(e.is_dir() for e in os.scandir(D))",
    "iterdir": "sum(p.is_dir() for p in pathlib.Path(D).iterdir())",
}


@pytest.mark.parametrize("how", sorted(ENTRY_KINDS))
def test_an_entry_of_a_listed_folder_turned_from_a_file_into_a_folder_misses_the_hit(
        project, tmp_path, monkeypatch, how):
    # a listing was its names alone: the folders counted among them (DirEntry.is_dir stats
    # nothing through os.stat) were served after a file was replaced by a folder of its name
    steps = Steps(tmp_path, monkeypatch)
    data = steps.dir / "data"
    data.mkdir()
    (data / "a").write_text("")
    (data / "b").mkdir()
    steps.write(HEAD + "import pathlib\nD = os.path.join(HERE, 'data')\n@lineage_fcn\ndef proc(x):\n"
                f"    return x * {ENTRY_KINDS[how]}\n")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])
    assert _recorded(project, 1) == [("data", "listing")]
    assert _run(steps)[0] == ["cached", "cached"]
    (data / "a").unlink()
    (data / "a").mkdir()
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])


REACHED = {  # a project module imported before the call, reached by a name computed in it
    "getattr": ("from . import plug", "getattr(plug, 'sca' + 'le')(x)"),
    "package": ("from . import plugins", "getattr(plugins, 'pl' + 'ug').scale(x)"),
}


@pytest.mark.parametrize("how", sorted(REACHED))
def test_a_module_imported_before_the_call_and_reached_by_a_computed_name_is_an_input(
        project, tmp_path, monkeypatch, how):
    # no import happened inside the call, and the identity walk could not follow the name:
    # an edit of the function reached was served from the cache (in a new process too)
    steps = Steps(tmp_path, monkeypatch)
    imports, reach = REACHED[how]
    module = steps.dir / ("plugins" if how == "package" else "") / "plug.py"
    module.parent.mkdir(exist_ok=True)
    if how == "package":
        (module.parent / "__init__.py").write_text("from . import plug\n")
    module.write_text("def scale(x):\n    return x * 2\n")
    steps.write(HEAD + f"{imports}\n@lineage_fcn\ndef proc(x):\n    return {reach}\n")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert (module.name, "file") in _recorded(project, 1)  # (by content: its data counts)
    assert _run(steps)[0] == ["cached", "cached"]
    module.write_text("def scale(x):\n    return x * 3\n")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


def test_a_module_imported_before_the_call_and_imported_again_by_a_computed_name_is_an_input(
        project, tmp_path, monkeypatch):
    # importlib.import_module of a module in sys.modules opens no file: imported at the top
    # of the script, it had never been an input (an edit of it was served from the cache)
    steps = Steps(tmp_path, monkeypatch)
    (steps.dir / "plug_a.py").write_text("K = 2\n")
    steps.write(HEAD + textwrap.dedent("""
        import importlib
        from . import plug_a
        @lineage_fcn
        def proc(x):
            return x * importlib.import_module(f"{__package__}.plug_" + "a").K
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == _recorded(project, 2) == [("plug_a.py", "file")]
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "plug_a.py").write_text("K = 3\n")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    # edited after this process imported it: the old code runs, and its result is not
    # recorded as made from the file as it is now (that one was served in a new process)
    held = steps.load()
    (steps.dir / "plug_a.py").write_text("K = 4\n")
    run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=[1, 2], session=["a"])
    with pytest.warns(RuntimeWarning, match="plug_a.py changed after proc imported it"):
        assert [i.status for i in for_each(held.proc, **run).items] == ["ran", "ran"]
    assert [float(FrOut.load(subject=s, session="a").data) for s in (1, 2)] == [30.0, 60.0]
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [40.0, 80.0])
    assert importlib.import_module("os") is os and importlib.import_module.__module__ == "importlib"


SOURCE_READS = {  # a project .py read by its content, not imported
    "runpy": "import runpy\n@lineage_fcn\ndef proc(x):\n"
             "    return x * runpy.run_path(os.path.join(HERE, 'params.py'))['K']\n",
    "exec_open": "@lineage_fcn\ndef proc(x):\n    ns = {}\n    with open(os.path.join(HERE, 'params.py')) as f:\n"
                 "        exec(f.read(), ns)\n    return x * ns['K']\n",
    "memo": "import runpy\n@functools.lru_cache(maxsize=None)\ndef params():\n"
            "    return runpy.run_path(os.path.join(HERE, 'params.py'))\n"
            "@lineage_fcn\ndef proc(x):\n    return x * params()['K']\n",
}


@pytest.mark.parametrize("how", sorted(SOURCE_READS))
def test_a_project_python_file_read_by_its_content_is_an_input(project, tmp_path, monkeypatch, how):
    # only linecache's read of a project .py (a traceback, a warning) is no input: any open
    # of one not made by the import system had been dropped, so a Python config read by
    # runpy.run_path or exec(open(...).read()) edited from K=2 to K=3 was served from the cache
    steps = Steps(tmp_path, monkeypatch)
    (steps.dir / "params.py").write_text("K = 2\n")
    steps.write(HEAD + SOURCE_READS[how])
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == _recorded(project, 2) == [("params.py", "file")]
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "params.py").write_text("K = 3\n")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


DATA_MEMBERS = {  # a module's data that differs in every process
    "time": "import time\nSTARTED = time.time()\n",
    "run_id": "import uuid\nRUN = uuid.uuid4().hex\n",
    "tempdir": "import tempfile\nSCRATCH = tempfile.mkdtemp()\n",
}


@pytest.mark.parametrize("what", sorted(DATA_MEMBERS))
def test_a_module_reached_by_a_computed_name_counts_its_code_not_its_data(project, tmp_path, monkeypatch, what):
    # getattr(module, name) with a computed name made every member a dependency, its data
    # values too: a start time or run id differs in every process, so every fresh process
    # missed for every function dispatching by a computed name
    steps = Steps(tmp_path, monkeypatch)
    plug = steps.dir / "plug.py"
    plug.write_text(DATA_MEMBERS[what] + "def scale(x):\n    return x * 2\n")
    steps.write(HEAD + "from . import plug\n@lineage_fcn\ndef proc(x):\n    return getattr(plug, 'sca' + 'le')(x)\n")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _run(steps)[0] == ["cached", "cached"]  # (imported afresh, as by a new process)
    plug.write_text(DATA_MEMBERS[what] + "def scale(x):\n    return x * 3\n")  # its code still counts
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


def test_a_data_member_reached_by_a_computed_name_is_an_input(project, tmp_path, monkeypatch):
    # the identity counts a module's code members only (above), so its data reached by a
    # computed name was seen nowhere: float(getattr(cfg, name)) with cfg.py edited from K = 2
    # to K = 3 was served the cached 2.0 (in a new process too). The module's source file is
    # an input by content now (a comment-only edit of it re-runs the call: accepted)
    steps = Steps(tmp_path, monkeypatch)
    cfg = steps.dir / "cfg.py"
    cfg.write_text("K = 2\n")
    steps.write(HEAD + "from . import cfg\n@lineage_fcn\ndef proc(x):\n    return x * float(getattr(cfg, 'K'[:1]))\n")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == _recorded(project, 2) == [("cfg.py", "file")]
    assert _run(steps)[0] == ["cached", "cached"]
    cfg.write_text("K = 3\n")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _run(steps)[0] == ["cached", "cached"]


def test_a_module_imported_before_scistack_is_judged_by_what_its_import_checked(tmp_path):
    # a module imported before the hook was installed has no load time: it was judged by the
    # process's start, so a notebook where the user edited plug.py after starting the kernel,
    # then imported it, then scistack, re-ran every call with a false "changed after" warning.
    # The import checked the source against its __pycache__ bytecode (mtime and size): a
    # module edited after its import still warns, and its calls are not served
    import subprocess

    # (only bytecode written before the process started vouches: a later pyc may be another
    # process's, compiled from an edit made after this one imported the module; so plug_a's
    # source is dated after the start, where the process's start alone would not vouch)
    for name in ("plug_a", "plug_b"):
        (tmp_path / f"{name}.py").write_text("def scale(x):\n    return x * 2\n")
    later = time.time_ns() + 60 * 10**9
    os.utime(tmp_path / "plug_a.py", ns=(later, later))
    script = textwrap.dedent("""
        import importlib, os, sys, warnings
        sys.path.insert(0, os.getcwd())
        import plug_a, plug_b  # imported before scistack (bytecode written before the start)
        with open("plug_b.py", "w") as f:  # edited after its import: the old code runs
            f.write("def scale(x):\\n    return x * 3  # new\\n")
        from scistack import configure_database, lineage_fcn
        db = configure_database("p.duckdb", ["subject"])

        @lineage_fcn
        def proc(x, name):
            return importlib.import_module(name).scale(x)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs = [proc(1.0, name).cached for name in ("plug_a", "plug_a", "plug_b", "plug_b")]
        print(runs, sorted({str(w.message).split(" changed after")[0] for w in caught
                            if "changed after" in str(w.message)}))
        db.close()
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    compiled = subprocess.run([sys.executable, "-c", "import sys, os; sys.path.insert(0, os.getcwd()); import plug_a, plug_b"],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    earlier = time.time_ns() - 60 * 10**9  # (written well before the next process starts)
    for pyc in (tmp_path / "__pycache__").iterdir():
        os.utime(pyc, ns=(earlier, earlier))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[False, True, False, False] [{str(tmp_path / 'plug_b.py')!r}]"


def test_the_start_a_module_imported_before_scistack_is_dated_by_is_early_by_the_racy_window(tmp_path):
    # a module imported before the hook, without bytecode vouching, is as loaded when its file
    # is older than the process's start: a write after the start may be dated up to the racy
    # window before it (a coarse clock, FAT's 2 s, a server's behind). The start was /proc/stat's
    # whole-second boot time less 1 s, 1 to 2 s early by chance; now to a tick, less the window
    import subprocess

    from scistack.codeid import files

    if not os.path.exists("/proc/self/stat"):
        pytest.skip("the process's start is read from /proc")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    before = time.time_ns()
    child = subprocess.Popen([sys.executable, "-c", "from scistack.codeid import files; print(files._process_start_ns())"],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    after = time.time_ns()  # (the child exists: its start, the fork, is between the two)
    out, _ = child.communicate(timeout=600)
    assert before - files._RACY_NS - 10**8 <= int(out) <= after - files._RACY_NS


@pytest.mark.parametrize("racy", [True, False])
def test_a_module_rewritten_after_its_import_with_its_mtime_kept_is_not_taken_as_loaded(
        project, tmp_path, monkeypatch, racy):
    # A module imported, then given another version of the same size with its mtime kept (a
    # `cp -p`, or a save in the tick of the import: the kernel's coarse clock dates it before
    # the fine-grained time of the import): "its mtime is older than the import" took the
    # file for the code in memory, so the old code's result (K = 2) was recorded under the
    # K = 3 file, and a new process served it. The import's own stat is compared now (its
    # ctime, which no copy can set, changed), or, where that stat was racy, the content then
    from scistack.codeid import files

    monkeypatch.setattr(files, "_RACY_NS", 3600 * 10**9 if racy else 0)
    steps = Steps(tmp_path, monkeypatch)
    (steps.dir / "plug_a.py").write_text("K = 2\n")
    steps.write(HEAD + textwrap.dedent("""
        import importlib
        from . import plug_a
        @lineage_fcn
        def proc(x):
            return x * importlib.import_module(f"{__package__}.plug_" + "a").K
    """))
    _save_inputs()
    files.install()  # (the import is seen: a lineage function was made before, as in a session)
    held = steps.load()  # (imports plug_a)
    loaded = files._LOADED_AT[str(steps.dir / "plug_a.py")]
    same_size_rewrite(steps.dir / "plug_a.py", "K = 3\n")
    run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=[1, 2], session=["a"])
    with pytest.warns(RuntimeWarning, match="plug_a.py changed after proc imported it"):
        assert [i.status for i in for_each(held.proc, **run).items] == ["ran", "ran"]
    assert [float(FrOut.load(subject=s, session="a").data) for s in (1, 2)] == [20.0, 40.0]
    assert _statuses(project) == ["stale", "stale"]  # (never served for the K = 3 file)
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert (loaded[1] is not None) is racy  # (a racy stat: the content as imported was kept)


@pytest.mark.parametrize("bytecode", [True, False])
def test_a_module_imported_before_scistack_then_copied_over_with_its_mtime_is_not_taken_as_loaded(
        tmp_path, bytecode):
    # imported before the hook was installed: its __pycache__ bytecode (written before the
    # start, holding the source's mtime and size), or else an mtime older than the process,
    # vouched for the file. A `cp -p` of another version of the same size once the session
    # runs keeps both, and the old code's result (x * 2) was recorded under the x * 3 file:
    # a new process served it. Its ctime, later than the hook's install, now says it changed
    import subprocess

    (tmp_path / "plug.py").write_text("def scale(x):\n    return x * 2\n")
    script = textwrap.dedent("""
        import importlib, os, sys, warnings
        sys.path.insert(0, os.getcwd())
        import plug  # imported before scistack
        from scistack import configure_database, lineage_fcn
        db = configure_database("p.duckdb", ["subject"])

        @lineage_fcn
        def proc(x, name):
            return importlib.import_module(name).scale(x)

        st = os.stat("plug.py")  # a cp -p of another version, once the session runs
        with open("plug.py", "w") as f:
            f.write("def scale(x):\\n    return x * 3\\n")
        os.utime("plug.py", ns=(st.st_atime_ns, st.st_mtime_ns))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = proc(1.0, "plug")
        print(r.data, any("changed after" in str(w.message) for w in caught))
        db.close()
    """)
    again = textwrap.dedent("""
        import importlib, os, sys
        sys.path.insert(0, os.getcwd())
        from scistack import configure_database, lineage_fcn
        db = configure_database("p.duckdb", ["subject"])

        @lineage_fcn
        def proc(x, name):
            return importlib.import_module(name).scale(x)

        r = proc(1.0, "plug")
        print(r.data, r.cached)
        db.close()
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    earlier = time.time_ns() - 60 * 10**9  # (written well before the next process starts)
    if bytecode:
        compiled = subprocess.run([sys.executable, "-c", "import sys, os; sys.path.insert(0, os.getcwd()); import plug"],
                                  cwd=tmp_path, env=env, capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stderr
        for pyc in (tmp_path / "__pycache__").iterdir():
            os.utime(pyc, ns=(earlier, earlier))
    else:
        os.utime(tmp_path / "plug.py", ns=(earlier, earlier))
    outputs = []
    # (the new process compiles plug.py afresh: from the old bytecode, whose header the copy
    # matches, Python itself would run x * 2 again)
    for text, more in ((script, {}), (again, {"PYTHONPYCACHEPREFIX": str(tmp_path / "fresh")})):
        done = subprocess.run([sys.executable, "-c", text], cwd=tmp_path, env={**env, **more}, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip())
    assert outputs == ["2.0 True", "3.0 False"]  # (stale at once, warned; then computed from x * 3)


def test_a_module_bytecode_another_process_rewrote_after_the_import_is_not_trusted(tmp_path):
    # a module imported before scistack, then edited (same size), then compiled again by
    # another process: its pyc, written before the hook was installed, was trusted, so the
    # result of the in-memory K = 2 was recorded under the K = 3 file and a new process
    # served it. Only bytecode written before this process started vouches now
    import subprocess

    make = textwrap.dedent("""
        import importlib, os, subprocess, sys, warnings
        sys.path.insert(0, os.getcwd())
        with open("plug.py", "w") as f:
            f.write("K = 2\\ndef scale(x):\\n    return x * K\\n")
        import plug  # imported before scistack: its pyc written
        with open("plug.py", "w") as f:  # edited after the import: same size, a later second
            f.write("K = 3\\ndef scale(x):\\n    return x * K\\n")
        later = os.stat("plug.py").st_mtime_ns + 5 * 10**9
        os.utime("plug.py", ns=(later, later))
        subprocess.run([sys.executable, "-c", "import plug"], check=True)  # another process: pyc rewritten
        from scistack import configure_database, lineage_fcn
        db = configure_database("p.duckdb", ["subject"])

        @lineage_fcn
        def proc(x, name):
            return importlib.import_module(name).scale(x)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = proc(1.0, "plug")
        print(r.data, r.cached, any("changed after" in str(w.message) for w in caught))
        db.close()
    """)
    again = textwrap.dedent("""
        import importlib, os, sys
        sys.path.insert(0, os.getcwd())
        from scistack import configure_database, lineage_fcn
        db = configure_database("p.duckdb", ["subject"])

        @lineage_fcn
        def proc(x, name):
            return importlib.import_module(name).scale(x)

        r = proc(1.0, "plug")
        print(r.data, r.cached)
        db.close()
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    outputs = []
    for script in (make, again):
        done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip())
    assert outputs == ["2.0 False True", "3.0 False"]  # (stale at once, warned; then computed from K = 3)


LINKS = {  # a test that does not follow links (or follows a dangling one); what then changes
    "islink": ("os.path.islink(L)", "target", "a file", "present"),
    "Path.is_symlink": ("pathlib.Path(L).is_symlink()", "target", "a file", "present"),
    "lexists": ("os.path.lexists(L)", "missing", "gone", "present"),
    "exists": ("not os.path.exists(L)", "missing", "target made", "absent"),
}


@pytest.mark.parametrize("how", sorted(LINKS))
def test_a_link_tested_without_following_it_is_checked_as_a_link(project, tmp_path, monkeypatch, how):
    # islink/lexists found the path by an lstat, but it was recorded (and checked) by a stat
    # following the link: a link replaced by a file of its name kept the hit, and a dangling
    # link found by lexists (or not found by exists) recorded nothing
    test, points_to, then, kind = LINKS[how]
    steps = Steps(tmp_path, monkeypatch)
    target, link = steps.dir / "target.txt", steps.dir / "link.txt"
    if points_to == "target":
        target.write_text("x")
    os.symlink(target, link)
    steps.write(HEAD + "import pathlib\nL = os.path.join(HERE, 'link.txt')\n@lineage_fcn\ndef proc(x):\n"
                f"    return x * (2 if {test} else 3)\n")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == [("link.txt", kind)]
    assert _run(steps)[0] == ["cached", "cached"]
    if then == "target made":
        target.write_text("x")
    else:
        link.unlink()
        if then == "a file":
            link.write_text("y")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


def test_a_path_probed_both_with_and_without_following_its_link_records_both(project, tmp_path, monkeypatch):
    # islink(p) then getsize(p): the path was recorded by its lstat alone (the link), so the
    # link's target rewritten with another size kept the hit. Each way records its own entry
    steps = Steps(tmp_path, monkeypatch)
    target, link = steps.dir / "target.csv", steps.dir / "latest"
    target.write_text("1,2\n")
    os.symlink(target, link)
    steps.write(HEAD + "L = os.path.join(HERE, 'latest')\n@lineage_fcn\ndef proc(x):\n"
                "    kind = 'link' if os.path.islink(L) else 'file'\n"
                "    return x * float(os.path.getsize(L))\n")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [40.0, 80.0])
    assert _recorded(project, 1) == [("latest", "stat"), ("latest", "present")]  # (followed; the lstat)
    assert _run(steps)[0] == ["cached", "cached"]
    target.write_text("1,2,3\n")  # the link unchanged, what it points to grown
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [60.0, 120.0])
    assert _run(steps)[0] == ["cached", "cached"]


def test_a_file_replaced_in_place_with_its_size_and_mtime_kept_misses_the_hit(project, tmp_path, monkeypatch):
    # `cp -p`, `shutil.copy2`, `rsync -t --inplace` or an unzip write other bytes of the same
    # size into the same inode and set the old mtime back: the check compared size, mtime and
    # inode only and served the result made from the old content. The ctime (which no copy
    # can set) is recorded and compared too; a ctime-only change (chmod) costs a hash, not a run
    import shutil

    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "@lineage_fcn\ndef proc(x):\n    return x * read_json('gain.json')\n")
    (steps.dir / "gain.json").write_text("1.25")
    (tmp_path / "new.json").write_text("9.75")
    for path in (steps.dir / "gain.json", tmp_path / "new.json"):
        os.utime(path, ns=(1_767_225_600 * 10**9, 1_767_225_600 * 10**9))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [12.5, 25.0])
    before = os.stat(steps.dir / "gain.json")
    os.chmod(steps.dir / "gain.json", 0o600)
    assert _run(steps)[0] == ["cached", "cached"]
    shutil.copy2(tmp_path / "new.json", steps.dir / "gain.json")
    after = os.stat(steps.dir / "gain.json")
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [97.5, 195.0])


def test_a_file_recorded_without_its_ctime_is_hashed_again_never_matched_by_its_stat(tmp_path):
    # a record written before the ctime was kept has none: its stat must not vouch for the
    # content (the file may have been replaced in place since), so the content decides
    import shutil

    import blake3

    from scistack.codeid.files import FileRead, changed_files

    path, new = tmp_path / "gain.txt", tmp_path / "new.txt"
    path.write_text("1.25")
    new.write_text("9.75")
    for p in (path, new):
        os.utime(p, ns=(1_767_225_600 * 10**9, 1_767_225_600 * 10**9))
    st = os.stat(path)
    old = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
           "blake3": blake3.blake3(b"1.25").hexdigest()}
    assert changed_files([FileRead.from_value(old)]) == []  # the same content: a hit
    assert FileRead.from_value({**old, "ctime_ns": st.st_ctime_ns}).to_value()["ctime_ns"] == st.st_ctime_ns
    shutil.copy2(new, path)
    assert os.stat(path).st_ino == st.st_ino
    assert changed_files([FileRead.from_value(old)]) == [str(path)]


def test_a_file_rewritten_through_a_mapping_after_the_call_read_it_misses_the_hit(project, tmp_path, monkeypatch):
    # Racy clean (git's word): a file's mtime and ctime come from a coarse clock (the kernel's
    # tick, 1-10 ms, on ext4 before Linux 6.13, tmpfs; FAT: 2 s; NFS/SMB: the server's), so a
    # step rewriting a file of the same size just after the next step read it left the whole
    # stat as recorded, and that step's hit was served with the old content. A write through a
    # shared mapping (np.memmap) to a page already dirty updates neither time on any
    # filesystem: the same case, made on demand. A stat taken within `_RACY_NS` of the
    # file's mtime or ctime is recorded racy: its hits hash the content.
    import mmap

    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "@lineage_fcn\ndef proc(x):\n    return x * read_json('gain.json')\n")
    gain = steps.dir / "gain.json"
    gain.write_bytes(b"0000")
    _save_inputs()
    with open(gain, "r+b") as handle, mmap.mmap(handle.fileno(), 4) as mapped:
        mapped[:] = b"1.25"  # step A writes (the page's first write: mtime and ctime set)
        assert _run(steps) == (["ran", "ran"], [12.5, 25.0])  # step B reads it at once
        record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
        assert [f.get("racy") for f in record.extra["files"]] == [True]
        mapped[:] = b"9.75"  # step A writes again, the same size: no new mtime nor ctime
        # (the stat stays as recorded unless the page was written back meanwhile, by a `sync`
        # elsewhere: the hit must miss either way)
        assert _statuses(project) == ["stale", "stale"]
        assert _run(steps) == (["ran", "ran"], [97.5, 195.0])


def test_a_file_rewritten_while_the_call_ran_is_recorded_so_that_the_next_run_misses(project, tmp_path,
                                                                                      monkeypatch):
    # The file is hashed when the call ends: another process (here a thread) rewriting it
    # after the function read it had the new content recorded as the input, and the result
    # computed from the old content was served for it. The stat at the first open is kept;
    # one that differs at the end records a digest no content has (`CHANGED_WHILE_READ`)
    from scistack.codeid.files import CHANGED_WHILE_READ

    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        import threading
        def rewrite():
            with open(os.path.join(HERE, "gain.json"), "w") as f:
                f.write("9.5")
        @lineage_fcn
        def proc(x):
            gain = read_json("gain.json")
            if gain == 1.25:  # another writer, while the call still runs
                writer = threading.Thread(target=rewrite)
                writer.start()
                writer.join()
            return x * gain
    """))
    (steps.dir / "gain.json").write_text("1.25")
    _save_inputs()
    assert _run(steps, subjects=(1,)) == (["ran"], [12.5])
    assert (steps.dir / "gain.json").read_text() == "9.5"
    record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
    assert [f["blake3"] for f in record.extra["files"]] == [CHANGED_WHILE_READ]
    assert _statuses(project, subjects=(1,)) == ["stale"]
    assert _run(steps, subjects=(1,)) == (["ran"], [95.0])
    assert _run(steps, subjects=(1,)) == (["cached"], [95.0])


def test_a_module_edited_while_the_call_that_imported_it_ran_misses_the_next_run(project, tmp_path,
                                                                                  monkeypatch):
    # A module the call imports (a computed name) is an input by its source file, hashed when
    # the call ends: edited after the import (another writer), the new source was recorded
    # for the result the old code computed, and that result was served for the new code
    steps = Steps(tmp_path, monkeypatch)
    (steps.dir / "plug_a.py").write_text("K = 2\n")
    steps.write(HEAD + textwrap.dedent("""
        import importlib, threading
        def edit():
            with open(os.path.join(HERE, "plug_a.py"), "w") as f:
                f.write("K = 30\\n")
        @lineage_fcn
        def proc(x):
            k = importlib.import_module(f"{__package__}.plug_" + "ab"[0]).K
            if k == 2:  # edited by another writer while the call still runs
                writer = threading.Thread(target=edit)
                writer.start()
                writer.join()
            return x * k
    """))
    _save_inputs()
    assert _run(steps, subjects=(1,)) == (["ran"], [20.0])
    assert _statuses(project, subjects=(1,)) == ["stale"]
    assert _run(steps, subjects=(1,)) == (["ran"], [300.0])  # (a fresh import: the new code)
    assert _run(steps, subjects=(1,))[0] == ["cached"]


DURING = {  # what the code learns of extra.txt, which another writer makes or grows meanwhile
    "getsize": ("os.path.getsize(P)", "4"),
    "exists": ("os.path.exists(P) + 3", None),
    "open": ("opened()", None),  # (FileNotFoundError: 3)
}


@pytest.mark.parametrize("how", sorted(DURING))
def test_a_path_the_code_looked_at_changed_while_the_call_ran_misses_the_next_run(project, tmp_path,
                                                                                monkeypatch, how):
    # As a file read: the entry is taken when the call ends, so a size the code read before
    # another writer grew the file, or a path it did not find before that writer made it,
    # was recorded as found at the end, and the result computed from what the code saw was
    # served for it. Now such an entry never matches: the next run computes again
    code, before = DURING[how]
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(f"""
        import threading
        P, DONE = os.path.join(HERE, "extra.txt"), os.path.join(HERE, "done")
        def write():
            with open(P, "w") as f:
                f.write("12345")
        def opened():
            try:
                with open(P) as f:
                    return len(f.read())
            except FileNotFoundError:
                return 3
        @lineage_fcn
        def proc(x):
            seen = {code}
            first = not os.path.exists(DONE)
            with open(DONE, "w"):  # (written by every call: its output, so no input)
                pass
            if first:
                writer = threading.Thread(target=write)
                writer.start()
                writer.join()
            return x * seen
    """))
    if before is not None:
        (steps.dir / "extra.txt").write_text("1234")
    _save_inputs()
    assert _run(steps, subjects=(1,)) == (["ran"], [40.0 if before else 30.0])
    assert _statuses(project, subjects=(1,)) == ["stale"]
    assert _run(steps, subjects=(1,)) == (["ran"], [50.0 if how != "exists" else 40.0])
    assert _run(steps, subjects=(1,))[0] == ["cached"]


@pytest.mark.parametrize("kind", ["file", "listing"])
def test_a_racy_stat_does_not_vouch_for_the_content_but_an_old_one_does(tmp_path, monkeypatch, kind):
    # The rule itself, deterministically: a record whose stat was taken within `_RACY_NS` of
    # the file's (or folder's) mtime or ctime is racy, and its check hashes the content (or
    # lists the folder) though the stat matches: a rewrite (a rename) in the same timestamp
    # tick is seen. One taken later is not: its check is the stat alone. The content verified
    # by a stat no longer racy is remembered for the process (`_STAT_OK`), a racy one is not.
    import dataclasses

    import blake3

    from scistack.codeid import files

    path = tmp_path / "data"
    if kind == "file":
        path.write_text("1.25")
    else:
        path.mkdir()
        (path / "a.json").write_text("1")
    read = files._listing if kind == "listing" else files._hashed
    hashed = []

    def counted(p, *args, **kwargs):
        hashed.append(p)
        return read(p, *args, **kwargs)

    monkeypatch.setattr(files, "_listing" if kind == "listing" else "_hashed", counted)
    other = blake3.blake3(b"other names" if kind == "listing" else b"9.75").hexdigest()

    st = os.stat(path)
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    assert files.racy_stat(st, newest) and files.racy_stat(st, newest + files._RACY_NS - 1)
    assert not files.racy_stat(st, newest + files._RACY_NS)
    ahead = tmp_path / "ahead"
    ahead.write_text("")
    later = time.time_ns() + 3600 * 10**9  # a clock ahead of this one (a server's): racy
    os.utime(ahead, ns=(later, later))
    assert files.racy_stat(os.stat(ahead), time.time_ns())

    racy = read(str(path))  # just made: racy
    assert racy.racy and files.FileRead.from_value(racy.to_value()).racy
    # the stat as recorded, the content changed in the same tick: the check must look
    assert files.changed_files([dataclasses.replace(racy, digest=other)]) == [str(path)]
    hashed.clear()
    assert files.changed_files([racy]) == [] and files.changed_files([racy]) == []
    assert len(hashed) == 2  # still racy now: verified, but not remembered

    monkeypatch.setattr(files, "_RACY_NS", 0)  # (as if the file were older than the window)
    hashed.clear()
    assert files.changed_files([racy]) == [] and files.changed_files([racy]) == []
    assert len(hashed) == 1  # verified by a stat no longer racy: remembered for the process
    old = read(str(path))
    assert not old.racy and "racy" not in old.to_value()
    hashed.clear()
    assert files.changed_files([dataclasses.replace(old, digest=other)]) == []  # trusted: its stat
    assert hashed == []


def test_a_racy_record_verified_by_an_old_stat_is_not_hashed_again_by_every_new_process(
        project, tmp_path, monkeypatch):
    # A call record whose file was read within 2 s of its last change is racy: its stat never
    # vouches, and the content verified by a later stat was remembered for the process only
    # (`_STAT_OK`), so every new process hashed the file again at its first hit, for ever (a
    # pipeline's intermediate files: all of them). As git promotes a racily clean entry at
    # its next index write, the run keeps the verification in the project's memo
    # (`FileStats`, "inputs"), and later processes judge the file by that stat
    from scistack.codeid import files
    from scistack.foreach import filestats

    steps = Steps(tmp_path, monkeypatch)
    calibration = steps.dir / "cal.json"
    calibration.write_text("3")
    steps.write(HEAD + textwrap.dedent("""
        @lineage_fcn
        def proc(x):
            return x * read_json("cal.json")
    """))
    _save_inputs()
    monkeypatch.setattr(files, "_RACY_NS", 3600 * 10**9)  # (read as soon as written)
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
    assert [f.get("racy") for f in record.extra["files"]] == [True]
    hashed = []
    real = files._hashed
    monkeypatch.setattr(files, "_hashed", lambda p: hashed.append(os.path.basename(p)) or real(p))
    monkeypatch.setattr(files, "_RACY_NS", 0)  # (as if the file were older than the window now)

    def new_process():
        files._STAT_OK.clear()
        filestats._OF_PROJECT.clear()
        hashed.clear()

    new_process()
    assert _run(steps)[0] == ["cached", "cached"]
    assert hashed.count("cal.json") == 1  # verified once, by a stat no longer racy: kept
    new_process()
    assert _run(steps)[0] == ["cached", "cached"]
    assert hashed.count("cal.json") == 0  # (it was hashed by every new process)
    same_size_rewrite(calibration, "4")  # (cp -p of another version: the ctime tells)
    new_process()
    assert _run(steps) == (["ran", "ran"], [40.0, 80.0])


def test_content_stamp_vouches_only_for_a_stat_no_longer_racy(tmp_path, monkeypatch):
    # the key of every stat-keyed memo (a script's parse, a module's assignments, a
    # data_base's marker): the whole stat, and none (compute again) while it is racy
    from scistack.codeid import files

    path = tmp_path / "f.txt"
    path.write_text("one")
    assert files.content_stamp(path) is None  # just written
    monkeypatch.setattr(files, "_RACY_NS", 0)  # (as if the file were older than the window)
    st = os.stat(path)
    assert files.content_stamp(path) == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    with pytest.raises(OSError):
        files.content_stamp(tmp_path / "absent")


@pytest.mark.parametrize("racy", [True, False])
def test_where_a_constant_is_assigned_is_read_from_the_file_as_it_is_now(tmp_path, monkeypatch, racy):
    # `why`'s "(at cfg.py, line 2)" came from a parse remembered by (path, mtime): a same-size
    # edit in the same timestamp tick, or a `cp -p` of another version, pointed at the old line
    from scistack.codeid import files, lines

    monkeypatch.setattr(files, "_RACY_NS", 3600 * 10**9 if racy else 0)
    name = f"cfg_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text("K = 2\nX = 1\n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module(name)
    assert lines.assignment_place(f"{name}.K").endswith("line 1")
    same_size_rewrite(path, "X = 1\n\nK = 2\n")
    assert lines.assignment_place(f"{name}.K").endswith("line 3")
    lines._assignments_of.cache_clear()
    assert lines.assignment_place(f"{name}.K").endswith("line 3")
    assert lines._assignments_of.cache_info().currsize == (0 if racy else 1)  # (a racy stat: not remembered)


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """A user cache folder of the test's own ($XDG_CACHE_HOME), taken in by the file hook."""
    from scistack.codeid import files

    cache = tmp_path / "xdg"
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    files._interpreter_roots.cache_clear()
    files._not_input_roots.cache_clear()
    yield cache
    monkeypatch.undo()
    files._interpreter_roots.cache_clear()
    files._not_input_roots.cache_clear()


def test_data_downloaded_into_the_user_cache_folder_is_an_input_a_tool_cache_is_not(
        project, tmp_path, monkeypatch, user_cache):
    # pooch (scipy's, scikit-image's, MNE's datasets), Hugging Face and torch.hub download
    # into ~/.cache: the whole folder was left out (for matplotlib's font list), and a
    # calibration file replaced there kept the hit. Only tools' own folders are left out
    (user_cache / "pooch").mkdir()
    (user_cache / "matplotlib").mkdir()
    (user_cache / "pooch" / "cal.txt").write_text("2.0")
    (user_cache / "matplotlib" / "fontlist.json").write_text("1")
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(f"""
        CACHE = {str(user_cache)!r}
        @lineage_fcn
        def proc(x):
            with open(os.path.join(CACHE, "matplotlib", "fontlist.json")) as f:
                f.read()
            with open(os.path.join(CACHE, "pooch", "cal.txt")) as f:
                return x * float(f.read())
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == [("cal.txt", "file")]
    (user_cache / "matplotlib" / "fontlist.json").write_text("22")  # rewritten by matplotlib
    assert _run(steps)[0] == ["cached", "cached"]
    (user_cache / "pooch" / "cal.txt").write_text("3.0")  # a new download
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


FD_LISTINGS = {
    "fwalk": "sorted(f for _, _, files, _ in os.fwalk(os.path.join(HERE, 'data')) for f in files)",
    "listdir_fd": "sorted(os.listdir(fd))",
    "scandir_fd": "sorted(e.name for e in os.scandir(fd))",
}


@pytest.mark.parametrize("how", sorted(FD_LISTINGS))
def test_a_folder_listed_through_a_file_descriptor_is_an_input(project, tmp_path, monkeypatch, how):
    # os.fwalk, os.listdir(fd) and os.scandir(fd) list a folder by its descriptor: the audit
    # event names no path, and the listing was dropped: a file added there kept the hit
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(f"""
        @lineage_fcn
        def proc(x):
            fd = os.open(os.path.join(HERE, "data"), os.O_RDONLY)
            try:
                return x * len({FD_LISTINGS[how]})
            finally:
                os.close(fd)
    """))
    (steps.dir / "data" / "sub").mkdir(parents=True)
    if how != "fwalk":
        (steps.dir / "data" / "sub").rmdir()  # (fwalk names files only, the others folders too)
    (steps.dir / "data" / "a.txt").write_text("1")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])
    assert ("data", "listing") in _recorded(project, 1)
    assert ("sub", "absent") not in _recorded(project, 1)  # (fwalk's open of sub/ by its dir_fd)
    assert _run(steps)[0] == ["cached", "cached"]
    added = steps.dir / "data" / ("sub" if how == "fwalk" else "") / "b.txt"
    added.write_text("1")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])


def test_a_folder_listed_through_a_descriptor_whose_path_cannot_be_found_is_never_served(
        project, tmp_path, monkeypatch):
    # a folder removed while the code holds it open: its descriptor names no path any more.
    # What it listed cannot be checked later: recorded so, and the call is never served
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        @lineage_fcn
        def proc(x):
            gone = os.path.join(HERE, "gone")
            os.makedirs(gone, exist_ok=True)
            fd = os.open(gone, os.O_RDONLY)
            try:
                os.rmdir(gone)
                return x * (1 + len(os.listdir(fd)))
            finally:
                os.close(fd)
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])
    assert [kind for _, kind in _recorded(project, 1)] == ["unseen"]
    assert _statuses(project) == ["stale", "stale"]
    assert "listed through file descriptor" in str(why(FrOut, subject=1, session="a"))
    assert _run(steps)[0] == ["ran", "ran"]


def test_a_scratch_folder_the_call_removes_with_rmtree_is_no_input(project, tmp_path, monkeypatch):
    # shutil.rmtree lists each folder through a descriptor (Linux): recorded as inputs, the
    # folders it then removed were found changed at every hit, and the call never served again
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        import shutil
        @lineage_fcn
        def proc(x):
            scratch = os.path.join(HERE, "scratch%d" % int(x))
            os.makedirs(os.path.join(scratch, "sub"), exist_ok=True)
            with open(os.path.join(scratch, "sub", "t.txt"), "w") as f:
                f.write("1")
            shutil.rmtree(scratch)
            return x * 1.0
    """))
    _save_inputs()
    assert _run(steps)[0] == ["ran", "ran"]
    assert _recorded(project, 1) == []
    assert _statuses(project) == ["done", "done"]
    assert _run(steps)[0] == ["cached", "cached"]


IN_DIR_FD = {  # a read in a folder held by its descriptor, with the name alone (dir_fd)
    "os.open": "read_at(d)",
    "opener": "float(open('cal.txt', opener=lambda p, fl: os.open(p, fl, dir_fd=d)).read())",
    # (an opener opening the folder first: open()'s own event of cal.txt, here, had been
    # withdrawn only by the very next open event; a C opener runs in the caller's frame)
    "opener_opening_first": "float(open('cal.txt', opener=at_data).read())",
    "partial_opener": "float(open('cal.txt', opener=functools.partial(os.open, dir_fd=d)).read())",
    "os.stat": "float(os.stat('cal.txt', dir_fd=d).st_size)",
}


@pytest.mark.parametrize("how", sorted(IN_DIR_FD))
def test_a_file_read_by_its_name_in_a_folder_descriptor_is_an_input(project, tmp_path, monkeypatch, how):
    # os.open("cal.txt", flags, dir_fd=d): the open event names "cal.txt" alone, so the input
    # was taken for <working directory>/cal.txt and data/cal.txt rewritten kept the hit (a
    # stat with dir_fd was skipped altogether)
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(f"""
        def read_at(d):
            f = os.open("cal.txt", os.O_RDONLY, dir_fd=d)
            try:
                return float(os.read(f, 100))
            finally:
                os.close(f)
        def at_data(name, flags):
            d = os.open(os.path.join(HERE, "data"), os.O_RDONLY)
            try:
                return os.open(name, flags, dir_fd=d)
            finally:
                os.close(d)
        @lineage_fcn
        def proc(x):
            d = os.open(os.path.join(HERE, "data"), os.O_RDONLY)
            try:
                return x * {IN_DIR_FD[how]}
            finally:
                os.close(d)
    """))
    (steps.dir / "data").mkdir()
    cal = steps.dir / "data" / "cal.txt"
    cal.write_text("1.5")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal.txt").write_text("9")  # a file of that name where the code runs: not it
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [15.0, 30.0] if how != "os.stat" else [30.0, 60.0])
    recorded = _recorded(project, 1)
    assert [(name, kind) for name, kind in recorded] == [("cal.txt", "file" if how != "os.stat" else "stat")]
    record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
    assert [f["path"] for f in record.extra["files"]] == [str(cal)]
    assert _run(steps)[0] == ["cached", "cached"]
    (tmp_path / "cal.txt").write_text("8")  # not an input
    assert _statuses(project) == ["done", "done"]
    cal.write_text("2.5")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [25.0, 50.0] if how != "os.stat" else [30.0, 60.0])


def test_a_name_opened_here_then_in_a_folder_descriptor_by_a_helper_is_read_twice(project, tmp_path, monkeypatch):
    # open("cal.txt") reads ./cal.txt; a helper's os.open of the same name and flags in a
    # folder's descriptor next was taken for the opener of that open(), which withdrew
    # ./cal.txt: rewritten, it kept the hit
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        def read_at(d):
            f = os.open("cal.txt", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0), dir_fd=d)
            try:
                return float(os.read(f, 100))
            finally:
                os.close(f)
        @lineage_fcn
        def proc(x):
            d = os.open(os.path.join(HERE, "data"), os.O_RDONLY)
            try:
                with open("cal.txt") as f:
                    here = float(f.read())
                return x * here * read_at(d)
            finally:
                os.close(d)
    """))
    (steps.dir / "data").mkdir()
    (steps.dir / "data" / "cal.txt").write_text("1.5")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal.txt").write_text("2")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
    assert [f["path"] for f in record.extra["files"]] == [str(tmp_path / "cal.txt"),
                                                         str(steps.dir / "data" / "cal.txt")]
    assert _run(steps)[0] == ["cached", "cached"]
    (tmp_path / "cal.txt").write_text("3")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [45.0, 90.0])


AT_FDCWD = -2 if sys.platform == "darwin" else -100  # (Python does not name it)


@pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="AT_FDCWD's value")
@pytest.mark.parametrize("how", ["os.open", "os.stat"])
def test_a_name_read_with_the_working_directory_as_its_dir_fd_is_the_file_there(
        project, tmp_path, monkeypatch, how):
    # dir_fd=AT_FDCWD is "relative to the working directory": it has no path in /proc/self/fd,
    # so the read was recorded unseen and the call never served (it ran again every time)
    steps = Steps(tmp_path, monkeypatch)
    read = {"os.open": "read_at()", "os.stat": "os.stat('cal.txt', dir_fd=AT).st_size"}[how]
    steps.write(HEAD + textwrap.dedent(f"""
        AT = {AT_FDCWD}
        def read_at():
            f = os.open("cal.txt", os.O_RDONLY, dir_fd=AT)
            try:
                return float(os.read(f, 100))
            finally:
                os.close(f)
        @lineage_fcn
        def proc(x):
            return x * {read}
    """))
    monkeypatch.chdir(tmp_path)
    cal = tmp_path / "cal.txt"
    cal.write_text("1.5")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [15.0, 30.0] if how == "os.open" else [30.0, 60.0])
    record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
    assert [(f["path"], f.get("kind", "file")) for f in record.extra["files"]] == [
        (str(cal), "file" if how == "os.open" else "stat")]
    assert _run(steps)[0] == ["cached", "cached"]
    cal.write_text("2.5" if how == "os.open" else "2.50")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [25.0, 50.0] if how == "os.open" else [40.0, 80.0])


@pytest.mark.parametrize("how", ["os.open", "os.stat"])
def test_a_name_read_in_a_folder_descriptor_whose_path_cannot_be_found_is_never_served(
        project, tmp_path, monkeypatch, how):
    # the folder removed while the code holds it: its descriptor names no path, so what was
    # read there cannot be checked later: recorded so (never a stale hit, nor a wrong path)
    steps = Steps(tmp_path, monkeypatch)
    read = "os.open('cal.txt', os.O_RDONLY, dir_fd=d)" if how == "os.open" else "os.stat('cal.txt', dir_fd=d)"
    steps.write(HEAD + textwrap.dedent(f"""
        @lineage_fcn
        def proc(x):
            gone = os.path.join(HERE, "gone")
            os.makedirs(gone, exist_ok=True)
            d = os.open(gone, os.O_RDONLY)
            try:
                os.rmdir(gone)
                try:
                    {read}
                except FileNotFoundError:
                    pass
                return x
            finally:
                os.close(d)
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])
    assert [kind for _, kind in _recorded(project, 1)] == ["unseen"]
    assert _statuses(project) == ["stale", "stale"]
    said = {"os.open": "<cal.txt opened in", "os.stat": "<cal.txt looked for in"}[how]  # (os.stat's had
    assert f"{said} the folder of file descriptor" in str(why(FrOut, subject=1, session="a"))  # the module's name)


READLINK = {  # code reading where a link points (the link `cur` in the steps' folder)
    "os.readlink": "os.readlink(os.path.join(HERE, 'cur'))",
    "Path.readlink": "str(pathlib.Path(HERE, 'cur').readlink())",
    "dir_fd": "read_at(os.open(HERE, os.O_RDONLY))",
}


@pytest.mark.parametrize("how", sorted(READLINK))
def test_a_link_whose_target_the_code_read_is_an_input_and_re_pointing_it_misses(
        project, tmp_path, monkeypatch, how):
    # os.readlink opens nor stats anything (no audit event, no os.stat): the link re-pointed
    # (`ln -sfn v22 cur`: a new target of another length) kept the hit of code reading it
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "import pathlib\n" + textwrap.dedent(f"""
        def read_at(d):
            try:
                return os.readlink("cur", dir_fd=d)
            finally:
                os.close(d)
        @lineage_fcn
        def proc(x):
            return x * len({READLINK[how]})
    """))
    cur = steps.dir / "cur"
    cur.symlink_to("v1")  # (dangling: the target's text is what is read)
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
    assert [(f["path"], f["kind"]) for f in record.extra["files"]] == [(str(cur), "link")]
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "v1").write_text("made")  # (what it points to appearing: no change of the link)
    assert _statuses(project) == ["done", "done"]
    (steps.dir / "new").symlink_to("v22")
    os.replace(steps.dir / "new", cur)
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "new").symlink_to("v33")  # (the same length: the same result, another target)
    os.replace(steps.dir / "new", cur)
    assert _statuses(project) == ["stale", "stale"]
    cur.unlink()
    cur.write_text("no link")  # (a file in its place: readlink fails, the result is no more)
    assert _statuses(project) == ["stale", "stale"]


def test_a_path_the_code_read_as_no_link_misses_once_it_is_one(project, tmp_path, monkeypatch):
    # readlink of a file raises EINVAL: the code learned it is no link (`except OSError`)
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        @lineage_fcn
        def proc(x):
            try:
                return x * len(os.readlink(os.path.join(HERE, "cur")))
            except OSError:
                return x
    """))
    cur = steps.dir / "cur"
    cur.write_text("a file")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [10.0, 20.0])
    assert _recorded(project, 1) == [("cur", "present")]
    assert _run(steps)[0] == ["cached", "cached"]
    cur.unlink()
    cur.symlink_to("v22")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


RESOLVES = {  # code resolving the link `cur` in the steps' folder
    "realpath": "os.path.realpath(os.path.join(HERE, 'cur'))",
    "resolve": "str(pathlib.Path(HERE, 'cur').resolve())",
}


@pytest.mark.parametrize("how", sorted(RESOLVES))
def test_a_link_a_resolve_reads_is_an_input_and_a_missing_target_appearing_is_not(
        project, tmp_path, monkeypatch, how):
    # the path realpath/resolve give is made of the links' targets: a dangling link's missing
    # target had been recorded absent (realpath's own lstat of it), so the call re-ran once
    # the target appeared, though the path it gives is the same
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "import pathlib\n" + textwrap.dedent(f"""
        @lineage_fcn
        def proc(x):
            return x * len(os.path.basename({RESOLVES[how]}))
    """))
    cur = steps.dir / "cur"
    cur.symlink_to("v1")  # (dangling)
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == [("cur", "link")]
    (steps.dir / "v1").write_text("made")
    assert _statuses(project) == ["done", "done"]
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "new").symlink_to("v22")
    os.replace(steps.dir / "new", cur)
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


@pytest.mark.parametrize("how", sorted(RESOLVES))
def test_a_file_read_through_a_resolved_link_misses_once_the_link_points_elsewhere(
        project, tmp_path, monkeypatch, how):
    # the code opens the path realpath/resolve gave: only that file had been recorded, so the
    # link re-pointed to another file (`ln -sfn v2 cur`) kept the hit with the old one's result
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "import pathlib\n" + textwrap.dedent(f"""
        @lineage_fcn
        def proc(x):
            with open({RESOLVES[how]}) as handle:
                return x * float(handle.read())
    """))
    (steps.dir / "v1").write_text("2")
    (steps.dir / "v2").write_text("3")
    cur = steps.dir / "cur"
    cur.symlink_to("v1")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == [("cur", "link"), ("v1", "file")]
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "new").symlink_to("v2")
    os.replace(steps.dir / "new", cur)
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _run(steps)[0] == ["cached", "cached"]


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_project_link_into_an_installed_package_is_an_input(project, tmp_path, monkeypatch, where):
    # a file read through a link of the project's into site-packages: its real path is a
    # library's, so nothing was recorded, and the link re-pointed to another package file
    # kept the hit (the package's files are the environment's; the link is the project's)
    packages = tmp_path / "env" / "lib" / "python3" / "site-packages"
    for name, gain in (("pkg1", "2"), ("pkg2", "3")):
        (packages / name).mkdir(parents=True)
        (packages / name / "gain.txt").write_text(gain)
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent(f"""
        @lineage_fcn
        def proc(x):
            with open(os.path.join(HERE, {"'gain.txt'" if where == "file" else "'lib', 'gain.txt'"})) as handle:
                return x * float(handle.read())
    """))
    link = steps.dir / ("gain.txt" if where == "file" else "lib")
    link.symlink_to(packages / "pkg1" / "gain.txt" if where == "file" else packages / "pkg1")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _recorded(project, 1) == [(link.name, "link")]
    assert _run(steps)[0] == ["cached", "cached"]
    (steps.dir / "new").symlink_to(packages / "pkg2" / "gain.txt" if where == "file" else packages / "pkg2")
    os.replace(steps.dir / "new", link)
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _run(steps)[0] == ["cached", "cached"]


CTIMES = {  # what the code reads of a path found; whether a chmod alone misses the hit
    "getctime": ("os.path.getctime(P) > 0", True),
    "os.stat": ("os.stat(P).st_mode & 0o777 > 0", True),
    "Path.stat": ("pathlib.Path(P).stat().st_ctime > 0", True),
    "getsize": ("os.path.getsize(P) > 0", False),
    "exists": ("os.path.exists(P)", False),
}


@pytest.mark.parametrize("how", sorted(CTIMES))
def test_a_chmod_misses_the_hit_of_code_that_read_the_whole_stat(project, tmp_path, monkeypatch, how):
    # a path whose stat the code read was checked by its size and mtime only: code returning
    # getctime(p) or a mode from os.stat(p) was served after a chmod. A size or existence
    # probe cannot see the ctime: a chmod keeps its hit
    test, misses = CTIMES[how]
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "import pathlib\nP = os.path.join(HERE, 'data.bin')\n@lineage_fcn\ndef proc(x):\n"
                f"    return x * (3 if {test} else 2)\n")
    data = steps.dir / "data.bin"
    data.write_bytes(b"12")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _recorded(project, 1) == [("data.bin", "present" if how == "exists" else "stat")]
    assert _run(steps)[0] == ["cached", "cached"]
    before = data.stat().st_ctime_ns
    mode, deadline = 0o600, time.monotonic() + 30
    while data.stat().st_ctime_ns == before and time.monotonic() < deadline:  # (a coarse clock)
        data.chmod(mode)
        mode ^= 0o044
    assert data.stat().st_ctime_ns != before
    assert _statuses(project) == (["stale", "stale"] if misses else ["done", "done"])
    assert _run(steps)[0] == (["ran", "ran"] if misses else ["cached", "cached"])
    assert _run(steps)[0] == ["cached", "cached"]


def test_a_file_written_by_its_name_in_a_folder_descriptor_is_not_its_namesake_here(
        project, tmp_path, monkeypatch):
    # open("log.txt", "w", opener=...dir_fd=d) writes data/log.txt, but open()'s own event
    # names log.txt alone: the working directory's log.txt, which the code reads, was taken
    # for the call's output and was no input (rewritten, it kept the hit)
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + textwrap.dedent("""
        @lineage_fcn
        def proc(x):
            d = os.open(os.path.join(HERE, "data"), os.O_RDONLY)
            try:
                with open("log.txt", "w", opener=lambda p, fl: os.open(p, fl, 0o644, dir_fd=d)) as f:
                    f.write("ran")
            finally:
                os.close(d)
            with open("log.txt") as f:
                return x * float(f.read())
    """))
    (steps.dir / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.txt").write_text("2")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert (steps.dir / "data" / "log.txt").read_text() == "ran"
    assert _recorded(project, 1) == [("log.txt", "file")]
    assert _run(steps)[0] == ["cached", "cached"]
    (tmp_path / "log.txt").write_text("3")
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


_STRICT = {
    "realpath": "os.path.realpath(os.path.join(HERE, 'gain.txt'), strict=True)",
    "resolve": "str(pathlib.Path(HERE, 'gain.txt').resolve(strict=True))",
}


@pytest.mark.parametrize("how", sorted(_STRICT))
def test_a_strict_resolve_of_a_missing_file_is_an_input_that_appears(project, tmp_path, monkeypatch, how):
    """realpath/resolve with strict=True raise for a missing path: the code sees whether it is
    there (an existence check), so the missing path is an input (b11ae72 had dropped every
    path a resolve did not find, and the file appearing was served from the cache)."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write(HEAD + "import pathlib\n" + textwrap.dedent(f"""
        @lineage_fcn
        def proc(x):
            try:
                path = {_STRICT[how]}
            except OSError:
                return x * 2.0   # the default gain, without gain.txt
            with open(path) as handle:
                return x * float(handle.read())
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    (steps.dir / "gain.txt").write_text("5")
    assert _run(steps)[1] == [50.0, 100.0]


def test_a_helper_a_submodule_reaches_in_a_module_imported_before_is_an_input(project, tmp_path, monkeypatch):
    """``import pkg`` and ``pkg.sub.g(x)``, ``sub`` imported by a helper the call runs first,
    and ``g`` calling ``h`` of ``pkg.util`` (imported long before, by ``pkg``): the walk saw
    nothing of ``sub`` (never imported by it), and its file alone as an input missed an edit
    of ``h``: the files ``sub`` imports, transitively, count by content too."""
    steps = Steps(tmp_path, monkeypatch)
    name = steps.name
    (steps.dir / "__init__.py").write_text(f"from {name} import util\n")
    (steps.dir / "util.py").write_text("def h(x):\n    return x * 2\n")
    (steps.dir / "sub.py").write_text(f"from {name}.util import h\n\ndef g(x):\n    return h(x) + 1\n")
    steps.write(textwrap.dedent(f"""
        import importlib
        import {name}
        from scistack import lineage_fcn

        def load_sub():
            importlib.import_module("{name}.sub")

        @lineage_fcn
        def proc(x):
            load_sub()
            return {name}.sub.g(x)
    """))
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [21.0, 41.0])
    assert _run(steps) == (["cached", "cached"], [21.0, 41.0])
    (steps.dir / "util.py").write_text("def h(x):\n    return x * 3\n")
    assert _run(steps)[1] == [31.0, 61.0]
    (steps.dir / "sub.py").write_text(f"from {name}.util import h\n\ndef g(x):\n    return h(x) + 2\n")
    assert _run(steps)[1] == [32.0, 62.0]
    assert _run(steps) == (["cached", "cached"], [32.0, 62.0])


LINKED_STEP = '''
import json, pathlib
def proc(x):
    here = pathlib.Path(__file__).resolve().parent
    return x * json.loads((here / "cfg.json").read_text())["k"]
'''
LINKED_RUN = '''
import sys
sys.path.insert(0, sys.argv[1])
from scistack import BaseVariable, configure_database, for_each, why
from step import proc
class LinkedX(BaseVariable): pass
class LinkedY(BaseVariable): pass
db = configure_database(sys.argv[1] + "/gait.duckdb", ["subject"])
if "seed" in sys.argv: LinkedX.save(3.0, subject=1)
said = "-" if "seed" in sys.argv else why(LinkedY, subject=1).status
done = for_each(proc, inputs={"x": LinkedX}, outputs=[LinkedY], subject=[1], progress=False, verbose=False)
print(said, done.ran, done.cached, len(LinkedY.list_versions(subject=1)))
db.close()
'''


def test_a_linked_home_folder_a_resolve_reads_is_where_the_project_is_not_an_input(tmp_path, python_env):
    """`Path(__file__).resolve()` in a project reached through a linked home folder (home ->
    disk_a) read that link, and since b11ae72 a link a resolve reads is an input: a machine
    whose home link names another disk (the project copied there, as a lab's second machine
    holds its checkout) ran the call again and saved a new version of the same value, and
    its `why` said stale; two such machines did so at every run. A link naming the project's
    folder or a folder above it is where this checkout is, not what the call read: the file
    read through it is an input on its own (by its path in the project), and its edit is seen."""
    import shutil
    import subprocess

    project = tmp_path / "disk_a" / "proj"
    project.mkdir(parents=True)
    (project / "step.py").write_text(LINKED_STEP)
    (project / "cfg.json").write_text('{"k": 2}')
    (project / "run.py").write_text(LINKED_RUN)
    home = tmp_path / "home"
    home.symlink_to("disk_a")

    def run(*args: str) -> list[str]:
        done = subprocess.run([sys.executable, str(home / "proj" / "run.py"), str(home / "proj"), *args],
                              cwd=home / "proj", env=python_env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert run("seed") == ["-", "1", "0", "1"]
    shutil.copytree(tmp_path / "disk_a", tmp_path / "disk_b", symlinks=True)
    (tmp_path / "new").symlink_to("disk_b")
    os.replace(tmp_path / "new", home)
    assert run() == ["current", "0", "1", "1"]  # (it was ["stale", "1", "0", "2"])
    (tmp_path / "disk_b/proj/cfg.json").write_text('{"k": 5}')
    assert run() == ["stale", "1", "0", "2"]


# --- paths named relative to the working directory ------------------------------------------

# how a step reads by a name relative to the working directory: (its code, what folder a/ holds
# and what folder b/ holds, as a setup of a folder, and the factor each gives)
RELATIVE_READS = {
    "open": "with open('cfg.txt') as f:\n        return x * float(f.read())",
    "pathlib": "return x * float(pathlib.Path('cfg.txt').read_text())",
    "glob": "return x * len(glob.glob('*.csv'))",
    "listdir": "return x * len([n for n in os.listdir() if n.endswith('.csv')])",
    "path_glob": "return x * len(list(pathlib.Path('.').glob('*.csv')))",
    "exists": "return x * (2 if os.path.exists('flag') else 3)",
}


def _relative_folder(folder: Path, how: str, factor: int) -> None:
    """`folder` made (or remade) to give `factor` to the step reading it `how`."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*"):
        old.unlink()
    if how in ("open", "pathlib"):
        (folder / "cfg.txt").write_text(str(factor))
    elif how == "exists":
        if factor == 2:
            (folder / "flag").write_text("")
    else:
        for i in range(factor):
            (folder / f"t{i}.csv").write_text("1\n")


def _relative_step(tmp_path: Path, monkeypatch, how: str) -> Steps:
    steps = Steps(tmp_path, monkeypatch)
    steps.write("import glob, os, pathlib\nfrom scistack import lineage_fcn\n@lineage_fcn\ndef proc(x):\n    "
                + RELATIVE_READS[how] + "\n")
    _save_inputs()
    return steps


@pytest.mark.parametrize("how", sorted(RELATIVE_READS))
def test_a_name_relative_to_the_working_directory_is_checked_where_the_next_run_is(project, tmp_path,
                                                                                    monkeypatch, how):
    """One project run from folder a/ then from b/, each with its own cfg.txt (its own CSV
    files): the run from b/ was served a/'s result, and `why` said current: the read was
    recorded by the path it resolved to in a/, which had not changed. The name the code gave is
    recorded relative to the working directory, and a hit checks what it names there now."""
    steps = _relative_step(tmp_path, monkeypatch, how)
    _relative_folder(tmp_path / "a", how, 2)
    _relative_folder(tmp_path / "b", how, 3)
    monkeypatch.chdir(tmp_path / "a")
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    assert _statuses(project) == ["done", "done"]
    monkeypatch.chdir(tmp_path / "b")
    assert _statuses(project) == ["stale", "stale"]
    assert why(FrOut, subject=1, session="a").status == "stale"
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _run(steps) == (["cached", "cached"], [30.0, 60.0])
    assert _statuses(project) == ["done", "done"]
    assert why(FrOut, subject=1, session="a").status == "current"
    monkeypatch.chdir(tmp_path / "a")
    assert _run(steps)[1] == [20.0, 40.0]


@pytest.mark.parametrize("how", sorted(RELATIVE_READS))
def test_the_same_content_under_a_relative_name_in_another_folder_is_a_hit(project, tmp_path, monkeypatch, how):
    """The name leads to the same content from b/ as from a/: the same input (content is what
    counts, as everywhere else), so the run from b/ is served; b/'s content changed then is
    what its next run checks (a/'s path, unchanged, had served it)."""
    steps = _relative_step(tmp_path, monkeypatch, how)
    _relative_folder(tmp_path / "a", how, 2)
    _relative_folder(tmp_path / "b", how, 2)
    monkeypatch.chdir(tmp_path / "a")
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    monkeypatch.chdir(tmp_path / "b")
    assert _statuses(project) == ["done", "done"]
    assert _run(steps) == (["cached", "cached"], [20.0, 40.0])
    assert why(FrOut, subject=1, session="a").status == "current"
    _relative_folder(tmp_path / "b", how, 3)
    assert _statuses(project) == ["stale", "stale"]
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    assert _run(steps) == (["cached", "cached"], [30.0, 60.0])


def test_a_name_relative_to_the_working_directory_is_recorded_with_it(project, tmp_path, monkeypatch):
    """The record keeps the absolute path read and, beside it, the name as given and the
    working directory it was resolved against; a path named absolute is recorded as before."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write("import os\nfrom scistack import lineage_fcn\nHERE = os.path.dirname(__file__)\n@lineage_fcn\n"
                "def proc(x):\n    with open('cfg.txt') as f, open(os.path.join(HERE, 'gain.txt')) as g:\n"
                "        return x * float(f.read()) * float(g.read())\n")
    (steps.dir / "gain.txt").write_text("1")
    _relative_folder(tmp_path / "a", "open", 2)
    monkeypatch.chdir(tmp_path / "a")
    _save_inputs()
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
    by_name = {os.path.basename(f["path"]): f for f in record.extra["files"]}
    assert by_name["cfg.txt"]["path"] == str(tmp_path / "a" / "cfg.txt")
    assert (by_name["cfg.txt"]["relative"], by_name["cfg.txt"]["cwd"]) == ("cfg.txt", str(tmp_path / "a"))
    assert "relative" not in by_name["gain.txt"] and "cwd" not in by_name["gain.txt"]


@pytest.mark.parametrize("into", ["relative", "absolute"])
def test_a_name_given_after_the_call_changed_directory_is_checked_where_it_leads(project, tmp_path, monkeypatch,
                                                                                 into):
    """The call goes into data/ of the working directory (``os.chdir("data")``) and opens
    cfg.txt there: from b/ it goes into b/data/, so the name is b/data/cfg.txt's (it was
    recorded as a/data/cfg.txt, unchanged: a/'s result served at b/). Into a folder named by
    its absolute path, the call reads that folder's file from anywhere: a hit from b/."""
    steps = Steps(tmp_path, monkeypatch)
    target = "'data'" if into == "relative" else repr(str(tmp_path / "a" / "data"))
    steps.write("import os\nfrom scistack import lineage_fcn\n@lineage_fcn\ndef proc(x):\n"
                f"    back = os.getcwd()\n    os.chdir({target})\n    try:\n"
                "        with open('cfg.txt') as f:\n            return x * float(f.read())\n"
                "    finally:\n        os.chdir(back)\n")
    for folder, factor in (("a", 2), ("b", 3)):
        _relative_folder(tmp_path / folder / "data", "open", factor)
    _save_inputs()
    monkeypatch.chdir(tmp_path / "a")
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    monkeypatch.chdir(tmp_path / "b")
    if into == "relative":
        assert _statuses(project) == ["stale", "stale"]
        assert _run(steps) == (["ran", "ran"], [30.0, 60.0])
    else:
        assert _statuses(project) == ["done", "done"]
        assert _run(steps) == (["cached", "cached"], [20.0, 40.0])
    (tmp_path / "a" / "data" / "cfg.txt").write_text("4")
    assert _run(steps)[1] == ([30.0, 60.0] if into == "relative" else [40.0, 80.0])


def test_status_asked_from_the_project_folder_judges_a_name_relative_to_where_the_script_ran(
        project, tmp_path, monkeypatch):
    """A script run in scripts/ reading `../data/cfg.txt`: `status` and `why` asked in the
    project folder, where that name leads into no folder, called every value stale (looked
    for it at the project folder's parent). They judge it where the call ran, and a run there
    still sees an edit."""
    steps = Steps(tmp_path, monkeypatch)
    steps.write("from scistack import lineage_fcn\n@lineage_fcn\ndef proc(x):\n"
                "    with open('../data/cfg.txt') as f:\n        return x * float(f.read())\n")
    _save_inputs()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cfg.txt").write_text("2")
    (tmp_path / "scripts").mkdir()
    monkeypatch.chdir(tmp_path / "scripts")
    assert _run(steps) == (["ran", "ran"], [20.0, 40.0])
    monkeypatch.chdir(tmp_path)
    assert _statuses(project) == ["done", "done"]
    assert why(FrOut, subject=1, session="a").status == "current"
    (tmp_path / "data" / "cfg.txt").write_text("3")
    assert _statuses(project) == ["stale", "stale"]
    assert why(FrOut, subject=1, session="a").status == "stale"
    monkeypatch.chdir(tmp_path / "scripts")
    assert _run(steps) == (["ran", "ran"], [30.0, 60.0])


REPOINTED_RUN = '''
import json, os, sys
project = sys.argv[1]
os.chdir(project); sys.path.insert(0, project)
from scistack import BaseVariable, configure_database, for_each, why
db = configure_database(project + "/gait.duckdb", ["subject"])
class RpX(BaseVariable): pass
class RpY(BaseVariable): pass
if "seed" in sys.argv: RpX.save(1.0, subject=1)
said = "-" if "seed" in sys.argv else why(RpY, subject=1).status
from projfns import total
done = for_each(total, inputs={"x": RpX}, outputs=[RpY], subject=[1], progress=False, verbose=False)
print(said, done.ran, done.cached, RpY.load(subject=1).data)
db.close()
'''


@pytest.mark.parametrize("where", ["inside_naming_above", "outside_naming_the_project"])
def test_a_link_naming_the_project_or_above_that_the_code_is_not_found_by_stays_an_input(
        tmp_path, python_env, where):
    """27a8f6e dropped every link a resolve read that names the project's folder or a folder
    above it, meant for a linked home folder the code is found by. But `p/lab -> the lab's
    folder` (a shared atlas read through it), or `B/current -> one copy of the project`, are
    what the call reads through: re-pointed to another lab or copy, the call was served the old
    result and `why` said current. Only a link on the path the code was found by is dropped."""
    import shutil
    import subprocess

    lab = tmp_path / "lab"
    project = lab / "projects" / "p"
    project.mkdir(parents=True)
    for top, numbers in (("lab", "1,2"), ("lab2", "100,200")):
        (tmp_path / top / "shared").mkdir(parents=True, exist_ok=True)
        (tmp_path / top / "shared" / "atlas.csv").write_text(numbers)
    if where == "inside_naming_above":  # p/lab -> the lab's folder, above the project
        link, first, second = project / "lab", lab, tmp_path / "lab2"
        read = 'Path(__file__).parent.joinpath("lab").resolve() / "shared" / "atlas.csv"'
    else:  # current -> a copy of the project, outside it
        copy = tmp_path / "copy"
        shutil.copytree(project, copy)
        (project / "data.csv").write_text("1,2")
        (copy / "data.csv").write_text("100,200")
        link, first, second = tmp_path / "current", project, copy
        read = f'Path({str(tmp_path / "current")!r}).resolve() / "data.csv"'
    link.symlink_to(first)
    (project / "projfns.py").write_text(
        "from pathlib import Path\n\ndef total(x):\n"
        f"    return sum(float(v) for v in ({read}).read_text().split(',')) + x\n")
    (project / "run.py").write_text(REPOINTED_RUN)

    def run(*args: str) -> list[str]:
        done = subprocess.run([sys.executable, str(project / "run.py"), str(project), *args],
                              env=python_env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert run("seed") == ["-", "1", "0", "4.0"]
    assert run() == ["current", "0", "1", "4.0"]
    link.unlink()
    link.symlink_to(second)
    assert run() == ["stale", "1", "0", "301.0"]  # (it was ["current", "0", "1", "4.0"])


def test_a_relative_name_read_in_a_worker_process_means_the_callers_working_directory(project, tmp_path,
                                                                                       monkeypatch):
    """Pool workers start in the caller's working directory: the record names it, a run here
    is served the result and an edit of cfg.txt makes it stale. A worker that works elsewhere
    (a pool started before the caller changed directory; a Dask worker, where it was started)
    read its own folder's cfg.txt: that result was saved as the call's, and each run here
    missed it and ran it again. It fails, naming the name and both folders, unless the name
    gives the same content from here."""
    steps = _relative_step(tmp_path, monkeypatch, "open")
    _relative_folder(tmp_path / "a", "open", 2)
    _relative_folder(tmp_path / "b", "open", 3)
    run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=[1, 2], session=["a"], progress=False, verbose=False)
    monkeypatch.chdir(tmp_path / "a")
    assert for_each(steps.load().proc, workers=1, **run).ran == 2
    assert _run(steps) == (["cached", "cached"], [20.0, 40.0])
    _relative_folder(tmp_path / "a", "open", 5)
    assert _statuses(project) == ["stale", "stale"]
    _relative_folder(tmp_path / "a", "open", 2)
    FrIn.save(7.0, subject=1, session="a")  # (new inputs: nothing cached)
    FrIn.save(8.0, subject=2, session="a")
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        monkeypatch.chdir(tmp_path / "b")
        pool.submit(os.getpid).result()  # (its worker started here: it works in b/)
        monkeypatch.chdir(tmp_path / "a")
        fn = steps.load().proc
        report = for_each(fn, executor=pool, **run)
        assert [i.status for i in report.items] == ["failed", "failed"]
        assert f"read 'cfg.txt', a name relative to the working directory, in a worker process working in " \
               f"{tmp_path / 'b'}; from {tmp_path / 'a'}, where" in report.items[0].error
        _relative_folder(tmp_path / "b", "open", 2)  # (the same content from here: what a call here reads)
        assert for_each(fn, executor=pool, **run).ran == 2
    assert _run(steps) == (["cached", "cached"], [14.0, 16.0])
