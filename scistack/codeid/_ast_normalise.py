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
    _strip_hints(node, in_function=False)
    for sub in ast.walk(node):
        if isinstance(sub, _DEFS) and sub.body and _is_docstring(sub.body[0]):
            sub.body = sub.body[1:] or [ast.Pass()]
    return node


def _strip_hints(node: ast.AST, *, in_function: bool) -> None:
    """Drop type hints of functions (parameters, return, annotated locals): they never run.

    Annotations in a class body stay: there they define fields (``@dataclass``). An annotated
    local keeps its statement with a ``None`` annotation, so the name stays local.
    """
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                arg.annotation = None
                arg.type_comment = None
        if not isinstance(node, ast.Lambda):
            node.returns = None
            node.type_comment = None
        in_function = True
    elif isinstance(node, ast.ClassDef):
        in_function = False
    for name, value in ast.iter_fields(node):
        if isinstance(value, list):
            value[:] = [_unannotated(item) if in_function else item for item in value]
    for child in ast.iter_child_nodes(node):
        _strip_hints(child, in_function=in_function)


def _unannotated(stmt: object) -> object:
    """``y: T = v`` in a function body is ``y = v``; a bare ``y: T`` keeps only its name."""
    if not isinstance(stmt, ast.AnnAssign):
        return stmt
    if stmt.value is None:
        new: ast.stmt = ast.AnnAssign(stmt.target, ast.Constant(None), None, stmt.simple)
    else:
        new = ast.Assign([stmt.target], stmt.value, None)
    return ast.copy_location(new, stmt)


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


ANY = "*"  # the last name of a chain read by ``getattr(base, computed)``: any member of base


class _ChainCollector(ast.NodeVisitor):
    """Collects maximal Name/Attribute chains."""

    def __init__(self, skip_function_bodies: bool) -> None:
        self.chains: set[tuple[str, ...]] = set()
        self.skip_function_bodies = skip_function_bodies

    def visit_Name(self, node: ast.Name) -> None:
        self.chains.add((node.id,))

    def visit_Call(self, node: ast.Call) -> None:
        # getattr(module, "name") with a literal name reads module.name; with a computed
        # name, any of its members: (module, ANY) (`_graph` follows them all for a module)
        func, args = node.func, node.args
        if isinstance(func, ast.Name) and func.id == "getattr" and len(args) >= 2:
            base = _chain_of(args[0])
            literal = isinstance(args[1], ast.Constant) and isinstance(args[1].value, str)
            if base is None:
                pass
            elif literal and args[1].value.isidentifier():
                self.chains.add((*base, args[1].value))
            elif not literal:
                self.chains.add((*base, ANY))
        self.generic_visit(node)

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


# Methods that change their object in place: calling one makes the object state, not input.
MUTATORS = frozenset({
    "append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "setdefault",
    "add", "discard", "sort", "reverse", "appendleft", "extendleft", "popleft", "rotate",
    "fill", "resize", "put", "put_nowait", "__setitem__", "__delitem__", "__iadd__",
    "difference_update", "intersection_update", "symmetric_difference_update", "setflags",
})


def written_names(node: ast.AST) -> tuple[frozenset[str], frozenset[tuple[str, ...]]]:
    """What `node` writes: names declared ``global`` and assigned, and mutated objects' chains.

    A mutated object is the base of an item or attribute assignment, ``del`` or augmented
    assignment (``CACHE[k] = v``, ``COUNT[0] += 1``, ``cfg.x = 1``) or the receiver of a
    mutating method call (``CALLS.append(x)``). Such objects are a function's *state*: they
    must not enter its identity, or a call counter would defeat the cache.
    """
    declared: set[str] = set()
    assigned: set[str] = set()
    mutated: set[tuple[str, ...]] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Global):
            declared.update(sub.names)
        elif isinstance(sub, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = sub.targets if isinstance(sub, (ast.Assign, ast.Delete)) else [sub.target]
            for target in targets:
                for leaf in _target_leaves(target):
                    if isinstance(leaf, ast.Name):
                        assigned.add(leaf.id)
                    else:
                        chain = _base_chain(leaf)
                        if chain:
                            mutated.add(chain)
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
            if sub.func.attr in MUTATORS:
                chain = _chain_of(sub.func.value)
                if chain:
                    mutated.add(chain)
    return frozenset(declared & assigned | declared), frozenset(mutated)


EnvKey = "str | tuple[str, ...] | None"  # a literal name, the dotted name holding it, or neither
EnvRead = tuple[tuple[str, ...], str, "str | tuple[str, ...] | None"]  # (base chain, kind, key)


def environment_reads(node: ast.AST) -> tuple[frozenset[EnvRead], frozenset[tuple[str, ...]]]:
    """The keyed reads `node` makes of any dotted name, and the dotted names read *only* so.

    A keyed read is ``B[k]``, ``k in B``, ``B.get(k, ...)`` (kind ``"item"``: `_graph` keys
    it when ``B`` is ``os.environ``, under whatever name: ``ENV = os.environ``) or ``B(k,
    ...)`` (kind ``"call"``: when ``B`` is ``os.getenv``, under whatever name).
    Its key is the literal string, or the dotted name of the argument (``os.getenv(NAME)``:
    resolved to the module constant's value), or None (an expression or a local: the
    variable read is not known). A name that is ``os.environ`` (or ``os.getenv``) and is also
    read any other way (iterated, copied, passed on) reads the whole environment."""
    parents: dict[int, ast.AST] = {}
    for sub in ast.walk(node):
        for child in ast.iter_child_nodes(sub):
            parents[id(child)] = sub
    reads: set[EnvRead] = set()
    keyed: set[int] = set()  # ids of the outermost chain nodes in a keyed position
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript):
            base = _plain_chain(sub.value)
            if base is not None:
                if isinstance(sub.ctx, ast.Load):  # (a write or del: that variable, no read)
                    reads.add((base, "item", _env_key(sub.slice)))
                keyed.add(id(sub.value))
        elif isinstance(sub, ast.Compare) and len(sub.ops) == 1 and isinstance(sub.ops[0], (ast.In, ast.NotIn)):
            base = _plain_chain(sub.comparators[0])
            if base is not None:
                reads.add((base, "item", _env_key(sub.left)))
                keyed.add(id(sub.comparators[0]))
        elif isinstance(sub, ast.Call) and sub.args and not isinstance(sub.args[0], ast.Starred):
            func = _plain_chain(sub.func)
            if func is None:
                continue
            key = _env_key(sub.args[0])
            if func[-1] == "get" and len(func) > 1:
                reads.add((func[:-1], "item", key))
            reads.add((func, "call", key))
            keyed.add(id(sub.func))
    occurrences: dict[tuple[str, ...], bool] = {}
    for sub in ast.walk(node):
        if not isinstance(sub, (ast.Name, ast.Attribute)):
            continue
        outer = parents.get(id(sub))
        if isinstance(outer, ast.Attribute) and outer.value is sub:
            continue  # (inside a longer chain)
        chain = _plain_chain(sub)
        if chain is not None:
            occurrences[chain] = occurrences.get(chain, True) and id(sub) in keyed
    return frozenset(reads), frozenset(chain for chain, only in occurrences.items() if only)


def _env_key(expr: ast.expr) -> str | tuple[str, ...] | None:
    """The literal string of an environment read, else the dotted name holding it, else None."""
    if isinstance(expr, ast.Constant):
        return expr.value if isinstance(expr.value, str) else None
    return _plain_chain(expr)


def _plain_chain(expr: ast.expr) -> tuple[str, ...] | None:
    """``a.b.c`` -> ("a", "b", "c"); None for anything else (a call, a subscript)."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    return (expr.id, *reversed(parts)) if isinstance(expr, ast.Name) else None


def _target_leaves(target: ast.expr) -> list[ast.expr]:
    """Assignment targets, with tuple/list unpacking and starred targets flattened."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return [leaf for elt in target.elts for leaf in _target_leaves(elt)]
    if isinstance(target, ast.Starred):
        return _target_leaves(target.value)
    return [target]


def _base_chain(target: ast.expr) -> tuple[str, ...] | None:
    """``X[a][b]`` / ``X.y[k]`` / ``mod.X.attr``: the chain of the object that is changed."""
    current = target
    while isinstance(current, ast.Subscript):
        current = current.value
    if isinstance(current, ast.Attribute) and current is target:
        return _chain_of(current.value)  # ``obj.attr = v`` changes obj
    return _chain_of(current)


def _chain_of(expr: ast.expr) -> tuple[str, ...] | None:
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    while isinstance(expr, ast.Subscript):  # CACHE[k].append(v): CACHE's content changes
        parts.clear()
        expr = expr.value
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
    if isinstance(expr, ast.Name):
        return (expr.id, *reversed(parts))
    return None
