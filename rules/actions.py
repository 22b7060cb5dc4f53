"""Action steps: `{<action name>: {params}, id: ...}` entries, checked against each action's param model."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from rules.calls import ON_MISSING, ActionCall
from rules.catalog import did_you_mean
from rules.conditions import Loc, Problems
from rules.errors import TemplateError, describe
from rules.templating import Refs, compile_template, is_template

ActionParams = Mapping[str, type[BaseModel]]
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Keys of a step beside its one action: its id, the reason a write-back to the rule's source is safe, and
# what to do when the record a linking step created is gone.
STEP_KEYS = ("id", "loop_ok", "on_missing")


def parse_action(
    raw: Any, loc: Loc, line: int, action_params: ActionParams | None, problems: Problems
) -> tuple[ActionCall | None, Refs]:
    """Check one step; returns the call (None if unusable) and what its templates read (see _check_ast)."""
    if not isinstance(raw, Mapping):
        problems.append((loc, "expected a mapping like {synchroteam.job.upsert: {...}}"))
        return None, frozenset()
    before = len(problems)
    step_id = raw.get("id")
    if "id" in raw and (not isinstance(step_id, str) or not _STEP_ID.match(step_id)):
        problems.append(((*loc, "id"), f"a step id must be a plain name like 'customer', got {step_id!r}"))
    loop_ok = raw.get("loop_ok")
    if "loop_ok" in raw and (not isinstance(loop_ok, str) or not loop_ok.strip()):
        problems.append(
            (
                (*loc, "loop_ok"),
                f"loop_ok takes the reason this write-back is safe, as text "
                f"(e.g. loop_ok: a comment changes no field this rule reads), got {loop_ok!r}",
            )
        )
    on_missing = raw.get("on_missing", "fail")
    if on_missing not in ON_MISSING:
        problems.append(
            ((*loc, "on_missing"), f"on_missing must be one of {', '.join(ON_MISSING)}, got {on_missing!r}")
        )
    names = [k for k in raw if k not in STEP_KEYS]
    if not names:
        problems.append((loc, "no action given; expected one key naming the action"))
        return None, frozenset()
    if action_params is not None:
        unknown = [n for n in names if n not in action_params]
        for name in unknown:
            choices = [*action_params, *STEP_KEYS] if len(names) > 1 else list(action_params)
            problems.append(((*loc, name), f"unknown action {name!r}{did_you_mean(str(name), choices)}"))
        if unknown:
            return None, frozenset()
    if len(names) > 1:
        problems.append(((*loc, names[1]), "one action per step; put each action in its own list item"))
        return None, frozenset()
    name = str(names[0])
    params = raw[name] if raw[name] is not None else {}
    if not isinstance(params, Mapping):
        problems.append(((*loc, name), f"parameters must be a mapping, got {params!r}"))
        return None, frozenset()
    refs = compile_strings(params, (*loc, name), problems)
    if action_params is not None:
        check_params(action_params[name], params, (*loc, name), problems)
        if "on_missing" in raw and getattr(action_params[name], "link_kind", None) is None:
            problems.append(
                (
                    (*loc, "on_missing"),
                    f"{name} keeps no link to a record it created, so on_missing does not apply "
                    f"(it does on {', '.join(linking_actions(action_params)) or 'no action'})",
                )
            )
    call = ActionCall(
        name,
        step_id if isinstance(step_id, str) else None,
        params,
        line,
        loop_ok.strip() if isinstance(loop_ok, str) else None,
        str(on_missing) if on_missing in ON_MISSING else "fail",
    )
    return (call if len(problems) == before else None), refs


def linking_actions(action_params: ActionParams) -> list[str]:
    """The actions whose parameter model declares a `link_kind`: they remember the record they created."""
    return sorted(name for name, model in action_params.items() if getattr(model, "link_kind", None))


def compile_strings(value: Any, loc: Loc, problems: Problems) -> Refs:
    """Compile every template in a params tree; returns what they read (see _check_ast)."""
    refs: Refs = frozenset()
    if isinstance(value, str) and is_template(value):
        try:
            refs |= compile_template(value).refs
        except TemplateError as exc:
            problems.append((loc, exc.message))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            refs |= compile_strings(item, (*loc, key), problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            refs |= compile_strings(item, (*loc, i), problems)
    return refs


def template_names(value: Any) -> set[str]:
    """Top-level names (`entity`, `steps`, ...) read by the templates in a params tree."""
    if isinstance(value, str) and is_template(value):
        return set(compile_template(value).names)
    if isinstance(value, Mapping):
        return set().union(*(template_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(template_names(v) for v in value))
    return set()


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, Mapping):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False


def _keys(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    by_name = model.model_config.get("populate_by_name") or model.model_config.get("validate_by_name")
    keys: dict[str, tuple[str, FieldInfo]] = {}
    for name, info in model.model_fields.items():
        keys[info.validation_alias if isinstance(info.validation_alias, str) else info.alias or name] = (name, info)
        if by_name or not info.alias:
            keys[name] = (name, info)
    return keys


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model, is_list) for `Model`, `Model | None`, `list[Model]`; (None, False) otherwise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _model_of(args[0]) if len(args) == 1 else (None, False)
    if origin is list:
        inner, _ = _model_of(typing.get_args(annotation)[0])
        return inner, inner is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


# Validators that only make sense on a literal in a rule file (not on every rendered value) look for this.
LOAD_CONTEXT = {"at_load": True}


@lru_cache(maxsize=1024)
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    # The field's constraints and validators, without its alias (which only means something on a model).
    annotated: Any = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotated)


def check_params(model: type[BaseModel], params: Mapping[str, Any], loc: Loc, problems: Problems) -> None:
    """Unknown and missing keys, and the types of literal values; templates are typed after render."""
    keys = _keys(model)
    if model.model_config.get("extra") != "allow":
        for key in params:
            if key not in keys:
                problems.append(((*loc, key), f"unknown parameter {key!r}{did_you_mean(str(key), keys)}"))
    given = {keys[k][0] for k in params if k in keys}
    for key, (name, info) in keys.items():
        if info.is_required() and name not in given and key == (info.alias or name):
            problems.append(((*loc, key), "field required"))
    for key, value in params.items():
        if key not in keys:
            continue
        name, info = keys[key]
        if _has_template(value):
            inner, is_list = _model_of(info.annotation)
            if inner is not None and not is_list and isinstance(value, Mapping):
                check_params(inner, value, (*loc, key), problems)
            elif inner is not None and is_list and isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, Mapping):
                        check_params(inner, item, (*loc, key, i), problems)
            continue
        try:
            _adapter(model, name).validate_python(value, context=LOAD_CONTEXT)
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(((*loc, key, *err["loc"]), describe(err)))
