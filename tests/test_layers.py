"""Layers import only downward (docs/architecture.md draws the same map)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scistack"

# lowest first; a unit may import itself and the units of lower layers, nothing else
LAYERS = [
    {"errors"},
    {"version", "address", "summary", "htmlrepr", "gcpause", "lazy_import", "_atomic"},
    {"objects"},
    {"records"},
    {"index", "inline"},
    {"database", "codeid", "retention", "where"},
    {"lineage", "gc", "selection", "sync_after_exit", "tables"},
    {"variables", "foreach", "fsck", "dictdb", "ingest"},
    {"matlab_bridge", "report", "join", "share"},
    {"ui", "export"},
    {"cli", "__init__"},
    {"__main__"},
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "scistack":
            if node.module == "scistack":
                found |= {a.name if a.name in LEVEL else "__init__" for a in node.names}
            else:
                found.add(_unit(node.module))
        elif isinstance(node, ast.Import):
            found |= {_unit(a.name) for a in node.names if a.name.startswith("scistack.")}
    return found


def test_every_module_belongs_to_a_layer():
    units = {p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py")}
    assert units <= set(LEVEL), f"add {sorted(units - set(LEVEL))} to LAYERS and docs/architecture.md"


def test_layers_import_only_downward():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        unit = path.stem if path.parent == PACKAGE else path.relative_to(PACKAGE).parts[0]
        for target in _imports(path) - {unit}:
            if LEVEL[target] >= LEVEL[unit]:
                wrong.append(f"{path.relative_to(PACKAGE)} ({unit}) imports {target}")
    assert wrong == []
