"""A client machine of a lab project, run as its own process by the lab tests.

usage: lab_worker.py FOLDER SHARED OBJECTS WRITER COUNT MODE
MODE `single`: COUNT individual saves of one address, printing each acknowledged version;
`batch`: COUNT saves at distinct addresses in batches of 10; `killme`: upload a batch's objects
and wait to be killed before naming them; `read`: fold the journal
repeatedly until a file `stop` appears in FOLDER, then print the versions it folded.
A file `wait` in FOLDER is a starting gate: the worker opens the project, writes `ready`, and
starts only once `wait` is gone (so several workers' saves truly interleave).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from scistack import BaseVariable, configure_database


class LabSignal(BaseVariable):
    pass


def main() -> None:
    folder, shared, objects, writer, count, mode = sys.argv[1:7]
    writer, count = int(writer), int(count)
    db = configure_database(Path(folder) / "gait.duckdb", ["subject", "session"], shared=shared,
                            objects=objects)
    gate = Path(folder) / "wait"
    if gate.exists():
        (Path(folder) / "ready").touch()
        deadline = time.monotonic() + 120
        while gate.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    acked = []
    if mode == "single":
        for i in range(count):
            saved = LabSignal.save(np.array([writer, i], dtype=np.int64), subject=1, session=1)
            acked.append([saved.version, saved.oid])
    elif mode == "batch":
        for start in range(0, count, 10):
            with db.batch():
                for i in range(start, min(count, start + 10)):
                    LabSignal.save(np.array([writer, i], dtype=np.int64), subject=100 + writer, session=i)
    elif mode == "killme":  # objects uploaded, names not yet committed: the test SIGKILLs us here
        with db.batch():
            for i in range(count):
                LabSignal.save(np.array([writer, i], dtype=np.int64), subject=200, session=i)
            db.store.flush()
            print("uploaded", flush=True)
            time.sleep(600)
    elif mode == "read":
        stop = Path(folder) / "stop"
        while not stop.exists():
            db.index.refresh()
            time.sleep(0.01)
        db.index.refresh()
    versions = [[r.version, r.oid] for r in LabSignal.list_versions(subject=1, session=1)] if mode != "batch" else []
    print(json.dumps({"acked": acked, "versions": versions}))
    db.close()


if __name__ == "__main__":
    main()
