"""The evaluation job (``raymix eval``, ``jobs/eval_robustness.py``): its settings and its run.

Standard library at import, so ``--help`` imports no torch or Ray; the work is in
:mod:`raymix.eval.inference` (Ray Data batch inference) and :mod:`raymix.eval.report`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from raymix import schema
from raymix.settings import address_option, option, storage_options_option, verbose_option

__all__ = ["EvalJob", "parse_named", "run", "main"]


def parse_named(spec: str) -> tuple[str, str]:
    """``NAME=URI`` -> ``(NAME, URI)``; a bare URI is its own name. A ``=`` inside a URI's
    query is left alone (the name is what precedes the first ``=`` if it has no ``/`` or ``:``)."""
    name, sep, uri = spec.partition("=")
    if sep and name and not any(ch in name for ch in "/:") and uri:
        return name, uri
    return spec, spec


@dataclass(kw_only=True)
class EvalJob:
    """Clean, corrupted, out-of-distribution and adversarial error and calibration of one or
    more classifiers, in one pass over the data (docs/evaluation.md)."""

    # models
    checkpoints: list[str] = option(key="checkpoint", metavar="[NAME=]URI",
                                    help="a model (repeatable): the state.pt `raymix train` writes (or its "
                                         "checkpoint folder), local or s3://; or torchvision:ARCH for the "
                                         "library's ImageNet weights")
    baseline: str | None = option(None, metavar="NAME", default_text="none",
                                  help="a --checkpoint name: relative mCE and CE of the others against it")
    # data
    input: str = option(metavar="URI", help="clean validation data: class folders, parquet shards or WebDataset "
                                            "tars (local path, s3://, ...)")
    layout: str = option("auto", choices=schema.LAYOUTS, help="layout of --input and --ood")
    limit: int | None = option(None, default_text="all", help="evaluate at most N images of each set (smoke tests)")
    image_size: int | None = option(None, default_text="the checkpoints' image_size, else 224",
                                    help="side of the centre crop the model sees")
    crop_ratio: float | None = option(None, default_text="the checkpoints' val_crop_ratio, else 0.875",
                                      help="centre crop: image_size / shorter side after resizing")
    corruptions: str = option("common", metavar="NAMES",
                              help="corruptions generated on the fly from --input: comma-separated names, 'common' "
                                   "(ImageNet-C's 15), 'extra' (the other 4), 'all', or '' for none")
    severities: str = option("1-5", metavar="LIST", help="severities, e.g. 1-5 or 1,3,5")
    corrupted: str | None = option(None, metavar="URI",
                                   help="a released corrupted set (corruption/severity/class/...: ImageNet-C, "
                                        "CIFAR-10-C as folders) read instead of generating --corruptions")
    ood: list[str] = option([], metavar="NAME=URI",
                            help="an out-of-distribution set (repeatable), e.g. imagenet-r=s3://.../imagenet-r; "
                                 "when its classes are a subset of --input's (ImageNet-R/-A: 200 of 1000), the "
                                 "logits are restricted to them")
    ood_subset: dict = option({}, metavar="JSON",
                              help='the 1000-class indices an --ood set is scored on, by its name: a list, or the '
                                   'URI of a JSON list, e.g. \'{"imagenet-r": "s3://.../imagenet_r_indices.json"}\' '
                                   '(when its class names cannot be matched to --input\'s)')
    mce: str = option("auto", choices=("auto", "alexnet", "none"),
                      help="mCE normalisation: alexnet (ImageNet-C), none (CIFAR: the mean error); auto: "
                           "alexnet when all 15 corruptions x 5 severities of a 1000-class model are there")
    # adversarial
    attack: str = option("none", choices=("none", "fgsm", "pgd"), help="white-box L-inf attack on clean --input")
    eps: float = option(2 / 255, default_text="2/255", help="attack budget in [0, 1] pixel units")
    steps: int = option(20, help="PGD steps")
    step_size: float = option(0.5 / 255, default_text="0.5/255", help="PGD step in [0, 1] pixel units")
    random_start: bool = option(True, help="PGD starts at a random point of the eps ball (seeded per image)")
    attack_limit: int | None = option(None, default_text="--limit", help="attack at most N images")
    # calibration
    bin_size: int = option(100, help="RMS calibration error: samples per adaptive bin")
    # run
    batch_size: int = option(64, help="images per inference batch")
    seed: int = option(0, help="seed of the corruptions and the PGD random start: same seed, same images")
    device: str = option("auto", choices=("auto", "cpu", "gpu"),
                         help="inference device; auto: one GPU per actor when the cluster has GPUs")
    actors: int | None = option(None, default_text="GPUs in the cluster, or 1 on CPU", help="inference actors")
    corruption_cpus: int | None = option(None, default_text="the cluster's CPUs less one per inference actor",
                                         help="CPU cores the on-the-fly corruptions run on at once, shared by the "
                                              "corruption x severity branches (docs/scaling.md)")
    output: str = option("", required=True, metavar="URI",
                         help="folder for report.json, report.md and the plots")
    storage_options: dict | None = storage_options_option()
    address: str | None = address_option()
    verbose: bool = verbose_option()

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise ValueError("give at least one --checkpoint")
        names = [parse_named(c)[0] for c in self.checkpoints]
        if len(set(names)) != len(names):
            raise ValueError(f"checkpoint names repeat: {names}; name them NAME=URI")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"--baseline {self.baseline!r} is not a --checkpoint name ({', '.join(names)})")
        ood = [parse_named(o)[0] for o in self.ood]
        if len(set(ood)) != len(ood):
            raise ValueError(f"--ood names repeat: {ood}")
        unknown = sorted(set(self.ood_subset) - set(ood))
        if unknown:
            raise ValueError(f"--ood-subset names {unknown} are not --ood names ({', '.join(ood)})")
        if self.batch_size < 1 or self.bin_size < 1 or self.steps < 1:
            raise ValueError("batch_size, bin_size and steps must be positive")
        if self.corruption_cpus is not None and self.corruption_cpus < 1:
            raise ValueError("--corruption-cpus must be at least 1")
        if self.corruptions and not self.corrupted:
            from raymix.eval.corruptions import parse_corruptions  # raises on an unknown name or severity

            parse_corruptions(self.corruptions, self.severities)


def run(job: EvalJob) -> dict[str, Any]:
    """Evaluate as ``job`` says and write the report; returns the report."""
    from raymix.eval.inference import evaluate
    from raymix.eval.report import write_report
    from raymix.pipeline.runtime import init_ray

    init_ray(job.address)
    report = evaluate(job)
    write_report(report, job.output, storage_options=job.storage_options)
    return report


def main(job: EvalJob) -> int:
    """``raymix eval`` and ``jobs/eval_robustness.py``: evaluate, print the summary as one JSON
    object on stdout; Ray's output goes to a log folder unless ``--verbose``."""
    from raymix.pipeline import console

    with console.session(verbose=job.verbose, json_out=True, log_dir=console.log_dir_for(job.output)):
        report = run(job)
        console.emit({"output": job.output, "summary": report["summary"], "throughput": report.get("throughput")})
    return 0
