"""Training in one process, without Ray: :func:`raymix.train.fit`'s data-stage functions and
training step in a plain loop, for small runs on one machine (the small experiment in
``docs/results.md``, tests).

Per epoch, the rows of ``train`` (read with :func:`raymix.io.readers.plan_read`) are shuffled
with a generator of ``(seed, epoch)`` and cut into batches; each batch goes through the
functions the Ray Data pipeline maps (:mod:`raymix.train.data`: ``tag_epoch``,
``prepare_images``, ``conform``, ``crop_flip_batch``, the online method's stage: plain,
:class:`~raymix.train.data.JSDViews` or :class:`~raymix.train.data.SecondView`, ``finalize``)
and then into :class:`raymix.train.loop.TrainStep` with the learning rate of
:func:`raymix.train.loop.learning_rate`. Every draw depends on ``(seed, key, epoch)`` only, so a
row is augmented exactly as the Ray pipeline augments it. The checkpoint is the ``state.pt``
the Ray Train loop writes, so ``raymix eval`` reads it. What differs from ``fit``: one process,
no Ray Train workers or Ray Data streaming, the whole input shuffled per epoch (the Ray
pipeline streams in reader order with an optional shuffle buffer), no per-epoch validation.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from raymix import schema
from raymix.ops.rng import sample_seed
from raymix.pipeline.rows import MethodStage
from raymix.train.config import TrainConfig
from raymix.train.data import (
    AUG1, AUG2, VALID, VIEW2, JSDViews, SecondView, conform, crop_flip_batch, finalize, online_stage_kwargs,
    prepare_images, tag_epoch,
)
from raymix.train.loop import CHECKPOINT_FILE, TrainStep, learning_rate

__all__ = ["read_rows", "online_stage", "train_batch", "local_fit"]


def read_rows(uri: str, layout: str = "auto", limit: int | None = None) -> dict[str, np.ndarray]:
    """Every row of ``uri`` (any input layout) as numpy columns: key, image bytes, label, ..."""
    import pyarrow as pa

    from raymix.io.readers import plan_read

    plan = plan_read(uri, layout=layout)
    if limit is not None:
        plan = plan.head(limit)
    table = pa.concat_tables([t for shard in plan.shards for t in plan.read_shard(shard)])
    if limit is not None:
        table = table.slice(0, limit)
    return {name: np.array(table.column(name).to_pylist(), dtype=object) for name in table.column_names}


def online_stage(config: TrainConfig) -> Callable | None:
    """The online method's stage as :func:`raymix.train.data.build_train_dataset` maps it."""
    if config.online is None:
        return None
    if config.jsd:
        return JSDViews(online_stage_kwargs(config, replicas=2))
    if config.miamix:
        return SecondView(online_stage_kwargs(config, replicas=1))
    return MethodStage(**online_stage_kwargs(config, replicas=1))


def views_of(config: TrainConfig) -> int:
    """Image columns the loop reads: 3 with JSD, 2 with MiAMix (its second view), else 1."""
    return 3 if config.jsd else 2 if config.miamix else 1


def train_batch(rows: dict[str, np.ndarray], config: TrainConfig, epoch: int, stage: Callable | None
                ) -> dict[str, np.ndarray]:
    """One batch of raw rows -> what the training step reads, through the pipeline's functions."""
    batch = tag_epoch(rows, clock=epoch, seed=config.seed, fraction=None)
    batch = prepare_images(batch, size=config.train_decode_size, resize=config.train_resize)
    batch = conform(batch)
    views = views_of(config)
    batch = crop_flip_batch(batch, size=config.image_size, crop=config.crop, flip=config.flip, seed=config.seed,
                            views=2 if views == 2 else 1)
    if stage is not None:
        batch = stage(batch)
    return finalize(batch, views=views)


def _one_thread(fn, *args):
    """``fn(*args)`` with one torch thread, as a one-CPU Ray Data actor runs it (per-image ops on
    small images are many times slower with a thread pool)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


def local_fit(train: str, config: TrainConfig, out: str, *, layout: str = "auto", limit: int | None = None,
              on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train on ``train`` as ``config`` says, in this process on the CPU; write
    ``out/state.pt`` (the Ray Train loop's checkpoint format) and ``out/metrics.jsonl``.
    Returns the last epoch's metrics with the checkpoint's path."""
    rows = read_rows(train, layout, limit)
    n = len(rows[schema.KEY])
    if n == 0:
        raise ValueError(f"{train}: no rows")
    stage = online_stage(config)
    trainer = TrainStep(config, torch.device("cpu"))
    os.makedirs(out, exist_ok=True)
    step, metrics = 0, {}
    with open(os.path.join(out, "metrics.jsonl"), "w") as log:
        for epoch in range(config.epochs):
            lr = learning_rate(config, epoch)
            trainer.set_lr(lr)
            trainer.model.train()
            order = np.random.default_rng(sample_seed(config.seed, "local-shuffle", 0, epoch)).permutation(n)
            started = time.perf_counter()
            loss_sum, seen, dropped = 0.0, 0, 0
            for start in range(0, n, config.batch_size):
                index = order[start:start + config.batch_size]
                batch = _one_thread(train_batch, {k: v[index] for k, v in rows.items()}, config, epoch, stage)
                tensors = {k: torch.from_numpy(np.ascontiguousarray(batch[k]))
                           for k in (schema.IMAGE, schema.LABEL, VALID, AUG1, AUG2, VIEW2) if k in batch}
                loss, _, used, bad = trainer(tensors, step)
                step += 1
                loss_sum += float(loss) * used
                seen += used
                dropped += bad
                if config.max_steps is not None and step >= config.max_steps:
                    break
            elapsed = time.perf_counter() - started
            metrics = {"epoch": epoch, "step": step, "lr": lr, "train_loss": loss_sum / max(seen, 1),
                       "train_rows": seen, "rows_dropped": dropped, "epoch_time_s": elapsed,
                       "images_per_s": seen / max(elapsed, 1e-9)}
            log.write(json.dumps(metrics) + "\n")
            if on_epoch is not None:
                on_epoch(metrics)
            if config.max_steps is not None and step >= config.max_steps:
                break
    state = {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
             "scaler": trainer.scaler.state_dict(), "epoch": metrics.get("epoch", -1) + 1, "step": step,
             "config": config.to_dict()}
    path = os.path.join(out, CHECKPOINT_FILE)
    torch.save(state, path)
    return {**metrics, "checkpoint": path}
