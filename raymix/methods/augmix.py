"""AugMix (Hendrycks et al., ICLR 2020) with per-sample seeded randomness.

The augmentation itself is ``torchvision.transforms.v2.AugMix``: ``mixture_width=3``
chains of depth ``U{1..3}`` (``chain_depth=-1``), ``severity=3``, chain weights
``Dir(alpha)`` and skip weight ``Beta(alpha, alpha)`` with ``alpha=1`` (paper section 3),
and by default only the operations that do not overlap ImageNet-C (``all_ops=False``:
autocontrast, equalize, posterize, rotate, solarize, shear, translate).

This module adds what torchvision leaves to the caller: every draw for a sample comes
from a generator seeded by ``(seed, key, replica, epoch)`` (``raymix.ops.rng``), so the
output does not depend on batch size or worker count, and a Ray Data callable-class
interface::

    ds.map_batches(AugMix, fn_constructor_kwargs={"seed": 0, "replicas": 1, "epoch": 0},
                   batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=4))

An ``epoch`` column in the batch overrides the constructor's epoch (that is how the
training pipeline gets a fresh draw every epoch). As a transform, ``AugMix()(image)`` on a
uint8 CHW tensor (or NCHW batch) uses torchvision's global-RNG behaviour unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from raymix import schema
from raymix.ops.rng import sample_seed

__all__ = ["AugMix"]


class AugMix:
    """AugMix as a Ray Data callable class and as a torchvision-style transform.

    Args:
        seed: run seed; with the row's key, replica and epoch it seeds each sample.
        replicas: augmented rows emitted per input row.
        epoch: default epoch when the batch has no ``epoch`` column.
        severity, mixture_width, chain_depth, alpha, all_ops: as in
            ``torchvision.transforms.v2.AugMix`` (defaults: the paper's values, and
            ``all_ops=False`` to keep clear of ImageNet-C corruptions).
    """

    method = "augmix"

    def __init__(
        self,
        seed: int = 0,
        replicas: int = 1,
        epoch: int = 0,
        *,
        severity: int = 3,
        mixture_width: int = 3,
        chain_depth: int = -1,
        alpha: float = 1.0,
        all_ops: bool = False,
    ) -> None:
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        self.seed = int(seed)
        self.replicas = int(replicas)
        self.epoch = int(epoch)
        self.transform = v2.AugMix(
            severity=severity, mixture_width=mixture_width, chain_depth=chain_depth, alpha=alpha, all_ops=all_ops
        )

    def __call__(self, inputs: Any) -> Any:
        if isinstance(inputs, dict):
            return self.augment_batch(inputs)
        return self.transform(inputs)

    def augment(self, image: np.ndarray, key: str, replica: int = 0, epoch: int | None = None) -> np.ndarray:
        """One uint8 HWC image -> its augmented copy, seeded by (seed, key, replica, epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)
        chw = torch.from_numpy(np.array(image, copy=not image.flags.writeable, order="C")).permute(2, 0, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, key, replica, epoch, salt=self.method))
            out = self.transform(chw)
        return out.permute(1, 2, 0).numpy()

    def augment_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A Ray Data numpy batch -> one row per input row and replica.

        Output rows keep every input column and add ``source_key``, ``method`` and
        ``replica``; ``key`` becomes ``{source_key}/augmix/{replica}``. Rows that carry a
        ``reason`` (failed upstream) pass through once, untouched, with replica -1.
        """
        keys = [str(k) for k in batch[schema.KEY]]
        n = len(keys)
        epochs = batch["epoch"] if "epoch" in batch else np.full(n, self.epoch)
        reasons = batch.get(schema.REASON)
        bad = np.array([bool(reasons is not None and reasons[i]) for i in range(n)], dtype=bool)
        copies = np.where(bad, 1, self.replicas)
        order = np.repeat(np.arange(n), copies)
        starts = np.repeat(np.cumsum(copies) - copies, copies)
        replica = np.where(bad[order], -1, np.arange(len(order)) - starts).astype(np.int32)
        images = batch[schema.IMAGE]
        out = {name: np.asarray(col)[order] for name, col in batch.items() if name != schema.IMAGE}
        augmented = np.empty((len(order), *images.shape[1:]), dtype=np.uint8)
        for row, (i, r) in enumerate(zip(order, replica)):
            augmented[row] = images[i] if r < 0 else self.augment(images[i], keys[i], int(r), int(epochs[i]))
        out[schema.IMAGE] = augmented
        out[schema.SOURCE_KEY] = np.asarray(keys, dtype=object)[order]
        out[schema.METHOD] = np.full(len(order), self.method, dtype=object)
        out[schema.REPLICA] = replica
        out[schema.KEY] = np.array(
            [k if r < 0 else schema.output_key(k, self.method, int(r)) for k, r in zip(out[schema.SOURCE_KEY], replica)],
            dtype=object,
        )
        return out
