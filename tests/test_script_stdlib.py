"""A script function that imports a standard-library module in its body is current after a
run: `why`/`status` compare the library's version as identity records it (Python's own
version for the standard library), not as an installed distribution named "python"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from scistack import BaseVariable, configure_database, why
from scistack.cli import main

SCRIPT = '''
import numpy as np
from scistack import configure_database, BaseVariable, lineage_fcn, for_each

class SsRaw(BaseVariable): pass
class SsOut(BaseVariable): pass

@lineage_fcn
def settle(signal):
    import time
    time.sleep(0)
    return signal + 1

if __name__ == "__main__":
    db = configure_database("p.duckdb", ["subject", "session"])
    SsRaw.save(np.arange(3.0), subject=1, session="pre")
    report = for_each(settle, inputs={"signal": SsRaw}, outputs=[SsOut], subject=[1],
                      session=["pre"], progress=False)
    print(dict(report.counts))
    db.close()
'''


class SsOut(BaseVariable):
    pass


def test_a_script_function_importing_time_in_its_body_is_not_stale(tmp_path: Path, python_env,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline.py").write_text(SCRIPT)
    for expected in ("'ran': 1", "'cached': 1"):
        done = subprocess.run([sys.executable, "pipeline.py"], cwd=tmp_path, env=python_env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and expected in done.stdout, done.stderr
    db = configure_database(tmp_path / "p.duckdb", ["subject", "session"])
    try:
        report = why(SsOut, subject=1, session="pre")
        assert report.status == "current", report.reasons
        status = CliRunner().invoke(main, ["--db", str(tmp_path / "p.duckdb"), "status", "SsOut"])
        assert status.exit_code == 0 and "SsOut: 1 done" in status.output, status.output
    finally:
        db.close()
