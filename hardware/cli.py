"""`pos reader ...` and `pos card ...`: the hardware commands of the `pos` CLI."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the hardware subcommands to the `pos` parser."""
