"""The ``raymix`` command line.

First the jobs of :mod:`raymix.registry` (``raymix mix``, ``diffusemix``, ``train``), their
flags generated from their settings dataclasses (:mod:`raymix.commands.jobs`); then the
tools, each in its own module under :mod:`raymix.commands` exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import only the
standard library at module level; heavy imports (torch, ray, diffusers) happen when a
command runs, so ``raymix --help`` and ``raymix JOB --help`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from raymix import __version__, registry
from raymix.commands import jobs

# Tool name -> module; the order is the order shown in --help, after the jobs.
SUBCOMMANDS = {
    "sample": "raymix.commands.sample",
    "preview": "raymix.commands.preview",
    "bench": "raymix.commands.bench",
    "models": "raymix.commands.models",
    "plan": "raymix.commands.plan",
    "experiment": "raymix.commands.experiment",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raymix",
        description="Label-preserving image augmentation at ImageNet scale on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"raymix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in registry.JOBS.values():
        p = sub.add_parser(entry.name, help=entry.help, description=entry.help, **jobs.parser_options(entry))
        jobs.add_arguments(p, entry)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the subcommand that got them, with the closest flags it has
        jobs.reject_unknown(args._parser, extra)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
