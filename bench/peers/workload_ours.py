"""scistack (this repository), run by the project's own interpreter.

    db = configure_database(path, ["subject", "session"])
    Signal.save(arr, subject=s, session=t);  Signal.load(subject=s, session=t).data
    with db.batch(): ...                      # batched saves
    Signal.load_all(as_df=True)               # everything as a DataFrame
    @lineage_fcn def trivial(x): return x * 2
    for_each(trivial, inputs={"x": Signal}, outputs=[Result], subject=[...], session=[...])
    trivial(Signal.load(...))                 # one cached call
    db.close()

Every measure is guarded: a missing or failing API records "error: ..." for its row only.
"""

from __future__ import annotations

import os

import common as c
import numpy as np

PEER = "ours"


def main() -> None:
    args = c.parse_args()
    rec = c.Recorder(PEER, args)
    rec.versions = c.versions("scistack", "duckdb", "numpy", "pandas", "blake3", "zstandard",
                              "pyarrow")
    names = c.SMALL_METRICS if args.step == "small" else c.BIG_METRICS
    try:
        import scistack
        from scistack import BaseVariable, configure_database
    except Exception as exc:  # noqa: BLE001
        rec.fail_all(names, exc)
        rec.write()
        return
    if rec.versions.get("scistack") == "not installed":  # e.g. imported from a source tree
        rec.versions["scistack"] = getattr(scistack, "__version__", "?") + " (source)"

    class Signal(BaseVariable):
        pass

    class Result(BaseVariable):
        pass

    class SignalB(BaseVariable):
        pass

    class Big(BaseVariable):
        pass

    calls = {"n": 0}

    with c.workdir(PEER) as tmp:
        path = os.path.join(tmp, "bench.duckdb")
        state = {"db": None}

        def close():
            if state["db"] is not None:
                state["db"].close()
                state["db"] = None

        def reopen():
            close()
            state["db"] = configure_database(path, ["subject", "session"])

        try:
            reopen()
        except Exception as exc:  # noqa: BLE001
            rec.fail_all(names, exc)
            rec.write()
            return

        if args.step == "big":
            arr = c.big_array(args)
            c.big_round_trip(
                rec, arr,
                save=lambda a: Big.save(a, subject=0, session=0),
                close=close, reopen=reopen,
                load=lambda: Big.load(subject=0, session=0).data,
                data_dir=tmp,
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
            box["disk_small_mb"] = c.dir_size(tmp)[0] / c.MB
            rec.info["disk_small_apparent_mb"] = c.dir_size(tmp)[1] / c.MB
        with rec.measure("load_rate") as box:
            reopen()
            out = [None] * n
            with c.Timer() as t:
                for i, (s, ss) in enumerate(addrs):
                    out[i] = Signal.load(subject=s, session=ss).data
            box["load_rate"] = n / t.s
            rec.info["loads_verified"] = bool(np.array_equal(np.stack(out), data))
        if state["db"] is None:
            try:
                reopen()
            except Exception as exc:  # noqa: BLE001
                rec.fail_all(names, exc)

        # (4) everything as a DataFrame
        with rec.measure("load_df_s") as box:
            with c.Timer() as t:
                df = Signal.load_all(as_df=True)
            box["load_df_s"] = t.s
            rec.info["load_df_rows"] = int(len(df))

        # (3) for_each, first run and fully cached re-run; then one cached call
        with rec.measure("foreach_first_s", "foreach_cached_s", "cached_call_us") as box:
            from scistack import for_each, lineage_fcn

            @lineage_fcn
            def trivial(x):
                calls["n"] += 1
                return x * 2

            with c.Timer() as t:
                for_each(trivial, inputs={"x": Signal}, outputs=[Result],
                         subject=subjects, session=sessions)
            box["foreach_first_s"] = t.s
            rec.info["foreach_first_calls"] = calls["n"]
            try:
                got = Result.load(subject=subjects[-1], session=sessions[-1]).data
                rec.info["foreach_verified"] = bool(np.array_equal(got, 2 * data[-1]))
            except Exception as exc:  # noqa: BLE001
                rec.info["foreach_verified"] = f"error: {type(exc).__name__}: {exc}"[:400]

            calls["n"] = 0
            with c.Timer() as t:
                for_each(trivial, inputs={"x": Signal}, outputs=[Result],
                         subject=subjects, session=sessions)
            box["foreach_cached_s"] = t.s
            rec.info["foreach_cached_recomputed"] = calls["n"]

            loaded = Signal.load(subject=subjects[0], session=sessions[0])
            trivial(loaded)
            calls["n"] = 0
            box["cached_call_us"] = 1e6 * c.time_calls(lambda: trivial(loaded), args.cached_calls)
            rec.info["cached_call_recomputed"] = calls["n"]
            rec.info["cached_call_n"] = args.cached_calls

        # batched saves
        with rec.measure("batch_save_rate") as box:
            db = state["db"]
            with c.Timer() as t:
                with db.batch():
                    for i, (s, ss) in enumerate(addrs):
                        SignalB.save(data[i], subject=s, session=ss)
            box["batch_save_rate"] = n / t.s
            got = SignalB.load(subject=addrs[7][0], session=addrs[7][1]).data
            rec.info["batch_verified"] = bool(np.array_equal(got, data[7]))
        try:
            close()
        except Exception as exc:  # noqa: BLE001
            rec.info["close_error"] = f"{type(exc).__name__}: {exc}"[:400]
    rec.write()


if __name__ == "__main__":
    main()
