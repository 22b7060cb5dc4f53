"""The README tells the truth: its dry-run output is a real run's, and its command table is the parser's."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldrelay_cli.main import build_parser, main

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def block_after(marker: str) -> str:
    """The first fenced block after `marker`."""
    start = README.index(marker)
    body = README.index("```\n", start) + len("```\n")
    return README[body : README.index("```\n", body)]


def test_the_dry_run_output_is_copied_from_a_real_run(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the README shows paths as a user in the clone sees them
    monkeypatch.delenv("FIELDRELAY_RULES_DIR", raising=False)
    code = main(["rules", "test", "--event", "examples/webhook-sample.json", "--entity", "examples/job-35769.json"])
    out = capsys.readouterr().out
    assert code == 0
    assert block_after("**Dry runs.**") == out.rstrip("\n") + "\n", (
        "README's dry-run example is stale: paste the output of `fieldrelay rules test --event "
        "examples/webhook-sample.json --entity examples/job-35769.json` into it"
    )


def leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, set[str]]]:
    """(command words, its --options) for every command the parser runs."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers or not subparsers[0].required:  # runnable as it is (`webhooks rejected [--json]`)
        options = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        yield " ".join(prefix), options
    if not subparsers:
        return
    for name, child in subparsers[0].choices.items():
        yield from leaves(child, (*prefix, name))


def table_rows() -> Iterator[tuple[list[str], set[str]]]:
    """(commands, --options) of each row of the README's command table; `a|b` words name several commands."""
    start = README.index("## The command line")
    table = README[start : README.index("\n## ", start + 1)]
    for cell in re.findall(r"^\| `fieldrelay ([^`]*)` \|", table, flags=re.MULTILINE):
        words: list[list[str]] = []
        for token in cell.replace("\\|", "|").split():
            if not re.fullmatch(r"[a-z]+(\|[a-z]+)*", token):
                break
            words.append(token.split("|"))
        commands = [""]
        for choices in words:
            commands = [f"{c} {w}".strip() for c in commands for w in choices]
        yield commands, set(re.findall(r"--[a-z][a-z-]*", cell))


def test_the_command_table_lists_every_command_and_option_the_parser_has():
    parsed = dict(leaves(build_parser()))
    documented: dict[str, set[str]] = {}
    for commands, options in table_rows():
        unknown = [c for c in commands if c not in parsed]
        assert not unknown, f"the README's command table names commands the parser lacks: {unknown}"
        stray = options - set().union(*(parsed[c] for c in commands))
        assert not stray, f"README row `fieldrelay {commands[0]}…` has options no such command takes: {stray}"
        for command in commands:
            documented.setdefault(command, set()).update(options)
    assert sorted(set(parsed) - set(documented)) == [], "commands missing from the README's command table"
    missing = {c: sorted(parsed[c] - documented[c]) for c in parsed if parsed[c] - documented[c]}
    assert missing == {}, "options missing from the README's command table"


@pytest.mark.parametrize("where", ["## Two commands", "## The command line"])
def test_the_readme_says_how_to_put_fieldrelay_on_path(where):
    """The README runs bare `fieldrelay …`; a user who only ran `make run` has it in .venv/bin only."""
    section = README[README.index(where) :]
    section = section[: section.index("\n## ", 1)]
    assert "source .venv/bin/activate" in section
