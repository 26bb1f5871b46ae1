"""The environment a call records (package versions) under an interrupt."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Ctrl-C arriving while `importlib.metadata` is being imported, in a fresh interpreter (the
# suite's own has imported it, and other tests' import hooks may stand in the way)
PROBE = textwrap.dedent("""
    import importlib.abc, sys
    for name in [n for n in sys.modules if n == "importlib.metadata" or n.startswith("importlib.metadata.")]:
        del sys.modules[name]
    class Interrupted(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "importlib.metadata":
                raise KeyboardInterrupt
    from scistack.codeid.env import _version_of
    sys.meta_path.insert(0, Interrupted())
    try:
        _version_of("numpy")
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
    except BaseException as exc:
        print(type(exc).__name__)
    else:
        print("nothing raised")
""")


def test_ctrl_c_while_finding_a_package_version_stays_a_keyboard_interrupt():
    # (it had surfaced as an UnboundLocalError: the import sat inside the try whose except
    # clause names what it imports, so the user saw a scistack bug, not their Ctrl-C)
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.stdout.strip() == "KeyboardInterrupt", done.stderr
