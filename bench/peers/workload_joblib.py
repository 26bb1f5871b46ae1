"""joblib.Memory: the caching rows only (it is a call cache, not a data store).

    memory = Memory(location=tmp, verbose=0)
    cached = memory.cache(trivial)
    cached(x)   # miss: computes, pickles the result under the argument hash
    cached(x)   # hit: hashes the argument, reads the pickled result back

The for_each analogue calls `cached` on each of the 2,000 arrays (held in memory: joblib has no
store to load inputs from), once on an empty cache and once fully cached.
"""

from __future__ import annotations

import common as c
import numpy as np

PEER = "joblib"


def trivial(x):
    _CALLS[0] += 1
    return x * 2


_CALLS = [0]


def main() -> None:
    args = c.parse_args()
    rec = c.Recorder(PEER, args)
    rec.versions = c.versions("joblib", "numpy")
    if args.step == "big":  # joblib.dump/load is not the same thing: n/a
        rec.write()
        return
    try:
        from joblib import Memory
    except Exception as exc:  # noqa: BLE001
        rec.fail_all(["foreach_first_s", "foreach_cached_s", "cached_call_us"], exc)
        rec.write()
        return

    data = c.small_arrays(args)
    rows = [np.ascontiguousarray(r) for r in data]
    with c.workdir(PEER) as tmp:
        memory = Memory(location=tmp, verbose=0)
        cached = memory.cache(trivial)

        with rec.measure("foreach_first_s") as box:
            with c.Timer() as t:
                out = [cached(r) for r in rows]
            box["foreach_first_s"] = t.s
            rec.info["foreach_first_calls"] = _CALLS[0]
            rec.info["foreach_verified"] = bool(np.array_equal(np.stack(out), 2 * data))
        with rec.measure("foreach_cached_s") as box:
            _CALLS[0] = 0
            with c.Timer() as t:
                out = [cached(r) for r in rows]
            box["foreach_cached_s"] = t.s
            rec.info["foreach_cached_recomputed"] = _CALLS[0]

        with rec.measure("cached_call_us") as box:
            x = rows[0]
            cached(x)
            _CALLS[0] = 0
            box["cached_call_us"] = 1e6 * c.time_calls(lambda: cached(x), args.cached_calls)
            rec.info["cached_call_recomputed"] = _CALLS[0]
            rec.info["cached_call_n"] = args.cached_calls
        rec.info["cache_mb"] = c.dir_size(tmp)[0] / c.MB
    rec.write()


if __name__ == "__main__":
    main()
