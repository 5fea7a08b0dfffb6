"""`raymix plan`: GPU-hours, wall time, CPU cores and storage traffic for a run, before running it."""

from __future__ import annotations

import argparse
import json

from raymix.schema import DEFAULT_ROWS_PER_FILE
from raymix.tools.sizing import SIZED_METHODS  # pure arithmetic and the registry: cheap to import

HELP = "estimate GPU-hours, wall time, CPU cores and S3 traffic of a run (docs/scaling.md)"


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts, e.g. 8,64,256; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("counts must be at least 1")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=SIZED_METHODS, default="diffusemix", help="default: diffusemix")
    parser.add_argument("--images", type=int, default=None,
                        help="input images (default: ImageNet-1k train, 1,281,167)")
    parser.add_argument("--replicas", type=int, default=1, help="augmented images per input image (default 1)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="output side (default: diffusemix 256, aga 1024, CPU methods 224)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: diffusemix 100, aga 50)")
    parser.add_argument("--preset", choices=("paper", "fast"), default=None,
                        help="diffusemix editor preset: paper = 100 steps, fast = 20 (instead of --steps)")
    parser.add_argument("--gpu", default="H100", help="GPU model for the peak (H100, H200, A100, L4, ...; default H100)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak instead of --gpu's")
    parser.add_argument("--gpus", type=_counts, default=None, metavar="N,N,...",
                        help="GPU counts to tabulate (default 8,64,256)")
    parser.add_argument("--cpus", type=_counts, default=None, metavar="N,N,...",
                        help="CPU cores to tabulate for CPU methods (default 32,256,1024)")
    parser.add_argument("--mfu", type=float, default=0.40,
                        help="model FLOPs utilisation to assume (default 0.40, the benchmark target)")
    parser.add_argument("--cpu-ms", type=float, default=None,
                        help="CPU milliseconds per output image (default: measured decode + method + encode)")
    parser.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE,
                        help="rows per output shard (default %(default)s)")
    parser.add_argument("--output-bpp", type=float, default=5.0,
                        help="output JPEG bits per pixel (default 5, ImageNet's average)")
    parser.add_argument("--folder-input", action="store_true",
                        help="input is class folders (one GET per image) instead of parquet/tar shards")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")


def run(args: argparse.Namespace) -> int:
    from raymix.tools.sizing import (
        DIFFUSEMIX_PRESET_STEPS, GPU_METHODS, IMAGENET_TRAIN_IMAGES, PlanInput, format_plan, make_plan,
    )

    steps = args.steps
    if args.preset:
        if args.method != "diffusemix" or steps is not None:
            raise SystemExit("--preset applies to --method diffusemix, instead of --steps")
        steps = DIFFUSEMIX_PRESET_STEPS[args.preset]
    scales = args.gpus if args.method in GPU_METHODS else args.cpus
    if (args.gpus if args.method not in GPU_METHODS else args.cpus):
        raise SystemExit(f"{args.method} runs on {'GPUs: use --gpus' if args.method in GPU_METHODS else 'CPUs: use --cpus'}")
    try:
        plan = make_plan(PlanInput(
            method=args.method, images=args.images or IMAGENET_TRAIN_IMAGES, replicas=args.replicas,
            resolution=args.resolution, steps=steps, gpu=args.gpu, peak_tflops=args.peak_tflops, mfu=args.mfu,
            scales=scales or (), cpu_ms=args.cpu_ms, output_bpp=args.output_bpp, rows_per_file=args.rows_per_file,
            folder_input=args.folder_input,
        ))
    except ValueError as err:
        raise SystemExit(f"raymix plan: {err}") from None
    print(json.dumps(plan.to_dict()) if args.json else format_plan(plan))
    return 0
