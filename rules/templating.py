"""Jinja2 in a sandbox: compile templates and expressions once, render params to plain JSON values."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from fieldrelay.events import ChangeEvent
from rules import bounds
from rules.calls import ActionCall
from rules.context import LazyEntity, LinkLookup, LinkQuery, Placeholder, RuleContext, redact
from rules.errors import TemplateError, TemplateSecurityError, format_path
from rules.helpers import HELPERS
from rules.pyexpr import FastFunction, compile_fast
from rules.secrets import secret_reader

_NATIVE = re.compile(r"^\{\{-?(.*?)-?\}\}$", re.DOTALL)


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, except that `~` goes through `environment.concat`, which sizes it first,
    and that only a template's own text is written into the generated source as it is."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        # An output expression is computed when rendered, never folded into a literal of the generated
        # source: the compiled template would hold it for as long as its rule is loaded.
        if not isinstance(node, nodes.TemplateData):
            raise nodes.Impossible()
        const: str = super()._output_child_to_const(node, frame, finalize)
        return const

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class RuleEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, immutable so one rule cannot change what the next sees (`vars.clear()`).

    Mapping keys win over methods, so a field named `items` or `values` reads the field, and a
    missing key gets an error that lists the keys that do exist. What a template may build is
    bounded (rules/bounds.py): the operators that can grow a value are intercepted, so they are
    neither folded at compile time nor run unchecked.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return bounds.binop(operator, left, right, self.binop_table)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        bounds.check_call(__obj, args, kwargs)
        return bounds.check_size(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> Any:
            bounds.check_format(fmt, args, kwargs)
            return bounds.check_size(wrapped(*args, **kwargs))

        return checked

    def concat(self, values: Any) -> str:
        return bounds.concat(values)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Plain dicts and loaded entities first: most attribute reads in rules are record fields.
        kind = type(obj)
        if kind is dict:
            if attribute in obj:
                return obj[attribute]
        elif kind is LazyEntity:
            record = obj.value
            if record is not None and attribute in record:
                return record[attribute]
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            if hasattr(obj, attribute):
                return super().getattr(obj, attribute)  # a method such as .get(), or the sandbox's refusal
            if isinstance(obj, LazyEntity) and obj.value is None:
                hint = f"the entity could not be loaded, so it has no field {attribute!r}"
            else:
                shown = ", ".join(sorted(map(str, obj))[:15]) or "none"
                hint = f"no field {attribute!r} (fields here: {shown})"
            return self.undefined(obj=obj, name=attribute, hint=hint)
        return super().getattr(obj, attribute)


ENV = RuleEnvironment(
    # No constant folding when templates compile: a folded constant becomes a literal in the generated
    # source, and compiling a literal list of a million items took 600 MB that the process kept (the
    # console's rules page, a worker's reload). Constants are still checked at load (`_check_constants`),
    # and computed, within the bounds, when rendered.
    optimized=False,
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    finalize=lambda value: bounds.check_logical_size(value, "an output value"),
)
ENV.filters.update(HELPERS)
ENV.filters = {name: bounds.bounded_filter(name, func) for name, func in ENV.filters.items()}
ENV.globals.update(HELPERS)
ENV.globals["range"] = bounds.BoundedRange
del ENV.globals["lipsum"]  # lipsum(n=10**6) writes paragraphs by the million


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


_CHECKED_ROOTS = ("steps", "vars", "event", "env")
Refs = frozenset[tuple[str, str]]


TOO_DEEP = "the template is nested too deeply"


class _NotConstant(Exception):
    pass


def _constant(node: nodes.Node, memo: dict[int, Any]) -> Any:
    """The value of a constant part of a template, computed through the same bounds as a render.

    Jinja folds constants itself when it compiles; the operators that can grow a value are
    intercepted, so it no longer folds those, and this finds a constant bomb at load instead.
    """
    key = id(node)
    if key in memo:
        if memo[key] is _NotConstant:
            raise _NotConstant
        return memo[key]
    try:
        if isinstance(node, nodes.Const):
            value = node.value
        elif isinstance(node, nodes.BinExpr):
            left, right = _constant(node.left, memo), _constant(node.right, memo)
            if node.operator in ENV.intercepted_binops:
                value = ENV.call_binop(None, node.operator, left, right)
            else:
                value = ENV.binop_table[node.operator](left, right)
        elif isinstance(node, nodes.UnaryExpr):
            value = ENV.unop_table[node.operator](_constant(node.node, memo))
        elif isinstance(node, nodes.Concat):
            value = ENV.concat(_constant(n, memo) for n in node.nodes)
        elif isinstance(node, nodes.List | nodes.Tuple):
            value = [_constant(n, memo) for n in node.items]
        elif isinstance(node, nodes.Filter) and node.node is not None and node.name in ENV.filters:
            if node.kwargs or node.dyn_args or node.dyn_kwargs:
                raise _NotConstant
            func = ENV.filters[node.name]
            if getattr(func, "jinja_pass_arg", None) is not None:
                raise _NotConstant
            value = func(_constant(node.node, memo), *(_constant(a, memo) for a in node.args))
        else:
            raise _NotConstant
    except SecurityError:
        raise
    except Exception:  # a division by zero and the like: the render reports it, if it ever runs
        memo[key] = _NotConstant
        raise _NotConstant from None
    memo[key] = value
    return value


def _check_constants(tree: nodes.Node) -> None:
    """Refuse, at load, a constant that is too big to build (`{{ 'a' * 10**9 }}`)."""
    memo: dict[int, Any] = {}
    for node in tree.find_all((nodes.BinExpr, nodes.Concat, nodes.Filter)):
        try:
            _constant(node, memo)
        except _NotConstant:
            continue
        except SecurityError as exc:
            raise TemplateSecurityError("", str(exc)) from None


def _check_ast(tree: nodes.Node) -> Refs:
    """Refuse sandbox escapes and constant bombs at load time; return the (`steps`|`vars`|`event`, key)
    pairs read."""
    _check_constants(tree)
    refs: set[tuple[str, str]] = set()
    # find_all walks outside-in; the innermost offender (`__class__` in `''.__class__.__mro__`)
    # is the one the author wrote first, so report that one.
    for node in reversed(list(tree.find_all((nodes.Getattr, nodes.Getitem)))):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise TemplateSecurityError("", f"access to {name!r} is not allowed in rule templates")
        target = node.node
        if isinstance(target, nodes.Name) and target.name in _CHECKED_ROOTS and isinstance(name, str):
            refs.add((target.name, name))
    # `secret('NAME')` is checked against FIELDRELAY_RULES_ENV at load, like `!secret NAME`: its name must be there.
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == "secret":
            arg = call.args[0] if len(call.args) == 1 else None
            plain = not (call.kwargs or call.dyn_args or call.dyn_kwargs)
            if not (plain and isinstance(arg, nodes.Const) and isinstance(arg.value, str)):
                raise TemplateSecurityError(
                    "", "secret() takes the variable's name in quotes, like secret('CHAT_TOKEN')"
                )
            refs.add(("secret", arg.value))
    return frozenset(refs)


def _syntax(exc: jinja2.TemplateSyntaxError) -> TemplateError:
    return TemplateError("", f"template syntax error: {exc.message}")


@dataclass(frozen=True)
class Expression:
    """A compiled `if` expression; `left` is the left-hand side of a simple comparison, for reasons."""

    source: str
    names: frozenset[str]
    refs: Refs
    left: Expression | None = field(repr=False)
    template: jinja2.Template = field(repr=False)
    fast: FastFunction | None = field(default=None, repr=False, compare=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        if self.fast is not None and isinstance(context, RuleContext):
            try:
                result = self.fast(context)
            except Exception:  # Jinja's own run below raises the error ops should read
                pass
            else:
                if not isinstance(result, jinja2.Undefined):
                    return result
        if isinstance(context, RuleContext):
            ctx = self.template.new_context(context, shared=True)
        else:
            ctx = self.template.new_context(dict(context))
        for _ in self.template.root_render_func(ctx):
            pass
        result = ctx.vars["result"]
        if isinstance(result, jinja2.Undefined):
            str(result)  # StrictUndefined raises here with its message
        return result

    def truth(self, context: Mapping[str, Any]) -> bool:
        """Whether the expression holds; one that raises does not (`evaluate` inlined, for `if`)."""
        if self.fast is not None and type(context) is RuleContext:
            try:
                result = self.fast(context)
                if not isinstance(result, jinja2.Undefined):
                    return bool(result)
            except Exception:  # Jinja's run below decides
                pass
        try:
            return bool(self.evaluate(context))
        except Exception:
            return False


@lru_cache(maxsize=8192)
def compile_expression(source: str, *, with_left: bool = True) -> Expression:
    """Compile a Jinja2 expression (`entity.type in ['repair']`) or raise TemplateError."""
    try:
        tree = ENV.parse("{{ " + source + " }}")
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax(exc) from None
    except RecursionError:
        raise TemplateError("", TOO_DEEP) from None
    output = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(output, nodes.Output) or len(output.nodes) != 1:
        raise TemplateError("", "expected a single expression")
    try:
        refs = _check_ast(tree)
    except RecursionError:
        raise TemplateError("", TOO_DEEP) from None
    assign = nodes.Assign(nodes.Name("result", "store"), output.nodes[0], lineno=1)
    try:
        template = ENV.from_string(nodes.Template([assign], lineno=1))
        fast = compile_fast(output.nodes[0], ENV)
    except RecursionError:
        raise TemplateError("", TOO_DEEP) from None
    left = _left_operand(source) if with_left else None
    names = frozenset(meta.find_undeclared_variables(tree))
    return Expression(source, names, refs, left, template, fast)


def _left_operand(source: str) -> Expression | None:
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, RecursionError, MemoryError):
        return None
    if not isinstance(tree, ast.Compare) or len(tree.ops) != 1:
        return None
    text = ast.get_source_segment(source.strip(), tree.left)
    try:
        return compile_expression(text, with_left=False) if text else None
    except TemplateError:
        return None


@dataclass(frozen=True)
class Template:
    """A compiled parameter string; one bare `{{ expr }}` renders to the native value."""

    source: str
    names: frozenset[str]
    refs: Refs
    native: Expression | None = field(repr=False)
    template: jinja2.Template | None = field(repr=False)

    @property
    def steps(self) -> frozenset[str]:
        """The step ids read as `steps.<id>`."""
        return frozenset(key for root, key in self.refs if root == "steps")

    def render(self, context: Mapping[str, Any]) -> Any:
        with bounds.time_budget():
            if self.native is not None:
                value = self.native.evaluate(context)
                return to_plain(bounds.check_logical_size(value, "the rendered value"))
            assert self.template is not None
            return self.template.render(context)


@lru_cache(maxsize=8192)
def compile_template(source: str) -> Template:
    """Compile a parameter template or raise TemplateError."""
    match = _NATIVE.match(source.strip())
    if match:
        try:
            native = compile_expression(match.group(1), with_left=False)
        except TemplateSecurityError:
            raise
        except TemplateError:
            native = None
        if native is not None:
            return Template(source, native.names, native.refs, native, None)
    try:
        tree = ENV.parse(source)
        refs = _check_ast(tree)
        template = ENV.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax(exc) from None
    except RecursionError:
        raise TemplateError("", TOO_DEEP) from None
    return Template(source, frozenset(meta.find_undeclared_variables(tree)), refs, None, template)


LinkCall = tuple[str | None, str | None]  # (kind, rule) as literally written; None where not a literal


@lru_cache(maxsize=4096)
def link_calls(source: str, *, expression: bool = False) -> tuple[LinkCall, ...]:
    """The `linked_id(kind, rule=...)` calls in a template (or an `if` expression), for load-time checks.

    Only literal arguments are returned; a template that does not parse has none (its error is reported
    where it is compiled).
    """
    try:
        tree = ENV.parse("{{ " + source + " }}" if expression else source)
        calls = list(tree.find_all(nodes.Call))
    except (jinja2.TemplateSyntaxError, RecursionError):  # a nesting bomb: the compile step names it
        return ()
    found: list[LinkCall] = []
    for call in calls:
        if not (isinstance(call.node, nodes.Name) and call.node.name == "linked_id"):
            continue
        given = {k.key: k.value for k in call.kwargs}
        for name, arg in zip(("kind", "rule"), call.args, strict=False):
            given.setdefault(name, arg)
        kind, rule = given.get("kind"), given.get("rule")
        found.append(
            (
                kind.value if isinstance(kind, nodes.Const) and isinstance(kind.value, str) else None,
                rule.value if isinstance(rule, nodes.Const) and isinstance(rule.value, str) else None,
            )
        )
    return tuple(found)


def to_plain(value: Any) -> Any:
    """Plain JSON-ready data: lazy mappings unwrapped, datetimes as ISO strings, placeholders as text."""
    if isinstance(value, jinja2.Undefined):
        str(value)
    if isinstance(value, Placeholder):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def explain_failure(exc: BaseException, context: Mapping[str, Any] | None = None) -> TemplateError:
    """Map anything a render can raise to a TemplateError (the path is added by the caller)."""
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return TemplateSecurityError("", f"refused by the sandbox: {redact(str(exc), context)}")
    if isinstance(exc, jinja2.UndefinedError):
        return TemplateError("", redact(str(exc), context))
    return TemplateError("", redact(f"{type(exc).__name__}: {exc}", context))


def render_value(value: Any, context: Mapping[str, Any], loc: tuple[str | int, ...] = ()) -> Any:
    """Render every template string in a params tree; dicts and lists are recursed."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return compile_template(value).render(context)
        except Exception as exc:
            err = explain_failure(exc, context)
            raise type(err)(format_path(loc), err.message) from None
    if isinstance(value, Mapping):
        return {k: render_value(v, context, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context, (*loc, i)) for i, v in enumerate(value)]
    return value


SECRET_ROOTS = frozenset({"env", "secret"})
Path = tuple[str | int, ...]


def derived_paths(value: Any, path: Path = ()) -> list[Path]:
    """Where in a params tree a template reads `env` or `secret()`: what renders there derives from a
    secret, in whatever form a filter gave it (`| upper`, `| reverse`, `[:12]`), so it is shown masked."""
    if isinstance(value, str):
        return [path] if is_template(value) and compile_template(value).names & SECRET_ROOTS else []
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in derived_paths(item, (*path, key))]
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in derived_paths(item, (*path, i))]
    return []


def mask_paths(value: Any, paths: list[Path], mask: str) -> Any:
    """`value` with what is at each path replaced by `mask`; a path that is not there is skipped."""
    for path in paths:
        value = _masked(value, path, mask)
    return value


def _masked(value: Any, path: Path, mask: str) -> Any:
    if not path:
        return mask
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping) and head in value:
        return {**value, head: _masked(value[head], rest, mask)}
    if isinstance(value, list) and isinstance(head, int) and 0 <= head < len(value):
        return [*value[:head], _masked(value[head], rest, mask), *value[head + 1 :]]
    return value


def render_params(call: ActionCall, context: Mapping[str, Any]) -> Any:
    """The call's params with every template rendered; TemplateError paths start at the action name."""
    return render_value(call.params, context, (call.name,))


def build_context(
    event: ChangeEvent,
    entity: Mapping[str, Any] | Callable[[], Mapping[str, Any] | None] | None,
    steps: Mapping[str, Any] | None = None,
    vars: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    *,
    mask_secrets: bool = False,
    derived: Mapping[str, Mapping[str, Any]] | None = None,
    links: LinkLookup | None = None,
) -> RuleContext:
    """The names rules see: event, changes, entity (lazy if given a loader), steps, vars, env, now,
    and `linked_id(...)`.

    `changes` is the event's changeset plus `derived`, the transitions worked out by comparing the
    record with the version seen before (the changeset wins where both have a field).
    `secret(name)`, which `!secret NAME` renders through, reads `env`; with `mask_secrets` (dry
    runs) it gives `***` instead. `linked_id` asks `links`; without one (dry runs) it gives a placeholder.
    """
    if callable(entity):
        entity = LazyEntity(entity)
    event_dict = event.model_dump(mode="json")
    event_dict["id"] = event.id
    changes = {k: {"old": v["old"], "new": v["new"]} for k, v in (derived or {}).items()}
    changes.update({k: {"old": v.old, "new": v.new} for k, v in (event.changes or {}).items()})
    env = dict(env or {})
    return RuleContext(
        {
            **ENV.globals,
            "event": event_dict,
            "changes": changes,
            "entity": entity,
            "steps": dict(steps or {}),
            "vars": dict(vars or {}),
            "env": env,
            "secret": secret_reader(env, mask=mask_secrets),
            "linked_id": link_reader(event, links),
            "now": now or datetime.now(UTC),
        }
    )


def link_reader(event: ChangeEvent, links: LinkLookup | None) -> Callable[..., Any]:
    """`linked_id(kind, rule, step=None, entity_type=None, entity_id=None)`: the id of the record that
    `rule`'s step created in another system for this event's entity (or the one named), or None.

    Read-only: the link store is written only by the actions that create those records.
    """

    def linked_id(
        kind: str,
        rule: str,
        step: str | None = None,
        entity_type: str | None = None,
        entity_id: int | str | None = None,
    ) -> Any:
        if not isinstance(kind, str) or kind.count(".") != 1:
            raise TemplateError(
                "", f"linked_id: kind must name a system and a record, like 'synergist.activity'; got {kind!r}"
            )
        if not isinstance(rule, str) or not rule:
            raise TemplateError("", f"linked_id: rule must be a rule name; got {rule!r}")
        query = LinkQuery(
            kind,
            rule,
            step,
            event.source,
            entity_type if entity_type is not None else event.entity.type,
            entity_id if entity_id is not None else event.entity.id,
        )
        if links is None:
            return Placeholder(f"linked_id {kind} of rule {rule}")
        return links(query)

    return linked_id
