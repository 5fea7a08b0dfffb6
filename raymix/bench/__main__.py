"""Entry point for ``python -m raymix.bench SUITE``."""

from __future__ import annotations

import argparse
import importlib
import sys

SUITES = {
    "cpu": "raymix.bench.cpu",
    "gpu": "raymix.bench.gpu",
    "train": "raymix.bench.train",
    "fractals": "raymix.bench.fractals",
    "aga": "raymix.bench.aga",
    "memory": "raymix.bench.memory",
}


#: What the ``targets`` of a result line mean, for every ``--help`` of the benchmarks.
TARGETS_NOTE = ("Each JSON line may hold \"targets\": the project's goal for a figure, with true when this run "
                "met it and false when it did not. A false target is a measurement, not an error (the exit "
                "status stays 0); docs/performance.md lists the targets and the figures measured so far.")


def add_suites(parser: argparse.ArgumentParser) -> None:
    parser.epilog = TARGETS_NOTE
    sub = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, module_name in SUITES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, epilog=TARGETS_NOTE)
        module.add_arguments(p)
        p.set_defaults(_bench=module.run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raymix.bench", description=__doc__)
    add_suites(parser)
    args = parser.parse_args(argv)
    return int(args._bench(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
