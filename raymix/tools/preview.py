"""Contact sheets: rows of captioned image tiles drawn into one PIL image.

:func:`contact_sheet` is a pure function: it takes rows of :class:`Tile` (an image and a
caption) and returns the sheet. It is :func:`sheet_layout`, which says where everything goes
(so a caller or a test can find each tile in the picture), then :func:`draw_sheet`. Used by ``raymix preview``
(:mod:`raymix.tools.preview_methods` builds the rows).

The sheet, top to bottom: a title line, note lines (e.g. which editor made the edits), then
for each row an optional heading band, the row's tiles and the tiles' captions. Tiles are
square, ``tile`` pixels; an image keeps its aspect ratio and is centred in its tile. Text
uses PIL's default font and wraps at the tile (caption) or sheet (title, note) width.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

__all__ = ["PAD", "Tile", "SheetLayout", "sheet_layout", "draw_sheet", "contact_sheet", "encode_sheet", "wrap_text"]

PAD = 8  # pixels around and between tiles
FONT_SIZE = 11
HEADING_SIZE = 14
TITLE_SIZE = 16
MAX_CAPTION_LINES = 8
BACKGROUND = (246, 246, 244)
EMPTY_TILE = (226, 226, 222)
TEXT = (30, 30, 30)
NOTE = (150, 30, 20)
HEADING = (20, 60, 120)


@dataclass(frozen=True)
class Tile:
    """One picture of the sheet.

    ``image``: ``uint8`` ``HxWx3`` (RGB) or ``HxW`` (gray) array, a float ``HxW`` array in
    ``[0, 1]`` (a mask), a PIL image, or ``None`` for an empty tile. ``caption``: text under
    the tile; ``\\n`` starts a new line, long lines wrap.
    """

    image: np.ndarray | Image.Image | None
    caption: str = ""


@dataclass(frozen=True)
class SheetLayout:
    """Where things go on a sheet: its ``size`` (width, height), the top-left corner of each
    tile (``boxes[row][column]``), the wrapped caption lines of each tile, and each row's
    heading as ``(y, text)`` (``None`` where a row has none)."""

    size: tuple[int, int]
    tile: int
    boxes: list[list[tuple[int, int]]]
    captions: list[list[list[str]]]
    headings: list[tuple[int, str] | None]
    title: list[str] = field(default_factory=list)
    note: list[str] = field(default_factory=list)

    @property
    def columns(self) -> int:
        return max((len(r) for r in self.boxes), default=0)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _line_height(font) -> int:
    top, bottom = font.getbbox("Hgjy|")[1::2]
    return int(bottom - min(top, 0)) + 3


def wrap_text(text: str, width: int, font, max_lines: int | None = None) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels (at spaces, else inside a long
    word); with ``max_lines``, extra lines are dropped and the last kept one ends with "..."."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while font.getlength(word) > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and font.getlength(word[:cut]) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "...") > width:
            last = last[:-1]
        lines[-1] = last + "..."
    return lines


def sheet_layout(
    rows: Sequence[Sequence[Tile | None]],
    *,
    tile: int = 160,
    title: str = "",
    note: str = "",
    headings: Mapping[int, str] | None = None,
    max_caption_lines: int = MAX_CAPTION_LINES,
) -> SheetLayout:
    """Where each part of a sheet of ``rows`` goes.

    ``title`` is drawn on top, ``note`` under it (in red: caveats a reader must not miss),
    ``headings`` maps a row index to a heading drawn above that row (sections of a sheet).
    The width is ``PAD + columns * (tile + PAD)``; a row is as tall as its tile plus its
    longest caption (wrapped, at most ``max_caption_lines`` lines).
    """
    if tile < 16:
        raise ValueError(f"tile must be at least 16 pixels, got {tile}")
    if not rows or not any(rows):
        raise ValueError("a contact sheet needs at least one tile")
    headings = dict(headings or {})
    columns = max(len(r) for r in rows)
    width = PAD + columns * (tile + PAD)
    font, title_font, heading_font = _font(FONT_SIZE), _font(TITLE_SIZE), _font(HEADING_SIZE)
    line_h, title_h, heading_h = _line_height(font), _line_height(title_font), _line_height(heading_font)

    y = PAD
    title_lines = wrap_text(title, width - 2 * PAD, title_font) if title else []
    note_lines = wrap_text(note, width - 2 * PAD, font) if note else []
    y += len(title_lines) * title_h + len(note_lines) * line_h
    if title_lines or note_lines:
        y += PAD

    boxes, captions, heading_ys = [], [], []
    for r, row in enumerate(rows):
        if r in headings:
            heading_ys.append((y, headings[r]))
            y += heading_h + PAD // 2
        else:
            heading_ys.append(None)
        row_captions = [
            wrap_text(t.caption, tile, font, max_caption_lines) if t is not None and t.caption else [] for t in row
        ]
        boxes.append([(PAD + c * (tile + PAD), y) for c in range(len(row))])
        captions.append(row_captions)
        y += tile + max((len(c) for c in row_captions), default=0) * line_h + PAD
    return SheetLayout((width, y), tile, boxes, captions, heading_ys, title_lines, note_lines)


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"a tile image must be HxW or HxWx3, got shape {arr.shape}")
    return Image.fromarray(arr).convert("RGB")


def _fit(image: Image.Image, tile: int) -> Image.Image:
    w, h = image.size
    scale = tile / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    return image.resize(size, resample)


def draw_sheet(rows: Sequence[Sequence[Tile | None]], layout: SheetLayout) -> Image.Image:
    """Draw ``rows`` of tiles (``None``: an empty grey tile) where ``layout`` puts them.

    Images are scaled to fit their ``tile x tile`` square (enlarged with nearest-neighbour, so
    small images stay crisp; reduced with Lanczos) and centred in it.
    """
    tile = layout.tile
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, title_font, heading_font = _font(FONT_SIZE), _font(TITLE_SIZE), _font(HEADING_SIZE)
    line_h, title_h = _line_height(font), _line_height(title_font)

    y = PAD
    for line in layout.title:
        draw.text((PAD, y), line, fill=TEXT, font=title_font)
        y += title_h
    for line in layout.note:
        draw.text((PAD, y), line, fill=NOTE, font=font)
        y += line_h

    for r, row in enumerate(rows):
        if layout.headings[r] is not None:
            hy, text = layout.headings[r]
            draw.text((PAD, hy), text, fill=HEADING, font=heading_font)
        for c, item in enumerate(row):
            x, ty = layout.boxes[r][c]
            if item is None or item.image is None:
                draw.rectangle((x, ty, x + tile - 1, ty + tile - 1), fill=EMPTY_TILE)
            else:
                picture = _fit(_to_pil(item.image), tile)
                sheet.paste(picture, (x + (tile - picture.width) // 2, ty + (tile - picture.height) // 2))
            for k, line in enumerate(layout.captions[r][c]):
                draw.text((x, ty + tile + 2 + k * line_h), line, fill=TEXT, font=font)
    return sheet


def contact_sheet(rows: Sequence[Sequence[Tile | None]], **options) -> Image.Image:
    """Draw ``rows`` of tiles into one RGB image; ``options`` (``tile``, ``title``, ``note``,
    ``headings``, ``max_caption_lines``) as :func:`sheet_layout`."""
    return draw_sheet(rows, sheet_layout(rows, **options))


def encode_sheet(sheet: Image.Image, format: str = "PNG", *, palette: bool = False,
                 text: Mapping[str, str] | None = None, quality: int = 90) -> bytes:
    """The sheet as PNG (with ``text`` as tEXt chunks) or JPEG bytes.

    ``palette``: a PNG with a 256-colour median-cut palette refined by k-means, Floyd-Steinberg
    dithered (no false edges where smooth gradients would band); about a third of the size.
    """
    buf = io.BytesIO()
    if format.upper() == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in (text or {}).items():
            info.add_text(key, value)
        image = sheet
        if palette:
            colours = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, kmeans=4)
            image = sheet.quantize(palette=colours, dither=Image.Dither.FLOYDSTEINBERG)
        image.save(buf, format="PNG", optimize=True, pnginfo=info)
    elif format.upper() in ("JPEG", "JPG"):
        sheet.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"format must be PNG or JPEG, got {format!r}")
    return buf.getvalue()
