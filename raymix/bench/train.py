"""Training throughput: streamed input versus synthetic batches, and the cost of MiAMix.

Three timings of the same training step (``raymix.train.loop.TrainStep``: model, SGD,
AMP and channels_last on CUDA), each after warm-up steps:

- ``synthetic``: batches already in memory (uint8 on the CPU, as the loader hands them
  over); the step rate the device sustains.
- ``streaming``: batches from the training input pipeline (``raymix.train.data``): read
  -> decode -> random crop/flip -> online method on an actor pool -> ``iter_torch_batches``
  with prefetch. Input: ``--input URI``, or generated 500x375 JPEGs in HF parquet. ``ingest_ratio = streaming rate / synthetic rate``; 1.0 means the data
  stage keeps the device busy.
- ``synthetic + MiAMix``: ``miamix_overhead = step time with MiAMix / without - 1``. The
  two synthetic variants alternate in ``--rounds`` rounds and each figure is the fastest
  round, the one least disturbed by other load on the machine; ``miamix_mix_s`` times the
  mixing call alone (median).

The data stage gets ``--data-actors`` actors (one CPU core each) for the online method.
Prints one JSON line per figure with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from typing import Any

HELP = "training step rate: streaming input pipeline vs synthetic batches; MiAMix overhead"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the synthetic timings")
    parser.add_argument("--online", default="layermix", help="online method in the data stage (falls back to augmix if absent)")
    parser.add_argument("--data-actors", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="actors (CPU cores) running the online method")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs given to a local Ray (default: all)")
    parser.add_argument("--input", help="training data URI read by raymix.io.readers (default: generated JPEGs)")
    parser.add_argument("--images", type=int, default=512, help="generated images when no --input (repeated as needed)")
    parser.add_argument("--prefetch-batches", type=int, default=4)
    parser.add_argument("--skip", choices=("streaming", "miamix"), action="append", default=[],
                        help="leave a measurement out")


def _config(args: argparse.Namespace, **overrides: Any):
    from raymix.train.config import TrainConfig

    values = dict(
        arch=args.arch, num_classes=1000, image_size=args.image_size, batch_size=args.batch_size,
        crop="random_resized", online=None, data_actors=args.data_actors, prefetch_batches=args.prefetch_batches,
        data_batch_size=min(64, args.batch_size),
    )
    values.update(overrides)
    return TrainConfig(**values)


def _synthetic_batch(config, generator) -> dict[str, Any]:
    import torch

    n, size = config.batch_size, config.image_size
    return {
        "image": torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=generator),
        "label": torch.randint(0, config.num_classes, (n,), generator=generator),
        "valid": torch.ones(n, dtype=torch.bool),
    }


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(step, batches, warmup: int, steps: int, device) -> float:
    """Seconds per step over ``steps`` steps after ``warmup`` steps."""
    it = iter(batches)
    for i in range(warmup):
        step(next(it), i)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(next(it), warmup + i)
    _sync(device)
    return (time.perf_counter() - start) / steps


def _time_mix(miamix, batch, device, calls: int) -> float:
    """Median seconds of one MiAMix call on a normalised batch already on the device."""
    import torch

    from raymix.train.loop import normalize

    x = normalize(batch["image"].to(device), device.type == "cuda")
    labels = batch["label"].to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    times = []
    for _ in range(calls + 2):
        _sync(device)
        start = time.perf_counter()
        miamix(x, labels, generator=generator)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def _repeat(batch):
    while True:
        yield batch


def _sample_input(directory: str, images: int) -> str:
    """``images`` generated ImageNet-like JPEGs (500x375) as HF parquet shards in ``directory``."""
    from raymix.tools.sample_data import write_sample

    classes = 16
    write_sample(directory, format="parquet", classes=classes, per_class=-(-images // classes), size=(500, 375))
    return directory


def run(args: argparse.Namespace) -> int:
    import importlib.util

    import ray
    import torch

    from raymix.train.config import TrainInput
    from raymix.train.data import build_train_dataset, create_epoch_clock
    from raymix.train.loop import TrainStep

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    online = args.online
    if online and importlib.util.find_spec(f"raymix.methods.{online}") is None:
        online = "augmix"
    context = {
        "arch": args.arch, "image_size": args.image_size, "batch_size": args.batch_size, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
    }
    results: list[dict[str, Any]] = []

    def emit(name: str, value: float, unit: str, **extra: Any) -> None:
        record = {"suite": "train", "name": name, "value": round(value, 5), "unit": unit, **context, **extra}
        results.append(record)
        print(json.dumps(record) if args.json else f"{name:>22}: {value:.4f} {unit} {extra or ''}", flush=True)

    generator = torch.Generator().manual_seed(0)
    plain = TrainStep(_config(args), device)
    batch = _synthetic_batch(plain.config, generator)
    variants = {"synthetic": plain}
    if "miamix" not in args.skip:
        variants["miamix"] = TrainStep(_config(args, miamix=True), device)
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            rounds[name].append(_time_steps(step, _repeat(batch), args.warmup, args.steps, device))
    synthetic = min(rounds["synthetic"])
    emit("synthetic_step_s", synthetic, "s/step", images_per_s=round(args.batch_size / synthetic, 2))
    if "miamix" in variants:
        with_miamix = min(rounds["miamix"])
        emit("miamix_step_s", with_miamix, "s/step")
        emit("miamix_overhead", with_miamix / synthetic - 1, "fraction")
        mix_s = _time_mix(variants.pop("miamix").miamix, batch, device, args.steps)
        emit("miamix_mix_s", mix_s, "s/batch", fraction_of_step=round(mix_s / synthetic, 5))

    if "streaming" not in args.skip:
        if not ray.is_initialized():
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        rows = (args.warmup + args.steps + 1) * args.batch_size
        # The input is repeated as often as needed; repeats get fresh augmentation draws.
        config = _config(args, online=online, epoch_size=rows)
        with tempfile.TemporaryDirectory() as directory:
            source = args.input or _sample_input(directory, args.images)
            clock = create_epoch_clock()
            ds = build_train_dataset([TrainInput(source, weight=1.0)], config, clock)
            batches = ds.iter_torch_batches(
                batch_size=args.batch_size, device="cpu", prefetch_batches=args.prefetch_batches,
                pin_memory=device.type == "cuda", drop_last=True,
            )
            streaming = _time_steps(plain, batches, args.warmup, args.steps, device)
            ray.kill(clock)
        kind = "uri" if args.input else f"{args.images} generated 500x375 JPEGs (parquet)"
        extra = {"online": online, "data_actors": args.data_actors, "input": kind}
        emit("streaming_step_s", streaming, "s/step", **extra)
        emit("ingest_ratio", synthetic / streaming, "fraction", **extra)
    return 0
