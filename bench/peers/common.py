"""Shared helpers for the peer workloads (numpy + stdlib only: imported in every peer's venv).

Each `workload_<peer>.py` runs ONE step (`small` or `big`) of ONE repetition in a fresh
process and a fresh temporary directory, and writes a JSON object to `--out`:

    {"peer": ..., "step": ..., "metrics": {name: number}, "errors": {name: "Type: message"},
     "info": {...}, "versions": {package: version}, "python": "3.11.7"}

A measure that raises is recorded under "errors" (the table then shows "error: ...")
instead of crashing the whole workload, so one broken call never hides the other rows.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import traceback
from importlib import metadata
from typing import Any, Iterator

import numpy as np

MB = 1_000_000  # sizes and rates are decimal megabytes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="one step of one repetition of the peer workload")
    p.add_argument("--step", choices=["small", "big"], required=True)
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--subjects", type=int, default=200)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--length", type=int, default=100, help="elements per small array")
    p.add_argument("--big-mb", type=float, default=100.0, help="size of the big array, MB")
    p.add_argument("--cached-calls", type=int, default=2000, help="timed cache hits")
    p.add_argument("--out", required=True, help="JSON result file")
    return p.parse_args(argv)


def addresses(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(subject, session) pairs, subject-major: the same order for every peer."""
    return [(s, t) for s in range(args.subjects) for t in range(args.sessions)]


def small_arrays(args: argparse.Namespace) -> np.ndarray:
    """One seeded row of `length` float64 per address (rows are contiguous copies when used)."""
    rng = np.random.default_rng(args.seed)
    return rng.standard_normal((args.subjects * args.sessions, args.length))


def big_array(args: argparse.Namespace) -> np.ndarray:
    rng = np.random.default_rng(args.seed + 1)
    return rng.standard_normal(int(args.big_mb * MB) // 8)


def touch(arr: Any) -> float:
    """Read one element per 4 KiB page, so a lazily mapped result is really paged in."""
    flat = np.asarray(arr).reshape(-1)
    return float(flat[:: 4096 // max(flat.itemsize, 1)].sum())


# ---------------------------------------------------------------- memory (Linux /proc)

def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    if kb is None:  # no /proc: fall back to the high-water mark
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * 1024


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    """The RSS high-water mark since the last `reset_peak()` (or since the process started)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * 1024


# ---------------------------------------------------------------- files

def dir_size(path: str, exclude_names: tuple[str, ...] = ()) -> tuple[int, int]:
    """(allocated bytes as `du` counts them, apparent bytes) of every file under `path`."""
    allocated = apparent = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            if name in exclude_names:
                continue
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            apparent += st.st_size
            allocated += getattr(st, "st_blocks", (st.st_size + 511) // 512) * 512
    return allocated, apparent


@contextlib.contextmanager
def workdir(peer: str) -> Iterator[str]:
    """A fresh temporary directory for one step, removed afterwards."""
    path = tempfile.mkdtemp(prefix=f"scistack-peer-{peer}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- results

def versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Recorder:
    """Collects metrics; a failing measure records its error instead of raising."""

    def __init__(self, peer: str, args: argparse.Namespace) -> None:
        self.peer = peer
        self.args = args
        self.metrics: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.info: dict[str, Any] = {}
        self.versions: dict[str, str] = {}

    @contextlib.contextmanager
    def measure(self, *names: str) -> Iterator[dict[str, float]]:
        """`with rec.measure("a", "b") as box: box["a"] = ...` -- errors go to every name."""
        box: dict[str, float] = {}
        gc.collect()
        try:
            yield box
        except Exception as exc:  # noqa: BLE001 -- the point is to keep going
            msg = f"{type(exc).__name__}: {exc}".strip()
            for name in names:
                if name in box:
                    self.metrics[name] = float(box[name])
                else:
                    self.errors.setdefault(name, msg[:400])
            self.info.setdefault("tracebacks", []).append(traceback.format_exc(limit=6)[-2000:])
        else:
            for name, value in box.items():
                self.metrics[name] = float(value)
            for name in names:
                if name not in box:
                    self.errors.setdefault(name, "not measured")

    def fail_all(self, names: list[str], exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}".strip()[:400]
        for name in names:
            self.errors.setdefault(name, msg)

    def write(self) -> None:
        doc = {
            "peer": self.peer,
            "step": self.args.step,
            "metrics": self.metrics,
            "errors": self.errors,
            "info": self.info,
            "versions": self.versions,
            "python": platform.python_version(),
        }
        with open(self.args.out, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)


class Timer:
    """`with Timer() as t: ...; t.s` -- wall seconds by time.perf_counter."""

    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        self.s = float("nan")
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def time_calls(fn, n: int) -> float:
    """Median seconds of `n` individually timed calls of `fn()`."""
    samples = []
    pc = time.perf_counter
    for _ in range(n):
        t0 = pc()
        fn()
        samples.append(pc() - t0)
    return median(samples)


def big_round_trip(rec: Recorder, arr: np.ndarray, *, save, close, reopen, load,
                   data_dir: str, exclude_names: tuple[str, ...] = ()) -> None:
    """Step (2): save one big array, close, measure the files, reopen, load it back.

    Peak memory = the larger RSS high-water mark of the save and of the load, minus the RSS
    just before the save (the input array is already resident then), divided by the payload.
    So an implementation that needs no copy at all scores ~1x (the loaded array itself).
    """
    payload = arr.nbytes
    gc.collect()
    base = rss_bytes()
    resettable = reset_peak()
    rec.info["peak_method"] = "VmHWM reset per phase" if resettable else "ru_maxrss"
    ok = True
    with rec.measure("big_save_mbps") as box:
        with Timer() as t:
            save(arr)
        box["big_save_mbps"] = payload / MB / t.s
    save_peak = peak_bytes()
    ok &= "big_save_mbps" in rec.metrics
    with rec.measure("disk_big_mb") as box:
        close()
        box["disk_big_mb"] = dir_size(data_dir, exclude_names)[0] / MB
    with rec.measure("big_load_mbps") as box:
        reopen()
        gc.collect()
        if resettable:
            reset_peak()
        with Timer() as t:
            out = load()
            touch(out)
        box["big_load_mbps"] = payload / MB / t.s
        rec.info["big_verified"] = bool(np.array_equal(np.asarray(out), arr))
        del out
    load_peak = peak_bytes()
    ok &= "big_load_mbps" in rec.metrics
    rec.info["big_save_peak_x"] = (save_peak - base) / payload
    rec.info["big_load_peak_x"] = (load_peak - base) / payload
    if ok:
        rec.metrics["big_peak_x"] = (max(save_peak, load_peak) - base) / payload
    else:
        rec.errors.setdefault("big_peak_x", "round trip failed")
    with contextlib.suppress(Exception):
        close()


SMALL_METRICS = [
    "save_rate", "disk_small_mb", "load_rate", "load_df_s",
    "foreach_first_s", "foreach_cached_s", "cached_call_us", "batch_save_rate",
]
BIG_METRICS = ["big_save_mbps", "big_load_mbps", "big_peak_x", "disk_big_mb"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
