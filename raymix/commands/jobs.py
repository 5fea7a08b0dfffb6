"""`raymix mix|diffusemix|train`: the jobs of :mod:`raymix.registry`, one subcommand each.

A job's flags are generated from its settings dataclass (:mod:`raymix.settings`), with
``--config FILE`` under them; the same parser serves ``jobs/*.py`` (:func:`script_main`),
so ``ray job submit -- python jobs/diffusemix_imagenet.py ...`` and ``raymix diffusemix
...`` take the same flags. Nothing heavy is imported until the job runs.
"""

from __future__ import annotations

import argparse
import difflib
import sys

from raymix import registry
from raymix.settings import add_flags, settings_of

__all__ = ["parser_options", "add_arguments", "run_job", "reject_unknown", "script_main"]


def parser_options(entry: registry.JobEntry) -> dict:
    """``ArgumentParser`` keywords of a job: a short usage line naming the required flags, and
    no abbreviated flags (``--step`` is an error, not ``--steps``)."""
    required = [f"{s.flag} {s.metavar or s.key.upper()}" for s in settings_of(entry.load_settings()).values()
                if s.is_required]
    return {"usage": f"%(prog)s [-h] [--config FILE] {' '.join(required)} [flags]", "allow_abbrev": False}


def add_arguments(parser: argparse.ArgumentParser, entry: registry.JobEntry) -> None:
    """The job's flags on ``parser``; parsing sets ``_run`` to a function running the job."""
    flags = add_flags(parser, entry.load_settings(), config=True)
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of one line (default: off)")
    parser.set_defaults(_run=lambda args: run_job(entry, flags, args), _parser=parser)


def run_job(entry: registry.JobEntry, flags, args: argparse.Namespace) -> int:
    """Build the job's settings, check them before Ray starts (:mod:`raymix.commands.checks`),
    run it. Without ``--debug`` an error is one line on stderr, ``raymix JOB: ...``: exit
    status 2 for a mistake in the settings, 1 for a failure of the run, 130 when interrupted
    (Ctrl-C: the files committed so far stay, and the same command resumes)."""
    from raymix.commands import checks

    job = flags.build(args)
    try:
        for line in checks.validate(job, flags.values(args)):
            print(f"raymix {entry.name}: {line}", file=sys.stderr, flush=True)
        return int(entry.load_run()(job) or 0)
    except KeyboardInterrupt:
        print(f"raymix {entry.name}: interrupted; the files written so far are kept: run the same command again "
              "to resume", file=sys.stderr, flush=True)
        return 130
    except Exception as err:
        if args.debug:
            raise
        text = checks.first_line(err)
        usage = isinstance(err, checks.UsageError)
        hint = "" if usage else " (--debug shows the traceback)"
        print(f"raymix {entry.name}: {text}{hint}", file=sys.stderr, flush=True)
        return 2 if usage else 1


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
