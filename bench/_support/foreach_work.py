"""The function bench/foreach.py runs, in a module worker processes can import by name.

bench/run_all.py loads each benchmark under a private module name (`bench_foreach`), which
a spawned worker could not import; a function defined here is importable wherever
bench/_support is on sys.path, and spawned workers inherit the parent's sys.path.
"""


def scaled(signal, scale):
    return signal * scale


def halves(signal, scale):
    """A fan-out step (`Split(..., by="part")`): the signal's two halves, scaled."""
    half = len(signal) // 2
    return {1: signal[:half] * scale, 2: signal[half:] * scale}


def scaled_or_dies(signal, scale, die_at, log):
    """`scaled`, but ends its worker process (SIGKILL, as the out-of-memory killer) on the
    signal whose first value is `die_at`; each start is a line (that value) in file `log`."""
    import os
    import signal as signals

    with open(log, "a") as f:
        f.write(f"{int(signal[0])}\n")
    if int(signal[0]) == die_at:
        os.kill(os.getpid(), signals.SIGKILL)
    return signal * scale
