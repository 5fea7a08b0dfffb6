"""``fit``: wire the input pipeline and the training loop into a Ray Train ``TorchTrainer``."""

from __future__ import annotations

import logging
import os
import queue as queue_module
import threading
from collections.abc import Callable, Sequence
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from raymix.train.config import TrainConfig, TrainInput, parse_input
from raymix.train.data import build_train_dataset, build_val_dataset, create_epoch_clock
from raymix.train.loop import train_loop_per_worker

__all__ = ["fit", "storage_filesystem"]


class _EpochRelay(ray.train.UserCallback):
    """Runs in Ray Train's controller: hands rank 0's metrics of every report to the driver."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if metrics:
            self.queue.put(dict(metrics[0]))


def _relay_epochs(on_epoch: Callable[[dict], None]):
    """``(callbacks, stop)``: a Ray queue the controller fills and a driver thread calling
    ``on_epoch`` for each epoch as it arrives; ``stop()`` delivers the rest and ends it."""
    from ray.util.queue import Empty, Queue

    q = Queue()
    done = threading.Event()

    def deliver(block: bool) -> bool:
        try:
            item = q.get(block=block, timeout=0.5 if block else None)
        except (Empty, queue_module.Empty):
            return False
        try:
            on_epoch(item)
        except Exception:  # noqa: BLE001 - a record that cannot be written must not stop training
            logging.getLogger(__name__).warning("could not record epoch metrics", exc_info=True)
        return True

    def loop() -> None:
        while not done.is_set():
            deliver(True)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(timeout=5)
        while deliver(False):
            pass
        q.shutdown()

    return [_EpochRelay(q)], stop


def _as_input(item: Any) -> TrainInput:
    if isinstance(item, TrainInput):
        return item
    if isinstance(item, str):
        return parse_input(item)
    if isinstance(item, ray.data.Dataset):
        return TrainInput(item)
    if isinstance(item, (list, tuple)):
        return TrainInput(list(item))
    raise TypeError(f"a training input is a URI, a TrainInput or a ray.data.Dataset, not {type(item).__name__}")


def storage_filesystem(storage: str | None, storage_options: dict[str, Any] | None) -> tuple[str | None, Any]:
    """``(storage_path, filesystem)`` for ``RunConfig``.

    Local paths go to Ray as they are. Object-store URIs are opened with
    ``raymix.io.storage.filesystem`` (endpoint, region and credentials from the AWS
    environment, ``RAYMIX_STORAGE_OPTIONS`` or ``storage_options``) and handed to Ray as a
    pyarrow filesystem, so checkpoints reach S3-compatible stores the readers reach.
    """
    if storage is None or storage.startswith("file://"):
        return storage, None
    if "://" not in storage:
        return os.path.abspath(os.path.expanduser(storage)), None  # Ray Train needs an absolute path
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    from raymix.io.storage import filesystem

    fs, path = filesystem(storage, storage_options)
    return path, PyFileSystem(FSSpecHandler(fs))


def fit(
    inputs: Sequence[Any],
    *,
    val: Any = None,
    config: TrainConfig | None = None,
    workers: int = 1,
    use_gpu: bool = False,
    storage: str | None = None,
    name: str | None = None,
    max_failures: int = 0,
    storage_options: dict[str, Any] | None = None,
    cpus_per_worker: float | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> ray.train.Result:
    """Train a classifier on ``inputs`` with Ray Train and return the ``Result``.

    ``inputs``: URIs (``"URI"`` or ``"URI@WEIGHT"``), :class:`TrainInput` objects or Ray
    Datasets with ``image`` and ``label`` columns; a Ray Dataset coming out of an
    augmentation pipeline is consumed as it streams, with no intermediate copy.
    ``val``: a URI or Ray Dataset for per-epoch top-1/top-5 validation.
    ``storage``/``name``: where checkpoints go (local path or ``s3://``); rerunning with
    the same pair resumes from the latest checkpoint. ``max_failures``: worker failures
    Ray Train recovers from (restarting from the latest checkpoint) before giving up.
    ``on_epoch``: called on the driver with each epoch's metrics (rank 0's) as they arrive.
    """
    config = config or TrainConfig()
    clock = create_epoch_clock()
    callbacks, stop = _relay_epochs(on_epoch) if on_epoch is not None else (None, lambda: None)
    try:
        datasets = {"train": build_train_dataset([_as_input(i) for i in inputs], config, clock)}
        if val is not None:
            datasets["val"] = build_val_dataset(val, config)
        storage_path, filesystem = storage_filesystem(storage, storage_options)
        resources = {"CPU": cpus_per_worker} if cpus_per_worker is not None else None
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"config": config.to_dict(), "clock": clock, "has_val": val is not None},
            scaling_config=ray.train.ScalingConfig(
                num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources
            ),
            run_config=ray.train.RunConfig(
                name=name,
                storage_path=storage_path,
                storage_filesystem=filesystem,
                failure_config=ray.train.FailureConfig(max_failures=max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoints_to_keep),
                callbacks=callbacks,
            ),
            datasets=datasets,
            dataset_config=ray.train.DataConfig(datasets_to_split="all"),
        )
        return trainer.fit()
    finally:
        stop()
        ray.kill(clock)
