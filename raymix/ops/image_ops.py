"""Image-level operations with per-sample magnitudes: the kernels the papers' op tables use.

Kernels take ``uint8`` images ``(C, H, W)`` or ``(N, C, H, W)`` and one parameter per sample,
and return ``uint8`` images of the same shape and memory format (see :mod:`raymix.ops.tensors`;
the CPU paths are written for channels-last batches and use NumPy or Pillow where those are
faster than torch on ``uint8``). Semantics follow PIL (which the AugMix/PixMix/IPMix code uses)
and ``torchvision.transforms.v2.functional`` (which LayerMix uses).

Which ops each paper draws, and how it draws their magnitudes, is the methods' business:
:mod:`raymix.methods.op_tables`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as TF
from PIL import Image

from raymix.ops.tensors import (
    as_batch,
    from_nhwc,
    interleave,
    is_channels_last,
    nhwc,
    per_sample,
    per_sample_list,
    require_uint8,
    round_to_uint8,
    unbatch,
)

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
]


def _column(values: list, dtype, device) -> torch.Tensor:
    """Per-sample constants as an ``(N, 1, 1, 1)`` tensor."""
    return torch.tensor(values, dtype=dtype, device=device).view(-1, 1, 1, 1)


def _np_column(values: list, dtype) -> np.ndarray:
    """Per-sample constants as an ``(N, 1, 1, 1)`` array (the CPU paths use NumPy for ``uint8``
    arithmetic: several times faster than torch's there, and cheaper to call)."""
    return np.array(values, dtype=dtype).reshape(-1, 1, 1, 1)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if is_channels_last(x) else torch.contiguous_format


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


def _channel_extrema(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-image, per-channel minimum and maximum of a batch, as ``float64`` ``(N, C)`` arrays."""
    n, c, h, w = x.shape
    if x.device.type != "cpu":
        return (x.amin(dim=(-2, -1)).cpu().numpy().astype(np.float64),
                x.amax(dim=(-2, -1)).cpu().numpy().astype(np.float64))
    # Rows of ``b`` pixels: NumPy reduces over the rows with whole-row vector operations.
    b = math.gcd(h * w, 64)
    rows = nhwc(x).numpy().reshape(n, h * w // b, b * c)
    lo = rows.min(axis=1).reshape(n, b, c).min(axis=1)
    hi = rows.max(axis=1).reshape(n, b, c).max(axis=1)
    return lo.astype(np.float64), hi.astype(np.float64)


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel to the full range (``PIL.ImageOps.autocontrast``, no cutoff)."""
    x, added = _prepare(images)
    n, c, h, w = x.shape
    lo, hi = _channel_extrema(x)
    flat = hi <= lo
    scale = np.where(flat, 1.0, 255.0 / np.maximum(hi - lo, 1.0)).astype(np.float32)
    offset = np.where(flat, 0.0, lo).astype(np.float32)
    if x.device.type != "cpu":
        scale_t = torch.from_numpy(scale).to(x.device).view(n, c, 1, 1)
        offset_t = torch.from_numpy(offset).to(x.device).view(n, c, 1, 1)
        out = x.float().sub_(offset_t).mul_(scale_t).clamp_(0.0, 255.0)
        return unbatch(out.to(torch.uint8), added)  # PIL truncates
    # Channels-last rows with the per-channel constants repeated along the row, so every
    # elementwise loop runs over whole contiguous rows.
    rows = nhwc(x).reshape(n, h, w * c)
    offset_t = torch.from_numpy(np.broadcast_to(offset[:, None], (n, w, c)).reshape(n, 1, w * c))
    scale_t = torch.from_numpy(np.broadcast_to(scale[:, None], (n, w, c)).reshape(n, 1, w * c))
    out = rows.float().sub_(offset_t).mul_(scale_t).clamp_(0.0, 255.0)
    out = torch.from_numpy(out.numpy().astype(np.uint8)).view(n, h, w, c)  # PIL truncates
    return unbatch(from_nhwc(out, x), added)


def _equalize_luts(hist: np.ndarray) -> np.ndarray:
    """``PIL.ImageOps.equalize``'s lookup tables from histograms ``(K, 256)``: with
    ``step = (total - count of the last non-zero bin) // 255``, ``lut[i] = (step//2 + cdf[i-1]) // step``
    (the identity when ``step`` is 0)."""
    last_nonzero = 255 - np.argmax(hist[:, ::-1] != 0, axis=1)
    step = (hist.sum(axis=1) - hist[np.arange(len(hist)), last_nonzero]) // 255
    safe = np.maximum(step, 1)[:, None]
    lut = np.minimum((np.cumsum(hist, axis=1) - hist + safe // 2) // safe, 255)
    return np.where((step == 0)[:, None], np.arange(256), lut).astype(np.uint8)


def _apply_lut(x: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel lookup tables ``luts`` (N, C, 256) applied to a contiguous batch."""
    n, c = x.shape[:2]
    offsets = torch.arange(n * c, dtype=torch.int32, device=x.device).view(n, c, 1, 1) * 256
    index = x.to(torch.int32).add_(offsets)
    return luts.reshape(-1).index_select(0, index.view(-1)).view_as(x)


def _pil_point(image: Image.Image, lut: list[int]) -> Image.Image:
    """``image.point(lut)`` for a table of ints: Pillow's C lookup without its Python pass that
    rounds every entry (a third of the cost on a 224x224 image); the public call if that is not
    available."""
    try:
        return image._new(image.im.point(lut, None))
    except (AttributeError, TypeError):  # pragma: no cover - depends on Pillow's internals
        return image.point(lut)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel (``PIL.ImageOps.equalize``, as torchvision's)."""
    x, added = _prepare(images)
    n, c = x.shape[:2]
    if x.device.type == "cpu" and c in (1, 3):
        # Pillow's C loops histogram and look up channels-last pixels faster than torch's
        # bincount and gathers; the tables are ours (the formula above).
        xn = nhwc(x)
        out = torch.empty_like(xn)
        src, dst = xn.numpy(), out.numpy()
        pictures = [Image.fromarray(src[i] if c == 3 else src[i, :, :, 0]) for i in range(n)]
        hists = np.array([im.histogram() for im in pictures], dtype=np.int64).reshape(n * c, 256)
        luts = _equalize_luts(hists).reshape(n, c * 256).tolist()
        for i, im in enumerate(pictures):
            dst[i] = np.asarray(_pil_point(im, luts[i])).reshape(dst.shape[1:])
        return unbatch(from_nhwc(out, x), added)
    x = x.contiguous()
    hist = torch.stack([torch.bincount(x[i, j].view(-1), minlength=256) for i in range(n) for j in range(c)])
    lut = _equalize_luts(hist.cpu().numpy())
    return unbatch(_apply_lut(x, torch.from_numpy(lut).to(x.device).view(n, c, 256)), added)


def posterize(images: torch.Tensor, bits) -> torch.Tensor:
    """Keep the ``bits`` most significant bits of each value (0 bits gives black, as PIL)."""
    x, added = _prepare(images)
    masks = [(255 << (8 - min(max(int(b), 0), 8))) & 255 for b in per_sample_list(bits, x.shape[0])]
    if x.device.type == "cpu":
        return unbatch(torch.from_numpy(x.numpy() & _np_column(masks, np.uint8)), added)
    return unbatch(x & _column(masks, torch.uint8, x.device), added)


def solarize(images: torch.Tensor, threshold) -> torch.Tensor:
    """Invert values ``>= threshold`` (``PIL.ImageOps.solarize``); 256 leaves the image as is."""
    x, added = _prepare(images)
    t = [int(v) for v in per_sample_list(threshold, x.shape[0])]
    active = [255 if v <= 255 else 0 for v in t]  # 256 and above: no change
    t8 = [min(max(v, 0), 255) for v in t]
    if x.device.type == "cpu":
        xn = x.numpy()
        flip = np.greater_equal(xn, _np_column(t8, np.uint8)).view(np.uint8)
        flip = np.multiply(flip, _np_column(active, np.uint8), out=flip)
        return unbatch(torch.from_numpy(np.bitwise_xor(xn, flip, out=flip)), added)
    flip = (torch.maximum(x, _column(t8, torch.uint8, x.device)) == x).view(torch.uint8).neg_()  # x >= t
    return unbatch(x ^ flip.bitwise_and_(_column(active, torch.uint8, x.device)), added)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, repeated on three channels (``TF.rgb_to_grayscale``)."""
    x, added = _prepare(images)
    n, c, h, w = x.shape
    if x.device.type != "cpu" or c != 3 or not is_channels_last(x):
        out = TF.rgb_to_grayscale(x, num_output_channels=c)
        return unbatch(out.contiguous(memory_format=_memory_format(x)), added)
    # Channels-last: split the planes once (as float), torchvision's luma arithmetic on them
    # (``r * 0.2989 + g * 0.587 + b * 0.114``, truncated), repeated per channel.
    planes = torch.empty((c, n, h, w), dtype=torch.float32)
    np.copyto(planes.numpy(), nhwc(x).numpy().transpose(3, 0, 1, 2))
    r, g, b = planes
    luma = r.mul_(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).numpy().astype(np.uint8)
    out = torch.empty((n, h, w, c), dtype=torch.uint8)
    for ch in range(c):
        np.copyto(out.numpy()[..., ch], luma)
    return unbatch(from_nhwc(out, x), added)


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
    sx, sy = 2.0 / w, 2.0 / h
    if x.device.type != "cpu":
        xs = torch.arange(w, dtype=torch.float32, device=x.device).add_(0.5).view(1, w)
        ys = torch.arange(h, dtype=torch.float32, device=x.device).add_(0.5).view(h, 1)
        out = torch.empty_like(x)
        for i, ((a0, a1, a2), (b0, b1, b2)) in enumerate(mats):
            grid = torch.empty((1, h, w, 2), dtype=torch.float32, device=x.device)
            torch.add(xs * (a0 * sx), ys * (a1 * sx) + (a2 * sx - 1.0), out=grid[0, :, :, 0])
            torch.add(xs * (b0 * sy), ys * (b1 * sy) + (b2 * sy - 1.0), out=grid[0, :, :, 1])
            sampled = nnf.grid_sample(x[i:i + 1].float(), grid, mode="bilinear", padding_mode="zeros",
                                      align_corners=False)
            _round_u8(sampled, out=out[i:i + 1], clip=False)  # bilinear weights are convex: stays in range
        return unbatch(out, added)
    xs = np.arange(0.5, w, dtype=np.float32)
    ys = np.arange(0.5, h, dtype=np.float32)[:, None]
    out = torch.empty((n, h, w, x.shape[1]), dtype=torch.uint8)
    dst = out.numpy()
    planes = torch.empty((1, 2, h, w), dtype=torch.float32)
    grid, p = planes.permute(0, 2, 3, 1), planes.numpy()[0]
    for i, ((a0, a1, a2), (b0, b1, b2)) in enumerate(mats):  # image by image: the grid stays in cache
        # Fold pixel -> normalised ([-1, 1], align_corners=False) coordinates into the matrix; the
        # grid is built as two planes (contiguous loops) and handed over as an (h, w, 2) view.
        np.add(xs * np.float32(a0 * sx), ys * np.float32(a1 * sx) + np.float32(a2 * sx - 1.0), out=p[0])
        np.add(xs * np.float32(b0 * sy), ys * np.float32(b1 * sy) + np.float32(b2 * sy - 1.0), out=p[1])
        sampled = nnf.grid_sample(x[i:i + 1].float(), grid, mode="bilinear", padding_mode="zeros",
                                  align_corners=False).numpy()[0]
        # Bilinear weights are convex: values stay in range; round half up, then interleave.
        interleave(np.add(sampled, np.float32(0.5), out=sampled).astype(np.uint8), dst[i])
    return unbatch(from_nhwc(out, x), added)


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


def _shift_weights(factor: float, length: int, centre: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """For a shear ``in = out + factor * (t - centre)`` along ``t = 0.5 .. length - 0.5`` (pixel
    centres): the whole-pixel shift per line (clipped to ``[-limit - 1, limit]``, beyond which a line
    reads only zeros) and the ``float32`` bilinear weight of the next pixel."""
    shift = factor * (np.arange(length, dtype=np.float64) + 0.5 - centre)
    whole = np.floor(shift)
    frac = (shift - whole).astype(np.float32)
    return np.clip(whole, -limit - 1, limit).astype(np.int64), frac


def _shear_rows(src: np.ndarray, factor: float, centre: float, dst: np.ndarray) -> None:
    """Horizontal shear of one ``(H, W, C)`` image: row ``y`` is its own row moved by a constant
    ``factor * (y + 0.5 - centre)`` pixels, so bilinear sampling is a blend of two neighbouring
    windows of that row with one weight per row. Zeros outside, as ``grid_sample``."""
    h, w, c = src.shape
    whole, frac = _shift_weights(factor, h, centre, w)
    left, right = max(0, -int(whole.min())), max(0, int(whole.max()) + 1)
    padded = np.zeros((h, left + w + right, c), dtype=np.uint8)
    padded[:, left:left + w] = src
    # Every window of w + 1 pixels of every row, as a view; one gather picks each row's window.
    windows = np.ndarray((h, left + right, (w + 1) * c), np.uint8, padded, 0, (padded.strides[0], c, 1))
    rows = torch.from_numpy(windows[np.arange(h), whole + left]).float()
    out = torch.lerp(rows[:, :-c], rows[:, c:], torch.from_numpy(frac).view(h, 1)).numpy()
    np.copyto(dst.reshape(h, w * c), np.add(out, np.float32(0.5), out=out), casting="unsafe")  # convex


def _shear_columns(src: np.ndarray, factor: float, centre: float, dst: np.ndarray) -> None:
    """Vertical shear of one ``(H, W, C)`` image: column ``x`` moves by ``factor * (x + 0.5 -
    centre)`` pixels; columns with the same whole-pixel shift are copied as one block."""
    h, w, c = src.shape
    whole, frac = _shift_weights(factor, w, centre, h)
    windows = np.zeros((h + 1, w, c), dtype=np.uint8)  # rows y and y + 1 of every output row y
    cuts = np.flatnonzero(np.diff(whole)) + 1
    for start, stop in zip([0, *cuts.tolist()], [*cuts.tolist(), w], strict=True):
        k = int(whole[start])
        lo, hi = max(0, -k), min(h + 1, h - k)  # window rows whose source row exists
        if lo < hi:
            windows[lo:hi, start:stop] = src[lo + k:hi + k, start:stop]
    rows = torch.from_numpy(windows).float().view(h + 1, w * c)
    weight = torch.from_numpy(np.repeat(frac, c)).view(1, w * c)
    out = torch.lerp(rows[:-1], rows[1:], weight).numpy()
    np.copyto(dst.reshape(h, w * c), np.add(out, np.float32(0.5), out=out), casting="unsafe")


def _shear(images: torch.Tensor, factor, center: bool, axis: int) -> torch.Tensor:
    x, added = _prepare(images)
    n, _, h, w = x.shape
    factors = [float(f) for f in per_sample_list(factor, n)]
    if x.device.type != "cpu":
        mats = []
        for f in factors:
            if axis == 0:  # x_in = x + f * (y - y0)
                mats.append([[1.0, f, -f * (h / 2.0 if center else 0.0)], [0.0, 1.0, 0.0]])
            else:  # y_in = y + f * (x - x0)
                mats.append([[1.0, 0.0, 0.0], [f, 1.0, -f * (w / 2.0 if center else 0.0)]])
        return unbatch(affine(x, mats), added)
    # One axis of the bilinear sampling falls on pixel centres: per-line shifts of whole rows or
    # columns instead of a 2-D resampling grid.
    xn = nhwc(x)
    out = torch.empty_like(xn)
    src, dst = xn.numpy(), out.numpy()
    for i, f in enumerate(factors):
        if f == 0.0:
            dst[i] = src[i]
        elif axis == 0:
            _shear_rows(src[i], f, h / 2.0 if center else 0.0, dst[i])
        else:
            _shear_columns(src[i], f, w / 2.0 if center else 0.0, dst[i])
    return unbatch(from_nhwc(out, x), added)


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
    src, dst = (x.numpy(), out.numpy()) if x.device.type == "cpu" else (x, out)  # NumPy views slice cheaply
    dim = 3 if axis == 0 else 2
    size = x.shape[dim]
    lead = (slice(None),) * (dim - 1)
    for i, s in enumerate(shifts):
        s = int(round(s))
        if abs(s) >= size:
            continue
        to, frm = (slice(s, None), slice(0, size - s)) if s >= 0 else (slice(0, size + s), slice(-s, None))
        dst[(i, *lead, to)] = src[(i, *lead, frm)]
    return unbatch(out, added)


def translate_x(images: torch.Tensor, pixels) -> torch.Tensor:
    """Shift right by a whole number of ``pixels`` (left if negative), zeros where uncovered."""
    return _translate(images, pixels, axis=0)


def translate_y(images: torch.Tensor, pixels) -> torch.Tensor:
    """Shift down by a whole number of ``pixels`` (up if negative), zeros where uncovered."""
    return _translate(images, pixels, axis=1)
