"""README's headline example, run as a new user would run it, so the README cannot drift from
the API: every name it uses must exist and every line must run.

It runs as a script in a subprocess (its class names, RawEMG and FilteredEMG, are the
variables of other test files too, and a process holds one class per variable name).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# What the README leaves out, filled in minimally: the filter's body, and the values of the
# two variables a step not shown computes.
BODY = "    return signal * 2"
NOT_SHOWN = """\
for_each(peak, inputs={"emg": FilteredEMG}, outputs=[MaxActivation],
         subject=[1, 2, 3], session=["pre", "post"])
StepLength.save(0.62, subject=1, session="pre")
"""
PEAK = """\
def peak(emg):
    return float(np.max(np.abs(emg)))
"""
CHECKS = """
raw = RawEMG.load(subject=1, session="pre").data
assert np.array_equal(FilteredEMG.load(subject=1, session="pre").data, raw * 2)
assert len(FilteredEMG.load(subject=1)) == 1
assert len(FilteredEMG.load(low_hz=20)) == 1
assert len(FilteredEMG.load_all(as_df=True)) == 1
assert [v.data for v in MaxActivation.load_all(where="subject <= 3 AND low_hz = 20")] == [
    float(np.max(np.abs(raw * 2)))]
assert scistack.join(MaxActivation, StepLength)["StepLength"].tolist() == [0.62]
assert db.get_provenance(FilteredEMG, subject=1, session="pre")["function_name"] == "bandpass"
print("README example ran")
"""


def readme_example() -> str:
    """The first Python block of README.md, elided parts filled in."""
    block = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    lines = block.splitlines(keepends=True)
    body = [i for i, line in enumerate(lines) if line.strip().startswith("...")]
    assert len(body) == 1, "the README example's elided function body moved"
    lines[body[0]] = BODY + "\n"
    first_use = next(i for i, line in enumerate(lines) if line.startswith("MaxActivation."))
    lines[first_use:first_use] = [NOT_SHOWN]
    define_at = next(i for i, line in enumerate(lines) if line.startswith("for_each("))
    lines[define_at:define_at] = [PEAK]
    return "".join(lines) + CHECKS


def test_readme_headline_example_runs_as_written(tmp_path: Path, python_env: dict[str, str]):
    script = tmp_path / "readme_example.py"
    script.write_text(readme_example(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=python_env,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "README example ran" in done.stdout
