"""The small experiment (``raymix experiment``, ``docs/results.md``): real images, every method,
several seeds, the papers' robustness measures, offline on a CPU.

1. Data: scikit-learn's handwritten digits (:mod:`raymix.tools.digits`), upsampled to 32 px
   and split 2:1 (stratified), written as class folders.
2. Training: the same small network (a CIFAR-style WideResNet, ``wrn10_1`` by default) for
   each method and seed, through :func:`raymix.train.local.local_fit`: the training data
   stage's functions and :class:`raymix.train.loop.TrainStep` in one process (Ray Train's
   start-up costs more than these runs; the images and steps are the same).
3. Evaluation: one ``raymix eval`` pass (:func:`raymix.eval.job.run`, on Ray Data) over every
   checkpoint: clean error, the 15 ImageNet-C corruptions generated on the fly (mCE
   unnormalised, as CIFAR tables print it), RMS calibration error, PGD (eps 2/255, 20 steps
   of 0.5/255, the papers' CIFAR setting).
4. Summary: per method the mean and sample standard deviation over seeds, as ``results.md``
   (table), ``results.json`` and two plots.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["METHODS", "ExperimentSettings", "train_config", "run_experiment", "summarize", "markdown_table"]

#: Training settings of each method on top of the shared recipe. CIFAR-size presets (the
#: images are 32 px): AugMix severity 3, PixMix k=4 beta=3 severity 3, IPMix CIFAR; LayerMix's
#: defaults (magnitude 8, beta 3, the same on CIFAR and ImageNet). Plain cross-entropy for
#: all (AugMix's and IPMix's JSD loss triples a step; ``--jsd`` turns it on for them).
METHODS: dict[str, dict[str, Any]] = {
    "none": {},
    "augmix": {"online": "augmix", "online_options": {"preset": "cifar"}},
    "pixmix": {"online": "pixmix", "online_options": {"preset": "cifar"}},
    "ipmix": {"online": "ipmix", "online_options": {"preset": "cifar"}},
    "layermix": {"online": "layermix"},
    "pixmix+miamix": {"online": "pixmix", "online_options": {"preset": "cifar"}, "miamix": True},
}
JSD_METHODS = ("augmix", "ipmix")

#: The measures of the table: (key in the eval summary, column title).
MEASURES = (
    ("clean_top1_error", "clean error %"),
    ("mce", "corruption error (mCE, unnorm.) %"),
    ("clean_rms_calibration_error", "clean RMS calib. %"),
    ("corruption_rms_calibration_error", "corrupted RMS calib. %"),
    ("adversarial/pgd_error", "PGD error %"),
)


@dataclass
class ExperimentSettings:
    """What :func:`run_experiment` does; every field is a flag of ``raymix experiment``."""

    out: str
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 8
    arch: str = "wrn10_1"
    batch_size: int = 64
    lr: float = 0.1
    image_size: int = 32
    jsd: bool = False
    limit: int | None = None
    corruptions: str = "common"
    severities: str = "1-5"
    attack_limit: int | None = 200
    eval_actors: int = 2
    threads: int = 1
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        if not self.methods or not self.seeds:
            raise ValueError("give at least one method and one seed")
        if self.jobs < 1 or self.epochs < 1:
            raise ValueError("jobs and epochs must be at least 1")


def train_config(settings: ExperimentSettings, method: str, seed: int):
    """The :class:`~raymix.train.config.TrainConfig` of one run: SGD with Nesterov momentum 0.9,
    lr 0.1 cosine, weight decay 5e-4 (the CIFAR recipes of AugMix's and PixMix's scripts),
    4 px padding crops, no flips (a mirrored digit is another glyph)."""
    from raymix.train.config import TrainConfig

    extra = dict(METHODS[method])
    if settings.jsd and method in JSD_METHODS:
        extra["jsd"] = True
    return TrainConfig(arch=settings.arch, num_classes=10, image_size=settings.image_size, crop="pad", flip=False,
                       epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, momentum=0.9,
                       nesterov=True, weight_decay=5e-4, schedule="cosine", seed=seed, log_every=0, **extra)


def run_name(method: str, seed: int) -> str:
    return f"{method}-s{seed}"


def _log(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def _train_one(train: str, settings: ExperimentSettings, method: str, seed: int) -> tuple[str, float, float]:
    """One run (in a worker process when ``jobs > 1``): ``(name, seconds, final loss)``."""
    import torch

    from raymix.train.local import local_fit

    torch.set_num_threads(settings.threads)
    name = run_name(method, seed)
    t0 = time.perf_counter()
    result = local_fit(train, train_config(settings, method, seed), os.path.join(settings.out, "runs", name))
    return name, time.perf_counter() - t0, result["train_loss"]


def run_experiment(settings: ExperimentSettings) -> dict[str, Any]:
    """Export the data, train every (method, seed), evaluate them in one pass, summarise;
    writes ``OUT/results.{md,json}`` and ``OUT/*.png`` and returns the summary."""
    from raymix.eval.job import EvalJob
    from raymix.eval.job import run as run_eval
    from raymix.tools.digits import write_digits
    from raymix.train.loop import CHECKPOINT_FILE

    started = time.perf_counter()
    data = write_digits(os.path.join(settings.out, "data"), size=settings.image_size, limit=settings.limit)
    _log(f"data: {data['rows']['train']} train, {data['rows']['test']} test images in {settings.out}/data")
    runs = [(method, seed) for method in settings.methods for seed in settings.seeds]
    args = [(data["train"], settings, method, seed) for method, seed in runs]
    train_seconds = {}
    if settings.jobs > 1 and len(runs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(min(settings.jobs, len(runs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_train_one, *a) for a in args]):
                name, seconds, loss = future.result()
                train_seconds[name] = seconds
                _log(f"trained {name}: loss {loss:.3f}, {seconds:.0f} s")
    else:
        for a in args:
            name, seconds, loss = _train_one(*a)
            train_seconds[name] = seconds
            _log(f"trained {name}: loss {loss:.3f}, {seconds:.0f} s")
    checkpoints = [f"{run_name(m, s)}={os.path.join(settings.out, 'runs', run_name(m, s), CHECKPOINT_FILE)}"
                   for m, s in runs]
    t0 = time.perf_counter()
    job = EvalJob(checkpoints=checkpoints, input=data["test"], corruptions=settings.corruptions,
                  severities=settings.severities, mce="none", attack="pgd", attack_limit=settings.attack_limit,
                  actors=settings.eval_actors, device="cpu", output=os.path.join(settings.out, "eval"))
    report = run_eval(job)
    eval_seconds = time.perf_counter() - t0
    _log(f"evaluated {len(checkpoints)} checkpoints: {eval_seconds:.0f} s")
    summary = summarize(report, settings)
    summary["timing_s"] = {"train": train_seconds, "train_total": sum(train_seconds.values()),
                           "eval": eval_seconds, "total": time.perf_counter() - started}
    summary["data"] = data
    write_results(summary, report, settings.out)
    return summary


def summarize(report: dict[str, Any], settings: ExperimentSettings) -> dict[str, Any]:
    """Per method: each measure's per-seed values, mean and sample standard deviation (x100)."""
    methods: dict[str, Any] = {}
    for method in settings.methods:
        runs = [report["summary"][run_name(method, seed)] for seed in settings.seeds]
        entry = {}
        for key, _ in MEASURES:
            values = [100 * r[key] if key != "mce" else r[key] for r in runs if r.get(key) is not None]
            entry[key] = {"values": values,
                          "mean": statistics.fmean(values) if values else None,
                          "std": statistics.stdev(values) if len(values) > 1 else None}
        methods[method] = entry
    return {"settings": asdict(settings), "methods": methods}


def _cell(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}" if stat["std"] is not None else f"{stat['mean']:.1f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """The results table: one row per method, mean ± standard deviation over seeds."""
    seeds = len(summary["settings"]["seeds"])
    lines = [f"| method ({seeds} seeds) | " + " | ".join(title for _, title in MEASURES) + " |",
             "|---|" + "---:|" * len(MEASURES)]
    for method, entry in summary["methods"].items():
        lines.append(f"| {method} | " + " | ".join(_cell(entry[key]) for key, _ in MEASURES) + " |")
    return "\n".join(lines) + "\n"


def write_results(summary: dict[str, Any], report: dict[str, Any], out: str) -> None:
    from raymix.eval.report import corruption_plot

    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown_table(summary))
    with open(os.path.join(out, "measures.png"), "wb") as f:
        f.write(measures_plot(summary))
    plot = corruption_plot(_mean_report(report, summary))
    if plot is not None:
        with open(os.path.join(out, "corruption_errors.png"), "wb") as f:
            f.write(plot)


def _mean_report(report: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """A report-shaped dict whose models are the methods, errors averaged over seeds (for
    :func:`raymix.eval.report.corruption_plot`)."""
    seeds = summary["settings"]["seeds"]
    models = {}
    for method in summary["methods"]:
        runs = [report["models"][run_name(method, s)].get("corruptions") for s in seeds]
        if not runs or runs[0] is None:
            return {"models": {method: {} for method in summary["methods"]}}
        errors = {c: {sev: statistics.fmean(r["errors"][c][sev] for r in runs) for sev in runs[0]["errors"][c]}
                  for c in runs[0]["errors"]}
        models[method] = {"corruptions": {"errors": errors}}
    return {"models": models}


def measures_plot(summary: dict[str, Any], width: int = 980, height: int = 360) -> bytes:
    """One panel per measure: a bar per method (mean over seeds) with a +-1 std whisker."""
    import io

    from PIL import Image, ImageDraw

    from raymix.eval.report import _COLOURS

    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    methods = list(summary["methods"])
    panel = width / len(MEASURES)
    top, bottom = 40, height - 70
    for p, (key, title) in enumerate(MEASURES):
        stats = [summary["methods"][m][key] for m in methods]
        tops = [(s["mean"] or 0) + (s["std"] or 0) for s in stats]
        scale = max(max(tops), 1e-9) * 1.1
        left, right = p * panel + 30, (p + 1) * panel - 10
        d.text((p * panel + 8, 8), title, fill="black")
        d.line([(left, top), (left, bottom), (right, bottom)], fill="black")
        d.text((p * panel + 2, top - 6), f"{scale:.0f}", fill="black")
        d.text((p * panel + 2, bottom - 6), "0", fill="black")
        bar = (right - left) / len(methods)
        for i, s in enumerate(stats):
            if s["mean"] is None:
                continue
            x0 = left + i * bar + 2
            y = bottom - (bottom - top) * s["mean"] / scale
            d.rectangle([x0, y, x0 + bar - 4, bottom], fill=_COLOURS[i % len(_COLOURS)])
            if s["std"]:
                cx = x0 + (bar - 4) / 2
                y0 = bottom - (bottom - top) * (s["mean"] - s["std"]) / scale
                y1 = bottom - (bottom - top) * (s["mean"] + s["std"]) / scale
                d.line([(cx, y0), (cx, y1)], fill="black")
                d.line([(cx - 3, y1), (cx + 3, y1)], fill="black")
                d.line([(cx - 3, y0), (cx + 3, y0)], fill="black")
    for i, m in enumerate(methods):
        x = 30 + i * 150
        d.rectangle([x, height - 35, x + 10, height - 25], fill=_COLOURS[i % len(_COLOURS)])
        d.text((x + 14, height - 36), m, fill="black")
    d.text((30, height - 18), "bars: mean over seeds; whiskers: +-1 standard deviation", fill="black")
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()
