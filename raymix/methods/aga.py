"""AGA's compositing step (Rahat et al., "Data Augmentation for Image Classification using
Generative AI", 2024, Sec. 4.3 and Fig. 5).

Given an image, its subject mask (GroundingDINO box -> SAM mask, Sec. 4.1) and a background
generated from a domain caption (Sec. 4.2, Stable Diffusion XL), AGA "applies traditional
affine transformations to the masked image prior to merging. These transformations include
flipping (f), rotating (theta), and scaling (s) the subject", then merges so that "the
background image fills all areas ... except where the subject is located".

The paper gives no ranges for f, theta and s; raymix's defaults (``docs/methods.md``) are a
left-right flip with probability 1/2, an angle uniform in [-15, 15] degrees and a scale uniform
in [0.8, 1.2], about the subject's box centre; a shift (off by default) and feathering (off) are
options. The subject's pixels are copied exactly when neither rotated nor scaled
(:mod:`raymix.ops.composite`).

The models are separate GPU stages (:mod:`raymix.pipeline.aga`); this class composites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from raymix.methods.base import MixingMethod, as_draws, as_image_batch
from raymix.methods.captions import number
from raymix.ops.composite import composite
from raymix.ops.rng import Draws
from raymix.ops.tensors import is_channels_last

__all__ = ["AGA", "AGAParams", "SUBJECT_MASK", "BACKGROUND"]

#: Batch columns the pipeline gives a ``"pair"`` method's stage: the second image and the mask.
BACKGROUND = "background"
SUBJECT_MASK = "subject_mask"


@dataclass(frozen=True)
class AGAParams:
    """The affine transform of one sample's subject: a left-right ``flip``, ``angle`` degrees
    (counter-clockwise), ``scale``, and ``shift`` ``(dx, dy)`` in whole pixels."""

    flip: bool
    angle: float
    scale: float
    shift: tuple[int, int] = (0, 0)

    @property
    def identity(self) -> bool:
        return not self.flip and self.angle == 0 and self.scale == 1 and self.shift == (0, 0)


class AGA(MixingMethod):
    """AGA compositing: subject (masked, flipped, rotated, scaled) pasted on a generated background.

    A ``"pair"`` method: :meth:`apply` and :meth:`augment` take the backgrounds as a third
    argument (``uint8`` ``(N, 3, H', W')``, resized to the images' size if they differ) and the
    subject masks as ``masks`` (``bool`` ``(N, H, W)``; ``None``: the whole image is the
    subject, what the job does for an image with no box when told ``--on-no-box whole-image``).

    Args:
        flip_p: probability of a left-right flip (raymix: 0.5; the paper names flipping, no rate).
        max_angle: rotation angle uniform in ``[-max_angle, max_angle]`` degrees (raymix: 15).
        scale: ``(low, high)`` of a uniform scale (raymix: ``(0.8, 1.2)``).
        max_shift: shift of the subject, uniform in ``[-max_shift, max_shift]`` of the image's
            width and height (raymix: 0, the subject stays where it was; the paper names no shift).
        feather: sigma in pixels of a soft paste inside the mask's edge (raymix: 0, a hard paste).
        seed, chunk_size: see :class:`MixingMethod` (no fractals).
    """

    name = "aga"
    salt = "composite"
    pair_column: ClassVar[str] = BACKGROUND
    prompt_column: ClassVar[str] = "caption"
    mask_column: ClassVar[str | None] = SUBJECT_MASK
    pair_provenance: ClassVar[dict[str, str]] = {"subject_params": "subject", "caption_params": "caption"}

    def __init__(self, *, flip_p: float = 0.5, max_angle: float = 15.0, scale: Sequence[float] = (0.8, 1.2),
                 max_shift: float = 0.0, feather: float = 0.0, seed: int = 0, chunk_size: int = 8):
        super().__init__(seed=seed, chunk_size=chunk_size)
        low, high = (float(s) for s in scale)
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        if max_angle < 0 or not 0 < low <= high or not 0 <= max_shift <= 1 or feather < 0:
            raise ValueError("need max_angle >= 0, 0 < scale low <= high, 0 <= max_shift <= 1, feather >= 0; "
                             f"got {max_angle}, {(low, high)}, {max_shift}, {feather}")
        self.flip_p = float(flip_p)
        self.max_angle = float(max_angle)
        self.scale = (low, high)
        self.max_shift = float(max_shift)
        self.feather = float(feather)

    def config(self) -> dict:
        return {"flip_p": self.flip_p, "max_angle": self.max_angle, "scale": list(self.scale),
                "max_shift": self.max_shift, "feather": self.feather}

    def make_params(self, generator: torch.Generator | Draws, size: tuple[int, int]) -> AGAParams:
        """Draw the flip, angle, scale and shift of one image of ``size`` ``(H, W)``."""
        draws = as_draws(generator)
        flip = draws.bernoulli(self.flip_p) if self.flip_p > 0 else False
        angle = round(draws.uniform(-self.max_angle, self.max_angle), 2) if self.max_angle > 0 else 0.0
        low, high = self.scale
        scale = round(draws.uniform(low, high), 3) if high > low else low
        shift = (0, 0)
        if self.max_shift > 0:
            h, w = size
            shift = (round(draws.uniform(-1, 1) * self.max_shift * w), round(draws.uniform(-1, 1) * self.max_shift * h))
        return AGAParams(bool(flip), float(angle), float(scale), shift)

    def describe(self, params: AGAParams) -> dict:
        return {"method": self.name, "flip": params.flip, "angle": params.angle, "scale": params.scale,
                "shift": list(params.shift), "feather": self.feather}

    def caption(self, params: AGAParams) -> str:
        moves = ["flip" if params.flip else "no flip", f"rot {number(params.angle)}", f"scale {number(params.scale)}"]
        text = ", ".join(moves)
        if params.shift != (0, 0):
            text += f"\nshift {params.shift[0]:+d},{params.shift[1]:+d} px"
        return text

    # ------------------------------------------------------------------ core

    def apply(self, images: torch.Tensor, params_list: Sequence[AGAParams], edited: torch.Tensor,
              masks: torch.Tensor | None = None) -> torch.Tensor:
        """Composite ``uint8`` ``(N, 3, H, W)`` images' subjects (``masks``, ``bool`` ``(N, H, W)``)
        on the backgrounds ``edited``; the result is in the images' memory format."""
        return self.apply_with_masks(images, params_list, edited, masks)[0]

    def apply_with_masks(self, images: torch.Tensor, params_list: Sequence[AGAParams], edited: torch.Tensor,
                         masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`apply`, also returning where the subject landed (``bool`` ``(N, H, W)``)."""
        x = self._check_batch(images, len(params_list))
        if edited.shape[0] != x.shape[0]:
            raise ValueError(f"{edited.shape[0]} backgrounds for {x.shape[0]} images")
        n, _, h, w = x.shape
        if masks is None:
            masks = torch.ones((n, h, w), dtype=torch.bool)
        masks = torch.as_tensor(masks)
        if masks.dtype != torch.bool or tuple(masks.shape) != (n, h, w):
            raise ValueError(f"masks must be bool {(n, h, w)}, got {masks.dtype} {tuple(masks.shape)}")
        out, landed = torch.empty_like(x), torch.empty((n, h, w), dtype=torch.bool)
        for i, p in enumerate(params_list):
            out[i], landed[i] = composite(x[i], masks[i], edited[i], flip=p.flip, angle=p.angle, scale=p.scale,
                                          shift=p.shift, feather=self.feather)
        return (out if is_channels_last(images) else out.contiguous()), landed

    def augment(self, images: torch.Tensor, generators: Sequence[torch.Generator], edited: torch.Tensor | None = None,
                masks: torch.Tensor | None = None) -> tuple[torch.Tensor, list[dict]]:
        """:meth:`make_params` and :meth:`apply`: the composites and each image's provenance."""
        if edited is None:
            raise ValueError("AGA pastes each subject on a background: pass edited=backgrounds")
        size = tuple(images.shape[-2:])
        params = [self.make_params(g, size) for g in generators]
        return self.apply(images, params, edited, masks), [self.describe(p) for p in params]

    # ------------------------------------------------------------------ torchvision-style

    def transform(self, inpt, background=None, mask=None, generator: torch.Generator | None = None):
        """Paste one image's subject (PIL image or ``uint8`` tensor, or a batch) on ``background``;
        ``mask`` (``bool`` ``(H, W)`` or ``(N, H, W)``; ``None``: the whole image)."""
        if background is None:
            raise TypeError("AGA needs a background too: method(image, background, mask)")
        bg = as_image_batch(background)
        m = None if mask is None else torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        if m is not None and m.ndim == 2:
            m = m.unsqueeze(0)
        return self._transform(inpt, generator, lambda batch, gens: self.augment(batch, gens, bg, m)[0])
