"""Per-sample training transforms on uint8 HWC images, seeded per (seed, key, epoch).

These run in the Ray Data CPU stage before the online augmentation method, as the
PixMix/AugMix training scripts do (random-resized crop and flip first, then the method).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from raymix.ops.rng import numpy_generator

__all__ = ["random_resized_crop_box", "crop_flip", "center_crop"]


def random_resized_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` drawn like ``torchvision.transforms.RandomResizedCrop``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # Fallback: the central crop with the ratio clamped into range.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _resize(chw: torch.Tensor, size: int) -> torch.Tensor:
    if chw.shape[-2:] == (size, size):
        return chw
    return TF.resize(chw, [size, size], antialias=True)


def crop_flip(image: np.ndarray, size: int, crop: str, flip: bool, seed: int, key: str, epoch: int,
              view: int = 0) -> np.ndarray:
    """One uint8 HWC image -> ``size x size`` after a random crop and horizontal flip.

    ``crop``: ``"random_resized"`` (ImageNet: scale 0.08-1, ratio 3/4-4/3),
    ``"pad"`` (CIFAR: zero-pad by ``size/8`` and crop back) or ``"none"`` (resize only).
    ``view``: which independent draw for the sample (0: the training view; 1: MiAMix's
    second view).
    """
    rng = numpy_generator(seed, key, view, epoch, salt="crop")
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if crop == "random_resized":
        top, left, h, w = random_resized_crop_box(rng, chw.shape[1], chw.shape[2])
        chw = TF.resized_crop(chw, top, left, h, w, [size, size], antialias=True)
    elif crop == "pad":
        chw = _resize(chw, size)
        pad = max(1, round(size / 8))
        chw = TF.pad(chw, [pad, pad, pad, pad], fill=0)
        top, left = (int(v) for v in rng.integers(0, 2 * pad + 1, size=2))
        chw = chw[:, top : top + size, left : left + size]
    elif crop == "none":
        chw = _resize(chw, size)
    else:
        raise ValueError(f"unknown crop {crop!r}")
    if flip and rng.random() < 0.5:
        chw = chw.flip(-1)
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy())


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Central ``size x size`` window of a uint8 NHWC batch (no resampling)."""
    h, w = images.shape[1:3]
    if (h, w) == (size, size):
        return images
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(images[:, top : top + size, left : left + size])
