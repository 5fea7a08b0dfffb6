"""Blending two images: the conic arithmetic and geometric means of PixMix and the pixel and
element mixing of IPMix (the four rows of LayerMix Table I).

All kernels take ``uint8`` images or ``float32`` images in ``[0, 1]``, shaped ``(C, H, W)`` or
``(N, C, H, W)``, with one weight (or mask) per sample. Two ``uint8`` inputs give a ``uint8``
result (rounded); otherwise the result is ``float32`` in ``[0, 1]``. Results are always clipped
to the valid range, as every method clips after each blend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from raymix.ops.rng import Draws, child_generator
from raymix.ops.tensors import (
    as_batch,
    is_channels_last,
    per_sample,
    per_sample_list,
    repeat_channels,
    require_uint8,
    round_to_uint8,
    to_uint8,
    to_unit,
    unbatch,
)

__all__ = [
    "BLENDS",
    "get_ab",
    "additive",
    "multiplicative",
    "pixel_mix",
    "random_mask",
    "sample_blend",
    "blend",
    "blend_one",
    "blend_chain",
    "select_into_",
]

#: Blend kinds: arithmetic mean, geometric mean, pixel mixing, element mixing.
BLENDS = ("add", "multiply", "pixel", "element")

_TINY = 1e-37  # PixMix clamps the second image of a geometric blend away from 0


def _draws(generator: torch.Generator | Draws | None) -> Draws:
    return generator if isinstance(generator, Draws) else Draws(generator, block=4)


def get_ab(beta: float, generator: torch.Generator | Draws | None = None) -> tuple[float, float]:
    """PixMix's conic blend weights (PixMix Sec. 3; LayerMix Sec. 3.3).

    With probability 1/2 ``a ~ Beta(beta, 1)`` and ``b ~ Beta(1, beta)``; otherwise
    ``a = 1 + Beta(1, beta)`` and ``b = -Beta(1, beta)``. ``E[a + b] = 1``.
    """
    d = _draws(generator)
    if d.uniform() < 0.5:
        a = d.beta(beta, 1.0)
        b = d.beta(1.0, beta)
    else:
        a = 1.0 + d.beta(1.0, beta)
        b = -d.beta(1.0, beta)
    return a, b


def _additive(x: torch.Tensor, y: torch.Tensor, a, b) -> torch.Tensor:
    # a*x + b*y + (1 - a - b)/2 in unit scale; uint8 inputs fold 1/255 into the weights.
    out = x.float().mul_(a / 255.0) if x.dtype == torch.uint8 else torch.mul(x, a)
    other = y.float() if y.dtype == torch.uint8 else y
    wb = b / 255.0 if y.dtype == torch.uint8 else b
    if isinstance(wb, float):
        out.add_(other, alpha=wb)
    else:
        out.add_(other * wb)
    return out.add_((1.0 - a - b) * 0.5).clamp_(0.0, 1.0)


def _log2_(t: torch.Tensor) -> torch.Tensor:
    """In-place ``log2`` (``-inf`` at 0); NumPy's is several times faster on the CPU."""
    if t.device.type == "cpu":
        arr = t.numpy()
        with np.errstate(divide="ignore"):
            np.log2(arr, out=arr)
        return t
    return t.log2_()


def _exp2_(t: torch.Tensor) -> torch.Tensor:
    """In-place ``exp2``; NumPy's is faster on the CPU."""
    if t.device.type == "cpu":
        arr = t.numpy()
        np.exp2(arr, out=arr)
        return t
    return t.exp2_()


_LOG2_2_OVER_255 = math.log2(2.0 / 255.0)


def _multiplicative(x: torch.Tensor, y: torch.Tensor, a, b) -> torch.Tensor:
    # (2x)^a (2y)^b / 2 = 2^(a*log2(x') + b*log2(y') + a*cx + b*cy - 1), x' = x in its own scale,
    # cx = log2(2/255) for uint8 and 1 for unit floats.
    cx = _LOG2_2_OVER_255 if x.dtype == torch.uint8 else 1.0
    cy = _LOG2_2_OVER_255 if y.dtype == torch.uint8 else 1.0
    lx = _log2_(x.float() if x.dtype == torch.uint8 else x.clone()).mul_(a)
    zero_a = (a == 0) if isinstance(a, float) else bool(torch.as_tensor(a).eq(0).any())
    if zero_a:  # 0 * log(0): take 0^0 = 1
        lx.nan_to_num_(nan=0.0, posinf=math.inf, neginf=-math.inf)
    tiny = 2 * _TINY / (2.0 / 255.0 if y.dtype == torch.uint8 else 2.0)
    ly = _log2_(y.float().clamp_(min=tiny) if y.dtype == torch.uint8 else y.clamp(min=tiny))
    if isinstance(b, float):
        lx.add_(ly, alpha=b)
    else:
        lx.add_(ly.mul_(b))
    return _exp2_(lx.add_(a * cx + b * cy - 1.0)).clamp_(0.0, 1.0)


def _conic(kernel, x: torch.Tensor, y: torch.Tensor, a, b, float_out: bool) -> torch.Tensor:
    """Run a conic blend with per-sample weights; image by image on the CPU, where the float
    temporaries of one image stay in cache and batches would only add memory traffic."""
    x, added = as_batch(x)
    y, _ = as_batch(y)
    n = x.shape[0]
    a = [float(v) for v in per_sample_list(a, n)]
    b = [float(v) for v in per_sample_list(b, n)]
    to_u8 = not float_out and x.dtype == torch.uint8 and y.dtype == torch.uint8
    if x.device.type != "cpu":
        out = kernel(x, y, per_sample(a, n, device=x.device), per_sample(b, n, device=x.device))
        return unbatch(to_uint8(out) if to_u8 else out, added)
    if n == 1:
        out = kernel(x, y, a[0], b[0])
        return unbatch(to_uint8(out) if to_u8 else out, added)
    out = torch.empty(x.shape, dtype=torch.uint8 if to_u8 else torch.float32)
    for i in range(n):
        r = kernel(x[i], y[i], a[i], b[i])
        if to_u8:
            round_to_uint8(r.mul_(255.0), out=out[i])
        else:
            out[i] = r
    return unbatch(out, added)


def additive(x: torch.Tensor, y: torch.Tensor, a, b, *, float_out: bool = False) -> torch.Tensor:
    """Arithmetic conic blend: map to ``[-1, 1]``, ``a*x + b*y``, map back, clip.

    In ``[0, 1]`` this is ``a*x + b*y + (1 - a - b) / 2``. ``a`` and ``b`` are scalars or one
    value per sample. ``float_out`` keeps a float result for ``uint8`` inputs.
    """
    return _conic(_additive, x, y, a, b, float_out)


def multiplicative(x: torch.Tensor, y: torch.Tensor, a, b, *, float_out: bool = False) -> torch.Tensor:
    """Geometric conic blend: ``(2x)^a * (2y)^b / 2``, with ``y`` clamped away from 0, clipped.

    Computed as ``2^(a*log2(2x) + b*log2(2y)) / 2``; ``0^0`` is taken as 1.
    """
    return _conic(_multiplicative, x, y, a, b, float_out)


# --------------------------------------------------------------------------- chains
#
# A chain keeps its running image in one of three forms, all in the 0..255 scale of the uint8
# images it starts from and ends in: ``"u8"`` (``uint8``), ``"lin"`` (``float32`` in
# ``[0, 255]``) or ``"log"`` (``float32`` ``log2`` of a value in ``[0, 255]``). In [0, 1] terms,
# with ``u = v / 255``:
#
# - arithmetic: ``a*u + b*w + (1 - a - b)/2``  ->  ``a*v + b*y + 127.5*(1 - a - b)``;
# - geometric: ``(2u)^a (2w)^b / 2``  ->  ``log2`` of the result is
#   ``a*log2(v) + b*log2(y) + (a + b)*log2(2/255) - 1 + log2(255)``, a sum in the log domain, so
#   consecutive geometric means skip the ``exp2``/``log2`` round trip between them; the clip to
#   ``[0, 255]`` is ``min(., log2(255))`` there.

_TINY_U8 = 2 * _TINY / (2.0 / 255.0)  # PixMix's clamp of the second image (2y >= 1e-37), in uint8 scale
_LOG2_255 = math.log2(255.0)


def _chain_add(s: torch.Tensor, t: torch.Tensor, form: str, y: torch.Tensor, scratch: torch.Tensor, a: float,
               b: float, half: float = 0.0) -> torch.Tensor:
    """The arithmetic mean into the float buffer ``s``, clipped; ``half = 0.5`` also adds the 0.5
    that rounds half up when the result is cast to ``uint8`` next (the clip moves with it)."""
    if form == "u8":
        s.copy_(t)
    elif form == "log":
        _exp2_(s)
    s.mul_(a).add_(scratch.copy_(y), alpha=b)
    return s.add_(127.5 * (1.0 - a - b) + half).clamp_(half, 255.0 + half)


def _chain_multiply(s: torch.Tensor, t: torch.Tensor, form: str, y: torch.Tensor, scratch: torch.Tensor,
                    a: float, b: float) -> torch.Tensor:
    """The geometric mean into ``s`` as ``log2`` of the result, clipped to ``log2(255)``."""
    if form == "u8":
        _log2_(s.copy_(t))
    elif form == "lin":
        _log2_(s)
    ly = _log2_(scratch.copy_(y).clamp_(min=_TINY_U8))
    if a == 0.0:  # x^0 = 1, even at 0
        torch.mul(ly, b, out=s)
    else:
        s.mul_(a).add_(ly, alpha=b)
    return s.add_((a + b) * _LOG2_2_OVER_255 - 1.0 + _LOG2_255).clamp_(max=_LOG2_255)


def _chain_to_uint8(s: torch.Tensor, t: torch.Tensor, form: str, out: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """The chain's image as ``uint8`` (into ``out`` if given)."""
    if form == "u8":
        return t if out is None else out.copy_(t)
    if form == "log":
        _exp2_(s)
    if form != "lin+half":  # values in [0, 255]: rounding half up needs no clip
        s.add_(0.5)
    if s.device.type != "cpu":
        return s.to(torch.uint8) if out is None else out.copy_(s)
    if out is None:
        return torch.from_numpy(s.numpy().astype(np.uint8))
    np.copyto(out.numpy(), s.numpy(), casting="unsafe")  # the cast truncates
    return out


def blend_chain(x: torch.Tensor, steps: Sequence[tuple[str, torch.Tensor, dict]], *,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """``clip(blend_k(... clip(blend_1(x, y_1)) ..., y_k))`` for one ``uint8`` image ``(C, H, W)``
    and ``uint8`` partners ``y_i``, with ``steps[i] = (kind, y_i, params)`` (see
    :func:`sample_blend`), rounded to ``uint8`` once at the end (into ``out`` if given, a
    ``uint8`` image of the same shape and memory format).

    The arithmetic and geometric means stay float from one step to the next, as in the reference
    code (PixMix's rounds, LayerMix's stages); pixel and element mixing select on the image
    rounded to ``uint8`` (selection commutes with rounding). Same values as chaining
    :func:`blend_one` with ``float_out=True`` and rounding at the end, up to float rounding.
    Two float buffers serve the whole chain.
    """
    t, form = x, "u8"
    s = scratch = None
    last = len(steps) - 1
    for k, (kind, y, p) in enumerate(steps):
        require_uint8(y, "blend partners")
        if kind in ("add", "multiply"):
            if s is None:
                s, scratch = torch.empty_like(x, dtype=torch.float32), torch.empty_like(x, dtype=torch.float32)
            a, b = float(p["a"]), float(p["b"])
            if kind == "multiply":
                _chain_multiply(s, t, form, y, scratch, a, b)
                form = "log"
            elif k == last:  # fold the rounding offset into the last mean
                _chain_add(s, t, form, y, scratch, a, b, 0.5)
                form = "lin+half"
            else:
                _chain_add(s, t, form, y, scratch, a, b)
                form = "lin"
        elif kind in ("pixel", "element"):
            t, form = blend_one(kind, _chain_to_uint8(s, t, form), y, p), "u8"
        else:
            raise ValueError(f"unknown blend {kind!r}; expected one of {BLENDS}")
    result = _chain_to_uint8(s, t, form, out)
    return result.clone() if result is x else result


def random_mask(shape: Sequence[int], threshold: float, generator: torch.Generator,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean mask whose entries are True with probability ``threshold``, independently.

    Drawn as random bytes (eight per 64-bit draw) compared with ``round(256 * threshold)``, so
    the probability has 8-bit resolution. ``shape`` is ``(C, H, W)``; bytes are drawn in
    ``(H, W, C)`` order.
    """
    c, h, w = shape
    n = c * h * w
    k = int(round(256.0 * float(threshold)))
    if k <= 0:
        return torch.zeros((c, h, w), dtype=torch.bool, device=device)
    if k >= 256:
        return torch.ones((c, h, w), dtype=torch.bool, device=device)
    mask = torch.from_numpy(np.less(_random_bytes((h, w, c), generator), np.uint8(k))).permute(2, 0, 1)
    return mask if torch.device(device).type == "cpu" else mask.to(device)


def _random_bytes(shape: tuple[int, int, int], generator: torch.Generator) -> np.ndarray:
    """Random bytes shaped ``(H, W, C)``, eight per 64-bit draw (:func:`random_mask`'s stream)."""
    n = shape[0] * shape[1] * shape[2]
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, generator=generator)
    return words.numpy().view(np.uint8)[:n].reshape(shape)


def select_into_(x: torch.Tensor, y: torch.Tensor, kind: str, params: dict) -> torch.Tensor:
    """``x = blend_one(kind, x, y, params)`` in place for pixel or element mixing of one ``uint8``
    image ``(C, H, W)`` on the CPU (the same mask: where it is unset, ``y``'s value replaces
    ``x``'s). Cheaper than building a new image for small boxes, as IPMix's patches."""
    require_uint8(x)
    require_uint8(y, "y")
    if kind not in ("pixel", "element"):
        raise ValueError(f"select_into_ mixes pixels or elements, not {kind!r}")
    select_into_hwc(x.numpy().transpose(1, 2, 0), y.numpy().transpose(1, 2, 0), kind == "pixel",
                    params["threshold"], params["mask_seed"])
    return x


def select_into_hwc(x: np.ndarray, y: np.ndarray, pixel: bool, threshold: float, mask_seed: int) -> None:
    """:func:`select_into_` on ``(H, W, C)`` NumPy views: the loop body of patch mixing."""
    h, w, c = x.shape
    k = int(round(256.0 * float(threshold)))
    if k >= 256:
        return
    if k <= 0:
        x[...] = y
        return
    take_y = np.greater_equal(_random_bytes((h, w, 1 if pixel else c), child_generator(mask_seed)),
                              np.uint8(k)).view(np.uint8)
    np.negative(take_y, out=take_y)  # 0 or 255
    if take_y.shape[2] != c and h * w > 4096:  # wide boxes: repeat the pixel mask per channel first
        take_y = np.concatenate([take_y] * c, axis=2)
    diff = np.bitwise_xor(x, y)
    np.bitwise_and(diff, take_y, out=diff)
    np.bitwise_xor(x, diff, out=x)


def _select(mask: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8 and y.dtype == torch.uint8:
        # Bitwise select: y ^ ((x ^ y) & 0xFF) where the mask is set.
        m8 = mask.view(torch.uint8).neg() if mask.dtype == torch.bool else mask.to(torch.uint8).neg_()
        if x.device.type != "cpu":
            return torch.bitwise_xor(x, y).bitwise_and_(m8).bitwise_xor_(y)
        if m8.shape[-3] == 1 < x.shape[-3] and is_channels_last(x):
            # A pixel mask broadcast over interleaved channels runs three-element loops: repeat
            # it per channel first.
            m8 = repeat_channels(m8, x.shape[-3])
        xn, yn = x.numpy(), y.numpy()  # NumPy's uint8 bitwise loops are faster than torch's
        out = np.bitwise_xor(xn, yn)
        np.bitwise_and(out, m8.numpy(), out=out)
        return torch.from_numpy(np.bitwise_xor(out, yn, out=out))
    return torch.where(mask, to_unit(x), to_unit(y))


def pixel_mix(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask * x + (1 - mask) * y`` with a boolean ``mask``.

    A mask shaped ``(N, 1, H, W)`` is pixel mixing (shared by the channels); ``(N, C, H, W)`` is
    element mixing (IPMix Sec. 4.2).
    """
    x, added = as_batch(x)
    y, _ = as_batch(y)
    mask, _ = as_batch(mask)
    return unbatch(_select(mask, x, y), added)


def sample_blend(kind: str, draws: Draws, beta: float) -> dict:
    """Draw the parameters of one blend: ``a, b`` for the means, a threshold and mask seed for
    pixel and element mixing (``t ~ U(0, 1)``, IPMix's code)."""
    if kind in ("add", "multiply"):
        a, b = get_ab(beta, draws)
        return {"kind": kind, "a": a, "b": b}
    if kind in ("pixel", "element"):
        return {"kind": kind, "threshold": draws.uniform(), "mask_seed": draws.seed()}
    raise ValueError(f"unknown blend {kind!r}; expected one of {BLENDS}")


def blend_one(kind: str, x: torch.Tensor, y: torch.Tensor, params: dict, *, float_out: bool = False
              ) -> torch.Tensor:
    """Blend one image pair ``(C, H, W)`` by ``kind`` with drawn ``params`` (see
    :func:`sample_blend`); the per-image path that :func:`blend` runs for every image."""
    if kind == "add" or kind == "multiply":
        kernel = _additive if kind == "add" else _multiplicative
        out = kernel(x, y, float(params["a"]), float(params["b"]))
        if not float_out and x.dtype == torch.uint8 and y.dtype == torch.uint8:
            out = to_uint8(out)
        return out
    if kind == "pixel" or kind == "element":
        c, h, w = x.shape
        mask = random_mask((c if kind == "element" else 1, h, w), params["threshold"],
                           child_generator(params["mask_seed"]), x.device)
        return _select(mask, x, y)
    raise ValueError(f"unknown blend {kind!r}; expected one of {BLENDS}")


def blend(kind: str, x: torch.Tensor, y: torch.Tensor, params: Sequence[dict], *, float_out: bool = False
          ) -> torch.Tensor:
    """Blend each ``x[i]`` with ``y[i]`` by ``kind`` using the drawn ``params[i]``
    (see :func:`sample_blend`). ``float_out`` keeps the arithmetic and geometric means in float
    for ``uint8`` inputs (pixel and element mixing only select, so they keep the input dtype)."""
    xb, added = as_batch(x)
    yb, _ = as_batch(y)
    if len(params) != xb.shape[0]:
        raise ValueError(f"{len(params)} parameter sets for {xb.shape[0]} images")
    if kind not in BLENDS:
        raise ValueError(f"unknown blend {kind!r}; expected one of {BLENDS}")
    outs = [blend_one(kind, xb[i], yb[i], p, float_out=float_out) for i, p in enumerate(params)]
    return unbatch(outs[0].unsqueeze(0) if len(outs) == 1 else torch.stack(outs), added)
