"""Normalise a function's syntax tree so that only edits that can change behaviour count.

Parsing already drops comments, blank lines and formatting. On top of that we remove
docstrings (of the function and of every nested def or class) and the decorator lines of
the function itself: ``@lineage_fcn`` or ``@thunk`` say how a function is *run*, not what
it computes. Decorators on nested defs and on classes are kept, because there they are
part of the computation (``@dataclass(frozen=True)`` changes what a class is).

Everything else counts, including local variable names: a renamed local is an edit. Deciding
that two trees are "the same up to renaming" needs scope analysis that is easy to get subtly
wrong, and a wrong "same" would serve a stale result; a needless recompute is the cheaper
mistake. The tree is serialised with ``ast.dump(..., include_attributes=False)``, so line and
column numbers never count. ``ast.dump`` output may change between Python minor versions,
which then changes identities once: the same trade-off as bytecode-based tools.
"""

from __future__ import annotations

import ast
import copy

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def normalise(node: ast.AST, *, strip_decorators: bool) -> ast.AST:
    """Return a copy of `node` without docstrings (and without its own decorators if asked)."""
    node = copy.deepcopy(node)
    if strip_decorators and isinstance(node, _DEFS):
        node.decorator_list = []
    for sub in ast.walk(node):
        if isinstance(sub, _DEFS) and sub.body and _is_docstring(sub.body[0]):
            sub.body = sub.body[1:] or [ast.Pass()]
    return node


def _is_docstring(stmt: ast.stmt) -> bool:
    """True for a bare string-constant expression statement."""
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def dump(node: ast.AST) -> str:
    """Canonical text of a normalised tree: field names, no positions."""
    return ast.dump(node, annotate_fields=True, include_attributes=False)


def unparse(node: ast.AST) -> str:
    """Readable normalised source: what the ``code`` object stores."""
    return ast.unparse(node)


def name_chains(node: ast.AST, *, skip_function_bodies: bool = False) -> set[tuple[str, ...]]:
    """Dotted names read in `node`: ``x`` -> ``("x",)``, ``mod.sub.fn`` -> ``("mod", "sub", "fn")``.

    Only the longest chain is reported (``helpers.smooth`` and not also ``helpers``), because
    resolving it step by step reaches the same objects. With `skip_function_bodies` the
    bodies of defs and lambdas are not entered: what is left is what a class body evaluates.
    """
    visitor = _ChainCollector(skip_function_bodies)
    visitor.visit(node)
    return visitor.chains


ImportSpec = tuple[str, int, "str | None"]  # (module, relative level, imported attribute)


def local_imports(node: ast.AST) -> dict[str, ImportSpec]:
    """Names bound by import statements *inside* `node` (``import x as y``, ``from . import z``).

    Such names are locals, invisible in globals, yet they name modules and functions whose
    code counts; the caller resolves them through ``sys.modules`` instead.
    """
    found: dict[str, ImportSpec] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            for alias in sub.names:
                module = alias.name if alias.asname else alias.name.partition(".")[0]
                found[alias.asname or module] = (module, 0, None)
        elif isinstance(sub, ast.ImportFrom):
            for alias in sub.names:
                if alias.name != "*":
                    found[alias.asname or alias.name] = (sub.module or "", sub.level, alias.name)
    return found


class _ChainCollector(ast.NodeVisitor):
    """Collects maximal Name/Attribute chains."""

    def __init__(self, skip_function_bodies: bool) -> None:
        self.chains: set[tuple[str, ...]] = set()
        self.skip_function_bodies = skip_function_bodies

    def visit_Name(self, node: ast.Name) -> None:
        self.chains.add((node.id,))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts: list[str] = []
        current: ast.expr = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name):
            self.chains.add((current.id, *reversed(parts)))
        else:
            self.visit(current)

    def generic_visit(self, node: ast.AST) -> None:
        if self.skip_function_bodies and isinstance(node, _FUNCTIONS):
            # Decorators, defaults and annotations run in the enclosing (class) scope.
            for child in (
                *getattr(node, "decorator_list", ()),
                node.args,
                getattr(node, "returns", None),
            ):
                if child is not None:
                    self.visit(child)
            return
        super().generic_visit(node)
