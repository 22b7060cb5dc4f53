"""Templates: native values, sandboxing, typed errors with the param path, date helpers."""

from __future__ import annotations

import types
from datetime import UTC, date, datetime

import pytest

from rules import ActionCall, TemplateError, TemplateSecurityError, build_context, render_params
from rules.context import LazyEntity, Placeholder
from rules.engine import allowed_env
from rules.templating import compile_expression, compile_template
from tests.rules.conftest import job_record


@pytest.fixture
def context(make_event):
    def make(entity=None, steps=None, **kw):
        event = make_event(changes={"status": ("scheduled", "completed")})
        return build_context(
            event,
            job_record() if entity is None else entity,
            steps=steps,
            vars={"team": "north"},
            now=datetime(2024, 5, 1, 12, tzinfo=UTC),
            **kw,
        )

    return make


def render(params, context):
    return render_params(ActionCall("test.action", None, params, 1), context)


def test_a_lone_expression_renders_the_native_value(context):
    out = render(
        {
            "id": "{{ event.entity.id }}",
            "customer": "{{ entity.customer }}",
            "tags": "{{ ['a', 'b'] }}",
            "none": "{{ entity.get('missing') }}",
            "spaced": "{{- entity.number -}}",
        },
        context(),
    )
    assert out == {
        "id": 35769,
        "customer": job_record()["customer"],
        "tags": ["a", "b"],
        "none": None,
        "spaced": 112233,
    }


def test_mixed_text_renders_a_string(context):
    out = render(
        {
            "myId": "st-job-{{ event.entity.id }}",
            "two": "{{ 1 }}{{ 2 }}",
            "block": "{% if entity.type == 'repair' %}fix{% endif %}",
        },
        context(),
    )
    assert out == {"myId": "st-job-35769", "two": "12", "block": "fix"}


def test_lists_and_nested_dicts_are_recursed_and_literals_kept(context):
    out = render({"a": [{"b": "{{ vars.team }}"}, 3, True], "c": "plain", "d": None}, context())
    assert out == {"a": [{"b": "north"}, 3, True], "c": "plain", "d": None}


def test_datetimes_render_as_iso_strings(context):
    out = render({"at": "{{ now }}", "day": "{{ now | synergist_date }}"}, context())
    assert out == {"at": "2024-05-01T12:00:00+00:00", "day": "2024-05-01"}


def test_undefined_is_an_error_naming_the_param(context):
    with pytest.raises(TemplateError) as info:
        render({"customer": {"myId": "st-{{ entity.customer.idd }}"}}, context())
    assert str(info.value) == ("test.action.customer.myId: no field 'idd' (fields here: externalIds, id, name)")
    with pytest.raises(TemplateError) as info:
        render({"x": ["{{ nothing }}"]}, context())
    assert str(info.value) == "test.action.x[0]: 'nothing' is undefined"


def test_field_names_win_over_dict_methods(context):
    out = render(
        {"items": "{{ entity['items'] }}", "attr": "{{ entity.items }}"}, context(entity={"items": [1, 2], "values": 3})
    )
    assert out == {"items": [1, 2], "attr": [1, 2]}


def test_sandbox_escape_is_refused_at_compile_time():
    with pytest.raises(TemplateSecurityError) as info:
        compile_template("{{ ''.__class__.__mro__ }}")
    assert info.value.message == "access to '__class__' is not allowed in rule templates"
    with pytest.raises(TemplateSecurityError):
        compile_expression("x['__globals__']")


def test_sandbox_escape_is_refused_at_render_time(context):
    with pytest.raises(TemplateSecurityError) as info:
        render({"x": "{{ ''|attr('__class__') }}"}, context())
    assert str(info.value) == (
        "test.action.x: refused by the sandbox: access to attribute '__class__' of 'str' object is unsafe."
    )
    with pytest.raises(TemplateSecurityError):
        render({"x": "{{ (''|attr('__class__')).__mro__ }}"}, context())


def test_syntax_errors_are_template_errors():
    with pytest.raises(TemplateError) as info:
        compile_template("{{ x }")
    assert info.value.message == "template syntax error: unexpected '}'"


def test_steps_render_results_or_placeholders(context):
    params = {"customer": {"myId": "{{ steps.customer.myId }}"}, "text": "c={{ steps.customer.myId }}"}
    assert render(params, context(steps={"customer": {"myId": "st-company-39"}})) == {
        "customer": {"myId": "st-company-39"},
        "text": "c=st-company-39",
    }
    placeholders = {"customer": Placeholder("steps.customer")}
    assert render(params, context(steps=placeholders)) == {
        "customer": {"myId": "<steps.customer.myId>"},
        "text": "c=<steps.customer.myId>",
    }


def test_step_references_are_found_at_compile_time():
    assert compile_template("{{ steps.customer.myId }}-{{ steps['job'].id }}").steps == {"customer", "job"}
    assert compile_template("{{ entity.id }}").names == {"entity"}


def test_lazy_entity_loads_once_and_only_when_read(make_event):
    calls = []

    def loader():
        calls.append(1)
        return job_record()

    ctx = build_context(make_event(), loader, now=datetime(2024, 1, 1, tzinfo=UTC))
    assert isinstance(ctx["entity"], LazyEntity)
    assert render({"x": "{{ event.entity.id }}"}, ctx) == {"x": 35769}
    assert calls == []
    assert render({"x": "{{ entity.customer.id }}", "y": "{{ entity.name }}"}, ctx) == {"x": 39, "y": "Job 112233"}
    assert calls == [1]


def test_date_helpers(context):
    ctx = context()
    out = render(
        {
            "ts": "{{ 1401833052 | fromtimestamp }}",
            "st": "{{ synchroteam_datetime(1401833052) }}",
            "parsed": "{{ synchroteam_date('19/07/2016 14:43:00') }}",
            "sg": "{{ synergist_date('2017-04-01') }}",
            "sg_null": "{{ synergist_date('0000-00-00') }}",
            "ny": "{{ tz(now, 'America/New_York') }}",
        },
        ctx,
    )
    assert out == {
        "ts": "2014-06-03T22:04:12+00:00",
        "st": "2014-06-03 22:04:12",
        "parsed": "2016-07-19T14:43:00+00:00",
        "sg": date(2017, 4, 1).isoformat(),
        "sg_null": None,
        "ny": "2024-05-01T08:00:00-04:00",
    }


def test_helper_misuse_is_a_template_error(context):
    with pytest.raises(TemplateError) as info:
        render({"x": "{{ synchroteam_datetime('soon') }}"}, context())
    assert str(info.value) == "test.action.x: TypeError: expected a datetime or Unix seconds, got 'soon'"


def test_a_hand_built_context_still_sees_the_helpers():
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert render(
        {"h": "{{ tz(now, 'America/New_York').hour }}", "s": "{{ now | synergist_date }}!"}, {"now": now}
    ) == {"h": 8, "s": "2024-05-01!"}


def test_expressions_must_be_one_expression():
    with pytest.raises(TemplateError) as info:
        compile_expression("1 }}{% for x in y %}{% endfor %}{{ x")
    assert info.value.message == "expected a single expression"


def test_env_values_never_appear_in_errors(context):
    ctx = context(env={"API_TOKEN": "s3cr3t-token"})
    with pytest.raises(TemplateError) as info:
        render({"x": "{{ synchroteam_datetime(env.API_TOKEN) }}"}, ctx)
    assert str(info.value) == "test.action.x: TypeError: expected a datetime or Unix seconds, got '***'"


def test_allowed_env_reads_only_the_allowlist():
    environ = {"REGION": "us", "API_TOKEN": "secret"}
    assert allowed_env(["REGION", "MISSING"], environ) == {"REGION": "us"}


def test_templates_cannot_change_shared_data(context):
    ctx = context()
    for template in ("{{ vars.clear() }}", "{{ entity.customer.update({'id': 1}) }}", "{{ changes.pop('status') }}"):
        with pytest.raises(TemplateSecurityError):
            render({"x": template}, ctx)
    assert ctx["vars"] == {"team": "north"} and ctx["changes"]["status"]["new"] == "completed"


def _largest_constant(code: types.CodeType) -> int:
    """The longest string, bytes or sequence literal in `code` and the code nested in it."""
    sizes = [0]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            sizes.append(_largest_constant(const))
        elif isinstance(const, str | bytes | tuple | frozenset):
            sizes.append(len(const))
    return max(sizes)


def test_a_large_constant_is_computed_when_rendered_never_folded_into_the_compiled_code():
    # Folded, a list of 400,000 items became a literal of the generated source: the compiled code held
    # it for as long as the rule was loaded, and compiling it took hundreds of MB the process kept (the
    # console's rules page, a worker's reload).
    expression = compile_expression("x in ('a' | center(400000) | list)")
    codes = [expression.template.root_render_func.__code__]
    if expression.fast is not None:
        codes.append(expression.fast.__code__)
    assert max(_largest_constant(code) for code in codes) < 1000
    assert expression.evaluate({"x": "a"}) is True

    template = compile_template("n={{ 'a' | center(400000) | list | first }}|{{ 'a' | center(100000) | list }}")
    assert template.template is not None
    assert _largest_constant(template.template.root_render_func.__code__) < 1000
    assert template.render({}).startswith("n= |[' ', ' ',")
