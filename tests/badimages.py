"""A corpus of awkward and broken image files, built in memory for the tests.

``corpus()`` maps a file name to ``(bytes, expected)`` where ``expected`` is either a
quarantine reason (str) or a function that checks the decoded RGB array.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

RED = (200, 30, 10)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_raw(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB); ``rows=None`` gives a
    header-only file, as a decompression bomb's header would look."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(rows) if rows is not None else zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _close(expected, tol=6):
    def check(arr):
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, arr.shape
        got = arr.reshape(-1, 3).mean(0)
        assert np.all(np.abs(got - np.array(expected)) <= tol), (got, expected)
    return check


def _shape_and(shape, inner):
    def check(arr):
        assert arr.shape == shape, (arr.shape, shape)
        inner(arr)
    return check


def corpus() -> dict[str, tuple[bytes, object]]:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[...] = RED
    good_jpeg = _save(Image.fromarray(rgb), "JPEG", quality=95)
    good_png = _save(Image.fromarray(rgb), "PNG")
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    noisy_jpeg = _save(Image.fromarray(noisy), "JPEG", quality=95)

    gray16 = np.full((16, 16), 40000, np.uint16)
    rgb16_rows = b"".join(b"\0" + struct.pack(">" + "HHH" * 8, *([51400, 7710, 2570] * 8)) for _ in range(8))

    pal = Image.new("P", (20, 10), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    pal.paste(1, (10, 0, 20, 10))  # right half index 1 (blue), left half index 0 (transparent)

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = (0, 0, 0)
    rgba[..., 3] = 0  # fully transparent black: shows as white

    def palette_check(arr):
        assert arr.shape == (10, 20, 3)
        assert np.all(arr[:, :10] == 255), "transparent palette entries composite on white"
        assert np.all(arr[:, 10:] == (0, 0, 255))

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = _save(Image.fromarray(np.full((20, 40, 3), 90, np.uint8)), "JPEG", exif=exif.tobytes())

    # A real decompression bomb: 100 megapixels of one colour in a few kilobytes.
    bomb = _save(Image.new("1", (10_000, 10_000), 0), "PNG", optimize=True)

    corrupt_png = bytearray(good_png)
    idat = corrupt_png.index(b"IDAT")
    corrupt_png[idat + 4 : idat + 20] = b"\xff" * 16

    frames = [Image.new("RGB", (8, 8), c) for c in ((0, 200, 0), (200, 0, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])

    return {
        "good.jpg": (good_jpeg, _shape_and((48, 64, 3), _close(RED))),
        "good.png": (good_png, _shape_and((48, 64, 3), _close(RED, 0))),
        "zero-byte.jpg": (b"", "zero-byte"),
        "text.jpg": (b"this is a text file, not an image\n", "not-an-image"),
        "page.html": (b"<!doctype html><html><body>404</body></html>", "not-an-image"),
        "truncated.jpg": (noisy_jpeg[: len(noisy_jpeg) // 2], "truncated"),
        "truncated-header.jpg": (good_jpeg[:300], "truncated"),
        "truncated.png": (good_png[: int(len(good_png) * 0.6)], "truncated"),
        "corrupt.png": (bytes(corrupt_png), "corrupt"),
        "cmyk.jpg": (_save(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95), _close(RED, 8)),
        "gray16.png": (_save(Image.fromarray(gray16), "PNG"), _close((155, 155, 155), 1)),
        "rgb16.png": (png_raw(8, 8, 16, 2, rgb16_rows), _close(RED, 1)),
        "palette-transparent.png": (_save(pal, "PNG", transparency=0), palette_check),
        "rgba-transparent.png": (_save(Image.fromarray(rgba, "RGBA"), "PNG"), _close((255, 255, 255), 0)),
        "gray.jpg": (_save(Image.new("L", (16, 16), 77), "JPEG", quality=95), _close((77, 77, 77), 2)),
        "tiny-1x1.png": (_save(Image.new("RGB", (1, 1), RED), "PNG"), _shape_and((1, 1, 3), _close(RED, 0))),
        "exif-rotated.jpg": (rotated, _shape_and((40, 20, 3), _close((90, 90, 90), 3))),
        "animated.gif": (gif.getvalue(), _close((0, 200, 0), 8)),
        "bomb.png": (bomb, "too-many-pixels"),
        "bomb-header.png": (png_raw(60_000, 60_000, 8, 2, None), "too-many-pixels"),
    }
