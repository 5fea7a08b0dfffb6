"""A small ImageNet-like dataset generated offline, in any of the three input layouts.

Every class has its own look, so a classifier can learn it and augmentations have
structure to work on: a shape family (disc, box, triangle, star, ring, cross, crescent,
blob), a surface texture (smooth shading, stripes, checks, dots, waves), an object hue and
a background palette. Every image draws, from its own generator seeded by ``(seed, class,
index)``: the aspect (mostly ImageNet's 500x375 landscape, some portrait), a two-colour
background gradient at a random angle with low-frequency clutter, one to three objects at
random places, scales and rotations with a soft shadow and directional lighting, a little
blur and sensor noise, and a JPEG quality between 85 and 95. Same seed, same bytes.

Layouts written by :func:`write_sample` (``OUT`` is the output URI):

``folder``      ``OUT/<class>/<class>_<i>.JPEG`` and ``OUT/LOC_synset_mapping.txt``
``parquet``     ``OUT/train-0000k-of-0000n.parquet``: HF ``datasets`` layout (``image``
                struct ``{bytes, path}``, ``label`` as ``ClassLabel``), rows shuffled
``webdataset``  ``OUT/train-00000k.tar`` with ``<class>_<i>.jpg/.cls/.json``, rows
                shuffled, and ``OUT/classes.json``
"""

from __future__ import annotations

import io
import json
import math
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFilter

from raymix.io import storage, wds
from raymix.io.schema import HF_IMAGE_TYPE
from raymix.schema import IMAGE, LABEL

__all__ = ["SampleSummary", "SAMPLE_FORMATS", "write_sample", "make_image", "class_names"]

SAMPLE_FORMATS = ("folder", "parquet", "webdataset")
SHAPES = ("disc", "box", "triangle", "star", "ring", "cross", "crescent", "blob")
TEXTURES = ("smooth", "stripes", "checks", "dots", "waves")
_COLOUR_NAMES = ("red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet", "magenta", "rose")
_GOLDEN = 0.6180339887498949


@dataclass
class SampleSummary:
    out_uri: str
    format: str
    classes: list[str]
    descriptions: list[str]
    images: int
    files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"wrote {self.images} images of {len(self.classes)} classes to {self.out_uri} "
            f"({self.format}, {len(self.files)} files)"
        )


def _class_look(seed: int, c: int) -> dict:
    rng = np.random.default_rng([seed, c, 0x5EED])
    hue = (c * _GOLDEN + rng.uniform(0, 0.05)) % 1.0
    return {
        "shape": SHAPES[c % len(SHAPES)],
        "texture": TEXTURES[(c // len(SHAPES)) % len(TEXTURES)],
        "hue": hue,
        "bg_hue": (hue + 0.35 + 0.3 * rng.random()) % 1.0,
        "bg_sat": 0.15 + 0.35 * rng.random(),
        "frequency": 6 + 20 * rng.random(),
    }


def class_names(classes: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Folder names (``c0000``...) and descriptions (``"striped red disc"``)."""
    names, descriptions = [], []
    for c in range(classes):
        look = _class_look(seed, c)
        colour = _COLOUR_NAMES[int(look["hue"] * len(_COLOUR_NAMES)) % len(_COLOUR_NAMES)]
        names.append(f"c{c:04d}")
        descriptions.append(f"{look['texture']} {colour} {look['shape']}")
    return names, descriptions


def _hsv(h, s, v) -> np.ndarray:
    """HSV in [0, 1] (arrays broadcast) to RGB floats in [0, 1]."""
    h = np.asarray(h, np.float32) % 1.0
    i = np.floor(h * 6).astype(np.int32) % 6
    f = h * 6 - np.floor(h * 6)
    s, v = np.asarray(s, np.float32), np.asarray(v, np.float32)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(np.broadcast(h, s, v).shape + (3,), np.float32)
    for k, (r, g, b) in enumerate(choices):
        m = i == k
        out[..., 0] = np.where(m, r, out[..., 0])
        out[..., 1] = np.where(m, g, out[..., 1])
        out[..., 2] = np.where(m, b, out[..., 2])
    return out


def _smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a random grid upsampled bicubically."""
    grid = (rng.random((cells, max(2, round(cells * w / h)))) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255.0


def _shape_polygon(shape: str, cx, cy, r, angle, rng) -> list[list[tuple[float, float]]] | None:
    def ring_points(n, radius, phase=0.0):
        return [(cx + radius[k] * math.cos(angle + phase + 2 * math.pi * k / n),
                 cy + radius[k] * math.sin(angle + phase + 2 * math.pi * k / n)) for k in range(n)]

    if shape == "box":
        return [ring_points(4, [r * 1.2] * 4, math.pi / 4)]
    if shape == "triangle":
        return [ring_points(3, [r * 1.3] * 3)]
    if shape == "star":
        return [ring_points(10, [r * (1.25 if k % 2 == 0 else 0.5) for k in range(10)])]
    if shape == "cross":
        a, b = r * 1.2, r * 0.38
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
        ca, sa = math.cos(angle), math.sin(angle)
        return [[(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]]
    if shape == "blob":
        n = 24
        bumps = 1 + 0.35 * np.sin(np.arange(n) * 2 * math.pi / n * rng.integers(2, 5) + rng.random() * 6)
        return [ring_points(n, list(r * bumps))]
    return None  # disc, ring, crescent are drawn with ellipses


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx, cy, r, angle, rng) -> None:
    polys = _shape_polygon(shape, cx, cy, r, angle, rng)
    if polys is not None:
        for poly in polys:
            draw.polygon(poly, fill=255)
        return
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    if shape == "ring":
        ri = r * 0.55
        draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    elif shape == "crescent":
        dx, dy = 0.45 * r * math.cos(angle), 0.45 * r * math.sin(angle)
        draw.ellipse([cx + dx - r, cy + dy - r, cx + dx + r, cy + dy + r], fill=0)


def _texture(look: dict, rng, h: int, w: int) -> np.ndarray:
    """The class's surface pattern: a (h, w) field in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    u = (xx * math.cos(theta) + yy * math.sin(theta)) / max(h, w)
    v = (-xx * math.sin(theta) + yy * math.cos(theta)) / max(h, w)
    f = look["frequency"] * rng.uniform(0.8, 1.25)
    kind = look["texture"]
    if kind == "stripes":
        return 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * f * u))
    if kind == "checks":
        return ((np.floor(f * u) + np.floor(f * v)) % 2).astype(np.float32)
    if kind == "dots":
        du, dv = (f * u) % 1 - 0.5, (f * v) % 1 - 0.5
        return (du * du + dv * dv < 0.09).astype(np.float32)
    if kind == "waves":
        return 0.5 + 0.5 * np.sin(2 * math.pi * f * (u + 0.08 * np.sin(2 * math.pi * 2 * v)))
    return np.clip(0.5 + 0.6 * (u - v), 0, 1)  # smooth shading


def make_image(seed: int, label: int, index: int, size: tuple[int, int] = (500, 375)) -> np.ndarray:
    """One ``HxWx3`` ``uint8`` image of class ``label`` (see the module docstring)."""
    look = _class_look(seed, label)
    rng = np.random.default_rng([seed, label, index])
    w, h = size
    roll = rng.random()
    if roll < 0.2:
        w, h = h, w  # portrait
    elif roll < 0.3:
        h = int(h * 0.89)
    # Background: two-colour gradient at a random angle plus low-frequency clutter.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(theta) + yy * math.sin(theta)) / (abs(w * math.cos(theta)) + abs(h * math.sin(theta)) + 1e-6)
    ramp = ramp - ramp.min()
    c1 = _hsv(look["bg_hue"], look["bg_sat"], rng.uniform(0.55, 0.95))
    c2 = _hsv(look["bg_hue"] + rng.uniform(-0.08, 0.08), look["bg_sat"] * rng.uniform(0.5, 1.2), rng.uniform(0.25, 0.7))
    img = c1 * (1 - ramp[..., None]) + c2 * ramp[..., None]
    clutter = _smooth_noise(rng, h, w, int(rng.integers(3, 9)))
    img *= (0.8 + 0.35 * clutter)[..., None]

    # Objects: the class shape with the class texture, shadow and lighting.
    count = int(rng.choice([1, 1, 1, 2, 2, 3]))
    for _ in range(count):
        r = min(w, h) * rng.uniform(0.16, 0.34) / math.sqrt(count)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        angle = rng.uniform(0, 2 * math.pi)
        mask_img = Image.new("L", (w, h), 0)
        _draw_shape(ImageDraw.Draw(mask_img), look["shape"], cx, cy, r, angle, rng)
        mask_img = mask_img.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.6)))
        mask = np.asarray(mask_img, np.float32)[..., None] / 255.0
        shadow = np.asarray(mask_img.filter(ImageFilter.GaussianBlur(r * 0.15)), np.float32)[..., None] / 255.0
        off = (int(r * 0.12), int(r * 0.12))
        shadow = np.roll(shadow, off, axis=(0, 1))
        img *= 1 - 0.45 * shadow
        pattern = _texture(look, rng, h, w)[..., None]
        hue = look["hue"] + rng.uniform(-0.03, 0.03)
        light_c = _hsv(hue, rng.uniform(0.55, 0.9), rng.uniform(0.8, 1.0))
        dark_c = _hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.6, 1.0), rng.uniform(0.25, 0.5))
        surface = dark_c * (1 - pattern) + light_c * pattern
        lx, ly = math.cos(angle + 1.0), math.sin(angle + 1.0)
        light = 0.75 + 0.35 * np.clip(((xx - cx) * lx + (yy - cy) * ly) / (2 * r) + 0.5, 0, 1)
        img = img * (1 - mask) + surface * light[..., None] * mask

    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.2)))
    arr = np.asarray(out, np.float32) + rng.normal(0, rng.uniform(1.0, 5.0), (h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _jpeg(seed: int, label: int, index: int, size: tuple[int, int]) -> bytes:
    arr = make_image(seed, label, index, size)
    quality = int(np.random.default_rng([seed, label, index, 1]).integers(85, 96))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _features(names: list[str]) -> dict[bytes, bytes]:
    features = {IMAGE: {"_type": "Image"}, LABEL: {"_type": "ClassLabel", "names": names}}
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def write_sample(
    out_uri: str,
    *,
    format: str = "folder",
    classes: int = 10,
    per_class: int = 8,
    seed: int = 0,
    size: tuple[int, int] = (500, 375),
    storage_options: dict | None = None,
    rows_per_shard: int = 64,
    workers: int | None = None,
) -> SampleSummary:
    """Generate ``classes x per_class`` images and write them to ``out_uri`` in ``format``
    (``folder``, ``parquet`` or ``webdataset``); ``size`` is (width, height) of the
    landscape images. Parquet and WebDataset shards hold ``rows_per_shard`` rows."""
    if format not in SAMPLE_FORMATS:
        raise ValueError(f"format must be one of {SAMPLE_FORMATS}, got {format!r}")
    if classes < 1 or per_class < 1:
        raise ValueError("classes and per_class must be at least 1")
    fs, root = storage.filesystem(out_uri, storage_options)
    fs.makedirs(root, exist_ok=True)
    names, descriptions = class_names(classes, seed)
    items = [(c, i) for c in range(classes) for i in range(per_class)]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        images = list(pool.map(lambda ci: _jpeg(seed, ci[0], ci[1], size), items))

    files: list[str] = []

    def put(path: str, data: bytes) -> None:
        storage.atomic_write(fs, path, data)
        files.append(storage.uri_of(fs, path))

    if format == "folder":
        mapping = "".join(f"{n} {d}\n" for n, d in zip(names, descriptions))
        put(posixpath.join(root, "LOC_synset_mapping.txt"), mapping.encode())
        for (c, i), data in zip(items, images):
            put(posixpath.join(root, names[c], f"{names[c]}_{i:05d}.JPEG"), data)
    else:
        order = np.random.default_rng([seed, 0xD5]).permutation(len(items))
        shards = [order[k : k + rows_per_shard] for k in range(0, len(order), rows_per_shard)]
        if format == "parquet":
            schema = pa.schema([pa.field(IMAGE, HF_IMAGE_TYPE), pa.field(LABEL, pa.int64())], metadata=_features(names))
            for k, idx in enumerate(shards):
                rows = [items[j] for j in idx]
                table = pa.table(
                    {
                        IMAGE: [{"bytes": images[j], "path": f"{names[c]}_{i:05d}.JPEG"} for j, (c, i) in zip(idx, rows)],
                        LABEL: [c for c, _ in rows],
                    },
                    schema=schema,
                )
                buf = io.BytesIO()
                pq.write_table(table, buf, row_group_size=100)
                put(posixpath.join(root, f"train-{k:05d}-of-{len(shards):05d}.parquet"), buf.getvalue())
        else:
            put(
                posixpath.join(root, "classes.json"),
                json.dumps({"names": names, "descriptions": descriptions}, indent=1).encode(),
            )
            for k, idx in enumerate(shards):
                samples = []
                for j in idx:
                    c, i = items[j]
                    key = f"{names[c]}_{i:05d}"
                    meta = {"key": key, "label": c, "class_name": names[c]}
                    samples.append((key, {"jpg": images[j], "cls": str(c).encode(), "json": json.dumps(meta).encode()}))
                put(posixpath.join(root, f"train-{k:06d}.tar"), wds.build_tar(samples))
    return SampleSummary(storage.uri_of(fs, root), format, names, descriptions, len(items), files)
