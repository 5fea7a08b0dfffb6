"""Image-level operations with per-sample magnitudes, and the op tables of the papers.

Kernels take ``uint8`` images ``(C, H, W)`` or ``(N, C, H, W)`` and one parameter per sample,
and return ``uint8`` images of the same shape. Semantics follow PIL (which the AugMix/PixMix/IPMix
code uses) and ``torchvision.transforms.v2.functional`` (which LayerMix uses); torchvision's
kernels are used directly where a parameter is shared by the whole batch.

Op tables map an op name to an :class:`ImageOp`: how to draw its parameters from a severity or
magnitude (``sample``) and how to apply it to a batch (``apply``). :func:`apply_ops` runs a batch
where every sample has its own op, calling each op once on its sub-batch.

- :data:`AUGMIX_OPS` -- the AugMix set used by PixMix and IPMix: autocontrast, equalize,
  posterize, rotate, solarize, shear_x, shear_y, translate_x, translate_y (ops that overlap
  ImageNet-C are left out). Severity ``s``: a level ``U(0.1, s)`` scaled per op as in the
  authors' code (``pixmix_utils.py``): rotate up to 30 degrees, shear up to 0.3, translate up to
  a third of the size, posterize to ``4 - int(0.4 * level)`` bits, solarize threshold
  ``256 - int(25.6 * level)``.
- :data:`AUGMIX_ALL_OPS` -- the above plus color, contrast, brightness, sharpness ("all ops").
- :data:`IPMIX_CODE_OPS` -- the list in IPMix's public code (no autocontrast; adds mirror and
  invert).
- :data:`LAYERMIX_OPS` -- LayerMix Table II with magnitude ``m`` (of 10): equalize, grayscale,
  autocontrast, rotate +-30 degrees, brightness 0.1-1.9, posterize 0-4, solarize 0-1,
  shear_x/shear_y +-0.3, translate_x/translate_y up to 0.33 of the size, each drawn as
  ``U(0.1, max * m / 10)`` with a random sign where the range is signed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as TF

from raymix.ops.rng import Draws
from raymix.ops.tensors import as_batch, per_sample, per_sample_list, require_uint8, round_to_uint8, unbatch

__all__ = [
    "autocontrast",
    "equalize",
    "posterize",
    "solarize",
    "affine",
    "rotate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "grayscale",
    "brightness",
    "contrast",
    "color",
    "sharpness",
    "invert",
    "mirror",
    "ImageOp",
    "AUGMIX_OPS",
    "AUGMIX_ALL_OPS",
    "IPMIX_CODE_OPS",
    "LAYERMIX_OPS",
    "sample_op",
    "apply_ops",
]


def _column(values: list, dtype, device) -> torch.Tensor:
    """Per-sample constants as an ``(N, 1, 1, 1)`` tensor."""
    return torch.tensor(values, dtype=dtype, device=device).view(-1, 1, 1, 1)


def _prepare(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    require_uint8(images)
    return as_batch(images)


_round_u8 = round_to_uint8


def _blend_u8(image: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageEnhance``: ``degenerate + factor * (image - degenerate)``, per-sample factor."""
    out = image.float().sub_(degenerate)
    out.mul_(factor).add_(degenerate)
    return _round_u8(out)


# --------------------------------------------------------------------------- colour ops


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel to the full range (``PIL.ImageOps.autocontrast``, no cutoff)."""
    x, added = _prepare(images)
    n, c = x.shape[:2]
    lo = x.amin(dim=(-2, -1)).cpu().numpy().astype(np.float64)
    hi = x.amax(dim=(-2, -1)).cpu().numpy().astype(np.float64)
    flat = hi <= lo
    scale = np.where(flat, 1.0, 255.0 / np.maximum(hi - lo, 1.0))
    offset = np.where(flat, 0.0, lo)
    scale_t = torch.from_numpy(scale.astype(np.float32)).to(x.device).view(n, c, 1, 1)
    offset_t = torch.from_numpy(offset.astype(np.float32)).to(x.device).view(n, c, 1, 1)
    out = x.float().sub_(offset_t).mul_(scale_t).clamp_(0.0, 255.0)
    return unbatch(_round_u8(out.sub_(0.5)), added)  # PIL truncates


def _apply_lut(x: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel lookup tables ``luts`` (N, C, 256) applied to a batch."""
    n, c = x.shape[:2]
    offsets = torch.arange(n * c, dtype=torch.int32, device=x.device).view(n, c, 1, 1) * 256
    index = x.to(torch.int32).add_(offsets)
    return luts.reshape(-1).index_select(0, index.view(-1)).view_as(x)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel (``PIL.ImageOps.equalize``, as torchvision's)."""
    x, added = _prepare(images)
    n, c = x.shape[:2]
    hist = torch.stack([torch.bincount(x[i, j].view(-1), minlength=256) for i in range(n) for j in range(c)])
    # PIL: step = (total - count of the last non-zero bin) // 255; lut[i] = (step//2 + cdf[i-1]) // step.
    # 256-entry tables: NumPy's small-array overhead is a fraction of torch's.
    h = hist.cpu().numpy()
    last_nonzero = 255 - np.argmax(h[:, ::-1] != 0, axis=1)
    step = (h.sum(axis=1) - h[np.arange(len(h)), last_nonzero]) // 255
    safe = np.maximum(step, 1)[:, None]
    lut = np.minimum((np.cumsum(h, axis=1) - h + safe // 2) // safe, 255)
    lut = np.where((step == 0)[:, None], np.arange(256), lut).astype(np.uint8)
    return unbatch(_apply_lut(x, torch.from_numpy(lut).to(x.device).view(n, c, 256)), added)


def posterize(images: torch.Tensor, bits) -> torch.Tensor:
    """Keep the ``bits`` most significant bits of each value (0 bits gives black, as PIL)."""
    x, added = _prepare(images)
    masks = [(255 << (8 - min(max(int(b), 0), 8))) & 255 for b in per_sample_list(bits, x.shape[0])]
    return unbatch(x & _column(masks, torch.uint8, x.device), added)


def solarize(images: torch.Tensor, threshold) -> torch.Tensor:
    """Invert values ``>= threshold`` (``PIL.ImageOps.solarize``); 256 leaves the image as is."""
    x, added = _prepare(images)
    t = [int(v) for v in per_sample_list(threshold, x.shape[0])]
    active = _column([255 if v <= 255 else 0 for v in t], torch.uint8, x.device)  # 256+: no change
    t8 = _column([min(max(v, 0), 255) for v in t], torch.uint8, x.device)
    flip = (torch.maximum(x, t8) == x).view(torch.uint8).neg_()  # x >= t (fast form on uint8)
    return unbatch(x ^ flip.bitwise_and_(active), added)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, repeated on three channels (``TF.rgb_to_grayscale``)."""
    x, added = _prepare(images)
    out = TF.rgb_to_grayscale(x, num_output_channels=x.shape[1])
    return unbatch(out.contiguous(), added)


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x.float()
    r, g, b = x.float().unbind(1)
    return r.mul_(0.299).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(1)


def brightness(images: torch.Tensor, factor) -> torch.Tensor:
    """Scale values by ``factor`` (``ImageEnhance.Brightness``; ``TF.adjust_brightness``)."""
    x, added = _prepare(images)
    f = per_sample(factor, x.shape[0], device=x.device)
    return unbatch(_round_u8(x.float().mul_(f)), added)


def contrast(images: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the mean grey level (``ImageEnhance.Contrast``)."""
    x, added = _prepare(images)
    f = per_sample(factor, x.shape[0], device=x.device)
    mean = _luma(x).mean(dim=(-3, -2, -1), keepdim=True).add_(0.5).floor_()
    return unbatch(_blend_u8(x, mean, f), added)


def color(images: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the grey version (``ImageEnhance.Color``, saturation)."""
    x, added = _prepare(images)
    f = per_sample(factor, x.shape[0], device=x.device)
    grey = _luma(x).add_(0.5).floor_()
    return unbatch(_blend_u8(x, grey, f), added)


def sharpness(images: torch.Tensor, factor) -> torch.Tensor:
    """Blend with a smoothed copy, borders kept (``ImageEnhance.Sharpness``, as torchvision)."""
    x, added = _prepare(images)
    n, c, h, w = x.shape
    f = per_sample(factor, n, device=x.device)
    if h <= 2 or w <= 2:
        return unbatch(x.clone(), added)
    kernel = torch.full((3, 3), 1.0 / 13.0, device=x.device)
    kernel[1, 1] = 5.0 / 13.0
    xf = x.float()
    smooth = xf.clone()
    smooth[..., 1:-1, 1:-1] = nnf.conv2d(xf, kernel.expand(c, 1, 3, 3), groups=c).round_()
    out = xf.sub_(smooth).mul_(f).add_(smooth)
    return unbatch(_round_u8(out), added)


def invert(images: torch.Tensor) -> torch.Tensor:
    """``255 - x``."""
    x, added = _prepare(images)
    return unbatch(torch.bitwise_not(x), added)


def mirror(images: torch.Tensor) -> torch.Tensor:
    """Flip left-right."""
    x, added = _prepare(images)
    return unbatch(x.flip(-1), added)


# --------------------------------------------------------------------------- geometric ops


def affine(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample each image through its ``2x3`` matrix, bilinear, zeros outside.

    ``matrices[i]`` maps an output pixel position ``(x, y)`` to the input position it is read
    from, in pixel units with pixel centres at ``+0.5`` (PIL's ``Image.transform(AFFINE)``
    convention).
    """
    x, added = _prepare(images)
    n, _, h, w = x.shape
    mats = matrices if isinstance(matrices, list) else torch.as_tensor(matrices, dtype=torch.float64).tolist()
    if len(mats) != n:
        raise ValueError(f"{len(mats)} matrices for {n} images")
    xs = torch.arange(w, dtype=torch.float32, device=x.device).add_(0.5).view(1, w)
    ys = torch.arange(h, dtype=torch.float32, device=x.device).add_(0.5).view(h, 1)
    out = torch.empty_like(x)
    for i, ((a0, a1, a2), (b0, b1, b2)) in enumerate(mats):  # image by image: the grid stays in cache
        # Fold pixel -> normalised ([-1, 1], align_corners=False) coordinates into the matrix.
        sx, sy = 2.0 / w, 2.0 / h
        grid = torch.empty((1, h, w, 2), dtype=torch.float32, device=x.device)
        torch.add(xs * (a0 * sx), ys * (a1 * sx) + (a2 * sx - 1.0), out=grid[0, :, :, 0])
        torch.add(xs * (b0 * sy), ys * (b1 * sy) + (b2 * sy - 1.0), out=grid[0, :, :, 1])
        sampled = nnf.grid_sample(x[i:i + 1].float(), grid, mode="bilinear", padding_mode="zeros",
                                  align_corners=False)
        _round_u8(sampled, out=out[i:i + 1], clip=False)  # bilinear weights are convex: stays in range
    return unbatch(out, added)


def _rotation_matrix(degrees: float, h: int, w: int) -> list:
    r = math.radians(degrees)
    cos, sin = math.cos(r), math.sin(r)
    cx, cy = w / 2.0, h / 2.0
    return [[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy]]


def rotate(images: torch.Tensor, degrees) -> torch.Tensor:
    """Rotate counter-clockwise by ``degrees`` about the centre, bilinear (PIL/torchvision)."""
    x, added = _prepare(images)
    n, _, h, w = x.shape
    d = [float(v) for v in per_sample_list(degrees, n)]
    if all(v % 360.0 == 0 for v in d):
        return unbatch(x.clone(), added)  # whole turns are exact copies, as in PIL
    return unbatch(affine(x, [_rotation_matrix(v, h, w) for v in d]), added)


def _shear(images: torch.Tensor, factor, center: bool, axis: int) -> torch.Tensor:
    x, added = _prepare(images)
    n, _, h, w = x.shape
    mats = []
    for f in per_sample_list(factor, n):
        f = float(f)
        if axis == 0:  # x_in = x + f * (y - y0)
            mats.append([[1.0, f, -f * (h / 2.0 if center else 0.0)], [0.0, 1.0, 0.0]])
        else:  # y_in = y + f * (x - x0)
            mats.append([[1.0, 0.0, 0.0], [f, 1.0, -f * (w / 2.0 if center else 0.0)]])
    return unbatch(affine(x, mats), added)


def shear_x(images: torch.Tensor, factor, center: bool = False) -> torch.Tensor:
    """Horizontal shear: row ``y`` reads from ``x + factor * y``.

    ``center=False`` shears about the top-left corner (PIL's ``AFFINE (1, f, 0, 0, 1, 0)`` in
    the AugMix code); ``center=True`` about the image centre (``TF.affine(shear=...)`` in LayerMix).
    """
    return _shear(images, factor, center, axis=0)


def shear_y(images: torch.Tensor, factor, center: bool = False) -> torch.Tensor:
    """Vertical shear: column ``x`` reads from ``y + factor * x`` (see :func:`shear_x`)."""
    return _shear(images, factor, center, axis=1)


def _translate(images: torch.Tensor, pixels, axis: int) -> torch.Tensor:
    x, added = _prepare(images)
    n = x.shape[0]
    shifts = per_sample_list(pixels, n)
    out = torch.zeros_like(x)
    dim = -1 if axis == 0 else -2
    size = x.shape[dim]
    for i, s in enumerate(shifts):
        s = int(round(s))
        if abs(s) >= size:
            continue
        if s >= 0:
            out[i].narrow(dim, s, size - s).copy_(x[i].narrow(dim, 0, size - s))
        else:
            out[i].narrow(dim, 0, size + s).copy_(x[i].narrow(dim, -s, size + s))
    return unbatch(out, added)


def translate_x(images: torch.Tensor, pixels) -> torch.Tensor:
    """Shift right by a whole number of ``pixels`` (left if negative), zeros where uncovered."""
    return _translate(images, pixels, axis=0)


def translate_y(images: torch.Tensor, pixels) -> torch.Tensor:
    """Shift down by a whole number of ``pixels`` (up if negative), zeros where uncovered."""
    return _translate(images, pixels, axis=1)


# --------------------------------------------------------------------------- op tables


@dataclass(frozen=True)
class ImageOp:
    """One op of a table: ``sample(draws, level, (H, W)) -> params`` and
    ``apply(images, [params, ...]) -> images``."""

    name: str
    sample: Callable[[Draws, float, tuple[int, int]], dict]
    apply: Callable[[torch.Tensor, Sequence[dict]], torch.Tensor]


def _no_params(d: Draws, level: float, size: tuple[int, int]) -> dict:
    return {}


def _apply_plain(fn, images: torch.Tensor, params: Sequence[dict]) -> torch.Tensor:
    return fn(images)


def _apply_with(fn, key: str, kwargs: dict, images: torch.Tensor, params: Sequence[dict]) -> torch.Tensor:
    return fn(images, [p[key] for p in params], **kwargs)


# Tables hold partials of module-level functions so methods (and their tables) pickle.
def _plain(fn) -> Callable[[torch.Tensor, Sequence[dict]], torch.Tensor]:
    return partial(_apply_plain, fn)


def _with(fn, key: str, **kwargs) -> Callable[[torch.Tensor, Sequence[dict]], torch.Tensor]:
    return partial(_apply_with, fn, key, kwargs)


# AugMix / PixMix / IPMix (``pixmix_utils.py``): level ~ U(0.1, severity), then
# int_parameter(level, maxval) = int(level * maxval / 10), float_parameter = level * maxval / 10.


def _augmix_level(d: Draws, severity: float) -> float:
    return d.uniform(0.1, severity)


def _augmix_posterize(d, severity, size):
    return {"bits": 4 - int(_augmix_level(d, severity) * 4 / 10)}


def _augmix_rotate(d, severity, size):
    degrees = int(_augmix_level(d, severity) * 30 / 10)
    return {"degrees": degrees * d.sign()}


def _augmix_solarize(d, severity, size):
    return {"threshold": 256 - int(_augmix_level(d, severity) * 256 / 10)}


def _augmix_shear(d, severity, size):
    return {"factor": _augmix_level(d, severity) * 0.3 / 10 * d.sign()}


def _augmix_translate_sample(axis: int, d, severity, size):
    extent = size[1] if axis == 0 else size[0]
    return {"pixels": int(_augmix_level(d, severity) * (extent / 3) / 10) * d.sign()}


def _augmix_translate(axis: int):
    return partial(_augmix_translate_sample, axis)


def _augmix_enhance(d, severity, size):
    return {"factor": _augmix_level(d, severity) * 1.8 / 10 + 0.1}


_AUGMIX_TABLE = {
    "autocontrast": ImageOp("autocontrast", _no_params, _plain(autocontrast)),
    "equalize": ImageOp("equalize", _no_params, _plain(equalize)),
    "posterize": ImageOp("posterize", _augmix_posterize, _with(posterize, "bits")),
    "rotate": ImageOp("rotate", _augmix_rotate, _with(rotate, "degrees")),
    "solarize": ImageOp("solarize", _augmix_solarize, _with(solarize, "threshold")),
    "shear_x": ImageOp("shear_x", _augmix_shear, _with(shear_x, "factor")),
    "shear_y": ImageOp("shear_y", _augmix_shear, _with(shear_y, "factor")),
    "translate_x": ImageOp("translate_x", _augmix_translate(0), _with(translate_x, "pixels")),
    "translate_y": ImageOp("translate_y", _augmix_translate(1), _with(translate_y, "pixels")),
}
_AUGMIX_EXTRA = {
    "color": ImageOp("color", _augmix_enhance, _with(color, "factor")),
    "contrast": ImageOp("contrast", _augmix_enhance, _with(contrast, "factor")),
    "brightness": ImageOp("brightness", _augmix_enhance, _with(brightness, "factor")),
    "sharpness": ImageOp("sharpness", _augmix_enhance, _with(sharpness, "factor")),
}

#: The AugMix op set (PixMix and IPMix default; ops overlapping ImageNet-C left out).
AUGMIX_OPS: Mapping[str, ImageOp] = dict(_AUGMIX_TABLE)
#: AugMix ops plus color, contrast, brightness and sharpness ("all ops").
AUGMIX_ALL_OPS: Mapping[str, ImageOp] = {**_AUGMIX_TABLE, **_AUGMIX_EXTRA}
#: The op list of IPMix's public code: no autocontrast, plus mirror and invert.
IPMIX_CODE_OPS: Mapping[str, ImageOp] = {
    **{k: v for k, v in _AUGMIX_TABLE.items() if k != "autocontrast"},
    "mirror": ImageOp("mirror", _no_params, _plain(mirror)),
    "invert": ImageOp("invert", _no_params, _plain(invert)),
}


# LayerMix Table II (``transforms.py`` of the public code): a value U(0.1, max * m / 10),
# negated with probability 1/2 where the range is signed.


def _layermix_level(d: Draws, maximum: float, magnitude: float, signed: bool) -> float:
    level = d.uniform(0.1, maximum * magnitude / 10)
    return level * d.sign() if signed else level


def _layermix_rotate(d, m, size):
    return {"degrees": _layermix_level(d, 30.0, m, True)}


def _layermix_brightness(d, m, size):
    return {"factor": 1.0 + _layermix_level(d, 0.9, m, True)}


def _layermix_posterize(d, m, size):
    # Table II: 0-4. Read as bits removed from 4 (the code's ``posterize_increasing``): a
    # stronger magnitude keeps fewer bits; 0 bits (a black image) never occurs.
    return {"bits": 4 - int(_layermix_level(d, 4.0, m, False))}


def _layermix_solarize(d, m, size):
    # Table II: threshold 0-1 (the code's ``solarize``); in uint8 a value v flips when v/255 >= t.
    t = _layermix_level(d, 1.0, m, False)
    return {"threshold": int(math.ceil(t * 255.0))}


def _layermix_shear(d, m, size):
    return {"factor": _layermix_level(d, 0.3, m, True)}


def _layermix_translate_sample(axis: int, d, m, size):
    extent = size[1] if axis == 0 else size[0]
    return {"pixels": int(round(_layermix_level(d, int(extent * 0.33), m, True)))}


def _layermix_translate(axis: int):
    return partial(_layermix_translate_sample, axis)


#: LayerMix Table II: ops and magnitude ranges.
LAYERMIX_OPS: Mapping[str, ImageOp] = {
    "equalize": ImageOp("equalize", _no_params, _plain(equalize)),
    "grayscale": ImageOp("grayscale", _no_params, _plain(grayscale)),
    "autocontrast": ImageOp("autocontrast", _no_params, _plain(autocontrast)),
    "rotate": ImageOp("rotate", _layermix_rotate, _with(rotate, "degrees")),
    "brightness": ImageOp("brightness", _layermix_brightness, _with(brightness, "factor")),
    "posterize": ImageOp("posterize", _layermix_posterize, _with(posterize, "bits")),
    "solarize": ImageOp("solarize", _layermix_solarize, _with(solarize, "threshold")),
    "shear_x": ImageOp("shear_x", _layermix_shear, _with(shear_x, "factor", center=True)),
    "shear_y": ImageOp("shear_y", _layermix_shear, _with(shear_y, "factor", center=True)),
    "translate_x": ImageOp("translate_x", _layermix_translate(0), _with(translate_x, "pixels")),
    "translate_y": ImageOp("translate_y", _layermix_translate(1), _with(translate_y, "pixels")),
}


def sample_op(table: Mapping[str, ImageOp], draws: Draws, level: float, size: tuple[int, int],
              name: str | None = None) -> dict:
    """Draw an op uniformly from ``table`` (or use ``name``) and its parameters:
    ``{"op": name, **params}``."""
    if name is None:
        name = draws.choice(list(table))
    return {"op": name, **table[name].sample(draws, level, size)}


def apply_ops(images: torch.Tensor, ops: Sequence[dict | None], table: Mapping[str, ImageOp]) -> torch.Tensor:
    """Apply ``ops[i]`` (from :func:`sample_op`; ``None`` = unchanged) to ``images[i]``.

    Samples are grouped by op so each op runs once on its sub-batch.
    """
    x, added = _prepare(images)
    if len(ops) != x.shape[0]:
        raise ValueError(f"{len(ops)} ops for {x.shape[0]} images")
    groups: dict[str | None, list[int]] = {}
    for i, op in enumerate(ops):
        groups.setdefault(None if op is None else op["op"], []).append(i)
    if None in groups and len(groups) == 1:
        return unbatch(x.clone(), added)
    if len(groups) == 1:
        name = next(iter(groups))
        return unbatch(table[name].apply(x, ops).contiguous(), added)
    out = torch.empty_like(x)
    for name, idx in groups.items():
        if name is None:
            for i in idx:
                out[i].copy_(x[i])
            continue
        result = table[name].apply(torch.stack([x[i] for i in idx]), [ops[i] for i in idx])
        for j, i in enumerate(idx):  # per-image copies beat index_copy_ on the CPU
            out[i].copy_(result[j])
    return unbatch(out, added)
