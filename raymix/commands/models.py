"""`raymix models` (not implemented yet)."""

from __future__ import annotations

import argparse

HELP = "(not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("raymix models is not implemented yet")
