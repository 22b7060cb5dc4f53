"""A Jinja expression turned into one plain Python function: the fast path of `Expression.evaluate`.

Jinja builds a `Context` and runs a generator for every evaluation; with hundreds of rules per
event that costs more than the expressions themselves. For the expressions rules usually hold
(names, `.field`, `[key]`, comparisons, `and`/`or`/`not`, arithmetic, `~`, tests, plain filters)
this writes the same Python Jinja's code generator would write, calling the same sandboxed
`environment.getattr`/`getitem` (with `RuleEnvironment.getattr`'s dict and entity cases written
inline), so results and refusals are the same. Anything else (calls,
slices, filters that take a context) returns None and stays on Jinja. Jinja also stays the
authority for errors: the caller re-runs an expression on Jinja whenever the fast path raises.

    >>> fast = compile_fast(ENV.parse("{{ a.b > 1 }}").body[0].nodes[0], ENV)   # doctest: +SKIP
    >>> fast({"a": {"b": 2}})                                                    # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, nodes
from jinja2.utils import _PassArg, missing

from rules.context import LazyEntity

FastFunction = Callable[[Any], Any]

_COMPARE = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<=", "in": "in", "notin": "not in"}
_BINARY: dict[type[nodes.Node], str] = {
    nodes.Add: "+",
    nodes.Sub: "-",
    nodes.Mul: "*",
    nodes.Div: "/",
    nodes.FloorDiv: "//",
    nodes.Mod: "%",
    nodes.Pow: "**",
    nodes.And: "and",
    nodes.Or: "or",
}


class _Unsupported(Exception):
    """The expression uses something only Jinja's own runtime handles."""


class _Writer:
    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.names: dict[str, str] = {}
        self.namespace: dict[str, Any] = {}

    def _bind(self, value: Any) -> str:
        key = f"k_{len(self.namespace)}"
        self.namespace[key] = value
        return key

    def write(self, node: nodes.Node) -> str:
        if isinstance(node, nodes.Const):
            value = node.value
            if isinstance(value, float) and not math.isfinite(value):
                raise _Unsupported
            if value is None or isinstance(value, bool | int | float | str):
                return repr(value)
            return self._bind(value)
        if isinstance(node, nodes.Name) and node.ctx == "load":
            return self.names.setdefault(node.name, f"n_{len(self.names)}")
        if isinstance(node, nodes.Getattr) and node.ctx == "load":
            # RuleEnvironment.getattr's first two cases inlined: a dict or a loaded entity with the key.
            target, key, temp = self.write(node.node), repr(node.attr), f"t_{len(self.namespace)}"
            record = f"r_{len(self.namespace)}"
            self.namespace[temp] = self.namespace[record] = None  # reserves the names
            return (
                f"({temp}[{key}] if type({temp} := {target}) is dict and {key} in {temp} "
                f"else {record}[{key}] if type({temp}) is LazyEntity and ({record} := {temp}.value) is not None "
                f"and {key} in {record} else getattr_({temp}, {key}))"
            )
        if isinstance(node, nodes.Getitem) and node.ctx == "load" and not isinstance(node.arg, nodes.Slice):
            return f"getitem_({self.write(node.node)}, {self.write(node.arg)})"
        if isinstance(node, nodes.Compare):
            parts = [self.write(node.expr)]
            for operand in node.ops:
                parts.append(f"{_COMPARE[operand.op]} {self.write(operand.expr)}")
            return f"({' '.join(parts)})"
        if type(node) in _BINARY:
            assert isinstance(node, nodes.BinExpr)
            if node.operator in getattr(self.environment, "intercepted_binops", ()):
                # The sandbox's own check (rules/bounds.py), as Jinja's generated code calls it.
                return f"binop_({node.operator!r}, {self.write(node.left)}, {self.write(node.right)})"
            return f"({self.write(node.left)} {_BINARY[type(node)]} {self.write(node.right)})"
        if isinstance(node, nodes.Not):
            return f"(not {self.write(node.node)})"
        if isinstance(node, nodes.Neg | nodes.Pos):
            return f"({'-' if isinstance(node, nodes.Neg) else '+'}{self.write(node.node)})"
        if isinstance(node, nodes.Concat):
            return f"environment.concat(({''.join(self.write(n) + ', ' for n in node.nodes)}))"
        if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
            return f"({self.write(node.expr1)} if {self.write(node.test)} else {self.write(node.expr2)})"
        if isinstance(node, nodes.List):
            return f"[{', '.join(self.write(n) for n in node.items)}]"
        if isinstance(node, nodes.Tuple) and node.ctx == "load":
            return f"({''.join(self.write(n) + ', ' for n in node.items)})"
        if isinstance(node, nodes.Dict):
            return "{" + ", ".join(f"{self.write(p.key)}: {self.write(p.value)}" for p in node.items) + "}"
        if isinstance(node, nodes.Filter | nodes.Test) and node.node is not None:
            return self._filter_or_test(node)
        raise _Unsupported

    def _filter_or_test(self, node: nodes.Filter | nodes.Test) -> str:
        table = self.environment.filters if isinstance(node, nodes.Filter) else self.environment.tests
        func = table.get(node.name)
        if func is None or node.dyn_args is not None or node.dyn_kwargs is not None:
            raise _Unsupported
        # jinja2 types from_obj's argument as a callable TypeVar; its filter and test tables hold Any.
        pass_arg = _PassArg.from_obj(func)  # type: ignore[type-var]
        if pass_arg not in (None, _PassArg.environment):
            raise _Unsupported
        args = [self.write(node.node)] if node.node is not None else []
        if pass_arg is _PassArg.environment:
            args.insert(0, "environment")
        args += [self.write(a) for a in node.args]
        args += [f"{k.key}={self.write(k.value)}" for k in node.kwargs]
        return f"{self._bind(func)}({', '.join(args)})"


def compile_fast(expression: nodes.Expr, environment: Environment) -> FastFunction | None:
    """`f(context) -> value` for a parsed expression, or None when only Jinja can run it.

    `context` is a mapping holding every name (globals included), as `RuleContext` does.
    """
    # No constant folding, as for templates (rules/templating.py, ENV): a folded constant becomes a literal
    # in the source compiled here, and a literal list of a million items takes hundreds of MB to compile.
    writer = _Writer(environment)
    try:
        body = writer.write(expression)
    except (_Unsupported, KeyError):
        return None
    lines = ["def fast(context):", "    get = context.get"]
    for name, local in writer.names.items():
        lines.append(f"    {local} = get({name!r}, missing)")
        lines.append(f"    if {local} is missing: {local} = undefined(name={name!r})")
    lines.append(f"    return {body}")
    namespace: dict[str, Any] = {
        "missing": missing,
        "undefined": environment.undefined,
        "getattr_": environment.getattr,
        "getitem_": environment.getitem,
        "environment": environment,
        "binop_": lambda op, left, right: environment.call_binop(None, op, left, right),  # type: ignore[attr-defined]
        "LazyEntity": LazyEntity,
        **writer.namespace,
    }
    exec(compile("\n".join(lines), "<rule expression>", "exec"), namespace)
    fast: FastFunction = namespace["fast"]
    return fast
