"""Load rule files: YAML with marks, pydantic shape checks, compiled conditions and actions, every error."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml.error import MarkedYAMLError

from fieldrelay.events import ChangeEvent
from rules.actions import ActionParams, linking_actions, parse_action, template_names
from rules.calls import ActionCall
from rules.catalog import SOURCE_TITLES, did_you_mean, undocumented_field, untracked_field
from rules.conditions import Condition, Loc, Problems, condition_names, condition_refs, parse_condition
from rules.errors import RuleError, RuleLoadError, RuleWarning, TemplateError, describe, format_path
from rules.files import rule_files
from rules.marks import keys_at, locate
from rules.models import Rule, RuleFileSpec, RuleSpec
from rules.ruleset import RuleSet
from rules.secrets import ENV_SETTING, SecretTag, check_secret, find_secrets, rule_yaml
from rules.templating import compile_expression, compile_template, is_template, link_calls
from rules.yamlcheck import YamlLimitError, check_yaml

_RULE = TypeAdapter(RuleSpec)
_TOP_KEYS = list(RuleFileSpec.model_fields)


def plain(node: Any) -> Any:
    """ruamel's commented containers and scalar subclasses -> plain dict/list/str/int/float.

    Keys become strings, as they would in the JSON the worker stores rules in anyway, and
    `!secret NAME` becomes the template that reads it.
    """
    if isinstance(node, SecretTag):
        return node.template()  # read at render time; the value is never stored (see rules/secrets.py)
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    for kind in (bool, str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


def rule_digest(file: str, spec: Any, vars: Any) -> str:
    text = json.dumps([file, spec, vars], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _pydantic_problems(exc: ValidationError, prefix: Loc) -> Problems:
    out: Problems = []
    for err in exc.errors():
        loc: Loc = (*prefix, *err["loc"])
        message = describe(err)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, str(err["ctx"]["discriminator"]).strip("'"))
            if err["type"] == "union_tag_invalid":
                message += did_you_mean(str(err["ctx"]["tag"]), SOURCE_TITLES)
        elif err["type"] == "extra_forbidden":
            choices = keys_at(RuleFileSpec, loc[:-1])
            message = f"unknown field {loc[-1]!r}{did_you_mean(str(loc[-1]), choices)}"
        out.append((loc, message))
    return out


EVENT_KEYS = (*ChangeEvent.model_fields, "id")


def _check_ref(root: str, key: str, vars: Mapping[str, Any], steps: list[str] | None) -> str | None:
    """Why `root.key` can never resolve, or None; `steps` is None inside `if`, where none exist yet."""
    if root == "vars" and key not in vars:
        return f"vars.{key} is not defined in this file's vars{did_you_mean(key, vars)}"
    if root == "event" and key not in EVENT_KEYS:
        return f"event.{key} is not an event field{did_you_mean(key, EVENT_KEYS)}"
    if root != "steps":
        return None
    if steps is None:
        return "steps are only known inside then/on_failure"
    if key not in steps:
        return f"steps.{key} is not the id of an earlier step{did_you_mean(key, steps)}"
    return None


def compile_parts(
    raw: Mapping[str, Any],
    vars: dict[str, Any],
    line: int,
    lines: dict[str, list[int]],
    action_params: ActionParams | None,
    prefix: Loc,
    problems: Problems,
) -> tuple[Condition | None, dict[str, list[ActionCall]], set[str]]:
    """Compile `if`, `then` and `on_failure`; each part is checked even when another one failed."""
    before = len(problems)
    cond = None if raw.get("if") is None else parse_condition(raw["if"], (*prefix, "if"), problems)
    if len(problems) == before:
        for loc, root, key in condition_refs(cond, (*prefix, "if")):
            message = _check_ref(root, key, vars, None)
            if message:
                problems.append((loc, message))
    names = condition_names(cond)
    seen: list[str] = []
    calls: dict[str, list[ActionCall]] = {"then": [], "on_failure": []}
    for section in ("then", "on_failure"):
        items = raw.get(section)
        for i, item in enumerate(items if isinstance(items, list) else []):
            loc = (*prefix, section, i)
            at = lines[section][i] if i < len(lines.get(section, ())) else line
            call, refs = parse_action(item, loc, at, action_params, problems)
            for root, key in sorted(refs):
                message = _check_ref(root, key, vars, seen)
                if message:
                    problems.append((loc, message))
            if call is None:
                continue
            if call.id is not None:
                if call.id in seen:
                    problems.append(((*loc, "id"), f"step id {call.id!r} is used twice in this rule"))
                seen.append(call.id)
            names |= template_names(call.params)
            calls[section].append(call)
    return cond, calls, names


def compile_rule(
    spec: RuleSpec,
    raw: dict[str, Any],
    vars: dict[str, Any],
    file: str,
    line: int,
    lines: dict[str, list[int]],
    action_params: ActionParams | None,
    prefix: Loc,
    problems: Problems,
) -> Rule | None:
    """Compile `if`, `then` and `on_failure` of a shape-checked rule; None if anything failed."""
    before = len(problems)
    cond, calls, names = compile_parts(raw, vars, line, lines, action_params, prefix, problems)
    if len(problems) > before:
        return None
    return Rule(
        name=spec.name,
        file=file,
        line=line,
        description=spec.description,
        enabled=spec.enabled,
        priority=spec.priority,
        mode=spec.mode,
        debounce=spec.debounce,
        when=spec.when,
        if_=cond,
        then=calls["then"],
        on_failure=calls["on_failure"],
        vars=vars,
        needs_entity="entity" in names,
        digest=rule_digest(file, raw, vars),
        spec=raw,
    )


_COMPILED: dict[str, Rule] = {}
_COMPILED_LOCK = threading.Lock()


def rule_from_json(data: Mapping[str, Any]) -> Rule:
    """Recompile a rule shipped as `Rule.to_json()`; cached by digest, so repeated calls cost a dict lookup."""
    cached = _COMPILED.get(data["digest"])
    if cached is not None:
        return cached
    rule = _rule_from_json(data)
    with _COMPILED_LOCK:
        if len(_COMPILED) > 4096:
            _COMPILED.clear()
        _COMPILED[rule.digest] = rule
    return rule


def _rule_from_json(data: Mapping[str, Any]) -> Rule:
    """Rebuild a rule from `Rule.to_json()`; params were checked at load, so no param models here."""
    problems: Problems = []
    spec = _RULE.validate_python(data["spec"])
    rule = compile_rule(spec, data["spec"], data["vars"], data["file"], data["line"], data["lines"], None, (), problems)
    if rule is None:
        file, line = data["file"], data["line"]
        raise RuleLoadError([RuleError(file, line, 1, format_path(p), m) for p, m in problems])
    return rule


def _writes(action: str, action_params: ActionParams | None) -> bool:
    """Whether an action changes its target: a parameter model that says `writes = False` only reads."""
    model = (action_params or {}).get(action)
    return bool(getattr(model, "writes", True))


def _link_calls(raw: Any, loc: Loc, expression: bool) -> list[tuple[Loc, str | None, str | None]]:
    """Every `linked_id(...)` call in a rule's `if` (expressions) or steps (templates), with where it is."""
    if isinstance(raw, str):
        if expression or is_template(raw):
            return [(loc, kind, rule) for kind, rule in link_calls(raw, expression=expression)]
        return []
    if isinstance(raw, Mapping):
        return [c for k, v in raw.items() for c in _link_calls(v, (*loc, k), expression)]
    if isinstance(raw, list):
        return [c for i, v in enumerate(raw) for c in _link_calls(v, (*loc, i), expression)]
    return []


def _check_link_kinds(
    calls: list[tuple[Loc, str | None, str | None]], action_params: ActionParams | None, problems: Problems
) -> None:
    if action_params is None:
        return
    kinds = sorted({str(getattr(action_params[n], "link_kind", "")) for n in linking_actions(action_params)})
    for loc, kind, _ in calls:
        if kind is not None and kind not in kinds:
            known = ", ".join(kinds) or "none"
            hint = did_you_mean(kind, kinds)
            problems.append((loc, f"linked_id: {kind!r} is no kind of record fieldrelay links{hint} (known: {known})"))


def _warnings(rule: Rule, prefix: Loc, action_params: ActionParams | None) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    when, title = rule.when, SOURCE_TITLES[rule.when.source]
    for field in when.changed:
        for entity in when.entity or ():
            loc = (*prefix, "when", "changed", field)
            if undocumented_field(when.source, entity, field):
                out.append((loc, f"{field!r} is not a documented field of {title} {entity!r}"))
            elif when.via != "poll" and untracked_field(when.source, entity, field):
                out.append(
                    (
                        loc,
                        f"{title} webhooks do not report changes of {field!r} on {entity!r} in their changeset; "
                        f"the rule still works: for each candidate event fieldrelay reads the {entity} (one API "
                        "call) and compares it with the version it saw before",
                    )
                )
    if when.changed and when.action is not None and "updated" not in when.action:
        out.append(((*prefix, "when", "changed"), "only 'updated' events carry changesets; this rule never matches"))
    for section, calls in (("then", rule.then), ("on_failure", rule.on_failure)):
        for i, call in enumerate(calls):
            if call.name.split(".")[0] == when.source and call.loop_ok is None and _writes(call.name, action_params):
                out.append(
                    (
                        (*prefix, section, i, call.name),
                        f"writes to {title}, which triggers this rule (possible loop); if the loop guard or "
                        "the rule's `when` makes it safe, say why with `loop_ok: <reason>` on this step",
                    )
                )
    return out


def _parse(path: Path, errors: list[RuleError]) -> tuple[Any, str]:
    file, text = str(path), ""
    try:
        text = path.read_text(encoding="utf-8")
        check_yaml(text)  # bombs first: depth, aliases, expansion, size
        return rule_yaml().load(text), text
    except YamlLimitError as exc:
        errors.append(RuleError(file, exc.line, exc.col, "<yaml>", exc.message))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = str(exc.problem or exc.context)
        if exc.problem and exc.context and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        errors.append(RuleError(file, line, col, "<yaml>", message))
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(RuleError(file, 1, 1, "<file>", f"cannot read: {exc}"))
    return None, text


class _Loaded:
    """One file's outcome; `names` holds where each rule's name is, for duplicate reports."""

    def __init__(self, file: str, text: str) -> None:
        self.file, self.text = file, text
        self.rules: list[Rule] = []
        self.names: list[tuple[int, int, str]] = []
        self.errors: list[RuleError] = []
        self.warnings: list[RuleWarning] = []
        self.link_rules: list[tuple[int, int, str, str]] = []  # (line, col, path, rule named by linked_id)


def _load_file(path: Path, action_params: ActionParams | None, env_names: Collection[str] | None) -> _Loaded:
    file = str(path)
    problems: Problems = []
    parse_errors: list[RuleError] = []
    root, text = _parse(path, parse_errors)
    out = _Loaded(file, text)
    out.errors = parse_errors
    if parse_errors:
        return out
    if not isinstance(root, Mapping):
        message = "expected a mapping with 'rules' (and optionally 'vars')"
        out.errors.append(RuleError(file, 1, 1, "<root>", message))
        return out
    data = plain(root)
    for key in data:
        # `x-...` keys are free for YAML anchors shared between rules, as in docker-compose.
        if key not in _TOP_KEYS and not str(key).startswith("x-"):
            problems.append(((key,), f"unknown field {key!r}{did_you_mean(str(key), _TOP_KEYS)}"))
    vars = data.get("vars") or {}
    if not isinstance(vars, dict):
        problems.append((("vars",), "expected a mapping of names to values"))
        vars = {}
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list):
        problems.append((("rules",), "field required" if raw_rules is None else "expected a list of rules"))
        raw_rules = []
    warnings: list[tuple[Loc, str]] = []
    for i, raw in enumerate(raw_rules):
        prefix = ("rules", i)
        line = locate(root, prefix)[0]
        lines = {
            s: [locate(root, (*prefix, s, j))[0] for j in range(len(raw.get(s) or []))]
            for s in ("then", "on_failure")
            if isinstance(raw, dict) and isinstance(raw.get(s), list)
        }
        try:
            spec = _RULE.validate_python(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, prefix))
            if isinstance(raw, dict):  # the shape is wrong somewhere; still report what else is
                compile_parts(raw, vars, line, lines, action_params, prefix, problems)
            continue
        calls = _link_calls(raw.get("if"), (*prefix, "if"), True)
        for section in ("then", "on_failure"):
            calls += _link_calls(raw.get(section), (*prefix, section), False)
        _check_link_kinds(calls, action_params, problems)
        out.link_rules += [(*_at(root, loc), name) for loc, _, name in calls if name is not None]
        rule = compile_rule(spec, raw, vars, file, line, lines, action_params, prefix, problems)
        if rule is not None:
            out.rules.append(rule)
            out.names.append(_at(root, (*prefix, "name")))
            warnings.extend(_warnings(rule, prefix, action_params))
    out.errors.extend(RuleError(file, *_at(root, loc), message) for loc, message in problems)
    out.warnings = [RuleWarning(file, *_at(root, loc), message) for loc, message in warnings]
    tags = find_secrets(root)
    if env_names is not None:
        tagged = {loc for loc, _ in tags}
        for loc, message in _env_problems(raw_rules, env_names):
            if loc not in tagged:  # a `!secret` is reported below, once
                out.errors.append(RuleError(file, *_at(root, loc), message))
    for loc, tag in tags:
        if str(loc[0]).startswith("x-"):
            continue  # an anchor's definition; where it is used is checked
        error, warning = check_secret(loc, tag, env_names, os.environ)
        if error:
            out.errors.append(RuleError(file, tag.line, tag.col, format_path(loc), error))
        if warning:
            out.warnings.append(RuleWarning(file, tag.line, tag.col, format_path(loc), warning))
    return out


def _env_problems(raw_rules: list[Any], env_names: Collection[str]) -> list[tuple[Loc, str]]:
    """`secret('NAME')` and `env.NAME` for a NAME outside FIELDRELAY_RULES_ENV, wherever a rule reads one."""
    out: list[tuple[Loc, str]] = []

    def visit(value: Any, loc: Loc, expression: bool) -> None:
        if isinstance(value, str):
            if not expression and not is_template(value):
                return
            try:
                refs = compile_expression(value).refs if expression else compile_template(value).refs
            except TemplateError:
                return  # reported where it is compiled
            for root, name in sorted(refs):
                if root in ("secret", "env") and name not in env_names:
                    shown = f"secret({name!r})" if root == "secret" else f"env.{name}"
                    out.append((loc, f"{shown} is not allowed: add {name} to {ENV_SETTING}"))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                visit(item, (*loc, str(key)), expression and key in ("any", "all", "not"))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                visit(item, (*loc, i), expression)

    for i, raw in enumerate(raw_rules):
        if isinstance(raw, Mapping):
            visit(raw.get("if"), ("rules", i, "if"), True)
            for section in ("then", "on_failure"):
                visit(raw.get(section), ("rules", i, section), False)
    return out


def _at(root: Any, loc: Loc) -> tuple[int, int, str]:
    line, col, path = locate(root, loc)
    return line, col, format_path(path)


def load_rule_file(
    path: Path,
    action_params: ActionParams | None,
    *,
    env_names: Collection[str] | None = None,
) -> RuleSet:
    """Load one file; raises RuleLoadError listing every problem in it.

    `action_params` maps action names to their param models; None skips the action checks.
    `env_names` is the allowlist of environment variables `!secret` may name (FIELDRELAY_RULES_ENV);
    None skips that check.
    """
    return _build([Path(path)], action_params, env_names)


def load_rules(
    directory: Path,
    action_params: ActionParams | None,
    *,
    env_names: Collection[str] | None = None,
) -> RuleSet:
    """Load every `*.yaml`/`*.yml` directly in `directory` (sorted, dotfiles skipped); all or nothing.

    See `load_rule_file` for the arguments.
    """
    return _build(rule_files(directory), action_params, env_names)


def _load_file_safely(path: Path, action_params: ActionParams | None, env_names: Collection[str] | None) -> _Loaded:
    """`_load_file`, with anything unexpected it raises turned into an error at the file, never a traceback."""
    try:
        return _load_file(path, action_params, env_names)
    except Exception as exc:
        out = _Loaded(str(path), "")
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        out.errors.append(RuleError(str(path), 1, 1, "<file>", f"could not be loaded: {type(exc).__name__}: {detail}"))
        return out


def _build(files: list[Path], action_params: ActionParams | None, env_names: Collection[str] | None) -> RuleSet:
    loaded = [_load_file_safely(path, action_params, env_names) for path in files]
    errors = [e for one in loaded for e in one.errors]
    first: dict[str, Rule] = {}
    for one in loaded:
        for rule, (line, col, path) in zip(one.rules, one.names, strict=True):
            if rule.name in first:
                other = first[rule.name]
                message = f"duplicate rule name {rule.name!r}; first defined at {other.file}:{other.line}"
                errors.append(RuleError(one.file, line, col, path, message))
            else:
                first[rule.name] = rule
    for one in loaded:
        for line, col, path, name in one.link_rules:
            if name not in first:
                hint = did_you_mean(name, first)
                errors.append(RuleError(one.file, line, col, path, f"linked_id: no rule named {name!r}{hint}"))
    if errors:
        raise RuleLoadError(errors)
    digest = hashlib.blake2b(digest_size=16)
    for one in loaded:
        digest.update(Path(one.file).name.encode() + b"\0" + one.text.encode() + b"\0")
    return RuleSet(
        [r for one in loaded for r in one.rules], [w for one in loaded for w in one.warnings], digest.hexdigest()
    )
