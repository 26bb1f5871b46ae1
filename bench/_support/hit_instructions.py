"""Instructions per point load or per cache hit, by callgrind (independent of the machine's load).

    valgrind --tool=callgrind --callgrind-out-file=OUT python bench/_support/hit_instructions.py \
        PROJECT load|hit N

opens a project built by `bench/index_scale.py` (its `pipeline.py` beside it), prepares 4,000
operations (the hit's inputs are loaded before), then runs the first N of them. Run it with N
and 2N and subtract the two totals (or each function's self cost, `callgrind_annotate`),
divided by N: open, import and preparation cancel, what remains is N operations' own
instructions. Three things must hold for them to cancel (each was seen to spoil a figure):
OPENBLAS_NUM_THREADS=1 (OpenBLAS's idle threads spin for a time that differs between runs:
thousands of instructions "per op", either sign); every module already compiled
(`python -m compileall scistack bench`: the first run would compile what the second loads);
and the code unchanged between the two runs. Inclusive costs of recursive functions
(`_PyEval_EvalFrameDefault'2`) are not to be subtracted: callgrind's cycle accounting makes
them differ by thousands per op with no work behind it.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_scale_child import _open, address  # noqa: E402

PREPARED = 4001


def main(project: Path, what: str, n: int) -> None:
    plan = json.loads(project.with_suffix(".json").read_text())["layout"]  # index_scale.py's marker
    addresses, cached = plan["addresses"], plan["cached"]
    db, p = _open(project)
    rng = np.random.default_rng(0)
    if what == "load":
        variables = [p.Force, p.EMG, p.Rating]
        calls = [functools.partial(variables[v].load, **address(int(i)))
                 for v, i in zip(rng.integers(3, size=PREPARED), rng.integers(addresses, size=PREPARED))]
    else:
        calls = [functools.partial(p.peak, p.EMG.load(**address(int(i))), 2.0)
                 for i in rng.integers(cached, size=PREPARED)]
    calls.pop()()  # the first of its kind after open: not in either run's difference
    out = [call() for call in calls[:n]]
    if what == "hit":
        assert all(r.cached for r in out), "a cache miss: not a hit's cost"
    db.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
