"""Pipeline functions for tests/test_foreach.py, importable by worker processes.

Process pools (spawn) and Dask workers receive functions by reference (module + name), so
these live in a plain module rather than in the test file: `tests.foreach_fns`. pytest puts
the repository root on `sys.path` (`tests/` is a package), spawned processes inherit the
parent's `sys.path`, and the Dask fixture and the subprocess scripts put the root on
`PYTHONPATH` / `sys.path` themselves.
"""

from __future__ import annotations

import os
import time

import numpy as np


def bandpass(signal, low_hz):
    return signal * low_hz


def centre(signal):
    """Two outputs: the centred signal and its mean."""
    mean = float(np.mean(signal))
    return signal - mean, mean


def minus_baseline(signal, baseline):
    return signal - baseline


def column_sums(table):
    """A Merge input arrives as one DataFrame, a column per variable."""
    velocity = next(c for c in table.columns if str(c).endswith("Velocity"))
    return {"columns": sorted(map(str, table.columns)), "rows": len(table),
            "velocity": float(table[velocity].sum())}


def mean_of_all(values):
    """Aggregation: every lower-level record of the address, as a list."""
    return float(np.mean([np.mean(v) for v in values]))


def describe_table(values):
    """Aggregation with as_table=True: a DataFrame with the schema columns and `data`."""
    return {"columns": sorted(map(str, values.columns)), "rows": len(values),
            "sessions": sorted(values["session"])}


def fragile(signal, limit):
    if float(np.max(signal)) > limit:
        raise ValueError(f"signal peaks at {float(np.max(signal))}, above {limit}")
    return signal * 2.0


def slow_double(signal, delay):
    time.sleep(delay)
    return signal * 2.0


def with_pid(signal):
    """Where it ran: the result carries the pid of the process that computed it."""
    return signal * 2.0, os.getpid()


def noisy(signal, verbose):
    """`verbose` is ignored by lineage (see test_ignored_parameter_...)."""
    return signal + 1.0


def none_for_short(signal):
    return None if len(signal) < 5 else signal


def amplify(signal, gain=2.0):
    """A default: bound into the call like a constant (as a direct call binds it)."""
    return signal * gain


def weigh_in_place(signal, weights):
    weights *= 2.0  # changes the caller's constant: refused, it is shared by every combination
    return signal * weights[0]


def count_with(signal, seen):
    seen.append(len(seen))  # a list constant: each call gets a copy of its own
    return float(len(seen))


class Scale:
    """A configured processing step: `for_each(Scale(2).apply, ...)` or `for_each(Scale(2), ...)`."""

    def __init__(self, k):
        self.k = k

    def apply(self, signal):
        return signal * self.k

    def __call__(self, signal):
        return signal * self.k


def scale_by(signal, k):
    return signal * k


def apply_fn(signal, fn=np.sqrt):
    return fn(signal)


class Gain:
    """A class whose method is a lineage function: `Gain(2).apply(x)` is cached per gain."""

    def __init__(self, k):
        self.k = k

    from scistack import lineage_fcn as _lineage_fcn

    @_lineage_fcn
    def apply(self, signal):
        return signal * self.k


from scistack import BaseVariable as _BaseVariable  # noqa: E402


class FnsCalibration(_BaseVariable):
    """A variable `calibrated` loads in its own body (the cache cannot see that)."""


def calibrated(signal):
    return signal * FnsCalibration.load(subject=1, session="pre").data


def head_mean(rec):
    """Channel 0's first 100 samples: their mean, and what reading them took."""
    head = np.asarray(rec[:100, 0])
    return {"mean": float(head.mean()), "type": type(rec).__name__, "chunks_read": getattr(rec, "chunks_read", None)}


def halve(signal, /):
    """Its input by position only, as numpy's ufuncs and builtins take theirs."""
    return signal / 2


def cut_trials(recording, n):
    """A fan-out step (outputs=[Split(...)]): a session's recording cut into `n` trials, and
    how many there were."""
    return {i + 1: part for i, part in enumerate(np.array_split(np.asarray(recording), n))}, n


def merged_rows(table):
    """A Merge input as the function sees it: its columns, and each row's values."""
    return {"columns": [str(c) for c in table.columns],
            "rows": [{str(k): (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()}
                     for row in table.to_dict("records")]}


def dies_at_two(signal, log, how):
    """Ends its worker process at subject 2 (`raw_signal`'s 20.0 or 20.5 first), as a crash in compiled code
    (`how="exit"`: os._exit(139)) or the out-of-memory killer (`how="kill"`: SIGKILL) do;
    each time it gets there is a line in file `log`."""
    if signal[0] // 10 == 2:
        with open(log, "a") as f:
            f.write("died\n")
        if how == "kill":
            os.kill(os.getpid(), __import__("signal").SIGKILL)
        os._exit(139)
    time.sleep(0.05)
    return signal * 2


def dies_at(signal, log, subject):
    """Ends its worker process (SIGKILL, as the out-of-memory killer) at `subject` (`raw_signal`'s
    10 * subject first), at once otherwise; each start is a line (its subject) in file `log`."""
    with open(log, "a") as f:
        f.write(f"{int(signal[0] // 10)}\n")
    if signal[0] // 10 == subject:
        os.kill(os.getpid(), __import__("signal").SIGKILL)
    return signal * 2


def naps(signal, log, seconds):
    """A line in file `log` as it starts, then `seconds` asleep; the signal doubled."""
    with open(log, "a") as f:
        f.write("started\n")
    time.sleep(seconds)
    return signal * 2


def nap_then_log(signal, log, seconds):
    """`seconds` asleep, then the signal's first value as a line in file `log`; the signal doubled."""
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"{float(signal[0])}\n")
    return signal * 2
