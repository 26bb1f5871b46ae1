"""The raw floor: one content-addressed .npy file per value, no index, no metadata.

save: NPY header + the array's own buffer (no copy), blake3 of those bytes (all cores for
      payloads >= 4 MiB, as a careful store would), written to objects/<h[:2]>/<h[2:]> through
      a temporary file + os.replace (atomic, no fsync: neither side fsyncs by default);
load: np.load of that file. The address -> hash map is a Python dict: the "index" costs nothing.
This is a physical-limit reference, not a usable store.
"""

from __future__ import annotations

import os

import common as c
import numpy as np

PEER = "raw"
_MT_MIN = 4 << 20


def npy_header(arr: np.ndarray) -> bytes:
    buf = np.lib.format.header_data_from_array_1_0(arr)
    import io

    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, buf)
    return out.getvalue()


class RawStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "objects")
        os.makedirs(self.root, exist_ok=True)
        self._made: set[str] = set()

    def put(self, arr: np.ndarray) -> str:
        from blake3 import blake3

        arr = np.ascontiguousarray(arr)
        header = npy_header(arr)
        body = memoryview(arr).cast("B")
        hasher = blake3(max_threads=blake3.AUTO if body.nbytes >= _MT_MIN else 1)
        hasher.update(header)
        hasher.update(body)
        h = hasher.hexdigest()
        d = os.path.join(self.root, h[:2])
        if d not in self._made:
            os.makedirs(d, exist_ok=True)
            self._made.add(d)
        final = os.path.join(d, h[2:])
        if not os.path.exists(final):
            tmp = f"{final}.tmp{os.getpid()}"
            with open(tmp, "wb") as fh:
                fh.write(header)
                fh.write(body)
            os.replace(tmp, final)
        return h

    def get(self, h: str) -> np.ndarray:
        return np.load(os.path.join(self.root, h[:2], h[2:]))


def main() -> None:
    args = c.parse_args()
    rec = c.Recorder(PEER, args)
    rec.versions = c.versions("numpy", "blake3", "pandas")
    with c.workdir(PEER) as tmp:
        store = RawStore(tmp)
        if args.step == "big":
            arr = c.big_array(args)
            box = {}
            c.big_round_trip(
                rec, arr,
                save=lambda a: box.__setitem__("h", store.put(a)),
                close=lambda: None, reopen=lambda: None,
                load=lambda: store.get(box["h"]),
                data_dir=tmp,
            )
            rec.write()
            return

        addrs = c.addresses(args)
        data = c.small_arrays(args)
        n = len(addrs)
        index: dict[tuple[int, int], str] = {}
        with rec.measure("save_rate") as box:
            with c.Timer() as t:
                for i, a in enumerate(addrs):
                    index[a] = store.put(data[i])
            box["save_rate"] = n / t.s
        with rec.measure("disk_small_mb") as box:
            box["disk_small_mb"] = c.dir_size(tmp)[0] / c.MB
            rec.info["disk_small_apparent_mb"] = c.dir_size(tmp)[1] / c.MB
        with rec.measure("load_rate") as box:
            out = [None] * n
            with c.Timer() as t:
                for i, a in enumerate(addrs):
                    out[i] = store.get(index[a])
            box["load_rate"] = n / t.s
            rec.info["loads_verified"] = bool(np.array_equal(np.stack(out), data))
        with rec.measure("load_df_s") as box:
            import pandas as pd

            with c.Timer() as t:
                keys = list(index)
                values = [store.get(index[k]) for k in keys]
                df = pd.DataFrame({
                    "subject": [k[0] for k in keys],
                    "session": [k[1] for k in keys],
                    "value": values,
                })
            box["load_df_s"] = t.s
            rec.info["load_df_rows"] = int(len(df))
    rec.write()


if __name__ == "__main__":
    main()
