"""`acquirer`: the host's command line."""
from __future__ import annotations

import argparse
import sys


def _cmd_hsm_kcv(args: argparse.Namespace) -> int:
    from keys.hsm import HSM

    hsm = HSM.open(args.store, lmk_path=args.lmk)
    for name, key in sorted(hsm.describe().items()):
        print(f"{name:40s} {key}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acquirer", description="Acquirer host")
    sub = parser.add_subparsers(dest="command", required=True)
    hsm = sub.add_parser("hsm", help="the host security module's key store")
    hsm_sub = hsm.add_subparsers(dest="hsm_command", required=True)
    p = hsm_sub.add_parser("list", help="list keys with usage, version and check value (never key bytes)")
    p.add_argument("--store", required=True, help="path of the HSM key store (SQLite)")
    p.add_argument("--lmk", required=True, help="path of the local master key file")
    p.set_defaults(func=_cmd_hsm_kcv)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
