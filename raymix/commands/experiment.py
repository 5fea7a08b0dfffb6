"""`raymix experiment`: the small robustness experiment of docs/results.md, offline on a CPU."""

from __future__ import annotations

import argparse

HELP = "train every method on real digits (several seeds) and evaluate their robustness, offline on a CPU"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import dataclasses

    from raymix.tools.small_experiment import METHODS, ExperimentSettings

    d = {f.name: f.default for f in dataclasses.fields(ExperimentSettings) if f.default is not dataclasses.MISSING}

    parser.add_argument("--out", required=True, help="folder for the data, the runs, the evaluation and results.md")
    parser.add_argument("--methods", type=_names, default=list(METHODS), metavar="A,B,...",
                        help=f"methods to train (default: all: {','.join(METHODS)})")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2], metavar="0,1,2", help="run seeds (default: 0,1,2)")
    parser.add_argument("--epochs", type=int, default=d["epochs"], help=f"training epochs (default: {d['epochs']})")
    parser.add_argument("--arch", default=d["arch"], help=f"network, the same for every method (default: {d['arch']})")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help=f"training batch (default: {d['batch_size']})")
    parser.add_argument("--jsd", action="store_true", help="the JSD consistency loss for AugMix and IPMix (3x a step)")
    parser.add_argument("--limit", type=int, default=None, help="use this many of the 1,797 digits (smoke tests)")
    parser.add_argument("--corruptions", default=d["corruptions"], help="corruptions evaluated (default: common, the 15)")
    parser.add_argument("--severities", default=d["severities"], help=f"corruption severities (default: {d['severities']})")
    parser.add_argument("--attack-limit", type=int, default=d["attack_limit"],
                        help=f"test images attacked with PGD (default: {d['attack_limit']})")
    parser.add_argument("--eval-actors", type=int, default=d["eval_actors"],
                        help=f"inference actors of the evaluation (default: {d['eval_actors']})")
    parser.add_argument("--threads", type=int, default=d["threads"],
                        help="torch threads per training run (default: 1; more slow small convolutions on a busy machine)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="training runs at once, one process each (default: the machine's CPU cores)")
    parser.add_argument("--verbose", action="store_true", help="show Ray's output instead of logging it")


def run(args: argparse.Namespace) -> int:
    from raymix.pipeline import console
    from raymix.tools.small_experiment import ExperimentSettings, run_experiment

    try:
        settings = ExperimentSettings(
            out=args.out, methods=args.methods, seeds=args.seeds, epochs=args.epochs, arch=args.arch,
            batch_size=args.batch_size, jsd=args.jsd, limit=args.limit, corruptions=args.corruptions,
            severities=args.severities, attack_limit=args.attack_limit, eval_actors=args.eval_actors,
            threads=args.threads, **({"jobs": args.jobs} if args.jobs else {}))
    except ValueError as err:
        raise SystemExit(f"raymix experiment: {err}") from None
    with console.session(verbose=args.verbose, json_out=True, log_dir=console.log_dir_for(args.out)):
        summary = run_experiment(settings)
        console.emit({"out": args.out, "results": f"{args.out}/results.md", "timing_s": summary["timing_s"]})
    return 0
