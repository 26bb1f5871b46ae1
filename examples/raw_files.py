"""Raw CSV files into a two-step pipeline, and a table out.

A folder of per-subject, per-session CSV files (`raw/<subject>/s_<session>.csv`) is read
through `PathInput`: the function gets each file's path, and the file's content hash is its
identity. Editing one raw file re-runs exactly the combinations that read it (and the step
downstream of them); `why` names the file. The summary table is exported as CSV.

    python examples/raw_files.py [project-folder]     (default: a fresh temporary folder)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from scistack import BaseVariable, PathInput, configure_database, for_each, why


class Force(BaseVariable):
    pass


class PeakForce(BaseVariable):
    pass


def read_force(path):
    """Step 1: one raw CSV (time, force) -> the force column."""
    return np.loadtxt(path, delimiter=",", skiprows=1)[:, 1]


def peak(force):
    """Step 2: the largest force of a session."""
    return float(np.max(force))


def write_raw(raw: Path) -> None:
    rng = np.random.default_rng(0)
    for subject in (1, 2, 3):
        for session in ("pre", "post"):
            t = np.arange(50) / 100
            force = 100 * subject + rng.normal(0, 5, t.size)
            path = raw / str(subject) / f"s_{session}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(path, np.column_stack([t, force]), delimiter=",", header="t,force", comments="")


def run(tag: str) -> None:
    files = PathInput("{subject}/s_{session}.csv", root="raw")
    first = for_each(read_force, inputs={"path": files}, outputs=[Force], subject=[], session=[],
                     verbose=False)
    second = for_each(peak, inputs={"force": Force}, outputs=[PeakForce], subject=[], session=[],
                      verbose=False)
    print(f"{tag}: read_force ran {first.ran} cached {first.cached}; "
          f"peak ran {second.ran} cached {second.cached}")


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="scistack_raw_"))
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    write_raw(Path("raw"))
    configure_database("raw.duckdb", ["subject", "session"])
    print(f"found on disk: {len(PathInput('{subject}/s_{session}.csv', root='raw').discover())} files")
    run("first run")
    run("second run")
    edited = Path("raw/3/s_pre.csv")
    edited.write_text(edited.read_text() + "0.5,999.0\n")  # one more sample, a new peak
    print(why(Force, subject=3, session="pre"))
    run("after editing raw/3/s_pre.csv")
    PeakForce.to_csv("peak_force.csv")
    lines = Path("peak_force.csv").read_text().splitlines()
    print(f"exported peak_force.csv: {len(lines) - 1} rows, columns {lines[0]}")


if __name__ == "__main__":
    main()
