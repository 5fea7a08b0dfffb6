"""Detect blank generated images: near-white, near-black, or near-uniform.

A diffusion edit sometimes returns an image with nothing in it. The DiffuseMix
authors' public code drops generated images whose grayscale histogram is more than
90% pure white (a filter the paper does not mention); the paper's appendix
(Sec. 3, Fig. 7) shows a bad prompt turning a CIFAR-100 image completely black. This
module flags all three cases on a batch at once:

``near-white``
    more than ``white_fraction`` of the pixels have luma >= ``white_level``;
``near-black``
    more than ``black_fraction`` of the pixels have luma <= ``black_level``;
``near-uniform``
    the luma's standard deviation is below ``min_std`` or its 1st-99th percentile
    range is below ``min_range`` (flat grey or a single colour).

Luma is ITU-R 601 (``0.299 R + 0.587 G + 0.114 B``, as PIL's ``"L"`` mode), on the
0-255 scale. A threshold of ``None`` turns that check off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["BLANK_KINDS", "BlankThresholds", "PUBLIC_CODE_BLANK", "blank_kinds"]

# Index 0 means "not blank"; the other entries name what was found.
BLANK_KINDS = ("", "near-white", "near-black", "near-uniform")

_STATS_SIZE = 128  # percentiles are taken on luma area-resized to at most this size


@dataclass(frozen=True)
class BlankThresholds:
    """When a generated image counts as blank; see the module docstring."""

    white_level: float = 250.0
    white_fraction: float | None = 0.9
    black_level: float = 5.0
    black_fraction: float | None = 0.9
    min_std: float | None = 2.0
    min_range: float | None = 8.0


# The authors' public code: only the near-white test, on pure white (255) pixels.
PUBLIC_CODE_BLANK = BlankThresholds(
    white_level=255.0, white_fraction=0.9, black_fraction=None, min_std=None, min_range=None
)


def _luma(images: torch.Tensor) -> torch.Tensor:
    x = images.float() * 255.0 if images.dtype.is_floating_point else images.float()
    if x.shape[-3] == 1:
        return x[..., 0, :, :]
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(3, 1, 1)
    return (x[..., :3, :, :] * weights).sum(dim=-3)


def blank_kinds(images: torch.Tensor, thresholds: BlankThresholds = BlankThresholds()) -> torch.Tensor:
    """For each image of a ``(N, C, H, W)`` or ``(C, H, W)`` batch, an index into :data:`BLANK_KINDS`.

    ``images`` are uint8 (0-255) or float (0-1), with 1 or 3 (or 4, alpha ignored)
    channels. Returns an int64 tensor of shape ``(N,)`` (or a 0-d tensor for one
    image); when several checks fire, the first in :data:`BLANK_KINDS` order wins.
    """
    single = images.dim() == 3
    luma = _luma(images[None] if single else images)  # (N, H, W)
    n = luma.shape[0]
    flat = luma.reshape(n, -1)
    kind = torch.zeros(n, dtype=torch.int64, device=luma.device)

    uniform = torch.zeros(n, dtype=torch.bool, device=luma.device)
    if thresholds.min_std is not None:
        uniform |= flat.std(dim=1, unbiased=False) < thresholds.min_std
    if thresholds.min_range is not None:
        small = luma
        if max(luma.shape[-2:]) > _STATS_SIZE:
            small = F.interpolate(luma[:, None], size=(_STATS_SIZE, _STATS_SIZE), mode="area")[:, 0]
        q = torch.quantile(small.reshape(n, -1), torch.tensor([0.01, 0.99], device=luma.device), dim=1)
        uniform |= (q[1] - q[0]) < thresholds.min_range
    kind[uniform] = BLANK_KINDS.index("near-uniform")

    if thresholds.black_fraction is not None:
        black = (flat <= thresholds.black_level).float().mean(dim=1) > thresholds.black_fraction
        kind[black] = BLANK_KINDS.index("near-black")
    if thresholds.white_fraction is not None:
        white = (flat >= thresholds.white_level).float().mean(dim=1) > thresholds.white_fraction
        kind[white] = BLANK_KINDS.index("near-white")
    return kind[0] if single else kind
