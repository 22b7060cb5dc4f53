"""`!secret NAME` in rule files: an allowlisted environment variable, read at render time, never shown.

    headers: {Authorization: !secret CHAT_TOKEN}

The loader stores the tag as the template `{{ secret('CHAT_TOKEN') }}`, so the value is in no rule
JSON, trace or error; `secret()` reads it from the context's `env` (the allowlisted variables) when
the action renders. Dry runs render every secret as `***`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.nodes import Node, ScalarNode

from rules.errors import TemplateError

ENV_SETTING = "FIELDRELAY_RULES_ENV"
MASK = "***"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class SecretTag:
    """A `!secret NAME` as read from YAML, with where the tag is written (1-based)."""

    name: str
    line: int
    col: int

    @property
    def valid(self) -> bool:
        return bool(_NAME.match(self.name))

    def template(self) -> str:
        return "{{ secret(" + repr(self.name) + ") }}"


class _RuleConstructor(RoundTripConstructor):
    """ruamel's round-trip constructor plus `!secret`, without touching ruamel's shared registry."""


def _construct_secret(constructor: RoundTripConstructor, node: Node) -> SecretTag:
    value = node.value if isinstance(node, ScalarNode) else ""
    return SecretTag(str(value).strip(), node.start_mark.line + 1, node.start_mark.column + 1)


_RuleConstructor.add_constructor("!secret", _construct_secret)


def rule_yaml() -> YAML:
    """A round-trip YAML loader (node marks kept) that understands `!secret`."""
    yaml = YAML(typ="rt")
    yaml.Constructor = _RuleConstructor
    return yaml


def find_secrets(node: Any, loc: Loc = ()) -> list[tuple[Loc, SecretTag]]:
    """Every `!secret` in a loaded document, with its location."""
    if isinstance(node, SecretTag):
        return [(loc, node)]
    if isinstance(node, Mapping):
        return [found for key, value in node.items() for found in find_secrets(value, (*loc, str(key)))]
    if isinstance(node, list):
        return [found for i, value in enumerate(node) for found in find_secrets(value, (*loc, i))]
    return []


def check_secret(
    loc: Loc,
    tag: SecretTag,
    env_names: Collection[str] | None,
    environ: Mapping[str, str],
) -> tuple[str | None, str | None]:
    """(error, warning) for one tag; the value is never part of either."""
    in_params = len(loc) >= 6 and loc[0] == "rules" and loc[2] in ("then", "on_failure") and loc[5:]
    if not tag.valid:
        return f"!secret takes an environment variable name like CHAT_TOKEN, got {tag.name!r}", None
    if not in_params:
        return "!secret is only allowed in action parameters (then/on_failure)", None
    if env_names is not None and tag.name not in env_names:
        return f"secret {tag.name!r} is not allowed: add it to {ENV_SETTING}", None
    if tag.name not in environ:
        return None, f"secret {tag.name!r} is not set in the environment; actions using it fail until it is"
    return None, None


def secret_reader(env: Mapping[str, str], *, mask: bool = False) -> Callable[[str], str]:
    """The `secret(name)` rule templates call: the allowlisted value, or `***` in dry runs."""

    def secret(name: str) -> str:
        if mask:
            return MASK
        value = env.get(name)
        if value is None:
            raise TemplateError(
                "", f"secret {name!r} is not set in the environment (it must be set and listed in {ENV_SETTING})"
            )
        return value

    return secret
