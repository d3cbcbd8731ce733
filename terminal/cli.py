"""`pos`: the terminal's command line."""
from __future__ import annotations

import argparse
import sys


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    from keys.selfcheck import run

    return run(verbose=not args.quiet)


def _cmd_demo(args: argparse.Namespace) -> int:
    print("pos demo: the cashier UI, host and simulated reader are not built yet;")
    print("running the crypto core self-check instead (see README, 'Status').\n")
    return _cmd_selfcheck(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pos", description="Soft-POS terminal")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("selfcheck", help="exercise the crypto core against known vectors")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_selfcheck)

    p = sub.add_parser("demo", help="run the demo (for now: the crypto self-check)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)

    from hardware import cli as hardware_cli

    hardware_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
