"""Shared inputs for the method tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as nnf

from raymix.ops.rng import sample_generators


def smooth_images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images, ``uint8`` ``(n, 3, size, size)``."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 3, 4, 4), generator=g)
    x = nnf.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return x.mul(255).round().to(torch.uint8)


def generators(n: int, seed: int = 0, epoch: int = 0, replica: int = 0):
    return sample_generators(seed, [f"img/{i}" for i in range(n)], replica, epoch)


def run_many(method, n: int, size: int = 16, seed: int = 0):
    """Augment ``n`` images; returns (outputs, infos)."""
    return method.augment(smooth_images(n, size, seed), generators(n, seed))


def rows(n: int, size: int = 16, seed: int = 0, readonly: bool = True) -> dict:
    """A Ray Data style numpy batch of decoded images."""
    images = np.ascontiguousarray(smooth_images(n, size, seed).permute(0, 2, 3, 1).numpy())
    if readonly:
        images.flags.writeable = False
    return {
        "key": np.array([f"train/c{i % 3}/img{i}" for i in range(n)], dtype=object),
        "image": images,
        "label": np.arange(n, dtype=np.int64) % 3,
        "class_name": np.array([f"c{i % 3}" for i in range(n)], dtype=object),
        "source": np.array(["s3://bucket/shard-0.parquet"] * n, dtype=object),
        "stage": np.array([""] * n, dtype=object),
        "reason": np.array([""] * n, dtype=object),
    }
