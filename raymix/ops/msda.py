"""Batched mask kernels for mixed-sample data augmentation (MSDA).

Every kernel takes per-sample parameters that were already drawn (so the kernels are
pure and deterministic) and returns *partner masks* of shape ``(N, 1, H, W)`` with
values in [0, 1]: 1 where the mixing partner shows through, 0 where the sample keeps
its own pixels. A kernel given ratio ``lam`` covers about ``lam`` of the image:

- :func:`mixup_masks`   constant ``lam`` (Zhang et al. 2018).
- :func:`cutmix_masks`  one box of area ``lam * H * W`` clipped at the border (Yun et al. 2019).
- :func:`fmix_masks`    binarised low-frequency noise, the top ``lam`` of pixels (Harris et al. 2020).
- :func:`grid_masks`    ``round(lam * n * n)`` cells of an ``n x n`` grid (after Baek et al. 2021).
- :func:`gaussian_masks` an anisotropic, rotated Gaussian blob (GMix, Park et al. 2022;
  AGMix, Liang et al. 2023, section 3.1).

and two mask augmentations (MiAMix, section 3.2.3): :func:`affine_masks` (rotation and
shear) and :func:`smooth_masks` (average or Gaussian filter with a per-sample window).

No Python loop runs over samples or pixels; :func:`smooth_masks` loops over the handful
of distinct window sizes only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "mixup_masks",
    "cutmix_masks",
    "fmix_masks",
    "fmix_spectrum_scale",
    "grid_masks",
    "gaussian_masks",
    "affine_warp",
    "affine_masks",
    "smooth_masks",
]


def _grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates, ``ys`` of shape (1, H, 1) and ``xs`` of shape (1, 1, W)."""
    ys = torch.arange(h, device=device, dtype=torch.float32).add_(0.5).view(1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).add_(0.5).view(1, 1, w)
    return ys, xs


def mixup_masks(lam: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """MixUp: every pixel takes ``lam`` of the partner. ``lam``: (N,)."""
    return lam.float().view(-1, 1, 1, 1).expand(-1, 1, h, w).contiguous()


def cutmix_masks(lam: torch.Tensor, centers: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """CutMix: a box with sides ``sqrt(lam) * (H, W)`` centred at ``centers``.

    ``centers``: (N, 2) as fractions (y, x) in [0, 1); the box is clipped at the border
    as in the original CutMix, so its area can fall short of ``lam``.
    """
    ys, xs = _grid(h, w, lam.device)
    side = lam.float().clamp(0, 1).sqrt()
    half_h = (side * h / 2).view(-1, 1, 1)
    half_w = (side * w / 2).view(-1, 1, 1)
    cy = (centers[:, 0].float() * h).view(-1, 1, 1)
    cx = (centers[:, 1].float() * w).view(-1, 1, 1)
    inside = ((ys - cy).abs() < half_h) & ((xs - cx).abs() < half_w)
    return inside.unsqueeze(1).float()


def fmix_spectrum_scale(h: int, w: int, decay: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """FMix spectral envelope ``1 / f**decay`` on the ``rfft2`` grid, shape (H, W//2+1)."""
    fy = torch.fft.fftfreq(h, device=device).view(h, 1)
    fx = torch.fft.rfftfreq(w, device=device).view(1, w // 2 + 1)
    freq = (fy.square() + fx.square()).sqrt()
    return 1.0 / freq.clamp_min(1.0 / max(h, w)).pow(decay)


def fmix_masks(lam: torch.Tensor, noise: torch.Tensor, h: int, w: int, decay: float = 3.0) -> torch.Tensor:
    """FMix: low-pass filtered Gaussian noise, thresholded so its top ``lam`` is 1.

    ``noise``: (N, H, W//2+1, 2) standard normal draws (real and imaginary parts of the
    spectrum); ``decay``: the power of the ``1/f`` envelope (Harris et al. use 3).
    The number of partner pixels is exactly ``round(lam * H * W)``.
    """
    n = noise.shape[0]
    spectrum = torch.complex(noise[..., 0].float(), noise[..., 1].float())
    spectrum = spectrum * fmix_spectrum_scale(h, w, decay, noise.device)
    field = torch.fft.irfft2(spectrum, s=(h, w)).reshape(n, -1)
    count = (lam.float().clamp(0, 1) * field.shape[1]).round().long()
    order = field.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(field.shape[1], device=field.device).expand(n, -1))
    mask = (ranks < count.view(-1, 1)).float()
    return mask.view(n, 1, h, w)


def grid_masks(lam: torch.Tensor, cells: torch.Tensor, noise: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Grid mixing: the partner fills ``round(lam * n * n)`` random cells of an ``n x n`` grid.

    ``cells``: (N,) integer grid size ``n`` per sample; ``noise``: (N, G, G) uniform draws
    with ``G >= max(cells)``; the cells with the smallest noise inside the sample's
    ``n x n`` corner are chosen.
    """
    n_samples, g, _ = noise.shape
    cells = cells.long()
    idx = torch.arange(g, device=noise.device)
    in_grid = (idx.view(1, g, 1) < cells.view(-1, 1, 1)) & (idx.view(1, 1, g) < cells.view(-1, 1, 1))
    scores = torch.where(in_grid, noise.float(), torch.full_like(noise, math.inf, dtype=torch.float32))
    flat = scores.view(n_samples, -1)
    order = flat.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(g * g, device=noise.device).expand(n_samples, -1))
    count = (lam.float().clamp(0, 1) * cells.square().float()).round().long()
    chosen = (ranks < count.view(-1, 1)).view(n_samples, g, g)
    # Map every pixel to its cell in the sample's own n x n grid.
    rows = (torch.arange(h, device=noise.device).view(1, h) * cells.view(-1, 1)) // h  # (N, H)
    cols = (torch.arange(w, device=noise.device).view(1, w) * cells.view(-1, 1)) // w  # (N, W)
    flat_cell = rows.unsqueeze(2) * g + cols.unsqueeze(1)  # (N, H, W)
    mask = chosen.view(n_samples, -1).gather(1, flat_cell.view(n_samples, -1)).view(n_samples, 1, h, w)
    return mask.float()


def gaussian_masks(
    lam: torch.Tensor, centers: torch.Tensor, q: torch.Tensor, theta: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """AGMix (MiAMix section 3.1): ``exp(-d^T (R S R^T)^-1 d / (2 sigma^2))`` around a centre.

    ``S = [[1, q], [q, 1]]`` with ``q`` in (-1, 1) (``q = 0``, ``theta = 0`` gives GMix);
    ``R`` rotates by ``theta`` (radians); ``centers``: (N, 2) fractions (y, x). ``sigma`` is
    set so that the blob of the unclipped plane holds ``lam * H * W`` pixels of partner
    weight: ``2 pi sigma^2 sqrt(det S) = lam H W``. The paper writes
    ``sigma = sqrt(lam N)`` without fixing N; this calibration makes ``lam`` mean the same
    share it means for the other generators. Near the border the blob is cut, so the
    realised share can fall short of ``lam``.
    """
    ys, xs = _grid(h, w, lam.device)
    q = q.float().clamp(-0.999, 0.999)
    det = 1.0 - q.square()
    sigma2 = (lam.float().clamp_min(1e-6) * h * w) / (2 * math.pi * det.sqrt())
    # Rotated covariance C = R S R^T; its inverse is R S^-1 R^T.
    c, s = theta.float().cos(), theta.float().sin()
    inv_s = torch.stack([torch.stack([1 / det, -q / det], -1), torch.stack([-q / det, 1 / det], -1)], -2)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    inv_c = rot @ inv_s @ rot.transpose(-1, -2)  # (N, 2, 2)
    dy = ys - (centers[:, 0].float() * h).view(-1, 1, 1)
    dx = xs - (centers[:, 1].float() * w).view(-1, 1, 1)
    a = inv_c[:, 0, 0].view(-1, 1, 1)
    b = inv_c[:, 0, 1].view(-1, 1, 1)
    d = inv_c[:, 1, 1].view(-1, 1, 1)
    quad = a * dy.square() + 2 * b * dy * dx + d * dx.square()
    return torch.exp(-quad / (2 * sigma2.view(-1, 1, 1))).unsqueeze(1)


def affine_warp(
    images: torch.Tensor,
    angle: torch.Tensor,
    shear: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    translate: torch.Tensor | None = None,
    flip: torch.Tensor | None = None,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Warp each image of an (N, C, H, W) batch about its centre with its own parameters.

    ``angle`` and ``shear`` are radians; ``scale`` > 1 zooms in; ``translate`` (N, 2) is a
    fraction (x, y) of the half-size; ``flip`` (bool, N) mirrors horizontally. Built on
    ``affine_grid``/``grid_sample``: one kernel call for the whole batch.
    """
    n = images.shape[0]
    c, s = angle.float().cos(), angle.float().sin()
    ones = torch.ones_like(c)
    zeros = torch.zeros_like(c)
    m = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    if shear is not None:
        t = shear.float().tan()
        m = m @ torch.stack([torch.stack([ones, t], -1), torch.stack([zeros, ones], -1)], -2)
    if scale is not None:
        m = m / scale.float().view(-1, 1, 1)
    if flip is not None:
        sign = torch.where(flip, -ones, ones)
        m = m * torch.stack([sign, ones], -1).view(n, 1, 2)
    offset = translate.float().view(n, 2, 1) if translate is not None else torch.zeros(n, 2, 1, device=m.device)
    theta = torch.cat([m, offset.to(m.device)], dim=2).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def affine_masks(masks: torch.Tensor, angle: torch.Tensor, shear: torch.Tensor) -> torch.Tensor:
    """Rotate by ``angle`` and shear by ``shear`` (both radians, per sample) about the centre.

    Pixels brought in from outside the frame are 0 (the sample's own pixels), so the
    partner share can shrink a little; a label weight taken from the mask mean stays exact.
    """
    return affine_warp(masks, angle, shear=shear, padding_mode="zeros").clamp_(0, 1)


def smooth_masks(masks: torch.Tensor, windows: torch.Tensor, kind: str = "average") -> torch.Tensor:
    """Blur each mask with its own odd ``window`` (0 or 1 leaves the mask unchanged).

    ``kind="average"`` is a box filter (MiAMix section 3.2.3); ``kind="gaussian"`` uses a
    Gaussian kernel of that window with ``sigma = window / 6`` (section 4.7). Borders
    average over the pixels inside the frame only.
    """
    if kind not in ("average", "gaussian"):
        raise ValueError(f"smoothing kind must be 'average' or 'gaussian', not {kind!r}")
    out = masks.clone()
    for win in torch.unique(windows).tolist():
        win = int(win)
        if win <= 1:
            continue
        if win % 2 == 0:
            raise ValueError(f"smoothing windows must be odd, got {win}")
        sel = (windows == win).nonzero(as_tuple=True)[0]
        sub = masks.index_select(0, sel)
        if kind == "average":
            blurred = F.avg_pool2d(sub, win, stride=1, padding=win // 2, count_include_pad=False)
        else:
            blurred = _gaussian_blur(sub, win)
        out.index_copy_(0, sel, blurred)
    return out


def _gaussian_blur(masks: torch.Tensor, win: int) -> torch.Tensor:
    sigma = win / 6.0
    x = torch.arange(win, device=masks.device, dtype=masks.dtype) - win // 2
    k = torch.exp(-x.square() / (2 * sigma * sigma))
    k = k / k.sum()
    ones = torch.ones_like(masks[:1])
    pad = win // 2
    # Separable blur, normalised by the blurred all-ones image so borders stay unbiased.
    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(F.pad(t, (pad, pad, 0, 0)), k.view(1, 1, 1, win))
        return F.conv2d(F.pad(t, (0, 0, pad, pad)), k.view(1, 1, win, 1))

    return blur(masks) / blur(ones)
