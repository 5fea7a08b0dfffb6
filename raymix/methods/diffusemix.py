"""DiffuseMix mixing step (Islam et al., "DiffuseMix: Label-Preserving Data Augmentation with
Diffusion Models", CVPR 2024), Sec. 3 and Algorithm 1 lines 6-9.

Given an original image ``I`` and its edited (generated) counterpart ``I_gen``::

    M ~ one of the four masks, uniformly     (left/right/top/bottom half keeps the original)
    H = M * I + (1 - M) * I_gen              (Eq. 1, "concatenation")
    A = (1 - lam) * H + lam * F              (Eq. 2, F a random fractal, lam = 0.20, Sec. 4)

The editing itself (InstructPix2Pix with a prompt) is a separate, GPU stage; this class mixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF

from raymix.methods.base import FractalSpec, MixingMethod, as_draws, as_image_batch
from raymix.methods.captions import number
from raymix.ops.masks import MASKS, fractal_blend, hybrid, hybrid_fractal_blend
from raymix.ops.rng import Draws
from raymix.ops.tensors import is_channels_last, nhwc, to_channels_last

__all__ = ["DiffuseMix", "DiffuseMixParams", "is_almost_white"]

#: The public code's variant: original always left or top, 20-pixel linear seam.
CODE_MASKS = ("left", "top")
CODE_SEAM = 20


def is_almost_white(image: torch.Tensor) -> bool:
    """The public code's filter for failed generations: over 90% of the grey levels are 255 and
    no other level covers 10% of the image."""
    r, g, b = image.reshape(3, -1).to(torch.int32)
    grey = (r * 299 + g * 587 + b * 114 + 500) // 1000  # PIL's convert("L")
    hist = torch.bincount(grey, minlength=256)
    total = grey.numel()
    return bool(hist[255] > 0.9 * total and hist[:255].max() < 0.1 * total)


@dataclass(frozen=True)
class DiffuseMixParams:
    """Everything drawn for one image: the half ``mask`` that keeps the original and the fractal
    (its child-generator seed and its id)."""

    mask: str
    fractal_seed: int
    fractal: str


class DiffuseMix(MixingMethod):
    """DiffuseMix mixing: original + edited image -> hybrid via a half mask -> fractal blend.

    A ``"pair"`` method: :meth:`apply` and :meth:`augment` take the edited images as a third
    argument, ``edited`` (``uint8`` ``(N, 3, H', W')``, resized to the originals' size if they
    differ).

    Args:
        lam: fractal blending factor, 0.20 in all the paper's experiments (Sec. 4, Table 10).
        masks: mask kinds drawn uniformly; the paper's four by default. The public code uses
            :data:`CODE_MASKS` (``("left", "top")``).
        seam: width in pixels of a linear transition between the halves; 0 (binary) in the paper,
            :data:`CODE_SEAM` (20) in the public code.
        reject_white: refuse an edited image that is almost all white, as the public code
            discards them (the paper does not mention it): :meth:`apply` raises, and the
            pipeline quarantines the row.
        seed, fractals, fractal_size, bank_seed, chunk_size: see :class:`MixingMethod`. Fractals default to a
            generated colour bank.
    """

    name = "diffusemix"
    salt = "mix"

    def __init__(self, *, lam: float = 0.20, masks: Sequence[str] = MASKS, seam: int = 0,
                 reject_white: bool = False, seed: int = 0, fractals: FractalSpec = None,
                 fractal_size: int | None = None, bank_seed: int = 0, chunk_size: int = 8):
        super().__init__(seed=seed, fractals=fractals, fractal_size=fractal_size, bank_seed=bank_seed,
                         chunk_size=chunk_size)
        masks = tuple(masks)
        if not masks or any(m not in MASKS for m in masks):
            raise ValueError(f"masks must be a non-empty subset of {MASKS}, got {masks}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        if seam < 0:
            raise ValueError(f"seam must be >= 0, got {seam}")
        self.lam = float(lam)
        self.masks = masks
        self.seam = int(seam)
        self.reject_white = bool(reject_white)

    def config(self) -> dict:
        return {"lambda": self.lam, "seam": self.seam}

    def make_params(self, generator: torch.Generator | Draws, size: tuple[int, int] | None = None
                    ) -> DiffuseMixParams:
        """Draw the mask and the fractal of one image (its size does not matter)."""
        draws = as_draws(generator)
        mask = draws.choice(self.masks)
        fractal_seed = draws.seed()
        return DiffuseMixParams(mask, fractal_seed, self.fractal_id(fractal_seed))

    def describe(self, params: DiffuseMixParams) -> dict:
        return {"method": self.name, **self.config(), "mask": params.mask, "fractal": params.fractal}

    def caption(self, params: DiffuseMixParams) -> str:
        return f"mask: {params.mask} half, lambda {number(self.lam)}\n{params.fractal}"

    # ------------------------------------------------------------------ core

    def apply(self, images: torch.Tensor, params_list: Sequence[DiffuseMixParams], edited: torch.Tensor
              ) -> torch.Tensor:
        """Mix ``uint8`` ``(N, 3, H, W)`` originals with their edited images (Eq. 1 and 2)."""
        return self._mix_all(images, edited, params_list, keep_hybrids=False)[0]

    def apply_with_hybrids(self, images: torch.Tensor, params_list: Sequence[DiffuseMixParams],
                           edited: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`apply`, also returning the hybrids ``H`` of Eq. 1 (before the fractal blend)."""
        return self._mix_all(images, edited, params_list, keep_hybrids=True)

    def augment(self, images: torch.Tensor, generators: Sequence[torch.Generator], edited: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[dict]]:
        """:meth:`make_params` and :meth:`apply`: the augmented batch and each image's provenance."""
        if edited is None:
            raise ValueError("DiffuseMix mixes each image with its edited version: pass edited=...")
        params = [self.make_params(g) for g in generators]
        return self.apply(images, params, edited), [self.describe(p) for p in params]

    def _mix_all(self, originals, edited, params, keep_hybrids: bool):
        """The mixed batch (in the originals' memory format) and, with ``keep_hybrids``, the hybrids."""
        x = self._check_batch(originals, len(params))
        g = self._check_batch(edited, len(params)) if edited.shape[0] == x.shape[0] else None
        if g is None:
            raise ValueError(f"{edited.shape[0]} edited images for {x.shape[0]} originals")
        if g.shape[-2:] != x.shape[-2:]:
            g = to_channels_last(TF.resize(g, list(x.shape[-2:]), antialias=True))
        out, hybrids = torch.empty_like(x), (torch.empty_like(x) if keep_hybrids else None)
        for start in range(0, x.shape[0], self.chunk_size):
            stop = start + self.chunk_size
            hyb = self._mix(x[start:stop], g[start:stop], params[start:stop], out[start:stop], keep_hybrids)
            if hybrids is not None:
                nhwc(hybrids)[start:stop] = nhwc(hyb)
        if not is_channels_last(originals):
            out = out.contiguous()
            hybrids = None if hybrids is None else hybrids.contiguous()
        return out, hybrids

    def _mix(self, x, g, params, out, keep_hybrid: bool):
        """Mix a chunk into ``out``; returns the hybrids (if kept)."""
        n, _, h, w = x.shape
        if self.reject_white:
            for i in range(n):
                if is_almost_white(g[i]):
                    raise ValueError("generated image is almost all white (discarded, as in the public code)")
        kinds = [p.mask for p in params]
        fractals, _ = self.sample_fractals([p.fractal_seed for p in params], h, w, x.device)
        if keep_hybrid or self.seam > 0:
            hybrids = hybrid(x, g, kinds, seam=self.seam)
            nhwc(out)[:] = nhwc(fractal_blend(hybrids, fractals, self.lam))
            return hybrids
        hybrid_fractal_blend(x, g, fractals, kinds, self.lam, out=out)
        return None

    # ------------------------------------------------------------------ torchvision-style

    def transform(self, inpt, edited=None, generator: torch.Generator | None = None):
        """Mix one original (PIL image or ``uint8`` tensor, or a batch) with its edited version."""
        if edited is None:
            raise TypeError("DiffuseMix needs the edited image too: method(original, edited)")
        edited_t = as_image_batch(edited)
        return self._transform(inpt, generator, lambda batch, gens: self.augment(batch, gens, edited_t)[0])
