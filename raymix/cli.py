"""The ``raymix`` command line.

Each subcommand lives in its own module under :mod:`raymix.commands` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Command
modules import only the standard library at module level; heavy imports (torch, ray,
diffusers) happen inside ``run`` so ``raymix --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand name -> module; the order is the order shown in --help.
SUBCOMMANDS = {
    "sample": "raymix.commands.sample",
    "preview": "raymix.commands.preview",
    "bench": "raymix.commands.bench",
    "models": "raymix.commands.models",
    "plan": "raymix.commands.plan",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raymix",
        description="Label-preserving image augmentation at ImageNet scale on Ray.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
