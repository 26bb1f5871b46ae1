"""A reader in its own process for tests/test_pack_merge.py: reads every object of a store
again and again (one at a time, and in bulk) until the file `stop` appears, checking each
object's bytes against the expected digests; prints `reads errors first-error` at the end.

    python pack_merge_reader.py STORE_ROOT EXPECTED_FILE STOP_FILE
EXPECTED_FILE holds one `oid blake3-of-payload` line per object.
"""

from __future__ import annotations

import sys
from pathlib import Path

import blake3

from scistack.objects.local import LocalObjectStore


def main() -> None:
    root, expected_file, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    expected = dict(line.split() for line in expected_file.read_text().splitlines())
    oids = sorted(expected)
    store = LocalObjectStore(root)
    reads = errors = 0
    first = ""
    print("ready", flush=True)
    while not stop.exists():
        for at, oid in enumerate(oids):
            try:
                if blake3.blake3(bytes(store.get(oid).payload)).hexdigest() != expected[oid]:
                    raise AssertionError(f"wrong bytes for {oid}")
            except Exception as exc:  # noqa: BLE001 - counted and named, the test fails on it
                errors += 1
                first = first or f"{type(exc).__name__}: {exc}"
            reads += 1
            if at % 50 == 0:
                try:
                    for got in store.get_many(oids[at : at + 50]):
                        if isinstance(got, Exception):
                            raise got
                except Exception as exc:  # noqa: BLE001
                    errors += 1
                    first = first or f"get_many {type(exc).__name__}: {exc}"
    print(reads, errors, first.replace("\n", " "), flush=True)


if __name__ == "__main__":
    main()
