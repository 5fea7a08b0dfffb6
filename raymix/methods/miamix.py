"""MiAMix: multi-stage augmented mixup (Liang, Liang and Jia, Processes 2023, 11, 3284).

A batched ``torch.nn.Module`` that runs on the training device inside the step: the
registry's ``"batch"`` kind. Its parameters are drawn for the whole batch at once
(:meth:`MiAMix.sample` -> :class:`MiAMixParams`: pairing, layers, masks) because a sample's
partner is another sample of the batch; :meth:`MiAMix.mix` draws them and mixes images and
labels, returning the params too. For each sample of a batch (Algorithm 1):

1. pair it with a random partner from the batch, or, with probability ``p_self``, with a
   differently augmented copy of itself (section 3.2.1);
2. draw the number of mask layers ``k ~ U{1..k_max}``, ratios
   ``(l_1..l_k, rest) ~ Dir(alpha, ..., alpha, k * alpha)`` (eq. 9) and one mask
   generator per layer from ``methods`` with weights ``weights`` (section 3.2.2);
3. generate each layer's mask with its ratio ``l_j``; augment CutMix, FMix and GridMix
   masks with rotation and shear (probability ``p_aug``) and smoothing (probability
   ``p_smooth``) (section 3.2.3; MixUp and AGMix masks are never augmented);
4. merge the layers by pointwise product (eq. 10) and mix
   ``x~ = mask * x_i + (1 - mask) * x_t`` (eq. 7); the label weight is the mean of the
   merged mask (eq. 12).

Each generator draws a *partner* mask covering about ``l_j`` of the image; the sample
keeps the product of their complements, so on average it keeps ``rest``, whose
Dirichlet weight ``k * alpha`` balances the ``k`` layers: the kept share is
``Beta(k alpha, k alpha)``-distributed around one half whatever ``k`` is.

Defaults are the paper's Table 2: ``alpha=2``, ``k_max=2``,
``methods=(mixup, cutmix, fmix, gridmix, agmix)``, ``weights=(2, 1, 1, 1, 1)``,
``p_self=0.1``, ``p_aug=0.25``, ``p_smooth=0.5``. Rotation spans +-45 degrees and the
smoothing windows are {5, 7, 11, 13} at 64x64 and {9, 15, 25, 35, 45} at 224x224
(section 4.7). Options the paper compares in its ablations: ``merge="sum"`` (eq. 11),
``label_weight="ratio"`` (reuse ``rest`` instead of the mask mean, Table 10).

All randomness comes from the ``generator`` passed to :meth:`MiAMix.forward` (or the
global generator when none is given), so a seeded generator reproduces a batch exactly.
No Python loop runs over samples or pixels.

Use in any PyTorch training loop::

    import torch
    from raymix.methods.miamix import MiAMix

    miamix = MiAMix(num_classes=1000).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    for images, labels in loader:                       # float NCHW, int64 labels
        images, labels = images.to(device), labels.to(device)
        mixed, targets = miamix(images, labels, generator=gen)
        loss = miamix.loss(model(mixed), targets)       # soft-label cross-entropy
        optimizer.zero_grad(); loss.backward(); optimizer.step()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raymix.ops import msda

__all__ = ["MiAMix", "MiAMixParams", "MASK_GENERATORS", "smoothing_windows"]

MASK_GENERATORS = ("mixup", "cutmix", "fmix", "gridmix", "agmix")
AUGMENTABLE = ("cutmix", "fmix", "gridmix")

# Section 4.7: window sizes given for two image sizes.
_WINDOWS_BY_SIZE = {64: (5, 7, 11, 13), 224: (9, 15, 25, 35, 45)}


def smoothing_windows(size: int) -> tuple[int, ...]:
    """Smoothing window sizes for a square-ish image of side ``size`` (section 4.7).

    The paper lists windows for 64 and 224 pixels; other sizes scale the list of the
    nearer of the two (on a log scale) and round to odd sizes of at least 3.
    """
    ref = min(_WINDOWS_BY_SIZE, key=lambda r: abs(math.log(size / r)))
    if ref == size:
        return _WINDOWS_BY_SIZE[ref]
    scaled = {max(3, 2 * round(w * size / ref / 2) + 1) for w in _WINDOWS_BY_SIZE[ref]}
    return tuple(sorted(scaled))


@dataclass
class MiAMixParams:
    """Everything drawn for one batch; see :meth:`MiAMix.sample`.

    ``methods`` holds indices into ``MiAMix.methods`` per layer, -1 for layers past ``layers``;
    ``ratios`` holds the Dirichlet draw ``(l_1..l_kmax, rest)`` with unused layers at 0;
    ``augmented``/``windows`` record the mask augmentation per layer (window 0: none);
    ``mask`` is the merged mask (the weight of the sample itself), ``lam`` its label weight.
    """

    partner: torch.Tensor  # (N,) int64
    self_mix: torch.Tensor  # (N,) bool
    layers: torch.Tensor  # (N,) int64 in 1..k_max
    methods: torch.Tensor  # (N, k_max) int64
    ratios: torch.Tensor  # (N, k_max + 1)
    augmented: torch.Tensor  # (N, k_max) bool
    windows: torch.Tensor  # (N, k_max) int64
    mask: torch.Tensor  # (N, 1, H, W)
    lam: torch.Tensor  # (N,)


class MiAMix(nn.Module):
    """MiAMix on a batch of float images ``(N, C, H, W)`` with integer or soft labels.

    Args:
        num_classes: needed when labels are class indices.
        alpha: Dirichlet concentration (Table 2: 2; the paper's CIFAR runs used 1).
        k_max: maximum number of mask layers (Table 2: 2).
        methods: mask generators, a subset of ``MASK_GENERATORS``.
        weights: sampling weights of ``methods`` (Table 2: 2, 1, 1, 1, 1).
        p_self: probability of mixing with an augmented copy of the sample itself.
        p_aug: probability of rotating and shearing a CutMix/FMix/GridMix mask.
        p_smooth: probability of smoothing a CutMix/FMix/GridMix mask.
        max_rotation: degrees, rotation drawn from U(-max, max) (section 4.7: 45).
        max_shear: tangent of the largest shear angle (not given by the paper; 0.3 is
            AugMix's largest shear).
        smoothing: ``"average"`` (section 3.2.3) or ``"gaussian"`` (section 4.7).
        smooth_windows: window sizes; default :func:`smoothing_windows` of the image size.
        merge: ``"mul"`` (eq. 10) or ``"sum"`` (eq. 11).
        label_weight: ``"mask"`` (mean of the merged mask, eq. 12) or ``"ratio"`` (``rest``).
        fmix_decay: FMix spectral decay power (Harris et al.: 3).
        grid_sizes: inclusive range of GridMix cells per side (the paper leaves it open).
        label_smoothing: used by :meth:`loss`.
        self_augment: ``callable(images, generator) -> images`` that makes the differently
            augmented copy for self-mixing when no second view is passed; default: a random
            flip, rotation (+-15 degrees), scale (0.8-1.2) and shift (+-10%) on the device.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        alpha: float = 2.0,
        k_max: int = 2,
        methods: Sequence[str] = MASK_GENERATORS,
        weights: Sequence[float] = (2, 1, 1, 1, 1),
        p_self: float = 0.10,
        p_aug: float = 0.25,
        p_smooth: float = 0.5,
        max_rotation: float = 45.0,
        max_shear: float = 0.3,
        smoothing: str = "average",
        smooth_windows: Sequence[int] | None = None,
        merge: str = "mul",
        label_weight: str = "mask",
        fmix_decay: float = 3.0,
        grid_sizes: tuple[int, int] = (2, 8),
        label_smoothing: float = 0.0,
        self_augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        methods = tuple(methods)
        unknown = set(methods) - set(MASK_GENERATORS)
        if unknown:
            raise ValueError(f"unknown MiAMix methods {sorted(unknown)}; choose from {MASK_GENERATORS}")
        if len(weights) != len(methods):
            raise ValueError(f"{len(methods)} methods but {len(weights)} weights")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {tuple(weights)}")
        if alpha <= 0 or k_max < 1:
            raise ValueError("alpha must be positive and k_max at least 1")
        if merge not in ("mul", "sum") or label_weight not in ("mask", "ratio"):
            raise ValueError("merge must be 'mul' or 'sum'; label_weight 'mask' or 'ratio'")
        if smoothing not in ("average", "gaussian"):
            raise ValueError(f"smoothing must be 'average' or 'gaussian', not {smoothing!r}")
        if smooth_windows is not None and any(w < 1 or w % 2 == 0 for w in smooth_windows):
            raise ValueError(f"smoothing windows must be odd and positive, got {tuple(smooth_windows)}")
        self.num_classes = num_classes
        self.alpha = float(alpha)
        self.k_max = int(k_max)
        self.methods = methods
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]), persistent=False)
        self.p_self, self.p_aug, self.p_smooth = float(p_self), float(p_aug), float(p_smooth)
        self.max_rotation = float(max_rotation)
        self.max_shear = float(max_shear)
        self.smoothing = smoothing
        self.smooth_windows = tuple(smooth_windows) if smooth_windows is not None else None
        self.merge = merge
        self.label_weight = label_weight
        self.fmix_decay = float(fmix_decay)
        self.grid_sizes = (int(grid_sizes[0]), int(grid_sizes[1]))
        self.label_smoothing = float(label_smoothing)
        self.self_augment = self_augment or random_view

    def extra_repr(self) -> str:
        return (
            f"methods={self.methods}, weights={self.weights.tolist()}, alpha={self.alpha}, k_max={self.k_max}, "
            f"p_self={self.p_self}, p_aug={self.p_aug}, p_smooth={self.p_smooth}, merge={self.merge!r}"
        )

    # -- sampling ----------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self, n: int, h: int, w: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> MiAMixParams:
        """Draw pairing, layers, methods, ratios and masks for a batch of ``n`` images."""
        device = torch.device(device)
        gdev = generator.device if generator is not None else device
        k_max = self.k_max

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=gdev).to(device)

        # Stage 1: pairing (section 3.2.1).
        self_mix = rand(n) < self.p_self
        # Shuffled pairs with no fixed point: an image left in place by a plain shuffle would be
        # "mixed" with itself unchanged; self-mixing is p_self's job, with an augmented copy.
        order = torch.randperm(n, generator=generator, device=gdev).to(device)
        shuffled = torch.empty_like(order)
        shuffled[order] = order.roll(1)
        partner = torch.where(self_mix, torch.arange(n, device=device), shuffled)

        # Stage 2: number of layers, methods, ratios (section 3.2.2, eq. 9).
        layers = torch.randint(1, k_max + 1, (n,), generator=generator, device=gdev).to(device)
        used = torch.arange(k_max, device=device).view(1, -1) < layers.view(-1, 1)  # (N, k_max)
        methods = torch.multinomial(
            self.weights.to(gdev).expand(n, -1), k_max, replacement=True, generator=generator
        ).to(device)
        methods = torch.where(used, methods, torch.full_like(methods, -1))
        concentration = torch.cat(
            [torch.full((n, k_max), self.alpha, device=gdev), (layers.to(gdev).float() * self.alpha).view(-1, 1)], 1
        )
        gammas = torch._standard_gamma(concentration, generator=generator).to(device)
        gammas[:, :k_max] = torch.where(used, gammas[:, :k_max], torch.zeros_like(gammas[:, :k_max]))
        ratios = gammas / gammas.sum(1, keepdim=True).clamp_min(1e-12)

        # Stage 3: one partner mask per (sample, layer); unused layers stay 0 (no effect).
        slots = n * k_max
        flat_methods = methods.reshape(slots)
        flat_lam = ratios[:, :k_max].reshape(slots)
        partner_masks = torch.zeros(slots, 1, h, w, device=device)
        for index, name in enumerate(self.methods):
            sel = (flat_methods == index).nonzero(as_tuple=True)[0]
            if sel.numel():
                partner_masks[sel] = self._generate(name, flat_lam[sel], h, w, generator, gdev, device)

        # Mask augmentation, only for CutMix, FMix and GridMix (section 3.2.3).
        augmentable_ids = [i for i, name in enumerate(self.methods) if name in AUGMENTABLE]
        augmentable = torch.isin(flat_methods, torch.tensor(augmentable_ids, device=device, dtype=torch.long))
        draw = rand(slots, 4)
        augmented = augmentable & (draw[:, 0] < self.p_aug)
        smoothed = augmentable & (draw[:, 1] < self.p_smooth)
        sel = augmented.nonzero(as_tuple=True)[0]
        if sel.numel():
            angle = (draw[sel, 2] * 2 - 1) * math.radians(self.max_rotation)
            shear = torch.atan((draw[sel, 3] * 2 - 1) * self.max_shear)
            partner_masks[sel] = msda.affine_masks(partner_masks[sel], angle, shear)
        choices = torch.tensor(self.smooth_windows or smoothing_windows(min(h, w)), device=device)
        pick = torch.randint(0, len(choices), (slots,), generator=generator, device=gdev).to(device)
        windows = torch.where(smoothed, choices[pick], torch.zeros_like(pick))
        if smoothed.any():
            partner_masks = msda.smooth_masks(partner_masks, windows, self.smoothing)

        # Stage 4: merge (eq. 10 / 11) and the label weight (eq. 12).
        partner_masks = partner_masks.view(n, k_max, h, w)
        if self.merge == "mul":
            mask = (1 - partner_masks).prod(dim=1, keepdim=True)
        else:
            mask = 1 - partner_masks.sum(dim=1, keepdim=True).clamp(0, 1)
        lam = mask.mean(dim=(1, 2, 3)) if self.label_weight == "mask" else ratios[:, k_max]
        return MiAMixParams(
            partner=partner,
            self_mix=self_mix,
            layers=layers,
            methods=methods,
            ratios=ratios,
            augmented=augmented.view(n, k_max),
            windows=windows.view(n, k_max),
            mask=mask,
            lam=lam,
        )

    def _generate(
        self,
        name: str,
        lam: torch.Tensor,
        h: int,
        w: int,
        generator: torch.Generator | None,
        gdev: torch.device,
        device: torch.device,
    ) -> torch.Tensor:
        m = lam.shape[0]

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=gdev).to(device)

        if name == "mixup":
            return msda.mixup_masks(lam, h, w)
        if name == "cutmix":
            return msda.cutmix_masks(lam, rand(m, 2), h, w)
        if name == "fmix":
            noise = torch.randn((m, h, w // 2 + 1, 2), generator=generator, device=gdev).to(device)
            return msda.fmix_masks(lam, noise, h, w, self.fmix_decay)
        if name == "gridmix":
            lo, hi = self.grid_sizes
            cells = torch.randint(lo, hi + 1, (m,), generator=generator, device=gdev).to(device)
            return msda.grid_masks(lam, cells, rand(m, hi, hi), h, w)
        # agmix: random centre, correlation q ~ U(-1, 1) and rotation (section 3.1).
        draw = rand(m, 4)
        q = draw[:, 2] * 2 - 1
        theta = draw[:, 3] * math.pi
        return msda.gaussian_masks(lam, draw[:, :2], q, theta, h, w)

    # -- mixing ------------------------------------------------------------------------

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        images2: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch. Returns ``(mixed images, soft targets (N, num_classes))``.

        ``images2``, when given, is a second, independently augmented view of the same
        samples (section 3.2.1: two sets of augmentation results); partners and self-mixes
        are then taken from it. Without it, partners come from ``images`` and self-mixes
        from ``self_augment(images)``.
        """
        mixed, targets, _ = self.mix(images, labels, images2, generator=generator)
        return mixed, targets

    def mix(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        images2: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, MiAMixParams]:
        """Like :meth:`forward`, and also returns the drawn :class:`MiAMixParams`."""
        if images.ndim != 4 or not images.is_floating_point():
            raise TypeError(f"MiAMix expects float images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        n, _, h, w = images.shape
        targets = self._soft_labels(labels, images.dtype)
        params = self.sample(n, h, w, generator=generator, device=images.device)
        source = images if images2 is None else images2
        partner_images = source[params.partner]
        if images2 is None:
            sel = params.self_mix.nonzero(as_tuple=True)[0]
            if sel.numel():
                partner_images[sel] = self.self_augment(images[sel], generator)
        mask = params.mask.to(images.dtype)
        mixed = mask * images + (1 - mask) * partner_images
        lam = params.lam.to(targets.dtype).view(-1, 1)
        mixed_targets = lam * targets + (1 - lam) * targets[params.partner]
        return mixed, mixed_targets, params

    def _soft_labels(self, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if labels.ndim == 2:
            return labels.to(dtype)
        if self.num_classes is None:
            raise ValueError("MiAMix needs num_classes to mix integer labels")
        return F.one_hot(labels.long(), self.num_classes).to(dtype)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against soft targets (with the module's label smoothing)."""
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


@torch.no_grad()
def random_view(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A differently augmented copy: random flip, rotation, scale and shift, on the device."""
    n = images.shape[0]
    gdev = generator.device if generator is not None else images.device
    draw = torch.rand((n, 5), generator=generator, device=gdev).to(images.device)
    angle = (draw[:, 0] * 2 - 1) * math.radians(15)
    scale = 0.8 + 0.4 * draw[:, 1]
    translate = (draw[:, 2:4] * 2 - 1) * 0.2  # fractions of the half-size: +-10% of the side
    flip = draw[:, 4] < 0.5
    return msda.affine_warp(images, angle, scale=scale, translate=translate, flip=flip, padding_mode="reflection")
