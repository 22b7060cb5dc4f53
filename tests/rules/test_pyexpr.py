"""The plain-Python fast path of expressions gives what Jinja gives, and leaves the rest to Jinja."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
import pytest

from rules import build_context
from rules.context import LazyEntity
from rules.templating import compile_expression
from tests.rules.conftest import job_record


@pytest.fixture
def context(make_event):
    def make(entity=None):
        event = make_event(changes={"status": ("scheduled", "completed")})
        return build_context(
            event,
            LazyEntity(lambda: job_record() if entity is None else entity),
            vars={"team": "north", "n": 3},
            now=datetime(2024, 5, 1, 12, tzinfo=UTC),
            env={"REGION": "us"},
        )

    return make


def jinja(expr, context):
    """The expression run by Jinja alone, as before the fast path."""
    ctx = expr.template.new_context(context, shared=True)
    for _ in expr.template.root_render_func(ctx):
        pass
    return ctx.vars["result"]


FAST = [
    "entity.type in ['repair', 'inspection'] and event.entity.id > 3",
    "entity.type not in ('repair',) or not entity.status",
    "entity['customer']['name'] ~ '/' ~ vars.team",
    "changes.status.new == 'completed' and changes.status.old != 'completed'",
    "1 < vars.n <= 3",
    "vars.n * 2 + 1 - 4 / 2 // 1 % 5 ** 2",
    "-vars.n < +vars.n",
    "'yes' if entity.customer.externalIds.synergist else 'no'",
    "entity.missing is defined or entity.customer is mapping",
    "entity.name | length > 3 and entity.name | lower == 'job 112233'",
    "entity.completedOn | fromtimestamp | synergist_date",
    "{'a': [1, 2], 'b': (3,)}",
    "env.REGION == 'us' and event.source == 'servicetrade' and now.year == 2024",
    "entity.customer.nothing | default('none')",
]


@pytest.mark.parametrize("source", FAST)
def test_the_fast_path_gives_what_jinja_gives(source, context):
    expr = compile_expression(source)
    assert expr.fast is not None
    ctx = context()
    assert expr.fast(ctx) == jinja(expr, ctx)
    assert expr.evaluate(ctx) == jinja(expr, ctx)


@pytest.mark.parametrize(
    "source",
    [
        "entity.get('type')",  # calls need Jinja's sandboxed call
        "entity.name[0:3]",  # slices
        "entity.tags | join(',')",  # a filter that takes the eval context
        "tz(now, 'UTC')",
    ],
)
def test_what_the_fast_path_cannot_do_stays_on_jinja(source, context):
    expr = compile_expression(source)
    assert expr.fast is None
    expr.evaluate(context({"type": "x", "name": "abcdef", "tags": ["a"]}))


@pytest.mark.parametrize("source", ["entity.customer.idd == 1", "nothing > 1", "entity.name + 1"])
def test_errors_are_jinjas_own(source, context):
    expr = compile_expression(source)
    ctx = context()
    with pytest.raises(Exception) as by_jinja:
        jinja(expr, ctx)
    with pytest.raises(Exception) as by_evaluate:
        expr.evaluate(ctx)
    assert type(by_evaluate.value) is type(by_jinja.value)
    assert str(by_evaluate.value) == str(by_jinja.value)


def test_an_undefined_result_is_still_an_error(context):
    with pytest.raises(jinja2.UndefinedError, match="no field 'idd'"):
        compile_expression("entity.customer.idd").evaluate(context())


def test_a_failed_entity_fetch_is_not_repeated_by_the_fallback(make_event):
    calls = []

    def loader():
        calls.append(1)
        raise ConnectionError("servicetrade down")

    ctx = build_context(make_event(), LazyEntity(loader))
    with pytest.raises(ConnectionError):
        compile_expression("entity.type == 'repair'").evaluate(ctx)
    with pytest.raises(ConnectionError):
        compile_expression("entity.status == 'x'").evaluate(ctx)
    assert calls == [1]
