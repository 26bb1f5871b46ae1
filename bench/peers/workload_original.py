"""The original SciStack (PyPI `scistack==0.1.58`, Python API in the `scidb` package).

API as found in 0.1.58 (see bench/peers/README.md):
    db = configure_database(path, ["subject", "session"])   # one DuckDB file holds everything
    class Signal(BaseVariable): pass
    Signal.save(arr, subject=s, session=t)                   # one record
    Signal.load(subject=s, session=t).data                   # one record
    Signal.save(DataFrame(subject, session, value))          # batched save (one record per row)
    Signal.load(as_df=True)                                  # everything as a DataFrame
    for_each(fn, inputs={"x": Signal}, outputs=[Result], subject=[...], session=[...],
             skip_computed=True)                             # the only cache it has
    db.close()
It logs every call at INFO to stderr and to `scidb.log` beside the database; the harness sets
SCIDB_LOG_LEVEL=WARN (measured: no speed difference) and does not count the log file as data.
"""

from __future__ import annotations

import os

os.environ.setdefault("SCIDB_LOG_LEVEL", "WARN")

import common as c  # noqa: E402
import numpy as np  # noqa: E402

PEER = "original"
LOG_NAMES = ("scidb.log",)


def main() -> None:
    args = c.parse_args()
    rec = c.Recorder(PEER, args)
    rec.versions = c.versions("scistack", "scistack-db", "sciduckdb", "scifor", "scilineage",
                              "duckdb", "numpy", "pandas")
    names = c.SMALL_METRICS if args.step == "small" else c.BIG_METRICS
    try:
        import pandas as pd
        from scidb import BaseVariable, configure_database, for_each
    except Exception as exc:  # noqa: BLE001
        rec.fail_all(names, exc)
        rec.write()
        return

    class Signal(BaseVariable):
        pass

    class Result(BaseVariable):
        pass

    class SignalB(BaseVariable):
        pass

    class Big(BaseVariable):
        pass

    calls = {"n": 0}

    def trivial(x):
        calls["n"] += 1
        return x * 2

    with c.workdir(PEER) as tmp:
        path = os.path.join(tmp, "bench.duckdb")
        state = {"db": configure_database(path, ["subject", "session"])}

        def close():
            if state["db"] is not None:
                state["db"].close()
                state["db"] = None

        def reopen():
            close()
            state["db"] = configure_database(path, ["subject", "session"])

        if args.step == "big":
            arr = c.big_array(args)
            c.big_round_trip(
                rec, arr,
                save=lambda a: Big.save(a, subject=0, session=0),
                close=close, reopen=reopen,
                load=lambda: Big.load(subject=0, session=0).data,
                data_dir=tmp, exclude_names=LOG_NAMES,
            )
            rec.write()
            return

        addrs = c.addresses(args)
        data = c.small_arrays(args)
        subjects = list(range(args.subjects))
        sessions = list(range(args.sessions))
        n = len(addrs)

        # (1) individual saves, then the files after a close, then individual loads
        with rec.measure("save_rate") as box:
            with c.Timer() as t:
                for i, (s, ss) in enumerate(addrs):
                    Signal.save(data[i], subject=s, session=ss)
            box["save_rate"] = n / t.s
        with rec.measure("disk_small_mb") as box:
            close()
            box["disk_small_mb"] = c.dir_size(tmp, LOG_NAMES)[0] / c.MB
            reopen()
        with rec.measure("load_rate") as box:
            out = [None] * n
            with c.Timer() as t:
                for i, (s, ss) in enumerate(addrs):
                    out[i] = Signal.load(subject=s, session=ss).data
            box["load_rate"] = n / t.s
            rec.info["loads_verified"] = bool(np.array_equal(np.stack(out), data))

        # (4) everything as a DataFrame
        with rec.measure("load_df_s") as box:
            with c.Timer() as t:
                df = Signal.load(as_df=True)
            box["load_df_s"] = t.s
            rec.info["load_df_rows"] = int(len(df))

        # (3) for_each, first run and fully cached re-run (skip_computed is its only cache)
        with rec.measure("foreach_first_s") as box:
            with c.Timer() as t:
                for_each(trivial, inputs={"x": Signal}, outputs=[Result],
                         subject=subjects, session=sessions, skip_computed=True)
            box["foreach_first_s"] = t.s
            rec.info["foreach_first_calls"] = calls["n"]
            got = Result.load(subject=subjects[-1], session=sessions[-1]).data
            rec.info["foreach_verified"] = bool(np.array_equal(got, 2 * data[-1]))
        with rec.measure("foreach_cached_s") as box:
            calls["n"] = 0
            with c.Timer() as t:
                for_each(trivial, inputs={"x": Signal}, outputs=[Result],
                         subject=subjects, session=sessions, skip_computed=True)
            box["foreach_cached_s"] = t.s
            rec.info["foreach_cached_recomputed"] = calls["n"]

        # a single cached call: the smallest thing it can cache is a one-address for_each
        with rec.measure("cached_call_us") as box:
            calls["n"] = 0
            one = dict(subject=[subjects[0]], session=[sessions[0]])
            k = 5
            box["cached_call_us"] = 1e6 * c.time_calls(
                lambda: for_each(trivial, inputs={"x": Signal}, outputs=[Result],
                                 skip_computed=True, **one), k)
            rec.info["cached_call_recomputed"] = calls["n"]
            rec.info["cached_call_n"] = k

        # batched saves: a DataFrame with schema-key columns is saved one record per row
        with rec.measure("batch_save_rate") as box:
            frame = pd.DataFrame({
                "subject": [a[0] for a in addrs],
                "session": [a[1] for a in addrs],
                "value": list(data),
            })
            with c.Timer() as t:
                SignalB.save(frame)
            box["batch_save_rate"] = n / t.s
            got = SignalB.load(subject=addrs[7][0], session=addrs[7][1]).data
            rec.info["batch_verified"] = bool(np.array_equal(got, data[7]))
        close()
    rec.write()


if __name__ == "__main__":
    main()
