"""DuckDB and pyarrow are imported when first used: `import scistack` and the reporting
commands never pay for them, and threads that reach for a stand-in at once all get the module."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np

from scistack import BaseVariable, configure_database
from scistack.lazy_import import lazy_module

HEAVY = ("duckdb", "pyarrow", "pandas", "importlib.metadata")


def _loaded_after(code: str, cwd) -> list[str]:
    probe = f"{code}\nimport sys\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[-1].split()[1:]


def test_import_scistack_loads_neither_duckdb_nor_pyarrow(tmp_path):
    assert _loaded_after("import scistack", tmp_path) == []


class LazyRaw(BaseVariable):
    pass


def test_reporting_commands_load_neither(tmp_path):
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    for s in range(3):
        LazyRaw.save(np.arange(4.0) + s, subject=s)
    db.close()
    for command in (["status"], ["ls"], ["log", "LazyRaw", "-n", "2"]):
        code = ("import sys\nfrom scistack.cli import main\n"
                f"sys.argv = ['scistack', *{command!r}]\n"
                "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code")
        assert _loaded_after(code, tmp_path) == [], command


def test_a_table_still_saves_and_the_views_still_build(tmp_path):
    import pandas as pd

    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    LazyRaw.save(pd.DataFrame({"a": [1, 2]}), subject=1)
    assert LazyRaw.load(subject=1).data["a"].tolist() == [1, 2]
    db.sync()
    assert db.sql("SELECT count(*) AS n FROM LazyRaw")["n"].tolist() == [1]
    db.close()


def test_threads_reaching_for_a_stand_in_at_once_all_get_the_module():
    namespace: dict = {}
    namespace["mod"] = lazy_module("colorsys", namespace, "mod")
    barrier, got = threading.Barrier(8), []

    def reach() -> None:
        barrier.wait()
        got.append(namespace["mod"].rgb_to_hsv(0.0, 0.0, 0.0))

    threads = [threading.Thread(target=reach) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [(0.0, 0.0, 0.0)] * 8
    assert namespace["mod"] is sys.modules["colorsys"]  # the name now holds the module itself
