"""Decode stored image bytes to RGB arrays, and encode arrays back to JPEG.

:func:`decode_image` turns any image Pillow reads into an ``HxWx3`` ``uint8`` RGB array,
or raises :class:`BadImage` with a short machine-readable ``reason``:

=================== ==========================================================
reason              meaning
=================== ==========================================================
``missing``         no bytes (unreadable file, a row whose image is null or whose
                    stored path is not there)
``zero-byte``       empty file
``not-an-image``    Pillow does not recognise the format (text, HTML, ...)
``too-many-pixels`` width x height over ``max_pixels`` (decompression bombs)
``too-small``       a side shorter than ``min_side``
``truncated``       the file ends before the image data does
``corrupt``         the image data cannot be decoded
``bad-array``       (:func:`decode_batch`) a pixel array that is not uint8 HxW[xC]
=================== ==========================================================

Conversions (all to sRGB-ish 8-bit RGB): EXIF orientation is applied; CMYK (including
Adobe's inverted CMYK) and other colour spaces go through the embedded ICC profile when
there is one, else Pillow's conversion; 16-bit and 32-bit integer images are scaled to 8
bits (not clipped); palette, grayscale and bilevel images are expanded; transparency
(alpha channels, palette transparency) is composited onto a white background, as a
browser shows the image on a white page. Animated images give their first frame.

:func:`decode_batch` and :func:`encode_batch` are the Ray Data ``map_batches`` functions
(``batch_format="numpy"``) built on them: bad rows never raise, they keep flowing with a
zero image and ``stage``/``reason`` set so the writer can quarantine them.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from raymix.schema import IMAGE, KEY, REASON, STAGE

__all__ = [
    "BadImage",
    "DEFAULT_MAX_PIXELS",
    "decode_image",
    "resize_image",
    "decode_batch",
    "encode_jpeg",
    "encode_batch",
]

log = logging.getLogger(__name__)

# Pillow's own decompression-bomb threshold (about 89.5 megapixels, ~268 MB as RGB).
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
RESIZE_MODES = ("center_crop", "resize", "shorter_side")
#: JPEG quality of every image raymix encodes (the encode stage, the writers) unless told otherwise.
JPEG_QUALITY = 95
_WHITE = (255, 255, 255)
_SRGB = ImageCms.createProfile("sRGB")


class BadImage(ValueError):
    """An image that cannot be decoded; ``reason`` is short and machine-readable."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _open(data: bytes | None, max_pixels: int, min_side: int) -> Image.Image:
    if data is None:
        raise BadImage("missing")
    if len(data) == 0:
        raise BadImage("zero-byte")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and raises past 2x) at its global limit; ours is per call.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise BadImage("too-many-pixels", str(err)) from None
    except UnidentifiedImageError as err:
        raise BadImage("not-an-image", str(err)) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage(_load_error_reason(err), str(err)) from None
    w, h = im.size
    if w * h > max_pixels:
        raise BadImage("too-many-pixels", f"{w}x{h} > {max_pixels}")
    if min(w, h) < min_side:
        raise BadImage("too-small", f"{w}x{h}, min side {min_side}")
    return im


def _load_error_reason(err: Exception) -> str:
    text = str(err).lower()
    if isinstance(err, OSError) and any(t in text for t in ("truncat", "end of file", "premature", "unexpected end")):
        return "truncated"
    return "corrupt"


def _load(im: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    except OSError as err:
        raise BadImage(_load_error_reason(err), str(err)) from None
    except (SyntaxError, ValueError, IndexError, struct.error) as err:
        raise BadImage("corrupt", str(err)) from None
    except Image.DecompressionBombError as err:
        raise BadImage("too-many-pixels", str(err)) from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any decoded Pillow image to 8-bit RGB (see the module docstring)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im)
        if mode == "F":
            arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255)
        elif mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr.astype(np.uint32) // 257  # 0..65535 -> 0..255
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette.mode == "RGBA"
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
    elif mode in ("L", "1") and "transparency" in im.info:
        im = im.convert("LA")
        mode = "LA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    icc = im.info.get("icc_profile")
    if icc and mode in ("CMYK", "LAB", "YCbCr"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError) as err:
            log.debug("ICC conversion failed (%s); using Pillow's conversion", err)
    return im.convert("RGB")


def _draft(im: Image.Image, reduce_to: int | None) -> None:
    """Let a JPEG decode at a reduced DCT scale (1/2, 1/4, 1/8) whose shorter side stays
    at least ``reduce_to``: much less work when the image is resized down anyway."""
    if not reduce_to or im.format != "JPEG" or im.mode not in ("RGB", "L", "CMYK"):
        return
    w, h = im.size
    short = min(w, h)
    if short >= 2 * reduce_to:
        im.draft(im.mode, (math.ceil(w * reduce_to / short), math.ceil(h * reduce_to / short)))


def decode_image(
    data: bytes | None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    reduce_to: int | None = None,
) -> np.ndarray:
    """Decode image bytes to an ``HxWx3`` ``uint8`` RGB array.

    Raises :class:`BadImage` (never anything else for bad bytes). With ``reduce_to``, a
    JPEG may decode at a reduced scale whose shorter side is still at least that many
    pixels (for callers that resize down afterwards).
    """
    return np.asarray(_decode_pil(data, max_pixels=max_pixels, min_side=min_side, reduce_to=reduce_to))


def _decode_pil(data, *, max_pixels: int, min_side: int, reduce_to: int | None = None) -> Image.Image:
    im = _open(data, max_pixels, min_side)
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        _draft(im, reduce_to)
        _load(im)
        try:
            im = ImageOps.exif_transpose(im)
        except Exception as err:  # a malformed EXIF block must not lose the image
            log.debug("ignoring bad EXIF orientation: %s", err)
        return _to_rgb(im)
    except BadImage:
        raise
    except Exception as err:  # any other decoder failure is bad data, not a crash
        raise BadImage("corrupt", f"{type(err).__name__}: {err}") from None


def _resize_target(w: int, h: int, size: int, mode: str) -> tuple[int, int]:
    if mode == "resize":
        return size, size
    scale = size / min(w, h)
    return max(size, round(w * scale)), max(size, round(h * scale))


def resize_image(im: Image.Image | np.ndarray, size: int, mode: str = "center_crop") -> np.ndarray:
    """Resize an RGB image to ``size``.

    ``center_crop``: shorter side to ``size``, then the central ``size x size`` crop (the
    ImageNet evaluation transform); ``resize``: squash to ``size x size``;
    ``shorter_side``: shorter side to ``size``, aspect kept (rows of different shapes).
    Bilinear with antialiasing (Pillow's ``reduce`` pre-filter).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {mode!r}")
    if isinstance(im, np.ndarray):
        im = Image.fromarray(im)
    w, h = im.size
    tw, th = _resize_target(w, h, size, mode)
    if (tw, th) != (w, h):
        im = im.resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=None)
    if mode == "center_crop":
        left, top = (tw - size) // 2, (th - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return np.asarray(im)


def _str_column(batch: dict, name: str, n: int) -> np.ndarray:
    if name in batch:
        return np.asarray(batch[name]).astype(object)
    return np.full(n, "", dtype=object)


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
        raise BadImage("bad-array", f"expected uint8 HxW[xC] pixels, got {arr.dtype} {arr.shape}")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(arr.squeeze(2) if arr.ndim == 3 and arr.shape[2] == 1 else arr)))


def _image_bytes(data):
    """What a batch holds for one image, as bytes, pixels or None (missing).

    A Hugging Face ``Image`` struct gives its ``bytes``; a null gives None however the
    batch format spells it (None, or NaN when a whole block's images are null and the
    column became a float array)."""
    if isinstance(data, dict):  # a Hugging Face ``Image`` struct {bytes, path}
        data = data.get("bytes")
    if data is None or isinstance(data, (bytes, bytearray, memoryview)):
        return data
    if isinstance(data, np.ndarray):
        if data.ndim >= 2 or data.dtype in (np.uint8, np.int8) or data.dtype.kind in "SV":
            return data
        return None
    return None  # a float NaN, a numpy scalar: no bytes


def decode_batch(
    batch: dict,
    *,
    size: int | None = 224,
    resize: str = "center_crop",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    draft: bool = True,
) -> dict:
    """Ray ``map_batches`` function: ``image`` bytes (or Hugging Face ``Image`` structs
    ``{bytes, path}``, or decoded arrays) to ``uint8`` arrays.

    With ``size`` the images become one ``(N, size, size, 3)`` array (``resize`` =
    ``center_crop`` or ``resize``); ``size=None`` or ``resize="shorter_side"`` keeps one
    array per row (an object array). Adds ``stage`` and ``reason`` string columns (empty
    when fine); a row that fails gets a zero image, ``stage="decode"`` and the reason, and
    rows that arrive already failed pass through untouched.
    """
    if size is not None and resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    images = batch[IMAGE]
    n = len(images)
    stage = _str_column(batch, STAGE, n)
    reason = _str_column(batch, REASON, n)
    keys = batch.get(KEY, [""] * n)
    stacked = size is not None and resize != "shorter_side"
    out_images = np.zeros((n, size, size, 3), np.uint8) if stacked else np.empty(n, dtype=object)
    for i in range(n):
        if reason[i]:
            if not stacked:
                out_images[i] = np.zeros((size or 1, size or 1, 3), np.uint8)
            continue
        data = _image_bytes(images[i])
        try:
            if isinstance(data, np.ndarray) and data.ndim >= 2:  # already decoded pixels
                im = _array_to_pil(data)
            else:
                if isinstance(data, np.ndarray):
                    data = data.tobytes()
                reduce_to = size if (size is not None and draft) else None
                im = _decode_pil(data, max_pixels=max_pixels, min_side=min_side, reduce_to=reduce_to)
            arr = resize_image(im, size, resize) if size is not None else np.asarray(im)
        except BadImage as err:
            log.info("quarantining %s at decode: %s", keys[i], err)
            stage[i], reason[i] = "decode", err.reason
            if not stacked:
                out_images[i] = np.zeros((size or 1, size or 1, 3), np.uint8)
            continue
        out_images[i] = arr
    out = dict(batch)
    out[IMAGE] = out_images
    out[STAGE] = stage.astype(str)
    out[REASON] = reason.astype(str)
    return out


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An ``HxWx3`` (or ``HxW``) ``uint8`` array as JPEG bytes (4:2:0 above quality 90
    would waste bytes on chroma the eye does not see; Pillow's default subsampling is kept)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected HxWx3 pixels, got shape {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_batch(batch: dict, *, quality: int = JPEG_QUALITY) -> dict:
    """Ray ``map_batches`` function: ``uint8`` HWC arrays to JPEG bytes.

    Rows whose ``reason`` is set pass through with empty bytes; an array that cannot be
    encoded gets ``stage="encode"`` and ``reason="encode-failed"``. Rows that already hold
    bytes are left as they are.
    """
    images = batch[IMAGE]
    n = len(images)
    stage = _str_column(batch, STAGE, n)
    reason = _str_column(batch, REASON, n)
    keys = batch.get(KEY, [""] * n)
    out_images = np.empty(n, dtype=object)
    for i in range(n):
        img = images[i]
        if reason[i]:
            out_images[i] = b""
            continue
        if isinstance(img, (bytes, bytearray)):
            out_images[i] = bytes(img)
            continue
        try:
            out_images[i] = encode_jpeg(img, quality)
        except (ValueError, TypeError, OSError) as err:
            log.info("quarantining %s at encode: %s", keys[i], err)
            stage[i], reason[i] = "encode", "encode-failed"
            out_images[i] = b""
    out = dict(batch)
    out[IMAGE] = out_images
    out[STAGE] = stage.astype(str)
    out[REASON] = reason.astype(str)
    return out
