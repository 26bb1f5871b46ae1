"""`for_each` for MATLAB functions: plan in Python, run in MATLAB, commit in Python.

MATLAB cannot hash with blake3 or write the index, and the index must keep one writer, so
`scistack.for_each` in MATLAB makes exactly two calls of the `scistack` command, however many
combinations there are (the contract is in `matlab/README.md`):

1. `scistack matlab-plan <staging>/plan.json` (:func:`plan`): the function's identity (from
   its normalised `.m` text), the constants' oids (from the canonical JSON / npy payloads
   MATLAB staged), every combination's inputs resolved to oids, its call key, and whether it
   is cached, missing or must run. Nothing is recorded; the plan is written beside the
   request as `plan-result.json`.
2. MATLAB loads the inputs of the combinations to run (by oid), calls the function and stages
   the outputs as payload files.
3. `scistack matlab-commit <staging>/results.json` (:func:`commit`): in one batch, stores the
   outputs, the code and the constants, one call record per combination (docs/format.md
   §1.5, module ``matlab:<file>``, env ``language: matlab``), the call-cache entries and the
   refs (with ``call`` and ``params``), and a ``run`` report; writes `commit-result.json`.

`scistack.Thunk(@fn)` calls go through `thunk.py` (`matlab-thunk`, then
`matlab-thunk-commit` only on a miss), keyed as a for_each combination of the same file is.

Identity of a MATLAB function: the blake3 hex digest of the UTF-8 bytes of its `.m` file
normalised by :func:`normalise_matlab_source` (comments, block comments, blank lines and
trailing whitespace removed). With helper files (``'helpers'`` in MATLAB) it is
``blake3(canonical {"deps": [["helper:matlab:<file>", <digest>], ...], "source": <digest>})``.
"""

from scistack.matlab_bridge.commit import commit
from scistack.matlab_bridge.plan import plan
from scistack.matlab_bridge.thunk import commit as thunk_commit
from scistack.matlab_bridge.thunk import lookup as thunk_lookup
from scistack.codeid.matlab import (
    MatlabFunction,
    MatlabSource,
    matlab_function,
    matlab_source,
    normalise_matlab_source,
)

__all__ = ["MatlabFunction", "MatlabSource", "commit", "matlab_function", "matlab_source",
           "normalise_matlab_source", "plan", "thunk_commit", "thunk_lookup"]
