"""The rule language: models, loader, conditions, templating, evaluation. Pure: no network I/O."""

from rules.calls import ActionCall
from rules.engine import evaluate
from rules.errors import RuleError, RuleLoadError, RuleWarning, TemplateError, TemplateSecurityError
from rules.loader import load_rule_file, load_rules, rule_from_json
from rules.models import Rule, Verdict
from rules.ruleset import RuleSet
from rules.templating import build_context, render_params

__all__ = [
    "ActionCall",
    "Rule",
    "RuleError",
    "RuleLoadError",
    "RuleSet",
    "RuleWarning",
    "TemplateError",
    "TemplateSecurityError",
    "Verdict",
    "build_context",
    "evaluate",
    "load_rule_file",
    "load_rules",
    "render_params",
    "rule_from_json",
]
