"""Every project helper a function reaches, with its own source and dependencies.

A function's identity keeps only its *direct* dependencies (helper digests, constants). To
say *which* helper or constant changed two calls deep, and to show that helper's diff, a
call record also keeps one entry per reachable project function or class: its digest, the
oid of its normalised source and its own dependencies. `why` compares these trees.

The tree comes from the same graph walk as the identity (``_graph.Walk``), once per
identity digest and process; a tree whose root digest disagrees with the identity (the code
changed between the two walks) is dropped rather than recorded wrong.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field
from types import CodeType, FunctionType
from typing import Any, Callable

from scistack.codeid._graph import unwrap, walk_root
from scistack.codeid._packages import is_project_module
from scistack.codeid._values import holds_in_project
from scistack.codeid.identity import FunctionIdentity

_TREES: dict[str, tuple[CodeNode, ...]] = {}
_MAX_TREES = 4096


@dataclass(frozen=True, slots=True)
class CodeNode:
    """One reachable project function or class (``helper:mod.name`` / ``class:mod.Name``)."""

    label: str
    digest: str
    source: str | None
    deps: tuple[tuple[str, str], ...]
    file: str | None
    obj: Any = field(default=None, compare=False, repr=False)  # the live function or class


def code_tree(fn: Callable[..., Any], identity: FunctionIdentity) -> tuple[CodeNode, ...]:
    """The helpers and classes `fn` reaches (itself excluded); () for pinned or library code."""
    cached = _TREES.get(identity.digest)
    if cached is not None:
        return cached
    real = unwrap(fn.func if isinstance(fn, functools.partial) else fn)
    module = getattr(real, "__module__", None)
    if (
        identity.pinned_version is not None
        or not isinstance(real, (FunctionType, type))
        or not is_project_module(module)
    ):
        return ()
    walker, root, digest, _ = walk_root(fn.func if isinstance(fn, functools.partial) else fn, real)
    if digest != identity.code_only and not isinstance(fn, functools.partial):
        return ()  # the code changed between the two walks: record nothing rather than a lie
    tree = tuple(
        sorted((_node(n) for n in walker.nodes.values() if n is not root), key=lambda n: n.label)
    )
    if len(_TREES) >= _MAX_TREES:
        _TREES.clear()
    _TREES[identity.digest] = tree
    return tree


def source_files(fn: Callable[..., Any], tree: tuple[CodeNode, ...]) -> list[str]:
    """The files holding `fn` and every helper in its tree (for the git environment)."""
    files = {n.file for n in tree if n.file}
    own = _file_of(unwrap(fn.func if isinstance(fn, functools.partial) else fn))
    return sorted(files | ({own} if own else set()))


def tree_record(tree: tuple[CodeNode, ...], put_code: Callable[[str], str]) -> dict[str, Any]:
    """The call record's ``helpers`` entry: label -> identity, code oid, own dependencies."""
    return {
        n.label: {
            "identity": n.digest,
            "code": put_code(n.source) if n.source is not None else None,
            "deps": [list(d) for d in n.deps],
        }
        for n in tree
    }


def constant_values(identity: FunctionIdentity, tree: tuple[CodeNode, ...]) -> dict[str, str]:
    """A short repr of every constant and module data value the tree reads (`why`: "2 -> 3")."""
    out = {}
    for label, _ in (*identity.deps, *(d for n in tree for d in n.deps)):
        if label.startswith("const:") and label not in out:
            value = _resolve(label[len("const:") :])
            if value is not _UNRESOLVED:
                out[label] = short_repr(value)
    for label, value in identity.data:
        out[f"data:{label}"] = short_repr(value)
    for label, value in identity.shown:  # closure cells, defaults, partial arguments
        if holds_in_project(value):
            out[label] = short_repr(value)  # (a path in the project: as recorded, not as here)
        else:
            out.setdefault(label, short_repr(value))
    return out


def short_repr(value: Any) -> str:
    """A repr of at most 80 characters (``why`` shows old -> new values)."""
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break recording
        text = f"<{type(value).__name__}: repr failed: {exc}>"
    text = re.sub(r" at 0x[0-9a-f]+", "", " ".join(text.split()))
    return text if len(text) <= 80 else text[:79] + "…"


_UNRESOLVED = object()


def _resolve(dotted: str) -> Any:
    """`pkg.mod.NAME` through the longest imported module prefix; closure cells are not."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is not None:
            value: Any = module
            for attr in parts[cut:]:
                value = getattr(value, attr, _UNRESOLVED)
                if value is _UNRESOLVED:
                    break
            return value
    return _UNRESOLVED


def _node(node: Any) -> CodeNode:
    return CodeNode(
        node.label, node.digest, node.shape.source, node.deps, _file_of(node.obj), node.obj
    )


def _file_of(obj: Any) -> str | None:
    """The file `obj`'s code was read from: its code object's, else its module's."""
    code = getattr(obj, "__code__", None)  # (a class's may be a descriptor: Cython's function type)
    if isinstance(code, CodeType):
        return code.co_filename
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    return getattr(module, "__file__", None)
