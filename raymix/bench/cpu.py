"""CPU benchmark of the mixing methods on one core.

For each method, one JSON line with:

- ``images_per_s`` -- the batched Ray path (``MethodStage(name)(batch)``, 224x224 ``uint8`` NHWC in and out);
- ``baseline_images_per_s`` -- a straightforward per-image PIL/NumPy implementation of the same
  method in the style of the authors' public code (kept below, in this module);
- ``speedup`` -- their ratio;
- ``stage_vs_codec`` -- time of the full CPU stage on ImageNet-like input (decode a ~500x375 JPEG,
  resize and centre-crop to 224, mix, encode a JPEG; ``raymix.io.decode``'s ``decode_batch`` and
  ``encode_batch``) over the same stage without the method.

Times are CPU time of this process (``time.process_time``) with ``torch.set_num_threads(1)``, so
other load on a shared machine inflates them less than wall time; wall-clock rates are reported
too. Ours, the baseline and both stages run interleaved, repeated, and the median is kept.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import statistics
import time
from collections.abc import Callable

import numpy as np

from raymix import registry

HELP = "mixing methods on one CPU core: batched vs per-image baseline, and cost in a decode/encode stage"

#: The CPU methods with a per-image baseline (``_BASELINES``): the fractal-mixing ones and AGA's
#: compositing (its subject masks stand in as an ellipse per image, its backgrounds as the edit).
METHOD_NAMES = (*registry.method_names(device="cpu", fractals=True), "aga")
SIZE = 224


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines (the default output)")
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES)
    parser.add_argument("--images", type=int, default=64, help="images per timed run")
    parser.add_argument("--batch", type=int, default=32, help="rows per map_batches call")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs; the median is kept")
    parser.add_argument("--fractals", default="generated:64", help="fractal spec for raymix.fractals")
    parser.add_argument("--seed", type=int, default=0)


# --------------------------------------------------------------------------- inputs


def _photo(rng: np.random.Generator, width: int = 500, height: int = 375) -> np.ndarray:
    """A photo-like RGB image: smooth colour fields, edges and fine texture (so JPEG has work)."""
    from PIL import Image

    coarse = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = 40 * np.sin(xx / rng.uniform(3, 12) + yy / rng.uniform(5, 20))[..., None]
    noise = rng.normal(0, 12, (height, width, 3))
    return np.clip(base + stripes + noise, 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _source_rows(jpegs: list[bytes]) -> dict:
    n = len(jpegs)
    data = np.empty(n, dtype=object)
    data[:] = jpegs
    return {
        "key": np.array([f"bench/{i}" for i in range(n)], dtype=object),
        "image": data,
        "label": np.arange(n, dtype=np.int64),
        "class_name": np.array(["c"] * n, dtype=object),
        "source": np.array(["bench"] * n, dtype=object),
    }


def _decode(rows: dict) -> dict:
    """The stage's decode half: JPEG bytes -> 224x224 arrays (resize shorter side, centre crop)."""
    from raymix.io.decode import decode_batch

    return decode_batch(rows, size=SIZE, resize="center_crop")


def _banks(spec: str, seed: int):
    """(colour bank, grayscale bank, description), stored at 256 as PixMix's ImageNet fractals."""
    from raymix.fractals import FractalBank

    return (FractalBank.load(spec, size=256, seed=seed, grayscale=False),
            FractalBank.load(spec, size=256, seed=seed, grayscale=True), spec)


def _bank_pil(bank, n: int, grayscale: bool) -> list:
    """The bank's images as PIL images at 256 for the baselines (as their mixing sets)."""
    import torch
    from PIL import Image

    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    images, _ = bank.sample(gens, (256, 256), flip=False)
    arr = images.permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a).convert("L").convert("RGB") if grayscale else Image.fromarray(a) for a in arr]


# --------------------------------------------------------------------------- baselines
#
# Per-image implementations in the style of the authors' public code: PIL ops and NumPy's global
# random state for PixMix/IPMix (``pixmix_utils.py``, ``IPMix_utils.py``), torchvision v2 ops on
# float tensors for LayerMix (``transforms.py``, ``data.py``), NumPy arrays for DiffuseMix
# (``augment/utils.py``). They run the same configuration as our defaults.


def _int_parameter(level, maxval):
    return int(level * maxval / 10)


def _float_parameter(level, maxval):
    return float(level) * maxval / 10.0


def _sample_level(n):
    return np.random.uniform(low=0.1, high=n)


def _augmix_pil_ops():
    from PIL import Image, ImageOps

    def autocontrast(img, _):
        return ImageOps.autocontrast(img)

    def equalize(img, _):
        return ImageOps.equalize(img)

    def posterize(img, level):
        return ImageOps.posterize(img, 4 - _int_parameter(_sample_level(level), 4))

    def rotate(img, level):
        degrees = _int_parameter(_sample_level(level), 30)
        if np.random.uniform() > 0.5:
            degrees = -degrees
        return img.rotate(degrees, resample=Image.BILINEAR)

    def solarize(img, level):
        return ImageOps.solarize(img, 256 - _int_parameter(_sample_level(level), 256))

    def shear_x(img, level):
        level = _float_parameter(_sample_level(level), 0.3) * (-1 if np.random.uniform() > 0.5 else 1)
        return img.transform(img.size, Image.AFFINE, (1, level, 0, 0, 1, 0), resample=Image.BILINEAR)

    def shear_y(img, level):
        level = _float_parameter(_sample_level(level), 0.3) * (-1 if np.random.uniform() > 0.5 else 1)
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, level, 1, 0), resample=Image.BILINEAR)

    def translate_x(img, level):
        level = _int_parameter(_sample_level(level), img.size[0] / 3) * (-1 if np.random.random() > 0.5 else 1)
        return img.transform(img.size, Image.AFFINE, (1, 0, level, 0, 1, 0), resample=Image.BILINEAR)

    def translate_y(img, level):
        level = _int_parameter(_sample_level(level), img.size[1] / 3) * (-1 if np.random.random() > 0.5 else 1)
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, level), resample=Image.BILINEAR)

    return [autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y, translate_x, translate_y]


def _get_ab(beta):
    if np.random.random() < 0.5:
        a = np.float32(np.random.beta(beta, 1))
        b = np.float32(np.random.beta(1, beta))
    else:
        a = 1 + np.float32(np.random.beta(1, beta))
        b = -np.float32(np.random.beta(1, beta))
    return a, b


def _add(img1, img2, beta):
    a, b = _get_ab(beta)
    img1, img2 = img1 * 2 - 1, img2 * 2 - 1
    out = a * img1 + b * img2
    return (out + 1) / 2


def _multiply(img1, img2, beta):
    a, b = _get_ab(beta)
    img1, img2 = img1 * 2, img2 * 2
    out = (img1**a) * (img2.clip(1e-37) ** b)
    return out / 2


def _random_pixels(img1, img2, beta):
    import torch

    _, h, w = img1.shape
    mask = torch.rand([1, h, w]) < torch.rand([])
    return mask * img1 + (1 - mask.float()) * img2


def _random_elems(img1, img2, beta):
    import torch

    c, h, w = img1.shape
    mask = torch.rand([c, h, w]) < torch.rand([])
    return mask * img1 + (1 - mask.float()) * img2


def _tensor_to_hwc(t) -> np.ndarray:
    return (t * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def _random_crop(img, size=SIZE):
    w, h = img.size
    left, top = random.randint(0, w - size), random.randint(0, h - size)
    return img.crop((left, top, left + size, top + size))


class PixMixBaseline:
    """PixMix per image with PIL ops (``imagenet.py``'s ``pixmix`` and ``augment_input``)."""

    def __init__(self, fractals, k=4, beta=4, severity=1):
        import torchvision.transforms as T

        self.fractals, self.k, self.beta, self.severity = fractals, k, beta, severity
        self.ops = _augmix_pil_ops()
        self.tensorize = T.ToTensor()

    def _augment_input(self, image):
        op = np.random.choice(self.ops)
        return op(image.copy(), self.severity)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch
        from PIL import Image

        orig = Image.fromarray(image)
        mixing_pic = _random_crop(random.choice(self.fractals), orig.size[0])
        if np.random.random() < 0.5:
            mixed = self.tensorize(self._augment_input(orig))
        else:
            mixed = self.tensorize(orig)
        for _ in range(np.random.randint(self.k + 1)):
            if np.random.random() < 0.5:
                aug_image_copy = self.tensorize(self._augment_input(orig))
            else:
                aug_image_copy = self.tensorize(mixing_pic)
            mixed_op = np.random.choice([_add, _multiply])
            mixed = torch.clip(mixed_op(mixed, aug_image_copy, self.beta), 0, 1)
        return _tensor_to_hwc(mixed)


class IPMixBaseline:
    """IPMix per image with PIL ops and PIL patch crops (``IPMix_utils.py``, ``imagenet.py``)."""

    def __init__(self, fractals, k=3, t=3, beta=4, severity=1, patch_sizes=(4, 8, 16, 32, 64, 224)):
        import torchvision.transforms as T

        self.fractals, self.k, self.t, self.beta, self.severity = fractals, k, t, beta, severity
        self.patch_sizes = patch_sizes
        self.ops = _augmix_pil_ops()
        self.tensorize = T.ToTensor()
        self.imageize = T.ToPILImage()

    def _augment_input(self, image):
        op = np.random.choice(self.ops)
        return op(image.copy(), self.severity)

    def _patch_mixing(self, img, mixing_pic, patch_size, mixed_op):
        org_w, org_h = img.size
        patch_size = min(patch_size, org_w, org_h)
        img_copy = img.copy()
        left, top = random.randint(0, org_w - patch_size), random.randint(0, org_h - patch_size)
        if random.random() > 0.5:
            right, bottom = left + patch_size, top + patch_size
        else:
            right, bottom = left + random.randint(2, patch_size), top + random.randint(2, patch_size)
        img_patch = img.crop((left, top, right, bottom))
        mixing_patch = mixing_pic.crop((left, top, right, bottom))
        mixed = mixed_op(self.tensorize(img_patch), self.tensorize(mixing_patch), self.beta).clip(0, 1)
        img_copy.paste(self.imageize(mixed), (left, top))
        return img_copy

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch
        from PIL import Image

        img = Image.fromarray(image)
        mixing_pic = _random_crop(random.choice(self.fractals), img.size[0])
        mixings = [_add, _multiply, _random_pixels, _random_elems]
        ws = np.float32(np.random.dirichlet([1] * self.k))
        m = np.float32(np.random.beta(1, 1))
        mix = torch.zeros_like(self.tensorize(img))
        for i in range(self.k):
            mixed = img.copy()
            if random.choice(["Img", "P"]) == "P":
                for _ in range(np.random.randint(self.t + 1)):
                    mixed = self._patch_mixing(mixed, mixing_pic, random.choice(self.patch_sizes),
                                               random.choice(mixings))
            else:
                for _ in range(np.random.randint(self.t + 1)):
                    mixed = self._augment_input(mixed)
            mix += ws[i] * self.tensorize(mixed)
        return _tensor_to_hwc((1 - m) * self.tensorize(img) + m * mix)


class LayerMixBaseline:
    """LayerMix per image with torchvision v2 ops on float tensors (``transforms.py``, ``data.py``)."""

    def __init__(self, fractals, magnitude=8, beta=3):
        import torch
        import torchvision.transforms.v2 as T2
        import torchvision.transforms.v2.functional as F
        from torchvision.transforms.v2 import InterpolationMode

        self.fractals, self.magnitude, self.beta = fractals, magnitude, beta
        self.to_tensor = T2.Compose([T2.ToImage(), T2.ToDtype(torch.float32, scale=True)])

        def rm(max_val, m, negative=True):
            level = random.uniform(0.1, max_val * m / 10.0)
            return -level if negative and random.random() < 0.5 else level

        def affine(img, translate=(0, 0), shear=(0, 0)):
            return F.affine(img, angle=0, translate=list(translate), scale=1, shear=list(shear),
                            interpolation=InterpolationMode.BILINEAR)

        self.ops = [
            lambda img, m: F.equalize(img),
            lambda img, m: F.rgb_to_grayscale(img, num_output_channels=3),
            lambda img, m: F.autocontrast(img),
            lambda img, m: F.rotate(img, rm(30, m), interpolation=InterpolationMode.BILINEAR),
            lambda img, m: F.adjust_brightness(img, rm(0.9, m) + 1.0),
            lambda img, m: F.posterize(img, 4 - int(rm(4, m, negative=False))),
            lambda img, m: F.solarize(img, rm(1, m, negative=False)),
            lambda img, m: affine(img, shear=(math.degrees(math.atan(rm(0.3, m))), 0)),
            lambda img, m: affine(img, shear=(0, math.degrees(math.atan(rm(0.3, m))))),
            lambda img, m: affine(img, translate=(rm(int(img.shape[2] * 0.33), m), 0)),
            lambda img, m: affine(img, translate=(0, rm(int(img.shape[1] * 0.33), m))),
        ]
        self.blends = [_add, _multiply, _add, _multiply, _random_pixels, _random_elems]

    def _mixing_pic(self):
        from PIL import Image

        # The mixing set's transforms (RandomCrop, RandomHorizontalFlip, RandomVerticalFlip) act on
        # the PIL image; the dataset then converts it to a float tensor.
        pic = _random_crop(random.choice(self.fractals))
        if random.random() < 0.5:
            pic = pic.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if random.random() < 0.5:
            pic = pic.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        return self.to_tensor(pic)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        img = self.to_tensor(image)
        mixing_pic = self._mixing_pic()
        step = torch.randint(3, (1,)).item()
        img_copy = img.clone()
        aug_fn = random.choice(self.ops)
        img = aug_fn(img, self.magnitude)
        if step >= 1:
            img_2 = aug_fn(img_copy, self.magnitude)
            img = torch.clip(random.choice(self.blends)(img, img_2, self.beta), 0, 1)
        if step == 2:
            img = torch.clip(random.choice(self.blends)(img, mixing_pic, self.beta), 0, 1)
            img = aug_fn(img, self.magnitude)
        return _tensor_to_hwc(img)


class DiffuseMixBaseline:
    """DiffuseMix mixing per image with NumPy masks and a PIL fractal (``augment/utils.py``),
    binary masks and the four halves as in the paper."""

    def __init__(self, fractals, lam=0.20):
        self.fractals = [f.resize((SIZE, SIZE)) for f in fractals]
        self.lam = lam

    def combine_images(self, original_img, augmented_img):
        from PIL import Image

        width, height = original_img.size
        choice = random.choice(["left", "right", "top", "bottom"])
        if choice in ("top", "bottom"):
            mask = np.vstack([np.zeros((height // 2, width)), np.ones((height - height // 2, width))])
        else:
            mask = np.hstack([np.zeros((height, width // 2)), np.ones((height, width - width // 2))])
        if choice in ("right", "bottom"):
            mask = 1 - mask
        mask = np.tile(mask[:, :, np.newaxis], (1, 1, 3))
        original_array = np.array(original_img, dtype=np.float32) / 255.0
        augmented_array = np.array(augmented_img, dtype=np.float32) / 255.0
        blended = (1 - mask) * original_array + mask * augmented_array
        return Image.fromarray(np.clip(blended * 255, 0, 255).astype(np.uint8))

    def blend_images_with_resize(self, base_img, overlay_img):
        overlay = overlay_img.resize(base_img.size)
        base_array = np.array(base_img, dtype=np.float32)
        overlay_array = np.array(overlay, dtype=np.float32)
        blended = (1 - self.lam) * base_array + self.lam * overlay_array
        return np.clip(blended, 0, 255).astype(np.uint8)

    def __call__(self, image: np.ndarray, edited: np.ndarray) -> np.ndarray:
        from PIL import Image

        combined = self.combine_images(Image.fromarray(image), Image.fromarray(edited))
        return self.blend_images_with_resize(combined, random.choice(self.fractals))


class AGABaseline:
    """AGA compositing per image with PIL (the paper has no code): flip, rotate and scale the image
    and its mask about the subject's box centre, then ``Image.paste`` on the background."""

    def __init__(self, *_, max_angle=15.0, scale=(0.8, 1.2)):
        self.max_angle, self.scale = max_angle, scale

    def __call__(self, image: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from PIL import Image, ImageOps

        img, m = Image.fromarray(image), Image.fromarray(mask.astype(np.uint8) * 255)
        if random.random() < 0.5:
            img, m = ImageOps.mirror(img), ImageOps.mirror(m)
        ys, xs = np.nonzero(mask)
        cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        angle, s = random.uniform(-self.max_angle, self.max_angle), random.uniform(*self.scale)
        a, b = math.cos(math.radians(angle)) / s, math.sin(math.radians(angle)) / s  # inverse map
        matrix = (a, b, cx - a * cx - b * cy, -b, a, cy + b * cx - a * cy)
        img = img.transform(img.size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR)
        m = m.transform(m.size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR)
        out = Image.fromarray(background).resize(img.size)
        out.paste(img, (0, 0), m.point(lambda v: 255 if v >= 128 else 0))
        return np.asarray(out)


#: Method class name -> its per-image baseline.
_BASELINES = {"PixMix": PixMixBaseline, "IPMix": IPMixBaseline, "LayerMix": LayerMixBaseline,
              "DiffuseMix": DiffuseMixBaseline, "AGA": AGABaseline}


def _ellipse_mask(h: int, w: int) -> np.ndarray:
    """A subject mask: the centred ellipse over half of each side."""
    yy, xx = np.mgrid[:h, :w]
    return ((xx - w / 2) / (w / 4)) ** 2 + ((yy - h / 2) / (h / 4)) ** 2 <= 1


# --------------------------------------------------------------------------- timing


def _cpu_and_wall(fn: Callable[[], object]) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def _with_edits(batch: dict, edited: list[np.ndarray] | None, method=None) -> dict:
    """The batch a pair method's stage gets: its second image (and a mask, for AGA) per row."""
    if edited is not None:
        n = len(batch["key"])
        batch = dict(batch)
        batch[method.pair_column] = np.stack(edited)
        batch["replica"] = np.zeros(n, dtype=np.int32)
        batch[method.prompt_column] = np.array(["autumn"] * n, dtype=object)
        if method.mask_column:
            h, w = batch["image"].shape[1:3]
            batch[method.mask_column] = np.repeat(_ellipse_mask(h, w)[None], n, axis=0)
    return batch


def _batches(decoded: dict, edited, batch_size, method=None):
    n = len(decoded["key"])
    for start in range(0, n, batch_size):
        part = {k: v[start:start + batch_size] for k, v in decoded.items()}
        yield _with_edits(part, None if edited is None else edited[start:start + batch_size], method)


def _build(name: str, colour, gray, seed: int):
    from raymix.pipeline.rows import MethodStage

    entry = registry.method(name)
    cls = entry.load()
    options = {"fractals": gray if cls.fractal_grayscale else colour} if entry.fractals else {}
    return MethodStage(name, options, seed=seed)


def _baseline(method, colour_pil, gray_pil):
    """The per-image reference implementation of ``method`` (by its class), on PIL fractals."""
    baseline = _BASELINES[type(method).__name__]
    return baseline(gray_pil if method.fractal_grayscale else colour_pil)


def bench_method(name: str, *, decoded, edited, jpegs, colour, gray, colour_pil, gray_pil, batch: int,
                 repeats: int, seed: int) -> dict:
    from raymix.io.decode import encode_batch

    method = _build(name, colour, gray, seed)
    baseline = _baseline(method.method, colour_pil, gray_pil)
    needs_edit = registry.method(name).kind == "pair"
    ed = edited if needs_edit else None
    images = list(decoded["image"])

    batches = list(_batches(decoded, ed, batch, method.method))  # the method's input, built before timing
    mask = _ellipse_mask(*images[0].shape[:2]) if method.method.mask_column else None

    def ours():
        for b in batches:
            method(b)

    def theirs():
        for i, im in enumerate(images):
            if mask is not None:
                baseline(im, edited[i], mask)
            else:
                baseline(im, edited[i]) if needs_edit else baseline(im)

    def stage(mix: bool):
        def run_stage():
            for start in range(0, len(jpegs), batch):
                rows = _decode(_source_rows(jpegs[start:start + batch]))
                if mix:
                    rows = method(_with_edits(rows, ed[start:start + batch] if ed is not None else None,
                                              method.method))
                encode_batch(rows)
        return run_stage

    runs = {"ours": ours, "baseline": theirs, "codec": stage(False), "stage": stage(True)}
    for fn in runs.values():  # warm-up: fractal bank, lazy imports, allocator
        fn()
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    wall: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            c, w = _cpu_and_wall(fn)
            cpu[key].append(c)
            wall[key].append(w)
    n = len(images)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    wmed = {k: statistics.median(v) for k, v in wall.items()}
    speedup = med["baseline"] / med["ours"]
    stage_ratio = med["stage"] / med["codec"]
    return {
        "suite": "cpu",
        "method": name,
        "images_per_s": round(n / med["ours"], 1),
        "baseline_images_per_s": round(n / med["baseline"], 1),
        "speedup": round(speedup, 2),
        "stage_vs_codec": round(stage_ratio, 3),
        "codec_images_per_s": round(n / med["codec"], 1),
        "stage_images_per_s": round(n / med["stage"], 1),
        "wall_images_per_s": round(n / wmed["ours"], 1),
        "wall_baseline_images_per_s": round(n / wmed["baseline"], 1),
        "wall_stage_vs_codec": round(wmed["stage"] / wmed["codec"], 3),
        "targets": {"speedup>=5": speedup >= 5, "stage_vs_codec<=1.5": stage_ratio <= 1.5},
        "timer": "process_time",
        "threads": 1,
        "images": n,
        "batch": batch,
        "repeats": repeats,
    }


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    np.random.seed(args.seed)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    photos = [_photo(rng) for _ in range(16)]
    jpegs = [_jpeg(photos[i % len(photos)]) for i in range(args.images)]
    decoded = _decode(_source_rows(jpegs))
    edited = [np.ascontiguousarray(255 - im[:, ::-1]) for im in decoded["image"]]  # stands in for an edit
    colour, gray, fractal_source = _banks(args.fractals, args.seed)
    colour_pil, gray_pil = _bank_pil(colour, 16, False), _bank_pil(gray, 16, True)
    for name in args.methods:
        result = bench_method(name, decoded=decoded, edited=edited, jpegs=jpegs, colour=colour, gray=gray,
                              colour_pil=colour_pil, gray_pil=gray_pil, batch=args.batch,
                              repeats=args.repeats, seed=args.seed)
        result["fractals"] = fractal_source
        print(json.dumps(result), flush=True)
    return 0
