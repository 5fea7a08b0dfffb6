"""The training job: its settings (``raymix train``, ``jobs/train_resnet50.py``) and its run.

:class:`TrainJob` holds what to read, where to run and where to keep checkpoints, with the
:class:`~raymix.train.config.TrainConfig` nested in it; every field is a flag
(:mod:`raymix.settings`). Standard library at import, so ``--help`` imports no torch or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raymix import registry, schema
from raymix.settings import address_option, build, nested, option, storage_options_option, verbose_option
from raymix.train.config import RECIPES, TrainConfig, TrainInput, parse_input, parse_ratio

__all__ = ["TrainJob", "chain_methods", "inputs_of", "chained_stream", "run", "main"]

def chain_methods() -> tuple[str, ...]:
    """What ``--chain`` can run: a "pair" method's own job (DiffuseMix, AGA) or an "image" method
    through the mix job (read from the registry each time the flags are built)."""
    return registry.method_names(kind="pair") + registry.method_names(kind="image")


@dataclass(kw_only=True)
class TrainJob:
    """A training run: inputs, the training config (a paper's ``recipe`` under the settings
    given), Ray Train's workers, checkpoint storage."""

    # data
    input: list[str] = option(metavar="URI[@WEIGHT]",
                              help="training input (repeatable): originals and augmented shards; @WEIGHT sets "
                                   "its share of an epoch")
    ratio: str | None = option(None, metavar="A:B:...",
                               help="shares of the inputs in order, e.g. 1:1 (instead of @WEIGHT suffixes)")
    layout: str = option("auto", choices=schema.LAYOUTS,
                         help="input layout of every --input")
    limit: int | None = option(None, default_text="all", help="read at most this many rows per input (smoke tests)")
    val: str | None = option(None, metavar="URI",
                             help="validation data, evaluated (top-1/top-5) after every epoch")
    chain: str | None = option(None, choices=chain_methods,
                               help="augment --chain-input in this same job and stream the result into training "
                                    "as one more input, with no shards written (recomputed every epoch: for small "
                                    "runs)")
    chain_input: str | None = option(None, metavar="URI", default_text="the first --input",
                                     help="what --chain augments")
    chain_options: dict = option({}, help="settings of the chained job, keyed as its flags, e.g. "
                                          '\'{"editor": "tiny", "steps": 2, "replicas": 2}\'')
    chain_weight: float | None = option(None, default_text="every row once",
                                        help="share of the chained input in an epoch")
    # model and optimisation
    recipe: str | None = option(None, choices=sorted(RECIPES), presets=RECIPES,
                                help="a paper's recipe (docs/training.md); other settings override it")
    config: TrainConfig = nested(TrainConfig, "model, optimisation and input pipeline")
    # run
    workers: int = option(1, help="training workers (one GPU each with --gpu)")
    gpu: bool = option(False, help="one GPU per worker")
    storage: str | None = option(None, metavar="URI", default_text="Ray's default, ~/ray_results",
                                 help="checkpoint storage: a local path or s3://bucket/prefix")
    storage_options: dict | None = storage_options_option()
    name: str | None = option(None, default_text="a generated name",
                              help="run name; rerun with the same name and storage to resume")
    max_failures: int = option(0, help="worker failures to recover from")
    address: str | None = address_option()
    verbose: bool = verbose_option()

    def __post_init__(self) -> None:
        if not self.input:
            raise ValueError("give at least one --input")
        inputs = [parse_input(spec) for spec in self.input]  # raises on a bad @WEIGHT
        if self.ratio:
            if any(inp.weight is not None for inp in inputs):
                raise ValueError("use either URI@WEIGHT or --ratio, not both")
            parse_ratio(self.ratio, len(inputs))


def inputs_of(job: TrainJob) -> list[TrainInput]:
    """The training inputs: every ``--input`` with its share, then the ``--chain`` stream."""
    inputs = [parse_input(spec) for spec in job.input]
    if job.ratio:
        for inp, weight in zip(inputs, parse_ratio(job.ratio, len(inputs))):
            inp.weight = weight
    for inp in inputs:
        inp.layout, inp.limit = job.layout, job.limit
        if job.storage_options:
            inp.storage_options = job.storage_options
    if job.chain:
        inputs.append(TrainInput(chained_stream(job), weight=job.chain_weight))
    return inputs


def chained_stream(job: TrainJob):
    """The Dataset of ``--chain``: the augmentation job's rows before they would be written.

    ``--chain-options`` are that job's settings under the names of its flags
    (``raymix diffusemix --help``, ``raymix mix --help``).
    """
    source = job.chain_input or parse_input(job.input[0]).source
    settings = {"input": source, "limit": job.limit, "storage_options": job.storage_options, **job.chain_options}
    where = " in --chain-options"
    if registry.method(job.chain).kind == "pair":  # its own job (DiffuseMix, AGA), whose module streams it
        import importlib

        entry = registry.job(job.chain)
        module = importlib.import_module(entry.run.partition(":")[0])
        return module.stream(build(entry.load_settings(), settings, where=where))
    from raymix.pipeline import mix

    return mix.stream(build(mix.MixJob, {"method": job.chain, **settings}, where=where))


def run_folder(job: TrainJob) -> str:
    """``STORAGE/NAME``: where Ray Train keeps the run's checkpoints and raymix its records."""
    import os

    storage = job.storage or os.path.join(os.path.expanduser("~"), "ray_results")
    return storage.rstrip("/") + "/" + job.name


def run(job: TrainJob) -> dict[str, Any]:
    """Train as ``job`` says; connects to ``job.address`` or ``RAY_ADDRESS``, else starts local Ray.
    Writes ``metrics.jsonl`` and TensorBoard events in the run folder and prints one line per
    epoch (:mod:`raymix.train.records`). Returns the final metrics, the last checkpoint's path
    and the run folder."""
    import sys
    import time

    from raymix.pipeline.runtime import init_ray
    from raymix.train.records import RunRecords
    from raymix.train.trainer import fit

    if job.name is None:
        job.name = time.strftime("raymix-train-%Y-%m-%d_%H-%M-%S")
    init_ray(job.address)
    inputs = inputs_of(job)
    val = TrainInput(job.val, layout=job.layout, storage_options=job.storage_options) if job.val else None
    records = RunRecords(run_folder(job), job.storage_options, epochs=job.config.epochs)
    try:
        result = fit(
            inputs, val=val, config=job.config, workers=job.workers, use_gpu=job.gpu, storage=job.storage,
            name=job.name, max_failures=job.max_failures, storage_options=job.storage_options,
            on_epoch=records.add,
        )
    finally:
        records.close()
    if records.reported == 0 and result.checkpoint is not None:
        print(already_complete(job, records.previous()), file=sys.stderr, flush=True)
    checkpoint = result.checkpoint.path if result.checkpoint else None
    return {"metrics": result.metrics, "checkpoint": checkpoint, "path": result.path}


def already_complete(job: TrainJob, previous: list[dict[str, Any]]) -> str:
    """What a rerun of a finished run says instead of training."""
    if job.config.max_steps is not None and previous and previous[-1].get("step", 0) >= job.config.max_steps:
        return f"already complete at step {previous[-1]['step']}; raise --max-steps to continue"
    return f"already complete at epoch {job.config.epochs}; raise --epochs to continue"


def main(job: TrainJob) -> int:
    """``raymix train`` and ``jobs/train_resnet50.py``: train, print the result as one JSON
    object on stdout (everything else on stderr; Ray's output in the log folder unless --verbose)."""
    from raymix.pipeline import console

    log_dir = console.log_dir_for(run_folder(job)) if job.name else None
    with console.session(verbose=job.verbose, json_out=True, log_dir=log_dir):
        console.emit(run(job))
    return 0
