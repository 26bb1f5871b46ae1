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
