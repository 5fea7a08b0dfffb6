"""Fractal banks: the images that PixMix, IPMix, LayerMix and DiffuseMix blend into training images.

A :class:`FractalBank` holds ``N`` square fractal images of one size and hands out a batch of them,
one per sample, each chosen, resized, cropped (and for LayerMix flipped) with that sample's own
generator (:mod:`raymix.ops.rng`), so the draw never depends on the batch it came in.

Two sources:

* :meth:`FractalBank.generate` makes the images with the procedural generators of
  :mod:`raymix.fractals.generators` (IFS chaos game, escape-time orbit traps), deterministically from a
  seed: no download. PixMix used 14,230 fractals collected from DeviantArt (PixMix, Sec. 3); IPMix
  generated its own with an orbit-trap generator (IPMix, Sec. 4); DiffuseMix uses about 100
  (DiffuseMix, Sec. 3.3).
* :meth:`FractalBank.from_folder` reads a user's folder of images (e.g. PixMix's or DiffuseMix's
  published sets) from any fsspec URL: a local path, ``file://``, ``s3://``...

LayerMix blends grayscale fractals with random horizontal and vertical flips (LayerMix, Sec. 3.2):
``grayscale=True`` and ``sample(..., flip=True)``.

A bank is built once per process: the same arguments return the same object, and built images
are kept in an on-disk cache (``$RAYMIX_CACHE_DIR/fractals``, default ``~/.cache/raymix/fractals``)
that other processes on the machine map read-only instead of building again. A bank pickles as
its recipe, so shipping a transform that holds one to Ray workers or ``DataLoader`` workers costs
nothing and each worker rebuilds it from its caches.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torchvision.transforms.v2 import functional as TF

from raymix.io.storage import filesystem
from raymix.fractals.generators import ifs_batch, orbit_trap_batch, to_grayscale
from raymix.ops.rng import sample_seed

__all__ = ["FractalBank", "DEFAULT_BANK_SIZE", "DEFAULT_RESOLUTION", "DEFAULT_RESIZE_RATIO", "KINDS", "cache_dir"]

#: Default number of generated fractals (see docs/fractals.md for the choice).
DEFAULT_BANK_SIZE = 256
#: Default side of the stored square images: PixMix resizes fractals to 256 and crops 224 on ImageNet.
DEFAULT_RESOLUTION = 256
#: PixMix resizes a fractal to ``8/7`` of the crop (``Resize(256)`` then ``RandomCrop(224)`` on
#: ImageNet, ``Resize(36)``/``RandomCrop(32)`` on CIFAR) before cropping at random.
DEFAULT_RESIZE_RATIO = 256 / 224
#: Generator kinds: IFS chaos game and escape-time orbit traps.
KINDS = ("ifs", "orbit")

# Bumped whenever generated images or the cache layout change, so stale caches are never read.
_CACHE_VERSION = 1
# Candidates per generator call; part of the recipe (changing it changes the images).
_CHUNK = {"ifs": 16, "orbit": 8}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

_banks: dict[str, FractalBank] = {}
_banks_lock = threading.Lock()


def cache_dir() -> Path:
    """Where built banks are cached: ``$RAYMIX_CACHE_DIR/fractals``, else ``~/.cache/raymix/fractals``."""
    root = os.environ.get("RAYMIX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "raymix")
    return Path(root) / "fractals"


class FractalBank:
    """``N`` fractal images of one square size, and per-sample draws from them.

    ``images`` is ``uint8`` ``(N, 3, S, S)`` (for a grayscale bank, a view with three equal
    channels); ``ids`` are stable names: ``"ifs-000123"``/``"orbit-000045"`` for generated banks
    (the index within that generator's stream for the bank's seed and size), the file's path
    relative to the folder for folder banks. ``skipped`` lists ``(path, reason)`` for files that
    could not be read. Treat a bank as read-only: the same object is shared within a process.
    """

    def __init__(
        self,
        images: torch.Tensor,
        ids: Sequence[str],
        *,
        skipped: Sequence[tuple[str, str]] = (),
        recipe: dict | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, 1 or 3, S, S), got {images.dtype} {tuple(images.shape)}")
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"images must be square, got {tuple(images.shape[-2:])}")
        if len(ids) != images.shape[0]:
            raise ValueError(f"{len(ids)} ids for {images.shape[0]} images")
        if images.shape[0] == 0:
            raise ValueError("a fractal bank needs at least one image")
        self._stored = images  # (N, 1, S, S) for grayscale banks, else (N, 3, S, S)
        self.ids: list[str] = list(ids)
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.recipe = recipe
        self._resized: dict[int, torch.Tensor] = {}
        self._resized_lock = threading.Lock()

    # -- contents ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._stored.shape[0]

    def __repr__(self) -> str:
        kind = "grayscale" if self.grayscale else "colour"
        return f"FractalBank({len(self)} {kind} images of {self.resolution}x{self.resolution})"

    @property
    def images(self) -> torch.Tensor:
        """``uint8`` ``(N, 3, S, S)``."""
        s = self._stored
        return s.expand(-1, 3, -1, -1) if s.shape[1] == 1 else s

    @property
    def grayscale(self) -> bool:
        return self._stored.shape[1] == 1

    @property
    def resolution(self) -> int:
        return self._stored.shape[-1]

    # -- sampling ------------------------------------------------------------------------------

    def sample(
        self,
        generators: Sequence[torch.Generator],
        size: tuple[int, int],
        flip: bool = False,
        *,
        resize_ratio: float = DEFAULT_RESIZE_RATIO,
        channels_last: bool = False,
    ) -> tuple[torch.Tensor, list[str]]:
        """One fractal per generator, as ``uint8`` ``(N, 3, H, W)``, and their ids.

        ``channels_last=True`` gives the same values in channels-last memory (what the mixing
        kernels work in), cropped from a channels-last copy of the bank instead of converted
        afterwards.

        PixMix style: the fractal (chosen uniformly) is resized to ``R x R`` with
        ``R = ceil(max(H, W) * resize_ratio)`` (256 for 224 crops) and cropped at a uniform random
        position; with ``flip`` it is also flipped horizontally and vertically, each with
        probability 1/2 (LayerMix, Sec. 3.2). Each generator is advanced by exactly one
        ``torch.rand(4)`` draw, flip or not, so a sample's fractal depends only on its generator.
        """
        H, W = int(size[0]), int(size[1])
        if H < 1 or W < 1:
            raise ValueError(f"size must be positive, got {size}")
        n = len(generators)
        R = max(H, W, int(np.ceil(max(H, W) * resize_ratio - 1e-9)))
        source = self._at_resolution(R)
        C = source.shape[1]
        if n == 0:
            return torch.empty((0, 3, H, W), dtype=torch.uint8), []
        u = _draw(generators)
        index = self._index(u)
        top = (u[:, 1] * (R - H + 1)).long().clamp_(max=R - H)
        left = (u[:, 2] * (R - W + 1)).long().clamp_(max=R - W)
        if source.shape[-1] == R and channels_last:
            hwc = self._channels_last(R)
            crops = torch.stack([hwc[i, t : t + H, l : l + W] for i, t, l in
                                 zip(index.tolist(), top.tolist(), left.tolist(), strict=True)]).permute(0, 3, 1, 2)
        elif source.shape[-1] == R:
            crops = torch.stack([source[i, :, t : t + H, l : l + W] for i, t, l in
                                 zip(index.tolist(), top.tolist(), left.tolist(), strict=True)])
        else:  # resized on the fly (only when upscaling): resize the chosen ones in one call
            chosen = TF.resize(source[index], [R, R], antialias=True)
            crops = torch.stack([chosen[k, :, t : t + H, l : l + W] for k, (t, l) in
                                 enumerate(zip(top.tolist(), left.tolist(), strict=True))])
        if flip:
            hflip = u[:, 3] < 0.5
            vflip = (u[:, 3] * 2) % 1.0 < 0.5
            crops[hflip] = crops[hflip].flip(-1)  # crops is a fresh tensor: flip in place
            crops[vflip] = crops[vflip].flip(-2)
        memory = torch.channels_last if channels_last else torch.contiguous_format
        if C == 1:
            crops = crops.expand(-1, 3, -1, -1)
        return crops.contiguous(memory_format=memory), [self.ids[i] for i in index.tolist()]

    def ids_for(self, generators: Sequence[torch.Generator]) -> list[str]:
        """The ids of the fractals :meth:`sample` picks for ``generators`` (each advanced by the
        same one draw), without cropping any pixels: what a method records as provenance."""
        if not generators:
            return []
        return [self.ids[i] for i in self._index(_draw(generators)).tolist()]

    def _index(self, u: torch.Tensor) -> torch.Tensor:
        return (u[:, 0] * len(self)).long().clamp_(max=len(self) - 1)

    def _channels_last(self, R: int) -> torch.Tensor:
        """``(N, R, R, C)``: the images at ``R x R`` stored channels-last, built once per process."""
        source = self._at_resolution(R)
        with self._resized_lock:
            key = ("hwc", R)
            if key not in self._resized:
                self._resized[key] = source.permute(0, 2, 3, 1).contiguous()
            return self._resized[key]

    def _at_resolution(self, R: int) -> torch.Tensor:
        """The stored images at ``R x R``: resized once and kept when that does not need more memory
        (``R <= S``); for ``R > S`` the stored images are returned and ``sample`` resizes its picks."""
        S = self.resolution
        if R == S or R > S:
            return self._stored
        with self._resized_lock:
            if R not in self._resized:
                out = torch.empty((len(self), self._stored.shape[1], R, R), dtype=torch.uint8)
                for start in range(0, len(self), 256):
                    out[start : start + 256] = TF.resize(self._stored[start : start + 256], [R, R], antialias=True)
                self._resized[R] = out
            return self._resized[R]

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        n: int = DEFAULT_BANK_SIZE,
        size: int = DEFAULT_RESOLUTION,
        seed: int = 0,
        kinds: Sequence[str] = KINDS,
        grayscale: bool = False,
        *,
        cache: bool = True,
    ) -> FractalBank:
        """``n`` procedural fractals of ``size x size``, deterministic in ``(n, size, seed, kinds)``.

        Image ``i`` comes from generator ``kinds[i % len(kinds)]``; each generator draws from its
        own stream seeded by ``(seed, kind, chunk)``, so a smaller bank is a subset of a larger
        one with the same seed and ids name the same images. ``grayscale`` converts with
        ITU-R 601 luma. ``cache=False`` skips the on-disk cache (the process cache always applies).
        """
        kinds = tuple(kinds)
        unknown = set(kinds) - set(KINDS)
        if not kinds or unknown:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
        if n < 1 or size < 8:
            raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
        recipe = {"source": "generated", "n": int(n), "size": int(size), "seed": int(seed),
                  "kinds": list(kinds), "grayscale": bool(grayscale)}
        return _shared(recipe, cache, lambda: _generate(int(n), int(size), int(seed), kinds))

    @classmethod
    def from_folder(
        cls,
        uri: str,
        size: int = DEFAULT_RESOLUTION,
        grayscale: bool = False,
        storage_options: dict | None = None,
        *,
        cache: bool = True,
    ) -> FractalBank:
        """Every image under ``uri`` (recursively, sorted by path), resized so the short side is
        ``size`` and centre-cropped to ``size x size``. Files that do not decode are skipped with a
        warning and listed in ``skipped``; files without an image suffix are ignored.
        ``storage_options`` add to the environment's (see :mod:`raymix.io.storage`)."""
        fs, root = filesystem(str(uri), storage_options)
        listing = _list_images(fs, root)
        if not listing:
            raise FileNotFoundError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) under {uri}")
        recipe = {"source": "folder", "uri": str(uri), "size": int(size), "grayscale": bool(grayscale),
                  "storage_options": storage_options}
        fingerprint = [[rel, info] for rel, _, info in listing]
        return _shared(recipe, cache, lambda: _read_folder(fs, listing, int(size), str(uri)), fingerprint)

    @classmethod
    def load(
        cls,
        spec: str | None = None,
        *,
        size: int = DEFAULT_RESOLUTION,
        seed: int = 0,
        grayscale: bool = False,
        storage_options: dict | None = None,
    ) -> FractalBank:
        """A bank from a user-facing spec: ``None`` or ``"generated"`` (:data:`DEFAULT_BANK_SIZE`
        generated fractals), ``"generated:N"``, or a folder URI (see :meth:`from_folder`)."""
        if spec is None or spec == "generated":
            return cls.generate(DEFAULT_BANK_SIZE, size, seed, grayscale=grayscale)
        if spec.startswith("generated:"):
            count = spec.split(":", 1)[1]
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"bad fractal spec {spec!r}: expected 'generated:N' with N >= 1")
            return cls.generate(int(count), size, seed, grayscale=grayscale)
        return cls.from_folder(spec, size, grayscale, storage_options)

    def __reduce__(self):
        if self.recipe is not None:
            return (_from_recipe, (self.recipe,))
        return (_from_tensors, (self._stored, self.ids, self.skipped))


# ------------------------------------------------------------------------------------------------
# Building


def _draw(generators: Sequence[torch.Generator]) -> torch.Tensor:
    """``(n, 4)`` float64 uniforms, one ``torch.rand(4)`` per generator: fractal, top, left, flip."""
    return torch.stack([torch.rand(4, generator=g, device=g.device).cpu() for g in generators]).to(torch.float64)


@contextlib.contextmanager
def _one_thread():
    """Run torch on one thread: the generators' ops are small (one image plane), so more threads
    gain little, and on a busy machine each op would wait for a descheduled helper thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _generate(n: int, size: int, seed: int, kinds: tuple[str, ...]) -> tuple[torch.Tensor, list[str], list]:
    per_kind = {k: len(range(j, n, len(kinds))) for j, k in enumerate(kinds)}
    with _one_thread():
        made = {k: _kind_stream(k, per_kind[k], size, seed) for k in kinds if per_kind[k]}
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    ids = []
    for i in range(n):
        kind, j = kinds[i % len(kinds)], i // len(kinds)
        images[i] = made[kind][j]
        ids.append(f"{kind}-{j:06d}")
    return images, ids, []


def _kind_stream(kind: str, count: int, size: int, seed: int) -> torch.Tensor:
    """The first ``count`` accepted images of generator ``kind``, chunk by chunk; chunk ``c`` uses a
    generator seeded by ``(seed, "fractals/" + kind, c)``, so the stream does not depend on ``count``."""
    out, have, chunk = [], 0, 0
    while have < count:
        g = torch.Generator().manual_seed(sample_seed(seed, f"fractals/{kind}", replica=chunk))
        batch = ifs_batch if kind == "ifs" else orbit_trap_batch
        images = batch(_CHUNK[kind], size, g).images
        out.append(images)
        have += images.shape[0]
        chunk += 1
    return torch.cat(out)[:count]


def _list_images(fs, root: str) -> list[tuple[str, str, str]]:
    """``(relative path, full path, fingerprint)`` of image files under ``root``, sorted."""
    found = fs.find(root, detail=True)
    root = root.rstrip("/")
    out = []
    for path, info in found.items():
        if info.get("type", "file") != "file" or not path.lower().endswith(_IMAGE_SUFFIXES):
            continue
        rel = posixpath.relpath(path, root) if path != root else posixpath.basename(path)
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        out.append((rel, path, f"{info.get('size')}:{stamp}"))
    return sorted(out)


def _decode(data: bytes, size: int) -> torch.Tensor:
    """Decode, resize the short side to ``size`` and centre-crop: ``uint8`` ``(3, size, size)``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when the file is large
        img = img.convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def _read_folder(fs, listing, size: int, uri: str) -> tuple[torch.Tensor, list[str], list]:
    images, ids, skipped = [], [], []
    for start in range(0, len(listing), 64):
        part = listing[start : start + 64]
        blobs = fs.cat([path for _, path, _ in part], on_error="return")
        for rel, path, _ in part:
            data = blobs.get(path)
            try:
                if isinstance(data, BaseException):
                    raise data
                if data is None:
                    raise FileNotFoundError(path)
                images.append(_decode(data, size))
                ids.append(rel)
            except Exception as err:  # noqa: BLE001 - any unreadable file is skipped and reported
                skipped.append((rel, f"{type(err).__name__}: {err}"))
    if not images:
        raise ValueError(f"none of the {len(listing)} image files under {uri} could be read")
    return torch.stack(images), ids, skipped


# ------------------------------------------------------------------------------------------------
# Caches: one object per recipe in a process; built images on disk for the other processes


def _key(recipe: dict, fingerprint=None) -> str:
    disk = {k: v for k, v in recipe.items() if k not in ("grayscale", "storage_options")}
    text = json.dumps({"v": _CACHE_VERSION, "recipe": disk, "files": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _shared(recipe: dict, use_disk: bool, build, fingerprint=None) -> FractalBank:
    """The process's bank for ``recipe``; built (or read from the disk cache) on first use.

    A grayscale bank is cached as its own file, made from the colour one (read or built)."""
    key = _key(recipe, fingerprint)
    pkey = f"{key}:{recipe['grayscale']}"
    with _banks_lock:
        bank = _banks.get(pkey)
    if bank is not None:
        return bank

    def colour():
        return _cached(key, build) if use_disk else build()

    def gray():
        images, ids, skipped = colour()
        return to_grayscale(images), ids, skipped

    if not recipe["grayscale"]:
        images, ids, skipped = colour()
    else:
        images, ids, skipped = _cached(f"{key}-gray", gray) if use_disk else gray()
    if skipped:
        where = recipe.get("uri", "the fractal folder")
        warnings.warn(
            f"skipped {len(skipped)} of {len(ids) + len(skipped)} fractal files under {where} that could not "
            f"be read, e.g. {skipped[0][0]} ({skipped[0][1]}); see FractalBank.skipped",
            stacklevel=3,
        )
    bank = FractalBank(images, ids, skipped=skipped, recipe=recipe)
    with _banks_lock:
        return _banks.setdefault(pkey, bank)


def _cached(key: str, build):
    """Images from ``<cache>/<key>.npy`` (memory-mapped copy-on-write, so processes share pages)
    with ids in ``<key>.json``; built under a file lock by the first process that needs them and
    written atomically (temporary name, then rename; the JSON last, as the commit mark)."""
    root = cache_dir()
    npy, meta = root / f"{key}.npy", root / f"{key}.json"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(root / f"{key}.lock"):
            hit = _read_cache(npy, meta)
            if hit is not None:
                return hit
            images, ids, skipped = build()
            tmp = f".{os.getpid()}.{threading.get_ident()}.tmp"
            with open(str(npy) + tmp, "wb") as f:
                np.save(f, images.numpy())
            os.replace(str(npy) + tmp, npy)
            with open(str(meta) + tmp, "w") as f:
                json.dump({"ids": ids, "skipped": skipped, "created": time.time()}, f)
            os.replace(str(meta) + tmp, meta)
            return _read_cache(npy, meta) or (images, ids, skipped)
    except OSError as err:
        warnings.warn(f"fractal cache at {root} unusable ({err}); building in memory", stacklevel=3)
        return build()


def _read_cache(npy: Path, meta: Path):
    if not (meta.exists() and npy.exists()):
        return None
    try:
        info = json.loads(meta.read_text())
        array = np.load(npy, mmap_mode="c")
    except (OSError, ValueError):
        return None
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] not in (1, 3):
        return None
    if array.shape[0] != len(info["ids"]):
        return None
    return torch.from_numpy(array), info["ids"], [tuple(s) for s in info["skipped"]]


def _from_recipe(recipe: dict) -> FractalBank:
    if recipe["source"] == "generated":
        return FractalBank.generate(recipe["n"], recipe["size"], recipe["seed"], recipe["kinds"], recipe["grayscale"])
    return FractalBank.from_folder(recipe["uri"], recipe["size"], recipe["grayscale"], recipe["storage_options"])


def _from_tensors(images: torch.Tensor, ids: list[str], skipped: list) -> FractalBank:
    return FractalBank(images, ids, skipped=skipped)
