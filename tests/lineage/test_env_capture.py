"""The environment a call records (package versions) under an interrupt."""
import importlib.abc
import sys

import pytest

from scistack.codeid.env import _version_of


class _InterruptedImport(importlib.abc.MetaPathFinder):
    """Ctrl-C arriving while `importlib.metadata` is being imported."""

    def find_spec(self, name, path=None, target=None):
        if name == "importlib.metadata":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_finding_a_package_version_stays_a_keyboard_interrupt(monkeypatch):
    # (it had surfaced as an UnboundLocalError: the import sat inside the try whose except
    # clause names what it imports, so the user saw a scistack bug, not their Ctrl-C)
    for name in [n for n in sys.modules if n == "importlib.metadata" or n.startswith("importlib.metadata.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedImport(), *sys.meta_path])
    with pytest.raises(KeyboardInterrupt):
        _version_of("numpy")
