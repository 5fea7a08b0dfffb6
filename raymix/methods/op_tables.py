"""The op tables of the papers, and drawing and applying a different op per sample.

An op table maps an op name to an :class:`ImageOp`: how to draw its parameters from a
severity or magnitude (``sample``) and how to apply it to a batch (``apply``, a kernel of
:mod:`raymix.ops.image_ops`). :func:`sample_op` draws an op and its parameters;
:func:`map_ops` runs a different op per image, calling each op once on its sub-batch.

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

import torch

from raymix.ops.image_ops import (
    autocontrast,
    brightness,
    color,
    contrast,
    equalize,
    grayscale,
    invert,
    mirror,
    posterize,
    rotate,
    sharpness,
    shear_x,
    shear_y,
    solarize,
    translate_x,
    translate_y,
)
from raymix.ops.rng import Draws
from raymix.ops.tensors import stack

__all__ = ["ImageOp", "AUGMIX_OPS", "AUGMIX_ALL_OPS", "IPMIX_CODE_OPS", "LAYERMIX_OPS", "sample_op", "map_ops"]


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


def map_ops(images: Sequence[torch.Tensor], ops: Sequence[dict | None], table: Mapping[str, ImageOp]
            ) -> list[torch.Tensor]:
    """Apply ``ops[i]`` (from :func:`sample_op`; ``None`` = unchanged) to the image ``images[i]``
    ``(C, H, W)``; returns one image per input.

    Images are grouped by op so each op runs once on its sub-batch, and an op repeated with the
    same parameters on the same image (the same tensor object) runs once. Unchanged images are
    returned as they are and repeated results are shared (not copied): treat the results as
    read-only.
    """
    images = list(images)
    if len(ops) != len(images):
        raise ValueError(f"{len(ops)} ops for {len(images)} images")
    groups: dict[str, list[int]] = {}
    first: dict[tuple, int] = {}
    repeats: dict[int, int] = {}
    for i, op in enumerate(ops):
        if op is None:
            continue
        key = (id(images[i]), tuple(sorted(op.items())))
        if key in first:
            repeats[i] = first[key]
        else:
            first[key] = i
            groups.setdefault(op["op"], []).append(i)
    out = list(images)
    for name, idx in groups.items():
        sub = images[idx[0]].unsqueeze(0) if len(idx) == 1 else stack([images[i] for i in idx])
        result = table[name].apply(sub, [ops[i] for i in idx])
        for j, i in enumerate(idx):
            out[i] = result[j]
    for i, j in repeats.items():
        out[i] = out[j]
    return out
