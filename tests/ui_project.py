"""A small real pipeline for the web view's tests, built by a separate Python process (as a
user's script would), with one stale function and one failing function.

Raw (1-D, 3 subjects x 2 sessions; subject 3's recordings are short) -> smooth -> Smoothed
-> peak -> Peak (scalars), Smoothed -> spectrogram -> Spectrogram (2-D; fails on subject 3),
and Info (a DataFrame per subject, raw). After the runs, `peak`'s code is edited: every Peak
value is stale, the rest is current.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PIPELINE = '''
import numpy as np
from scistack import lineage_fcn


@lineage_fcn
def smooth(signal, width):
    return np.convolve(signal, np.ones(width) / width, mode="same")


@lineage_fcn
def peak(signal):
    return float(np.max(signal))


@lineage_fcn
def spectrogram(signal):
    if signal.size < 64:
        raise ValueError(f"signal too short for a spectrogram: {signal.size} samples")
    frames = signal[: signal.size // 16 * 16].reshape(-1, 16)
    return np.abs(np.fft.rfft(frames, axis=1))
'''

BUILD = '''
import sys
import numpy as np
import pandas as pd
from scistack import BaseVariable, configure_database, for_each

root = sys.argv[1]
sys.path.insert(0, root)
import uipipe

db = configure_database(root + "/gait.duckdb", ["subject", "session"])

class Raw(BaseVariable): pass
class Smoothed(BaseVariable): pass
class Peak(BaseVariable): pass
class Spectrogram(BaseVariable): pass
class Info(BaseVariable): pass

MARKUP = '<img src=x onerror="document.title=1">'  # user text, to be shown as text
rng = np.random.default_rng(1)
for subject in (1, 2, 3):
    Info.save(pd.DataFrame({"trial": [1, 2, 3], "side": ["left", "right", MARKUP]}), subject=subject)
    for session in ("pre", "post"):
        n = 40 if subject == 3 else 512
        Raw.save(np.sin(np.arange(n) / 9.0) + rng.normal(0, 0.2, n), subject=subject, session=session)
combos = {"subject": [1, 2, 3], "session": ["pre", "post"]}
for_each(uipipe.smooth, inputs={"signal": Raw, "width": 5}, outputs=[Smoothed], **combos)
for_each(uipipe.peak, inputs={"signal": Smoothed}, outputs=[Peak], **combos)
for_each(uipipe.spectrogram, inputs={"signal": Smoothed}, outputs=[Spectrogram], **combos)
db.close()
'''

SAVE = '''
import sys
import numpy as np
from scistack import BaseVariable, configure_database

db = configure_database(sys.argv[1] + "/gait.duckdb", ["subject", "session"])

class Raw(BaseVariable): pass

Raw.save(np.linspace(0.0, 1.0, 100), subject=int(sys.argv[2]), session="pre")
db.close()
'''


def python_env() -> dict[str, str]:
    """Environment for processes that import scistack from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    env.pop("SCISTACK_DB", None)
    return env


def build(root: Path, env: dict[str, str]) -> Path:
    """Write the pipeline module, run it in another process, then edit `peak` (so its values
    are stale). Returns the project's .duckdb path."""
    (root / "uipipe.py").write_text(PIPELINE)
    _python(BUILD, str(root), env=env)
    (root / "uipipe.py").write_text(PIPELINE.replace("float(np.max(signal))", "float(np.max(signal)) + 0.0"))
    return root / "gait.duckdb"


def save_raw_from_another_process(root: Path, env: dict[str, str], subject: int) -> None:
    """Save Raw at (subject, "pre") from a separate Python process."""
    _python(SAVE, str(root), str(subject), env=env)


def _python(code: str, *args: str, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
