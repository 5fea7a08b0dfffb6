"""`raymix experiment`: the small robustness experiment of docs/results.md, offline on a CPU."""

from __future__ import annotations

import argparse

HELP = "train every method on real digits (several seeds) and evaluate their robustness, offline on a CPU"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from raymix.tools.small_experiment import METHODS

    parser.add_argument("--out", required=True, help="folder for the data, the runs, the evaluation and results.md")
    parser.add_argument("--methods", type=_names, default=list(METHODS), metavar="A,B,...",
                        help=f"methods to train (default: all: {','.join(METHODS)})")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2], metavar="0,1,2", help="run seeds (default: 0,1,2)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default: 15)")
    parser.add_argument("--arch", default="wrn16_1", help="network, the same for every method (default: wrn16_1)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch (default: 64)")
    parser.add_argument("--jsd", action="store_true", help="the JSD consistency loss for AugMix and IPMix (3x a step)")
    parser.add_argument("--limit", type=int, default=None, help="use this many of the 1,797 digits (smoke tests)")
    parser.add_argument("--corruptions", default="common", help="corruptions evaluated (default: common, the 15)")
    parser.add_argument("--severities", default="1-5", help="corruption severities (default: 1-5)")
    parser.add_argument("--attack-limit", type=int, default=300, help="test images attacked with PGD (default: 300)")
    parser.add_argument("--eval-actors", type=int, default=2, help="inference actors of the evaluation (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training step (default: 2)")
    parser.add_argument("--verbose", action="store_true", help="show Ray's output instead of logging it")


def run(args: argparse.Namespace) -> int:
    from raymix.pipeline import console
    from raymix.tools.small_experiment import ExperimentSettings, run_experiment

    try:
        settings = ExperimentSettings(
            out=args.out, methods=args.methods, seeds=args.seeds, epochs=args.epochs, arch=args.arch,
            batch_size=args.batch_size, jsd=args.jsd, limit=args.limit, corruptions=args.corruptions,
            severities=args.severities, attack_limit=args.attack_limit, eval_actors=args.eval_actors,
            threads=args.threads)
    except ValueError as err:
        raise SystemExit(f"raymix experiment: {err}") from None
    with console.session(verbose=args.verbose, json_out=True, log_dir=console.log_dir_for(args.out)):
        summary = run_experiment(settings)
        console.emit({"out": args.out, "results": f"{args.out}/results.md", "timing_s": summary["timing_s"]})
    return 0
