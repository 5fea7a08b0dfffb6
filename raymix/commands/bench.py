"""`raymix bench`: the same benchmarks as ``python -m raymix.bench``."""

from __future__ import annotations

import argparse

HELP = "run a benchmark (cpu, gpu, train, fractals, aga, memory) and print JSON lines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from raymix.bench.__main__ import add_suites

    add_suites(parser)


def run(args: argparse.Namespace) -> int:
    return args._bench(args)
