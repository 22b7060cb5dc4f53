"""The bomb cases: rule files and templates that would take gigabytes or minutes are refused with a
`file:line` error at load, or a clear error at render, never a traceback (issue 12, item 6)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from rules import RuleLoadError, build_context, load_rules
from rules import bounds as rule_bounds
from rules.errors import TemplateError
from rules.templating import compile_template
from workers.actions.registry import action_params

HEAD = """\
rules:
  - name: bomb
    when: {source: servicetrade, entity: job}
    then:
      - http.request:
          url: https://hooks.example/x
"""


def _guard() -> None:  # the test's own guard, should the product's bounds ever regress
    resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, resource.RLIM_INFINITY))


def rules_check(directory: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "fieldrelay_cli", "rules", "check", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_guard,
        env={"PATH": "/usr/bin:/bin", "FIELDRELAY_DEV_MODE": "1"},
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def laughs(levels: int) -> str:
    lines = ['x-l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # 4 GB and 74 s at load before: Jinja folded the constant.
        (HEAD + "          json: {text: \"{{ 'a' * 10**9 }}\"}\n", 7, "a repeated value would be 1,000,000,000 long"),
        (HEAD + "          json: {text: \"{{ 'a' ~ 'b' * 10**8 }}\"}\n", 7, "would be 100,000,000 long"),
        (
            HEAD + "          json: {text: \"{{ 'x' | center(2000000000) }}\"}\n",
            7,
            "|center would be 2,000,000,000 long",
        ),
        (HEAD + "          json: {n: '{{ 10 ** 100000 }}'}\n", 7, "a power past 8192 bits"),
        # Over 120 s and 1.2 GB before (the loader copied every expansion).
        (laughs(8) + HEAD, 7, "aliases expand this document past 500,000 nodes"),
        # A RecursionError traceback before.
        ("x-deep: " + "[" * 5000 + "]" * 5000 + "\n" + HEAD, 1, "nested deeper than 64 levels"),
        ("x-deep:\n" + "".join("  " * i + "- \n" for i in range(200)) + HEAD, 65, "nested deeper than 64 levels"),
        (HEAD + "          json: {text: '{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}'}\n", 7, "nested too deeply"),
    ],
    ids=["fold", "fold-concat", "fold-filter", "power", "billion-laughs", "deep-flow", "deep-block", "deep-template"],
)
def test_rules_check_refuses_a_bomb_at_its_line_quickly(tmp_path: Path, text: str, line: int, message: str) -> None:
    (tmp_path / "bomb.yaml").write_text(text)
    code, output, seconds = rules_check(tmp_path)
    assert code == 1, output
    assert "Traceback" not in output
    [error] = [o for o in output.splitlines() if o.startswith(str(tmp_path))]
    assert error.startswith(f"{tmp_path / 'bomb.yaml'}:{line}:"), error
    assert message in error
    assert seconds < 30  # seconds before the limits, not minutes


def test_many_aliases_are_refused(tmp_path: Path) -> None:
    text = "x-a: &a 1\nx-list: [" + ", ".join(["*a"] * 1001) + "]\n" + HEAD
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(RuleLoadError) as info:
        load_rules(tmp_path, action_params())
    assert [e.message for e in info.value.errors] == ["more than 1000 aliases"]


def test_ordinary_anchors_still_load(tmp_path: Path) -> None:
    text = 'x-hook: &hook {url: "https://hooks.example/x"}\n' + HEAD.replace(
        "      - http.request:\n          url: https://hooks.example/x\n", "      - http.request: *hook\n"
    )
    (tmp_path / "r.yaml").write_text(text)
    assert [r.name for r in load_rules(tmp_path, action_params()).rules] == ["bomb"]


EVENT = ChangeEvent(
    source="servicetrade",
    via="webhook",
    action="updated",
    entity=EntityRef(type="job", id=35769),
    occurred_at=1700000000,
    changes={"n": FieldChange(old=1, new=100000)},
)


def render(source: str) -> object:
    return compile_template(source).render(build_context(EVENT, {"name": "x"}))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'a' * (event.entity.id * 30000) }}", "a repeated value would be 1,073,070,000 long"),  # MemoryError before
        ("{{ 'a' * 10**8 }}", "would be 100,000,000 long"),  # a 100 MB POST and trace before
        ("{{ ('ab' * 400000) + ('cd' * 400000) }}", "a joined value would be 1,600,000 long"),
        ("{{ 'x'.ljust(event.entity.id * 100000) }}", "ljust() would be"),
        ("{{ 'x'.center(changes.n.new * 20) }}", "center() would be"),
        ("{{ '%*s' % (changes.n.new * 20, 'x') }}", "a formatted width would be"),
        ("{{ '%99999999s' % 'x' }}", "a formatted width would be 99,999,999 long"),
        ("{{ '{:>99999999}'.format('x') }}", "a formatted width would be 99,999,999 long"),
        ("{{ '{:>{}}'.format('x', changes.n.new * 100) }}", "a formatted width would be"),
        ("{{ range(100000) | join('x' * 100) }}", "|join would be"),
        ("{{ ('a' * 1000) | replace('a', 'b' * 2000) }}", "|replace would be 2,000,000 long"),
        ("{{ ('a\n' * 1000) | indent(2000) }}", "|indent would be"),
        ("{{ [1] | batch(10**9, 0) | list }}", "|batch would be 1,000,000,000 long"),
        ("{% for i in range(100000) %}{{ 'abcdefghijk' }}{% endfor %}", "a text would be"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
            "{{ ns.s }}",
            "a text would be 1,048,576 long",
        ),
        (
            "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{% set c = [b] * 1000 %}{{ c }}",
            "an output value is larger than rule templates may build",
        ),
        ("{{ lipsum(n=100000) }}", "'lipsum' is undefined"),
        ("{{ 7 ** (changes.n.new * 100) }}", "a power past 8192 bits"),
    ],
)
def test_renders_that_would_build_too_much_are_refused(source: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        render(source)
    assert message in str(info.value)
    assert time.monotonic() - started < 5


def test_native_values_are_bounded_too() -> None:
    with pytest.raises(Exception, match="the rendered value is larger than rule templates may build"):
        render("{{ [[[1] * 1000] * 1000] * 10 }}")


def test_a_render_that_runs_too_long_is_stopped(monkeypatch) -> None:
    monkeypatch.setattr(rule_bounds, "RENDER_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(Exception, match=r"the template ran longer than 0\.5 s and was stopped"):
        render("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 3 }}-{{ event.entity.id * 2 }}",
        "{{ '%05d' % event.entity.id }}",
        "{{ '{:>8}'.format(event.entity.id) }}",
        "{{ range(3) | join(',') }}",
        "{{ event.entity.id ~ '-' ~ changes.n.new }}",
        "{{ 2 ** 62 }}",
        "{% for i in range(3) %}{{ i }}{% endfor %}",
        "{{ 'x' | center(11) }}",
    ],
)
def test_ordinary_templates_are_unaffected(source: str) -> None:
    assert render(source) == compile_template(source).render(build_context(EVENT, {"name": "x"}))
    assert render(source) is not None


def test_a_render_error_is_a_template_error_with_a_path() -> None:
    from rules.calls import ActionCall
    from rules.templating import render_params

    call = ActionCall("http.request", None, {"url": "https://x/", "json": {"t": "{{ 'a' * 10**8 }}"}}, 5)
    with pytest.raises(TemplateError) as info:
        render_params(call, build_context(EVENT, None))
    assert str(info.value).startswith("http.request.json.t: ")
