"""The `fieldrelay` command: run the receiver, workers, beat and sandboxes; check or test rules; operate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fieldrelay_cli import opscli, processes, rulescli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldrelay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    processes.register(sub)  # receiver, worker, beat, sandbox, run
    rulescli.register(sub)  # rules check|test|explain, actions reference
    opscli.register(sub)  # replay, dlq, target, webhooks
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
