"""Rule conditions: a small, safe expression language compiled to Python functions.

    txn.amount > params.no_pin_limit and not txn.pin_present
    card.token in lists.blacklisted_cards
    'relay-suspected' in txn.flags or time.hour in (1, 2, 3)

Names are dotted: `params.*` and `lists.*` are constants of the rules file, folded in
at compile time; anything else must be a variable of the catalogue (`variables.py`).
Allowed: and/or/not, comparisons (== != < <= > >= in, not in), + - * / // %, unary
minus, `x if c else y`, literals and tuples/lists/sets of literals. Nothing else — no
calls, no attribute access on values, no subscripts — so a rules file cannot run code.

Once checked, each variable is replaced by the catalogue's own expression for it (e.g.
`txn.amount` by `f.amount`), and the conditions compile to one function of the facts
`f` and the counter snapshot `s`: no dictionary of values is built per decision.
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping


class ExpressionError(ValueError):
    """A condition that is not valid; the message names the offending part."""


_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp, ast.Add,
    ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
    ast.GtE, ast.In, ast.NotIn, ast.IfExp, ast.Constant, ast.Name, ast.Attribute, ast.Load, ast.Tuple, ast.List,
    ast.Set,
)
_CONSTANT_SPACES = ("params", "lists")


@dataclass(frozen=True)
class Condition:
    source: str
    variables: tuple[str, ...]  # the catalogue variables it reads, in order of appearance
    constants: tuple[tuple[str, Any], ...]  # the params/lists it uses, for `risk explain`
    tree: ast.expr  # the checked body, variables replaced by their catalogue expressions
    fn: Callable[[Any, Any], Any]  # (facts, snapshot) -> value


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _literal(value: Any) -> Any:
    """A constant usable in compiled code: lists become frozensets (membership tests)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return frozenset(value)
    return value


class _Rewriter(ast.NodeTransformer):
    def __init__(self, variables: Mapping[str, str], constants: Mapping[str, Any]):
        self.known = variables
        self.constants = constants
        self.used: dict[str, None] = {}
        self.used_constants: dict[str, Any] = {}

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(f"{type(node).__name__.lower()} is not allowed in a condition")
        return super().generic_visit(node)

    def _name(self, node: ast.AST) -> ast.AST:
        name = dotted(node)
        if name is None:
            raise ExpressionError("attributes may only follow a name (e.g. card.token)")
        if name.split(".", 1)[0] in _CONSTANT_SPACES:
            if name not in self.constants:
                raise ExpressionError(f"unknown constant {name!r} (define it in [params] or [lists])")
            value = _literal(self.constants[name])
            self.used_constants[name] = self.constants[name]
            return ast.copy_location(ast.Constant(value), node)
        if name not in self.known:
            raise ExpressionError(f"unknown variable {name!r}")
        self.used[name] = None
        # the catalogue's expression, not visited: it is ours and may call our helpers
        expr = ast.copy_location(ast.parse(self.known[name], mode="eval").body, node)
        expr.variable = name  # for `compile_all`, which reads a variable many rules share once
        return expr

    visit_Name = _name
    visit_Attribute = _name

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise ExpressionError(f"literal {node.value!r} is not allowed")
        return node

    def _collection(self, node: ast.AST) -> ast.AST:
        items = [self.visit(e) for e in node.elts]
        if not all(isinstance(e, ast.Constant) for e in items):
            raise ExpressionError("tuples, lists and sets may hold only literals and constants")
        values = [e.value for e in items]
        if any(isinstance(v, frozenset) for v in values):
            raise ExpressionError("a list constant cannot sit inside another collection")
        return ast.copy_location(ast.Constant(frozenset(values) if isinstance(node, ast.Set) else tuple(values)),
                                 node)

    visit_Tuple = visit_List = visit_Set = _collection


def compile_condition(source: str, variables: Mapping[str, str], constants: Mapping[str, Any],
                      namespace: Mapping[str, Any], name: str = "<rule>") -> Condition:
    """`variables`: name -> expression over `f` and `s`; `namespace`: what those may call."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("condition is empty")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error at column {exc.offset}: {exc.msg}") from None
    rewriter = _Rewriter(variables, constants)
    body = rewriter.visit(tree).body
    return Condition(source, tuple(rewriter.used), tuple(rewriter.used_constants.items()), body,
                     _function([ast.Return(body)], namespace, name))


def compile_all(bodies: list[ast.expr], namespace: Mapping[str, Any],
                name: str = "<rules>") -> Callable[[Any, Any], list[int]]:
    """One function returning the positions of the conditions that hold: one call per
    decision instead of one per rule, and no loop over the rules that did not fire.

    A variable that two or more conditions read is read once, into a local, before them
    (e.g. `card.scheme` calls a helper: four rules on schemes used to call it four times).
    If one of those reads fails, the whole call fails and the engine falls back to the
    rules one by one, as it would for any failing condition."""
    bodies = [copy.deepcopy(b) for b in bodies]  # the rules' own trees stay as they are
    uses: dict[str, list[ast.expr]] = {}
    for body in bodies:
        _variable_nodes(body, uses)
    shared = {var: f"_v{i}" for i, var in enumerate(v for v, nodes in uses.items() if len(nodes) > 1)}
    body: list[ast.stmt] = [ast.Assign([ast.Name(local, ast.Store())], uses[var][0]) for var, local in shared.items()]
    bodies = [_SharedReads(shared).visit(b) for b in bodies]
    hit = ast.Name("hits", ast.Load())
    body.append(ast.Assign([ast.Name("hits", ast.Store())], ast.List([], ast.Load())))
    for i, cond in enumerate(bodies):
        append = ast.Call(ast.Attribute(hit, "append", ast.Load()), [ast.Constant(i)], [])
        body.append(ast.If(cond, [ast.Expr(append)], []))
    body.append(ast.Return(hit))
    return _function(body, namespace, name)


def _variable_nodes(node: ast.AST, out: dict[str, list[ast.expr]]) -> None:
    var = getattr(node, "variable", None)
    if var is not None:
        out.setdefault(var, []).append(node)
        return
    for child in ast.iter_child_nodes(node):
        _variable_nodes(child, out)


class _SharedReads(ast.NodeTransformer):
    def __init__(self, shared: Mapping[str, str]):
        self.shared = shared

    def visit(self, node: ast.AST) -> ast.AST:
        local = self.shared.get(getattr(node, "variable", None))
        if local is not None:
            return ast.copy_location(ast.Name(local, ast.Load()), node)
        return self.generic_visit(node)


def _function(body: list[ast.stmt], namespace: Mapping[str, Any], name: str) -> Callable:
    args = ast.arguments(posonlyargs=[], args=[ast.arg("f"), ast.arg("s")], kwonlyargs=[], kw_defaults=[],
                         defaults=[])
    module = ast.fix_missing_locations(ast.Module([ast.FunctionDef("condition", args, body, [], None)], []))
    scope: dict[str, Any] = {**namespace, "__builtins__": {}}
    exec(compile(module, name, "exec"), scope)  # noqa: S102 - a checked tree: literals, operators, our helpers
    return scope["condition"]
