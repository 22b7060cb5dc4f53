"""Dry runs: explain what rules would do for an event, and run the YAML cases ops keep beside rules."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from fieldrelay.entitystate import EntityVersion
from fieldrelay.events import ChangeEvent
from rules.calls import ActionCall
from rules.context import LazyEntity, Placeholder, redact
from rules.engine import EventScope, judge
from rules.errors import RuleLoadError, TemplateError
from rules.loader import load_rules, plain
from rules.models import Rule
from rules.ruleset import RuleSet
from rules.templating import build_context, derived_paths, mask_paths, render_params
from rules.trigger import UNKNOWN, Resolved


def step_placeholders(rule: Rule) -> dict[str, Placeholder]:
    """`steps.<id>` for every step id of the rule, rendered as `<steps.<id>.field>`."""
    ids = [c.id for c in (*rule.then, *rule.on_failure) if c.id]
    return {step_id: Placeholder(f"steps.{step_id}") for step_id in ids}


def render_calls(
    rule: Rule,
    calls: list[ActionCall],
    event: ChangeEvent,
    entity: Mapping[str, Any] | None,
    *,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    steps: Mapping[str, Any] | None = None,
    mask_secrets: bool = True,
    derived: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any] | TemplateError]:
    """Each call rendered as `{name: params}`, or the TemplateError it raised.

    Step results are placeholders unless given; `!secret` values render as `***` unless
    `mask_secrets` is false (a run against the sandboxes needs them).
    """
    context = build_context(
        event,
        entity,
        steps=step_placeholders(rule) if steps is None else steps,
        vars=rule.vars,
        now=now,
        env=env,
        mask_secrets=mask_secrets,
        derived=derived,
    )
    out: list[dict[str, Any] | TemplateError] = []
    for call in calls:
        try:
            out.append({call.name: render_params(call, context)})
        except TemplateError as exc:
            out.append(exc)
    return out


def describe_event(event: ChangeEvent) -> str:
    head = f"{event.source} {event.entity.type} {event.entity.id} {event.action} via {event.via}"
    if event.changes is None:
        return head + " (no changeset)"
    changes = ", ".join(f"{k}: {v.old!r} -> {v.new!r}" for k, v in event.changes.items())
    return f"{head} (changes: {changes or 'none'})"


def describe_transition(name: str, change: Resolved) -> str:
    """`status: 'scheduled' (snapshot) -> 'completed' (current value)`; one source is said once."""
    old = "?" if change.old_from == UNKNOWN else repr(change.old)
    if change.old_from == change.new_from:
        return f"{name}: {old} -> {change.new!r}  (from the {change.old_from})"
    return f"{name}: {old} ({change.old_from}) -> {change.new!r} ({change.new_from})"


def explain(
    ruleset: RuleSet,
    event: ChangeEvent,
    entity: Mapping[str, Any] | None,
    *,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    previous: Mapping[str, Any] | None = None,
) -> str:
    """A report for ops: every rule, matched or not and why, with where each `changed:` field's old
    and new values came from; matched rules show their rendered calls.

    `entity` is the record as it is now; `previous` the version fieldrelay saw before (a field
    missing from the changeset is compared between the two; without `previous`, none is known).

    event: servicetrade job 35769 updated via webhook (changes: status: 'scheduled' -> 'completed')
    MATCH completed-job-to-synchroteam  (rules/sync.yaml:8)
      status: 'scheduled' -> 'completed'  (from the changeset)
      then[0] synchroteam.customer.upsert  id=customer
        {"myId": "st-company-39", "name": "Big Bang Burger Bar"}
    no    canceled-job-notify  (rules/sync.yaml:40)
      when.changed.status.to: wanted 'canceled', event had 'completed'
    """
    now = now or datetime.now(UTC)
    candidates = {id(r) for r in ruleset.candidates(event)}
    record = dict(entity) if entity is not None else None
    stored = EntityVersion(dict(previous)) if previous is not None else None
    scope = EventScope(event, LazyEntity(lambda: record), now, env, stored)
    verdicts = judge(ruleset.rules, scope)
    derived = scope.derived()
    lines = [f"event: {describe_event(event)}"]
    if not verdicts:
        lines.append("(no rules loaded)")
    for verdict in verdicts:
        rule = verdict.rule
        where = f"({rule.file}:{rule.line})"
        seen = [(n, scope.view.seen(n)) for n in rule.when.changed]
        transitions = [f"  {describe_transition(n, c)}" for n, c in seen if c is not None]
        if verdict.matched:
            lines.append(f"MATCH {rule.name}  {where}")
            lines.extend(transitions)
            for section, calls in (("then", rule.then), ("on_failure", rule.on_failure)):
                rendered = render_calls(rule, calls, event, record, now=now, env=env, derived=derived)
                for i, (call, result) in enumerate(zip(calls, rendered, strict=True)):
                    label = f"  {section}[{i}] {call.name}" + (f"  id={call.id}" if call.id else "")
                    lines.append(label + ("  (only if a step fails)" if section == "on_failure" else ""))
                    if isinstance(result, TemplateError):
                        lines.append(f"    error: {result}")
                    else:
                        shown = mask_paths(result[call.name], derived_paths(call.params), "***")
                        body = json.dumps(shown, ensure_ascii=False, default=str)
                        lines.append(f"    {redact(body, {'env': env})}")
        else:
            tag = "no   " if id(rule) in candidates else "skip "
            lines.append(f"{tag} {rule.name}  {where}")
            lines.extend(t for t in transitions if id(rule) in candidates)
            lines.append(f"  {verdict.reason}")
    return "\n".join(lines)


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matched: list[str]
    actions: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


class Case(BaseModel):
    """`{name, event, entity?, previous?, env?, now?, expect: {matched, actions?}}`.

    `entity` is the record now; `previous` the version fieldrelay saw before the event, against which
    fields missing from the event's changeset are compared (leave it out for a first sighting).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    event: dict[str, Any]
    entity: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    now: datetime | None = None
    expect: Expect


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cases: list[Case]


@dataclass
class CaseResult:
    file: str
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class CaseReport:
    """All case results; `str(report)` is the summary ops read, `report.passed` gates CI."""

    results: list[CaseResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        lines = []
        for result in self.results:
            lines.append(f"{'PASS' if result.passed else 'FAIL'} {result.file}: {result.name}")
            lines.extend(f"    - {p}" for p in result.problems)
        lines.append(f"{len(self.results) - len(self.failed)} passed, {len(self.failed)} failed")
        return "\n".join(lines)


def _event(raw: Mapping[str, Any]) -> ChangeEvent:
    # Case authors may leave out what no rule looks at.
    return ChangeEvent.model_validate({"via": "webhook", "occurred_at": 0, **raw})


def run_case(case: Case, file: str, ruleset: RuleSet) -> CaseResult:
    result = CaseResult(file, case.name)
    try:
        event = _event(case.event)
    except ValidationError as exc:
        result.problems.append(f"bad event: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        return result
    stored = EntityVersion(case.previous) if case.previous is not None else None
    scope = EventScope(event, LazyEntity(lambda: case.entity), case.now, case.env, stored)
    verdicts = judge(ruleset.rules, scope)
    matched = [v.rule.name for v in verdicts if v.matched]
    if sorted(matched) != sorted(case.expect.matched):
        why = "; ".join(
            f"{v.rule.name}: {v.reason}" for v in verdicts if v.rule.name in case.expect.matched and not v.matched
        )
        result.problems.append(f"expected matched {case.expect.matched}, got {matched}" + (f" ({why})" if why else ""))
    for name, expected in case.expect.actions.items():
        rule = ruleset.get(name)
        if rule is None:
            result.problems.append(f"actions for unknown rule {name!r}")
            continue
        rendered = render_calls(
            rule, rule.then, event, case.entity, now=case.now, env=case.env, derived=scope.derived()
        )
        got = [str(r) if isinstance(r, TemplateError) else r for r in rendered]
        if got != expected:
            for i in range(max(len(got), len(expected))):
                want = expected[i] if i < len(expected) else None
                have = got[i] if i < len(got) else None
                if want != have:
                    result.problems.append(f"{name}.then[{i}]: expected {want!r}, rendered {have!r}")
    return result


def run_cases(
    directory: Path,
    *,
    rules_directory: Path | None = None,
    action_params: Mapping[str, type[BaseModel]] | None = None,
    env_names: Collection[str] | None = None,
) -> CaseReport:
    """Run every `*.yaml` case file in `directory` against the rules in `rules_directory`
    (default: the parent of `directory`, as in `rules/examples/cases/`)."""
    directory = Path(directory)
    rules_dir = Path(rules_directory) if rules_directory is not None else directory.parent
    try:
        ruleset = load_rules(rules_dir, action_params, env_names=env_names)
    except RuleLoadError as exc:
        return CaseReport([CaseResult(str(rules_dir), "load rules", [str(e) for e in exc.errors])])
    results = []
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml")):
        try:
            spec = CaseFile.model_validate(plain(YAML(typ="rt").load(path.read_text(encoding="utf-8"))))
        except (YAMLError, ValidationError) as exc:
            results.append(CaseResult(str(path), "load cases", [str(exc)]))
            continue
        results.extend(run_case(case, str(path), ruleset) for case in spec.cases)
    return CaseReport(results)
