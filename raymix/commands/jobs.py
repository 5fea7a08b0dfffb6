"""`raymix mix|diffusemix|train`: the jobs of :mod:`raymix.registry`, one subcommand each.

A job's flags are generated from its settings dataclass (:mod:`raymix.settings`), with
``--config FILE`` under them; the same parser serves ``jobs/*.py`` (:func:`script_main`),
so ``ray job submit -- python jobs/diffusemix_imagenet.py ...`` and ``raymix diffusemix
...`` take the same flags. Nothing heavy is imported until the job runs.
"""

from __future__ import annotations

import argparse
import difflib

from raymix import registry
from raymix.settings import add_flags, settings_of

__all__ = ["parser_options", "add_arguments", "reject_unknown", "script_main"]


def parser_options(entry: registry.JobEntry) -> dict:
    """``ArgumentParser`` keywords of a job: a short usage line naming the required flags, and
    no abbreviated flags (``--step`` is an error, not ``--steps``)."""
    required = [f"{s.flag} {s.metavar or s.key.upper()}" for s in settings_of(entry.load_settings()).values()
                if s.is_required]
    return {"usage": f"%(prog)s [-h] [--config FILE] {' '.join(required)} [flags]", "allow_abbrev": False}


def add_arguments(parser: argparse.ArgumentParser, entry: registry.JobEntry) -> None:
    """The job's flags on ``parser``; parsing sets ``_run`` to a function running the job."""
    flags = add_flags(parser, entry.load_settings(), config=True)
    parser.set_defaults(_run=lambda args: int(entry.load_run()(flags.build(args)) or 0), _parser=parser)


def reject_unknown(parser: argparse.ArgumentParser, extra: list[str]) -> None:
    """A usage error naming the unknown flags in ``extra``, with the closest known ones."""
    known = [s for s in parser._option_string_actions if s.startswith("--")]
    hints = []
    for arg in extra:
        close = difflib.get_close_matches(arg.split("=")[0], known, n=2) if arg.startswith("--") else []
        hints.append(f"{arg} (did you mean {' or '.join(close)}?)" if close else arg)
    parser.error(f"unrecognized arguments: {' '.join(hints)}")


def script_main(name: str, argv: list[str] | None = None, *, description: str | None = None) -> int:
    """``raymix NAME`` as ``python jobs/SCRIPT``: what the job scripts call."""
    entry = registry.job(name)
    parser = argparse.ArgumentParser(prog=f"python {entry.script}", description=description or entry.help,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, **parser_options(entry))
    add_arguments(parser, entry)
    args, extra = parser.parse_known_args(argv)
    if extra:
        reject_unknown(parser, extra)
    return args._run(args)
