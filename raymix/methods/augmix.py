"""AugMix (Hendrycks et al., ICLR 2020) with per-sample seeded randomness.

The augmentation itself is ``torchvision.transforms.v2.AugMix``: ``mixture_width=3``
chains of depth ``U{1..3}`` (``chain_depth=-1``), chain weights ``Dir(alpha)`` and skip
weight ``Beta(alpha, alpha)`` with ``alpha=1`` (paper section 3), and by default only the
operations that do not overlap ImageNet-C (``all_ops=False``: autocontrast, equalize,
posterize, rotate, solarize, shear, translate). The operation severity is the authors'
per dataset: 1 on ImageNet (``imagenet.py``: ``--aug-severity 1``), 3 on CIFAR
(``cifar.py``: ``--aug-severity 3``); the ``preset`` picks it.

This module adds what torchvision leaves to the caller: every draw for a sample comes from
the sample's own generator (:func:`raymix.ops.rng.sample_generator` of ``(seed, key,
replica, epoch)`` in the pipeline), so the output does not depend on batch size or worker
count. torchvision draws from torch's global generator, so :meth:`AugMix.make_params`
records the seed of the sample's generator and :meth:`AugMix.apply` runs torchvision under
that seed, inside ``torch.random.fork_rng`` (the caller's global state is left as it was).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from raymix.methods.base import MixingMethod, choose_preset
from raymix.ops.rng import Draws

__all__ = ["AugMix", "AugMixParams", "PRESETS"]

PRESETS = {
    # google-research/augmix imagenet.py: --aug-severity default 1 (JSD on, width 3, depth -1).
    "imagenet": {"severity": 1},
    # google-research/augmix cifar.py: --aug-severity default 3.
    "cifar": {"severity": 3},
}


@dataclass(frozen=True)
class AugMixParams:
    """The seed torchvision's AugMix runs under for one image (its ops, weights and skip
    weight are drawn from it inside ``v2.AugMix``)."""

    seed: int


class AugMix(MixingMethod):
    """AugMix through ``torchvision.transforms.v2.AugMix``, one seed per image.

    Args:
        preset: ``"imagenet"`` (severity 1) or ``"cifar"`` (severity 3), the authors' scripts'
            values; an explicit ``severity`` overrides it.
        severity, mixture_width, chain_depth, alpha, all_ops: as in
            ``torchvision.transforms.v2.AugMix`` (defaults: the paper's values, and
            ``all_ops=False`` to keep clear of ImageNet-C corruptions).
        seed, chunk_size: see :class:`MixingMethod` (AugMix uses no fractals).
    """

    name = "augmix"
    salt = "augmix"

    def __init__(self, *, preset: str = "imagenet", severity: int | None = None, mixture_width: int = 3,
                 chain_depth: int = -1, alpha: float = 1.0, all_ops: bool = False, seed: int = 0,
                 chunk_size: int = 32) -> None:
        super().__init__(seed=seed, chunk_size=chunk_size)
        severity = choose_preset(PRESETS, preset, severity=severity)["severity"]
        self.preset = preset
        self.severity = int(severity)
        self.mixture_width = int(mixture_width)
        self.chain_depth = int(chain_depth)
        self.alpha = float(alpha)
        self.all_ops = bool(all_ops)
        self.augmix = v2.AugMix(severity=severity, mixture_width=mixture_width, chain_depth=chain_depth,
                                alpha=alpha, all_ops=all_ops)

    def config(self) -> dict:
        return {"severity": self.severity, "mixture_width": self.mixture_width, "chain_depth": self.chain_depth,
                "alpha": self.alpha, "all_ops": self.all_ops}

    def make_params(self, generator: torch.Generator | Draws, size: tuple[int, int] | None = None) -> AugMixParams:
        """The seed the sample's generator was created with (``initial_seed``: what
        ``sample_generator`` seeded it with, however far it has been read)."""
        generator = generator.generator if isinstance(generator, Draws) else generator
        return AugMixParams(int(generator.initial_seed()))

    def _apply(self, x: torch.Tensor, params: Sequence[AugMixParams]) -> torch.Tensor:
        out = torch.empty_like(x)
        for i, p in enumerate(params):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(p.seed)
                out[i] = self.augmix(x[i])
        return out

    def describe(self, params: AugMixParams) -> dict:
        return {"method": self.name, **self.config(), "seed": params.seed}

    def caption(self, params: AugMixParams) -> str:
        depth = "1-3" if self.chain_depth < 0 else str(self.chain_depth)
        return f"severity {self.severity}, width {self.mixture_width}, depth {depth}"
