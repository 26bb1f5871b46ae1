"""The Makefile's `test` target, which CI runs (.ci/run): read, not run."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def test_ci_pytest_names_its_slowest_tests():
    # a CI log said only how long the whole run took; which tests were slow was not visible
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.M)
    assert recipe is not None
    pytest_lines = [line for line in recipe.group(1).splitlines() if "-m pytest" in line]
    assert len(pytest_lines) == 1 and "--durations=25" in pytest_lines[0].split(), pytest_lines
