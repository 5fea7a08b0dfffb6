"""DiffuseMix concatenation masks and fractal blending (DiffuseMix Sec. 3, Eq. 1-3).

A mask keeps the original image in one half and the generated image in the other:
``H = M * I + (1 - M) * I_gen``. The paper uses four binary masks -- the horizontal and vertical
halves, each with the two images swapped -- named here by where the original goes:
``"left"``, ``"right"``, ``"top"``, ``"bottom"``. With an even size each image keeps exactly half
the pixels; with an odd size the original gets ``size // 2`` rows/columns for ``"left"``/``"top"``
and the rest for ``"right"``/``"bottom"`` (the complement). The authors' public code uses only
``"left"`` and ``"top"`` with a soft seam: the weight falls linearly over ``seam`` pixels
(20) around the middle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from raymix.ops.tensors import as_batch, from_nhwc, is_channels_last, nhwc, require_uint8, round_to_uint8, unbatch

__all__ = ["MASKS", "mask_profile", "concat_mask", "hybrid", "fractal_blend", "hybrid_fractal_blend"]

MASKS = ("left", "right", "top", "bottom")


def _axis(kind: str) -> int:
    if kind in ("left", "right"):
        return -1
    if kind in ("top", "bottom"):
        return -2
    raise ValueError(f"unknown mask {kind!r}; expected one of {MASKS}")


def _pair(first: torch.Tensor, second: torch.Tensor, name1: str, name2: str):
    require_uint8(first, name1)
    require_uint8(second, name2)
    a, added = as_batch(first)
    b, _ = as_batch(second)
    if a.shape != b.shape:
        raise ValueError(f"{name1} {tuple(a.shape)} and {name2} {tuple(b.shape)} differ in shape")
    return a, b, added


def mask_profile(kind: str, length: int, seam: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Weight of the original along the split axis: 1 before the middle, 0 after (for
    ``"left"``/``"top"``; the complement for ``"right"``/``"bottom"``), with a linear ramp of
    ``seam`` pixels centred on the middle as in the public code (``np.linspace(0, 1, seam)``)."""
    _axis(kind)
    half = length // 2
    p = torch.zeros(length, dtype=torch.float32, device=device)
    if seam <= 0:
        p[:half] = 1.0
    else:
        start = max(0, half - seam // 2)
        p[:start] = 1.0
        ramp = 1.0 - torch.linspace(0.0, 1.0, seam, device=device)
        end = min(length, start + seam)
        p[start:end] = ramp[: end - start]
    if kind in ("right", "bottom"):
        p = 1.0 - p
    return p


def concat_mask(kind: str, height: int, width: int, seam: int = 0, device: torch.device | str = "cpu"
                ) -> torch.Tensor:
    """The mask ``M`` of shape ``(1, H, W)``, 1 where the original is kept."""
    if _axis(kind) == -1:
        return mask_profile(kind, width, seam, device).view(1, 1, width).expand(1, height, width)
    return mask_profile(kind, height, seam, device).view(1, height, 1).expand(1, height, width)


def hybrid(originals: torch.Tensor, generated: torch.Tensor, kinds: Sequence[str] | str, seam: int = 0
           ) -> torch.Tensor:
    """``M * I + (1 - M) * I_gen`` for each pair, ``uint8`` in and out (DiffuseMix Eq. 1)."""
    x, g, added = _pair(originals, generated, "original", "generated")
    n, _, h, w = x.shape
    if isinstance(kinds, str):
        kinds = [kinds] * n
    out = g.clone()
    for i, kind in enumerate(kinds):
        axis = _axis(kind)
        length = w if axis == -1 else h
        if seam <= 0:
            half = length // 2
            start, stop = (0, half) if kind in ("left", "top") else (half, length)
            out[i].narrow(axis, start, stop - start).copy_(x[i].narrow(axis, start, stop - start))
        else:
            m = concat_mask(kind, h, w, seam, x.device)
            round_to_uint8(torch.lerp(g[i].float(), x[i].float(), m), out=out[i])
    return unbatch(out, added)


def fractal_blend(hybrids: torch.Tensor, fractals: torch.Tensor, lam=0.20) -> torch.Tensor:
    """``A = (1 - lam) * H + lam * F`` (DiffuseMix Eq. 2; ``lam = 0.20`` in all experiments),
    ``uint8`` in and out, rounded. ``lam`` is a scalar or one value per sample."""
    h, f, added = _pair(hybrids, fractals, "hybrid", "fractal")
    n = h.shape[0]
    weights = torch.as_tensor(lam, dtype=torch.float64).reshape(-1).expand(n).tolist()
    out = torch.empty_like(h)
    for i in range(n):  # image by image: float temporaries stay in cache
        round_to_uint8(torch.lerp(h[i].float(), f[i].float(), weights[i]), out=out[i], clip=False)  # convex
    return unbatch(out, added)


def hybrid_fractal_blend(originals: torch.Tensor, generated: torch.Tensor, fractals: torch.Tensor,
                         kinds: Sequence[str] | str, lam=0.20, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``fractal_blend(hybrid(originals, generated, kinds), fractals, lam)`` for the binary masks,
    without building the hybrid: each half is blended straight from the image it comes from.
    ``out``: a ``uint8`` batch of the same shape to write into (channels-last on the CPU)."""
    x, g, added = _pair(originals, generated, "original", "generated")
    f, _ = as_batch(fractals)
    require_uint8(f, "fractal")
    if f.shape != x.shape:
        raise ValueError(f"fractal {tuple(f.shape)} and original {tuple(x.shape)} differ in shape")
    n, _, h, w = x.shape
    if isinstance(kinds, str):
        kinds = [kinds] * n
    for kind in kinds:
        _axis(kind)
    weights = torch.as_tensor(lam, dtype=torch.float64).reshape(-1).expand(n).tolist()
    if x.device.type != "cpu":
        blended = fractal_blend(hybrid(x, g, kinds), f, weights)
        return unbatch(blended if out is None else out.copy_(blended), added)
    # Channels-last (copies only for other layouts); per image: the two halves converted into a
    # float buffer, blended with the fractal, rounded half up by adding 0.5 and truncating (the
    # blend is convex). NumPy views keep the per-image bookkeeping cheap.
    xs, gs, fs = (nhwc(t).numpy() for t in (x, g, f))
    if out is None:
        result = torch.empty((n, h, w, x.shape[1]), dtype=torch.uint8)
    else:
        if out.shape != x.shape or out.dtype != torch.uint8 or not is_channels_last(out):
            raise ValueError("out must be a channels-last uint8 batch shaped like the originals")
        result = nhwc(out)
    dst = result.numpy()
    buf, fbuf = (torch.empty(result.shape[1:], dtype=torch.float32) for _ in range(2))
    b, fb = buf.numpy(), fbuf.numpy()
    halves = {"left": (np.s_[:, : w // 2], np.s_[:, w // 2:]), "top": (np.s_[: h // 2], np.s_[h // 2:])}
    halves["right"], halves["bottom"] = halves["left"], halves["top"]
    for i, kind in enumerate(kinds):
        first, second = halves[kind]
        keep, swap = (xs[i], gs[i]) if kind in ("left", "top") else (gs[i], xs[i])
        np.copyto(b[first], keep[first])
        np.copyto(b[second], swap[second])
        fb[...] = fs[i]
        torch.lerp(buf, fbuf, weights[i], out=buf)
        np.copyto(dst[i], np.add(b, np.float32(0.5), out=b), casting="unsafe")
    return unbatch(out if out is not None else from_nhwc(result, x), added)
