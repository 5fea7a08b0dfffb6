"""Command-line flags for training, shared by ``jobs/train_resnet50.py``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from raymix.train.config import PRESETS, TrainConfig, TrainInput, parse_input, parse_ratio

__all__ = ["add_arguments", "config_from_args", "inputs_from_args", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--input", action="append", required=True, metavar="URI[@WEIGHT]",
                      help="training input (repeatable): originals and augmented shards; @WEIGHT sets its share of an epoch")
    data.add_argument("--ratio", help="shares of the inputs in order, e.g. 1:1 (instead of @WEIGHT suffixes)")
    data.add_argument("--epoch-size", type=int, help="rows per epoch when inputs are weighted (default: all rows of all inputs)")
    data.add_argument("--layout", default="auto", help="input layout for every --input (default: auto)")
    data.add_argument("--limit", type=int, help="read at most this many rows per input (smoke tests)")
    data.add_argument("--val", metavar="URI", help="validation data, evaluated (top-1/top-5) after every epoch")
    data.add_argument("--image-size", type=int)
    data.add_argument("--crop", choices=("random_resized", "pad", "none"))
    data.add_argument("--online", choices=("augmix", "pixmix", "ipmix", "layermix"), help="online CPU augmentation")
    data.add_argument("--online-options", type=json.loads, metavar="JSON", help='method options, e.g. \'{"magnitude": 8}\'')
    data.add_argument("--chain", choices=("diffusemix", "pixmix", "ipmix", "layermix"),
                      help="augment --chain-input in this same job and stream the result into training as one more "
                      "input, with no shards written (recomputed every epoch: for small runs)")
    data.add_argument("--chain-input", metavar="URI", help="what --chain augments (default: the first --input)")
    data.add_argument("--chain-options", type=json.loads, default={}, metavar="JSON",
                      help='settings of the chained job, e.g. \'{"editor": "tiny", "steps": 2, "replicas": 2}\'')
    data.add_argument("--chain-weight", type=float, help="share of the chained input in an epoch")
    data.add_argument("--data-actors", type=int, help="actors running the online method (CPU cores for augmentation)")
    data.add_argument("--prefetch-batches", type=int)
    data.add_argument("--shuffle-buffer", type=int, help="rows in each worker's local shuffle buffer")

    model = parser.add_argument_group("model and optimisation")
    model.add_argument("--preset", choices=sorted(PRESETS), help="a paper's recipe; other flags override it")
    model.add_argument("--arch", help="resnet18 | resnet50 | wide_resnet50_2 | wrn40_4 | ...")
    model.add_argument("--num-classes", type=int)
    model.add_argument("--weights", help="initial weights: a state-dict file (local or s3://) or 'torchvision'")
    model.add_argument("--epochs", type=int)
    model.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in total")
    model.add_argument("--batch-size", type=int, help="global batch size, split across workers")
    model.add_argument("--lr", type=float)
    model.add_argument("--weight-decay", type=float)
    model.add_argument("--schedule", choices=("cosine", "step", "constant"))
    model.add_argument("--warmup-epochs", type=int)
    model.add_argument("--label-smoothing", type=float)
    model.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"))
    model.add_argument("--miamix", action="store_true", help="MiAMix on the device inside each step")
    model.add_argument("--miamix-options", type=json.loads, metavar="JSON", help='e.g. \'{"alpha": 1.0}\'')
    model.add_argument("--jsd", action="store_true", help="JSD consistency loss over clean + two augmented views")
    model.add_argument("--seed", type=int)

    run = parser.add_argument_group("run")
    run.add_argument("--workers", type=int, default=1, help="training workers (one GPU each with --gpu)")
    run.add_argument("--gpu", action="store_true", help="one GPU per worker")
    run.add_argument("--storage", help="checkpoint storage: a local path or s3://bucket/prefix")
    run.add_argument("--storage-options", type=json.loads, metavar="JSON", help='fsspec options, e.g. \'{"endpoint_url": ...}\'')
    run.add_argument("--name", help="run name; rerun with the same name and storage to resume")
    run.add_argument("--max-failures", type=int, default=0, help="worker failures to recover from")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, as set by `ray job submit`; "
                     "else a local Ray instance)")


# argparse destination -> TrainConfig field, for flags that map one to one.
_FIELDS = (
    "image_size", "crop", "online", "online_options", "data_actors", "prefetch_batches", "shuffle_buffer",
    "arch", "num_classes", "weights", "epochs", "max_steps", "batch_size", "lr", "weight_decay", "schedule",
    "warmup_epochs", "label_smoothing", "amp", "miamix_options", "seed", "epoch_size",
)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = dict(PRESETS[args.preset]) if args.preset else {}
    values.update({f: getattr(args, f) for f in _FIELDS if getattr(args, f, None) is not None})
    if args.miamix:
        values["miamix"] = True
    if args.jsd:
        values["jsd"] = True
    return TrainConfig(**values)


def inputs_from_args(args: argparse.Namespace) -> list[TrainInput]:
    inputs = [parse_input(spec) for spec in args.input]
    if args.ratio:
        if any(inp.weight is not None for inp in inputs):
            raise SystemExit("use either URI@WEIGHT or --ratio, not both")
        for inp, weight in zip(inputs, parse_ratio(args.ratio, len(inputs))):
            inp.weight = weight
    for inp in inputs:
        inp.layout, inp.limit = args.layout, args.limit
        if args.storage_options:
            inp.storage_options = args.storage_options
    if args.chain:
        inputs.append(TrainInput(chained_stream(args), weight=args.chain_weight))
    return inputs


def chained_stream(args: argparse.Namespace):
    """The Dataset of ``--chain``: the augmentation job's rows before they would be written."""
    source = args.chain_input or parse_input(args.input[0]).source
    settings = {"input": source, "limit": args.limit, "storage_options": args.storage_options,
                **args.chain_options}
    if args.chain == "diffusemix":
        from raymix.pipeline import diffusemix

        return diffusemix.stream(diffusemix.DiffuseMixJob(**settings))
    from raymix.pipeline import mix

    return mix.stream(mix.MixJob(method=args.chain, **settings))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train as the flags say; connects to ``RAY_ADDRESS`` when set, else starts local Ray."""
    from raymix.pipeline.runtime import init_ray
    from raymix.train.trainer import fit

    config = config_from_args(args)
    init_ray(args.address)
    inputs = inputs_from_args(args)
    val = TrainInput(args.val, layout=args.layout, storage_options=args.storage_options) if args.val else None
    result = fit(
        inputs, val=val, config=config, workers=args.workers, use_gpu=args.gpu, storage=args.storage,
        name=args.name, max_failures=args.max_failures, storage_options=args.storage_options,
    )
    checkpoint = result.checkpoint.path if result.checkpoint else None
    return {"metrics": result.metrics, "checkpoint": checkpoint, "path": result.path}
