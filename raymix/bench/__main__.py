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
}


def add_suites(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, module_name in SUITES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_bench=module.run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raymix.bench", description=__doc__)
    add_suites(parser)
    args = parser.parse_args(argv)
    return int(args._bench(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
