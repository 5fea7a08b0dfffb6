"""The per-worker training loop run by Ray Train's ``TorchTrainer``.

One epoch: set the epoch clock, stream this worker's shard with ``iter_torch_batches``
(prefetching on the CPU while the device computes), drop and count invalid rows, move
uint8 images to the device, normalise there, optionally mix with MiAMix or add the JSD
consistency term, step SGD (AMP and channels_last on CUDA), then validate (top-1/top-5)
and report metrics and a checkpoint. A rerun with the same run name resumes from the
latest checkpoint: model, optimiser, scaler, epoch and step.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F

from raymix import schema
from raymix.ops.losses import jsd_consistency
from raymix.ops.rng import sample_seed
from raymix.train.config import TrainConfig
from raymix.train.data import AUG1, AUG2, VALID, VIEW2
from raymix.train.models import build_model

__all__ = ["train_loop_per_worker", "TrainStep", "learning_rate", "normalize", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "state.pt"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate for ``epoch`` (0-based): linear warm-up, then cosine, step or constant."""
    if epoch < config.warmup_epochs:
        return config.lr * (epoch + 1) / config.warmup_epochs
    if config.schedule == "cosine":
        span = max(1, config.epochs - config.warmup_epochs)
        return config.lr * 0.5 * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / span))
    if config.schedule == "step":
        return config.lr * config.gamma ** (epoch // config.step_size)
    return config.lr


def normalize(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 NHWC (any device) -> float NCHW normalised with the ImageNet mean and std."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def _device() -> torch.device:
    if torch.cuda.is_available():
        return ray.train.torch.get_device()
    return torch.device("cpu")


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.amp == "off":
        return None
    return torch.float16 if config.amp == "fp16" else torch.bfloat16


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[float]:
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top.eq(labels.view(-1, 1))
    return [hits[:, :k].any(dim=1).sum().item() for k in ks]


def load_state(path: str) -> dict[str, Any]:
    """A training state written by this loop (model, optimizer, scaler, epoch, step, config),
    loaded with ``weights_only=True``: tensors and plain containers only, so a checkpoint
    store that someone else can write cannot run code in the trainers. A file that holds
    anything else is refused with a clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError (or RuntimeError) for other objects
        raise ValueError(f"{path} is not a training state that loads with weights_only=True "
                         f"(tensors and plain containers only): {err}") from err


def _load_checkpoint(model, optimizer, scaler) -> dict[str, Any] | None:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = load_state(os.path.join(directory, CHECKPOINT_FILE))
    _unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state


def _report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
    """Report ``metrics``; rank 0 also writes ``state`` as the checkpoint."""
    if state is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(state, os.path.join(directory, CHECKPOINT_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def _evaluate(model, shard, config: TrainConfig, device, amp_dtype, batch_size: int) -> dict[str, float]:
    model.eval()
    loss_sum = top1 = top5 = rows = dropped = 0.0
    with torch.no_grad():
        for batch in shard.iter_torch_batches(
            batch_size=batch_size, device="cpu", prefetch_batches=config.prefetch_batches
        ):
            valid = batch[VALID]
            if not bool(valid.all()):
                dropped += float((~valid).sum())
                batch = {k: v[valid] for k, v in batch.items()}
            if len(batch[schema.LABEL]) == 0:
                continue
            x = normalize(batch[schema.IMAGE].to(device, non_blocking=True), config.channels_last and device.type == "cuda")
            labels = batch[schema.LABEL].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            c1, c5 = _topk_correct(logits, labels, (1, 5))
            top1, top5, rows = top1 + c1, top5 + c5, rows + len(labels)
    loss_sum, top1, top5, rows, dropped = _all_reduce([loss_sum, top1, top5, rows, dropped], device)
    return {
        "val_loss": loss_sum / max(rows, 1),
        "val_top1": top1 / max(rows, 1),
        "val_top5": top5 / max(rows, 1),
        "val_rows": int(rows),
        "val_rows_dropped": int(dropped),
    }


class TrainStep:
    """One optimiser step on a batch of CPU tensors, shared by the loop and the benchmark.

    Builds the model (channels_last on CUDA), SGD, the AMP scaler and MiAMix from
    ``config``; ``wrap`` (e.g. ``ray.train.torch.prepare_model``) adds DDP.
    """

    def __init__(self, config: TrainConfig, device: torch.device, wrap=None, rank: int = 0) -> None:
        self.config, self.device, self.rank = config, device, rank
        self.amp_dtype = _amp_dtype(config, device)
        self.channels_last = config.channels_last and device.type == "cuda"
        torch.manual_seed(config.seed)
        stem = config.stem if config.stem != "auto" else ("cifar" if config.image_size <= 64 else "imagenet")
        model = build_model(config.arch, config.num_classes, stem=stem, dropout=config.dropout, weights=config.weights)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = wrap(model) if wrap is not None else model.to(device)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.miamix = None
        if config.miamix:
            from raymix.methods.miamix import MiAMix

            self.miamix = MiAMix(
                config.num_classes, label_smoothing=config.label_smoothing, **config.miamix_options
            ).to(device)
        self.generator = torch.Generator(device=device)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def __call__(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        """Train on ``batch`` (uint8 NHWC images, labels, valid flags; CPU tensors; the
        ``image_view2`` MiAMix mixes with, ``image_aug1``/``image_aug2`` for JSD).

        Returns ``(loss, correct, rows used, rows dropped)``; ``correct`` (top-1 hits on the
        clean logits) is None under MiAMix. A batch without valid rows still runs, with a
        zero loss, so DDP ranks stay in lockstep.
        """
        config, device = self.config, self.device
        valid = batch[VALID]
        dropped, skip = 0, False
        if not bool(valid.all()):
            dropped = int((~valid).sum())
            if bool(valid.any()):
                batch = {k: v[valid] for k, v in batch.items()}
            else:
                skip = True
        labels = batch[schema.LABEL].to(device, non_blocking=True)
        x = normalize(batch[schema.IMAGE].to(device, non_blocking=True), self.channels_last)
        targets = labels
        if self.miamix is not None:
            # the data stage's second view (MiAMix section 3.2.1); without it MiAMix augments a copy itself
            view2 = normalize(batch[VIEW2].to(device, non_blocking=True), self.channels_last) if VIEW2 in batch else None
            self.generator.manual_seed(sample_seed(config.seed, f"miamix/{self.rank}", 0, step))
            x, targets = self.miamix(x, labels, view2, generator=self.generator)
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            if config.jsd:
                augmented = [normalize(batch[k].to(device, non_blocking=True), self.channels_last) for k in (AUG1, AUG2)]
                logits, logits_aug1, logits_aug2 = self.model(torch.cat([x, *augmented])).float().chunk(3)
                loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
                loss = loss + config.jsd_weight * jsd_consistency(logits, logits_aug1, logits_aug2)
            else:
                logits = self.model(x).float()
                loss = F.cross_entropy(logits, targets, label_smoothing=config.label_smoothing)
        if skip:
            loss = loss * 0.0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if skip:
            return loss.detach(), None, 0, dropped
        correct = None if self.miamix is not None else (logits.detach().argmax(1) == labels).sum()
        return loss.detach(), correct, len(labels), dropped


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config``: ``config`` (a TrainConfig dict), ``clock``
    (the epoch clock actor or None) and ``has_val``."""
    config = TrainConfig(**loop_config["config"])
    clock = loop_config.get("clock")
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = _device()
    trainer = TrainStep(config, device, wrap=lambda m: ray.train.torch.prepare_model(m, move_to_device=device), rank=rank)
    model, optimizer, scaler = trainer.model, trainer.optimizer, trainer.scaler

    state = _load_checkpoint(model, optimizer, scaler)
    start_epoch = state["epoch"] if state else 0
    step = state["step"] if state else 0
    resumed_from = start_epoch if state else None

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if loop_config.get("has_val") else None
    batch_size = max(1, config.batch_size // world)
    shuffle_buffer = config.shuffle_buffer if config.shuffle_buffer else None

    for epoch in range(start_epoch, config.epochs):
        if config.max_steps is not None and step >= config.max_steps:
            break
        if clock is not None:
            ray.get(clock.set.remote(epoch))
        lr = learning_rate(config, epoch)
        trainer.set_lr(lr)
        model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        rows = dropped = steps = 0
        stopped = False
        for batch in train_shard.iter_torch_batches(
            batch_size=batch_size,
            device="cpu",
            prefetch_batches=config.prefetch_batches,
            local_shuffle_buffer_size=shuffle_buffer,
            local_shuffle_seed=config.seed + epoch if shuffle_buffer else None,
            pin_memory=device.type == "cuda",
        ):
            loss, hits, n, bad = trainer(batch, step)
            step += 1
            steps += 1
            dropped += bad
            rows += n
            loss_sum += loss * n
            if hits is not None:
                correct += hits
            if rank == 0 and config.log_every and step % config.log_every == 0:
                rate = rows * world / max(time.perf_counter() - started, 1e-9)
                print(f"epoch {epoch} step {step} loss {loss.item():.4f} lr {lr:.4g} {rate:.1f} img/s", flush=True)
            if config.max_steps is not None and step >= config.max_steps:
                stopped = True
                break
        elapsed = time.perf_counter() - started
        total_loss, total_correct, total_rows, total_dropped = _all_reduce(
            [float(loss_sum), float(correct), float(rows), float(dropped)], device
        )
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "lr": lr,
            "train_loss": total_loss / max(total_rows, 1),
            "train_rows": int(total_rows),
            "rows_dropped": int(total_dropped),
            "epoch_steps": steps,
            "epoch_time_s": elapsed,
            "images_per_s": total_rows / max(elapsed, 1e-9),
            "epoch_complete": not stopped,
            "resumed_from_epoch": resumed_from,
        }
        if trainer.miamix is None:
            metrics["train_top1"] = total_correct / max(total_rows, 1)
        if val_shard is not None:
            metrics.update(_evaluate(model, val_shard, config, device, trainer.amp_dtype, batch_size))
        next_epoch = epoch if stopped else epoch + 1
        state = None
        if rank == 0:
            state = {
                "model": _unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": next_epoch,
                "step": step,
                "config": config.to_dict(),
            }
        _report(metrics, state)
        if stopped:
            break
