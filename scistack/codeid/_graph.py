"""Resolve what a function references *now*, and hash the reference graph deterministically.

Each project function or class is a node. Its shape (``_shapes``) lists the dotted names it
reads; here they are looked up in the function's globals and closure cells, step by step
through modules (``helpers.smooth``, ``pkg.mod.CONST``), and classified:

* project function or class  -> an edge to another node (``helper:`` / ``class:`` label);
* library function, class, module or C callable -> ``("pkg:mod.name", "dist==version")``;
* immutable constant -> ``("const:mod.NAME", digest of its canonical bytes)``;
* anything else -> ``("mutable:mod.NAME", "mutable")``: present, not hashed by value.

Every lookup is also recorded as a *guard* (namespace, name, object found), so a memoised
identity can later be re-validated with a few ``is`` comparisons instead of a new walk.

Digests come out of Tarjan's strongly connected components, sinks first. A node outside any
cycle hashes its label, own shape and sorted dependencies. The members of a cycle (mutual
recursion, or a function calling itself) name each other as ``"recursive"``; the component
is hashed as a whole from its sorted members, and each member's digest is (label, component
digest). Nothing depends on traversal order, so the digest of ``f`` is the same whether it was
computed first or as a helper of something else. Recursion depth grows with the longest chain
of distinct project functions, which is far below Python's recursion limit in practice.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from types import CellType, CodeType, FunctionType, MethodType, ModuleType

from scistack.codeid._ast_normalise import ImportSpec
from scistack.codeid._packages import is_project_module, package_version
from scistack.codeid._shapes import Shape, class_shape, function_shape
from scistack.codeid._source import own_methods
from scistack.codeid._values import encode_constant, hash_fields, value_digest

MISSING = object()


@dataclass(frozen=True, slots=True)
class Guards:
    """Every binding an identity was computed from, re-checked by object identity."""

    slots: tuple[tuple[dict, str, object], ...]
    codes: tuple[tuple[FunctionType, CodeType], ...]
    cells: tuple[tuple[CellType, object], ...]

    def valid(self) -> bool:
        """True while every namespace slot, ``__code__`` and closure cell holds the same object."""
        # Plain loops, not all(...): this runs on every cache hit and generators cost more.
        for namespace, name, value in self.slots:
            if namespace.get(name, MISSING) is not value:
                return False
        for fn, code in self.codes:
            if fn.__code__ is not code:
                return False
        for cell, value in self.cells:
            if cell_value(cell) is not value:
                return False
        return True


def cell_value(cell: CellType) -> object:
    """Contents of a closure cell, MISSING while it is still empty."""
    try:
        return cell.cell_contents
    except ValueError:
        return MISSING


def unwrap(value: object) -> object:
    """Follow staticmethod/classmethod/bound method and ``__wrapped__`` to the real function."""
    if isinstance(value, (staticmethod, classmethod, MethodType)):
        value = value.__func__
    if isinstance(value, FunctionType) or callable(getattr(value, "__wrapped__", None)):
        try:
            return inspect.unwrap(value)  # type: ignore[arg-type]
        except ValueError:  # a __wrapped__ cycle
            return value
    return value


@dataclass(frozen=True, slots=True)
class _Roots:
    """Where the first name of a dotted reference can come from, for one node."""

    namespace: dict
    cells: dict[str, CellType]
    imports: dict[str, ImportSpec]
    scope: str


@dataclass(eq=False, slots=True)
class Node:
    """A project function or class during one walk (mutable work state, never stored)."""

    obj: object
    label: str
    shape: Shape
    leaves: set[tuple[str, str]] = field(default_factory=set)
    targets: dict[tuple[str, int], object] = field(default_factory=dict)
    index: int = 0
    low: int = 0
    on_stack: bool = True
    digest: str = ""
    deps: tuple[tuple[str, str], ...] = ()


class Walk:
    """One identity computation over the graph reachable from a root function or class."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.stack: list[Node] = []
        self.slots: list[tuple[dict, str, object]] = []
        self.codes: list[tuple[FunctionType, CodeType]] = []
        self.cells: list[tuple[CellType, object]] = []

    def guards(self) -> Guards:
        """The bindings read so far, each once, for memo validation."""
        # Helpers share names (``np``, ``len``): check each binding once on the hot path.
        slots = {(id(ns), name): (ns, name, value) for ns, name, value in self.slots}
        codes = {id(fn): (fn, code) for fn, code in self.codes}
        cells = {id(cell): (cell, value) for cell, value in self.cells}
        return Guards(tuple(slots.values()), tuple(codes.values()), tuple(cells.values()))

    def visit(self, obj: FunctionType | type) -> Node:
        """Tarjan's strongconnect: build `obj`'s node, visit targets, seal finished components."""
        node = self._make_node(obj)
        self.nodes[id(obj)] = node
        node.index = node.low = len(self.nodes)
        self.stack.append(node)
        for target in list(node.targets.values()):
            child = self.nodes.get(id(target))
            if child is None:
                child = self.visit(target)  # type: ignore[arg-type]
                node.low = min(node.low, child.low)
            elif child.on_stack:
                node.low = min(node.low, child.index)
        if node.low == node.index:
            members: list[Node] = []
            while not members or members[-1] is not node:
                members.append(self.stack.pop())
                members[-1].on_stack = False
            self._seal(members)
        return node

    def _make_node(self, obj: FunctionType | type) -> Node:
        """Resolve every name `obj` reads into leaves and targets."""
        scope = f"{obj.__module__}.{obj.__qualname__}"
        if isinstance(obj, type):
            node = Node(obj, f"class:{scope}", class_shape(obj))
            own = own_methods(obj)
            module = sys.modules.get(obj.__module__)
            namespace = own[0].__globals__ if own else (vars(module) if module else {})
            cells = {
                n: c for fn in own for n, c in zip(fn.__code__.co_freevars, fn.__closure__ or ())
            }
            cells.pop("__class__", None)  # the implicit cell of super(): the class itself
        else:
            node = Node(obj, f"helper:{scope}", function_shape(obj))
            self.codes.append((obj, obj.__code__))
            namespace = obj.__globals__
            cells = dict(zip(obj.__code__.co_freevars, obj.__closure__ or ()))
        roots = _Roots(namespace, cells, dict(node.shape.imports), scope)
        for chain in node.shape.refs:
            self._resolve(node, chain, roots)
        if isinstance(obj, FunctionType):
            owner = self._owning_class(obj)
            if owner is not None:
                self.classify(node, scope, owner)
        return node

    def _resolve(self, node: Node, chain: tuple[str, ...], roots: _Roots) -> None:
        """Look a dotted name up (import, closure or global; then through modules); classify it."""
        root = chain[0]
        if root in roots.imports:
            where, value = self._imported(roots.imports[root], roots.namespace)
        elif root in roots.cells:
            value = cell_value(roots.cells[root])
            self.cells.append((roots.cells[root], value))
            where = f"{roots.scope}.<closure>.{root}"
        else:
            value = roots.namespace.get(root, MISSING)  # MISSING: a builtin, or not defined yet
            self.slots.append((roots.namespace, root, value))
            where = f"{roots.namespace.get('__name__')}.{root}"
        for attr in chain[1:]:
            if not isinstance(value, ModuleType):
                break
            members = vars(value)
            found = members.get(attr, MISSING)
            self.slots.append((members, attr, found))
            if found is MISSING:
                break
            where, value = f"{value.__name__}.{attr}", found
        if value is not MISSING:
            self.classify(node, where, value)

    def _imported(self, spec: ImportSpec, namespace: dict) -> tuple[str, object]:
        """What an import inside a function body binds, found (or imported) via sys.modules."""
        module_name, level, attr = spec
        try:
            name = importlib.util.resolve_name(
                "." * level + module_name, namespace.get("__package__")
            )
            module = sys.modules.get(name) or importlib.import_module(name)
            if attr is not None and not hasattr(module, attr):
                importlib.import_module(f"{name}.{attr}")  # ``from pkg import submodule``
        except (ImportError, ValueError):  # the call itself will fail the same way
            return f"{module_name}.{attr}", MISSING
        self.slots.append((sys.modules, name, module))
        if attr is None:
            return name, module
        value = vars(module).get(attr, MISSING)
        self.slots.append((vars(module), attr, value))
        return f"{name}.{attr}", value

    def _owning_class(self, fn: FunctionType) -> type | None:
        """The class a method is defined in (its source covers ``self.x()`` calls), if reachable."""
        parts = fn.__qualname__.split(".")
        if len(parts) < 2 or "<locals>" in parts:
            return None
        value = fn.__globals__.get(parts[0], MISSING)
        self.slots.append((fn.__globals__, parts[0], value))
        for part in parts[1:-1]:
            value = vars(value).get(part, MISSING) if isinstance(value, type) else MISSING
        return value if isinstance(value, type) and parts[-1] in vars(value) else None

    def classify(self, node: Node, where: str, value: object) -> None:
        """Turn one referenced object into a leaf dependency or an edge to another node."""
        if isinstance(value, MethodType) and not isinstance(value.__self__, (type, ModuleType)):
            node.leaves.add((f"mutable:{where}.__self__", "mutable"))  # instance state, not code
        if isinstance(value, ModuleType):
            if not is_project_module(value.__name__):
                node.leaves.add((f"pkg:{value.__name__}", package_version(value.__name__)))
            return
        if isinstance(value, functools.partial):
            self.classify(node, f"{where}.<partial>", value.func)
            for key, arg in [*enumerate(value.args), *sorted(value.keywords.items())]:
                self.classify(node, f"{where}.<partial>.{key}", arg)
            return
        target = unwrap(value)
        if isinstance(target, (FunctionType, type)):
            self._code_dependency(node, target)
            return
        encoded = encode_constant(value)
        if encoded is not None:
            node.leaves.add((f"const:{where}", value_digest(encoded)))
            return
        kind = type(value)
        if is_project_module(kind.__module__):
            self._code_dependency(node, kind)  # an instance of a project class: its class counts
        elif callable(value):
            module = getattr(value, "__module__", None) or kind.__module__
            name = getattr(value, "__qualname__", None) or getattr(
                value, "__name__", kind.__qualname__
            )
            node.leaves.add((f"pkg:{module}.{name}", package_version(module)))
            return
        node.leaves.add((f"mutable:{where}", "mutable"))

    def _code_dependency(self, node: Node, target: FunctionType | type) -> None:
        """Edge to a project function/class, or a versioned leaf for library code."""
        module = target.__module__
        if is_project_module(module):
            kind = "class" if isinstance(target, type) else "helper"
            node.targets[(f"{kind}:{module}.{target.__qualname__}", id(target))] = target
        else:
            node.leaves.add((f"pkg:{module}.{target.__qualname__}", package_version(module)))

    def _seal(self, members: list[Node]) -> None:
        """Compute digests of one finished strongly connected component."""
        inside = {id(m.obj) for m in members}
        deps: dict[int, tuple[tuple[str, str], ...]] = {}
        for m in members:
            edges = {
                (label, "recursive" if key in inside else self.nodes[key].digest)
                for (label, key) in m.targets
            }
            deps[id(m)] = tuple(sorted(m.leaves | edges))
        only = members[0]
        if len(members) == 1 and id(only.obj) not in {key for _, key in only.targets}:
            only.deps = deps[id(only)]
            only.digest = hash_fields("node", only.label, only.shape.own, *_flat(only.deps))
            return
        parts = sorted(("member", m.label, m.shape.own, *_flat(deps[id(m)])) for m in members)
        cycle = hash_fields("cycle", str(len(parts)), *(text for part in parts for text in part))
        for m in members:
            m.deps = tuple(sorted((*deps[id(m)], ("cycle", cycle))))
            m.digest = hash_fields("cyclic", m.label, cycle)


def _flat(deps: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Count-prefixed flat fields of (label, digest) pairs, unambiguous inside a hash."""
    return (str(len(deps)), *(text for pair in deps for text in pair))
