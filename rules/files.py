"""Which files of a rules directory hold rules, and a fingerprint that changes whenever one of them does."""

from __future__ import annotations

from pathlib import Path

Fingerprint = tuple[tuple[str, int, int], ...]


def rule_files(directory: Path) -> list[Path]:
    """Every `*.yaml`/`*.yml` directly in `directory`, sorted, dotfiles skipped; a file given itself is the one."""
    if Path(directory).is_file():
        return [Path(directory)]  # `fieldrelay rules check rules/jobs.yaml`: check one file, whatever its name
    return sorted(
        p
        for p in Path(directory).iterdir()
        if p.suffix in (".yaml", ".yml") and p.is_file() and not p.name.startswith(".")
    )


def fingerprint(directory: Path) -> Fingerprint:
    """(name, mtime, size) of each rule file: reload when it differs from the last one seen."""
    stats = [(p.name, p.stat()) for p in rule_files(directory)]
    return tuple((name, st.st_mtime_ns, st.st_size) for name, st in stats)
