"""Run every benchmark in bench/: each `bench/<name>.py` module's `main()`, in name order.

Other benchmarks are added as new modules; this file finds them (everything in bench/*.py
except itself and __init__.py). Run: python bench/run_all.py [name ...] to run some only.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[Path]:
    """The benchmark modules: bench/*.py except run_all.py and __init__.py."""
    return sorted(p for p in HERE.glob("*.py") if p.name not in ("run_all.py", "__init__.py"))


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    wanted = set(argv if argv is not None else sys.argv[1:])
    failed = []
    for path in discover():
        if wanted and path.stem not in wanted:
            continue
        try:
            module = load(path)
        except Exception as exc:  # a module that cannot even be loaded is a failed benchmark too
            failed.append(path.name)
            print(f"!! bench/{path.name} could not be loaded: {exc!r}", flush=True)
            continue
        if not callable(getattr(module, "main", None)):
            continue
        print(f"== bench/{path.name}", flush=True)
        start = time.perf_counter()
        try:
            module.main()
        except Exception as exc:  # one broken benchmark must not hide the others' results
            failed.append(path.name)
            print(f"!! bench/{path.name} failed: {exc!r}", flush=True)
        print(f"== bench/{path.name}: {time.perf_counter() - start:.1f} s\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
