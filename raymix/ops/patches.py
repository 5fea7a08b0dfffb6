"""IPMix patch-level mixing: square and "scar" boxes, and mixing a box of one image with the
same box of another (IPMix Sec. 4.1 Eq. 1, Sec. 4.2 "Scar-like image patches").

A box is ``(top, bottom, left, right)`` in pixels, bottom/right exclusive. The paper gives no
dimensions for scars; the authors' code draws the box's left/top corner uniformly so that a
square of the chosen size fits, then keeps the square with probability 1/2 or else takes a
rectangle with width and height drawn independently from ``[2, size]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from raymix.ops.blends import blend_chain, select_into_, select_into_hwc
from raymix.ops.rng import Draws
from raymix.ops.tensors import require_uint8

__all__ = ["PATCH_SHAPES", "square_box", "scar_box", "sample_patch_box", "patch_mix", "patch_mix_", "mix_patches_"]

PATCH_SHAPES = ("square", "scar")

Box = tuple[int, int, int, int]


def square_box(top: int, left: int, size: int) -> Box:
    return (top, top + size, left, left + size)


def scar_box(top: int, left: int, height: int, width: int) -> Box:
    return (top, top + height, left, left + width)


def sample_patch_box(draws: Draws, size: int, height: int, width: int) -> tuple[str, Box]:
    """Draw a patch of nominal ``size`` (clamped to the image): its shape and box."""
    size = max(2, min(int(size), height, width))
    left = draws.randint(0, width - size + 1)
    top = draws.randint(0, height - size + 1)
    if draws.bernoulli(0.5):
        return "square", square_box(top, left, size)
    return "scar", scar_box(top, left, draws.randint(2, size + 1), draws.randint(2, size + 1))


def patch_mix(images: torch.Tensor, sources: torch.Tensor, box: Box, kind: str, params: Sequence[dict] | dict
              ) -> torch.Tensor:
    """A copy of ``images`` whose ``box`` is blended (``kind``, see :func:`raymix.ops.blends.blend`)
    with the same box of ``sources``. Both ``uint8``; one box for the whole batch."""
    require_uint8(images)
    return patch_mix_(images.clone(), sources, box, kind, params)


def patch_mix_(images: torch.Tensor, sources: torch.Tensor, box: Box, kind: str, params: Sequence[dict] | dict
               ) -> torch.Tensor:
    """:func:`patch_mix` in place: writes the blended box into ``images`` and returns it."""
    require_uint8(images)
    require_uint8(sources, "sources")
    top, bottom, left, right = box
    batch, src = (images.unsqueeze(0), sources.unsqueeze(0)) if images.ndim == 3 else (images, sources)
    if isinstance(params, dict):
        params = [params] * batch.shape[0]
    for i, p in enumerate(params):
        region = batch[i, :, top:bottom, left:right]
        if kind in ("pixel", "element") and region.device.type == "cpu":
            select_into_(region, src[i, :, top:bottom, left:right], kind, p)
        else:
            region.copy_(blend_chain(region, [(kind, src[i, :, top:bottom, left:right], p)]))
    return images


def mix_patches_(image: torch.Tensor, steps: Sequence[tuple[torch.Tensor, Box, str, dict]]) -> torch.Tensor:
    """Blend boxes of one ``uint8`` image ``(C, H, W)`` in place, one after the other:
    ``steps[i] = (source, box, kind, params)`` as :func:`patch_mix_` for a single image. The
    per-patch loop of IPMix's P-level chains, with the bookkeeping kept cheap (most boxes are
    small)."""
    require_uint8(image)
    cpu = image.device.type == "cpu"
    hwc = image.numpy().transpose(1, 2, 0) if cpu else None
    for source, (top, bottom, left, right), kind, params in steps:
        require_uint8(source, "sources")
        if cpu and kind in ("pixel", "element"):
            src = source.numpy().transpose(1, 2, 0)
            select_into_hwc(hwc[top:bottom, left:right], src[top:bottom, left:right], kind == "pixel",
                            params["threshold"], params["mask_seed"])
        else:
            region = image[:, top:bottom, left:right]
            region.copy_(blend_chain(region, [(kind, source[:, top:bottom, left:right], params)]))
    return image
