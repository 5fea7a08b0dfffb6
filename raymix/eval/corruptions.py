"""ImageNet-C's corruptions, applied on the fly with a per-sample seed, or read from a released
tree (ImageNet-C, CIFAR-10-C style: ``corruption/severity/class/image``).

The corruptions are those of ``imagecorruptions`` (Michaelis et al. 2019, the code of
Hendrycks and Dietterich 2019 packaged; the ``imagecorruptions-imaug`` fork that runs all 19
on current numpy and scikit-image). The library draws from numpy's global generator (and from
its own seeds in ``impulse_noise`` and ``glass_blur``), so :func:`corrupt_image` seeds each
call from ``(seed, key, corruption, severity)`` with :func:`raymix.ops.rng.sample_seed`,
inside a saved and restored global state: the same image comes out on any worker, in any
batch, and the caller's global numpy state is untouched.

The corruption parameters are ImageNet-C's, meant for 224 px images (the val centre crop);
CIFAR-10-C used other parameters for 32 px, so for CIFAR read the released CIFAR-10-C.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from raymix import schema
from raymix.eval.metrics import ALL_CORRUPTIONS, SEVERITIES
from raymix.ops.rng import sample_seed

__all__ = ["corrupt_image", "corrupt_batch", "parse_corruptions", "corruption_seed", "plan_corruption_tree",
           "MIN_SIDE"]

#: imagecorruptions needs both sides at least this long.
MIN_SIDE = 32
# corruptions of the library that take their own ``seed`` (they ignore the global generator)
_OWN_SEED = ("impulse_noise", "glass_blur")


def corruption_seed(seed: int, key: str, name: str, severity: int) -> int:
    """The 63-bit seed of one corrupted sample."""
    return sample_seed(seed, key, salt=f"corrupt/{name}/{int(severity)}")


def _check(name: str, severity: int) -> None:
    if name not in ALL_CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(ALL_CORRUPTIONS)}")
    if int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be 1-5, got {severity!r}")


def corrupt_image(image: np.ndarray, name: str, severity: int, *, seed: int, key: str) -> np.ndarray:
    """``image`` (uint8 HxWx3, both sides >= 32) with corruption ``name`` at ``severity``,
    the same for the same ``(seed, key, name, severity)``."""
    from imagecorruptions import corrupt

    _check(name, severity)
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"expected uint8 HxWx3 with sides >= {MIN_SIDE}, got {image.shape}")
    s = corruption_seed(seed, key, name, severity)
    kwargs = {"seed": s} if name in _OWN_SEED else {}
    state = np.random.get_state()
    try:
        np.random.seed(s % 2**32)
        out = corrupt(image, severity=int(severity), corruption_name=name, **kwargs)
    finally:
        np.random.set_state(state)
    out = np.asarray(out, dtype=np.uint8)
    if out.shape != image.shape:  # a few corruptions return a slightly different size on odd shapes
        from PIL import Image

        out = np.asarray(Image.fromarray(out).resize(image.shape[1::-1], Image.BILINEAR))
    return out


def corrupt_batch(batch: dict[str, np.ndarray], *, name: str, severity: int, seed: int) -> dict[str, np.ndarray]:
    """Ray Data stage: corrupt ``batch["image"]`` (uint8 NHWC) row by row, keyed by ``key``;
    a row that fails keeps its image and gets a ``reason`` (``corrupt:...``)."""
    _check(name, severity)
    images = np.asarray(batch[schema.IMAGE])
    keys = batch[schema.KEY]
    n = len(keys)
    reasons = np.array(batch[schema.REASON] if schema.REASON in batch else [""] * n, dtype=object)
    out = np.empty_like(images)
    for i in range(n):
        if reasons[i]:
            out[i] = images[i]
            continue
        try:
            out[i] = corrupt_image(images[i], name, severity, seed=seed, key=str(keys[i]))
        except Exception as err:  # noqa: BLE001 - a bad row is reported, the run goes on
            out[i] = images[i]
            reasons[i] = f"corrupt:{type(err).__name__}: {err}"
    return {**batch, schema.IMAGE: out, schema.REASON: reasons}


def parse_corruptions(names: Sequence[str] | str, severities: Sequence[int | str] | str) -> list[tuple[str, int]]:
    """``(corruption, severity)`` pairs from names (``"all"``: the 19, ``"common"``: ImageNet-C's
    15, ``"extra"``: the 4 others, or names) and severities, in the given order."""
    from raymix.eval.metrics import CORRUPTIONS, EXTRA_CORRUPTIONS

    groups = {"all": ALL_CORRUPTIONS, "common": CORRUPTIONS, "extra": EXTRA_CORRUPTIONS}
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    out_names: list[str] = []
    for n in names:
        for name in groups.get(n.strip(), (n.strip(),)):
            if name not in out_names:
                out_names.append(name)
    if isinstance(severities, str):
        severities = [s for s in severities.split(",") if s]
    sev = []
    for s in severities:
        s = str(s).strip()
        if "-" in s:
            lo, hi = (int(v) for v in s.split("-"))
            sev.extend(range(lo, hi + 1))
        else:
            sev.append(int(s))
    pairs = [(n, s) for n in out_names for s in dict.fromkeys(sev)]
    for n, s in pairs:
        _check(n, s)
    return pairs


def plan_corruption_tree(uri: str, pairs: Sequence[tuple[str, int]] | None = None, *,
                         classes: Sequence[str] | str | None = None, storage_options: dict | None = None,
                         **options) -> dict[tuple[str, int], object]:
    """Read plans of a released corrupted set laid out as ``uri/corruption/severity/class/...``
    (ImageNet-C; CIFAR-10-C once unpacked into class folders): one
    :func:`raymix.io.readers.plan_read` per ``(corruption, severity)``, labelled with ``classes``
    (give the clean set's class list so labels agree). ``pairs``: which ones (default: every
    ``corruption/severity`` folder found that names a known corruption)."""
    from raymix.io import storage
    from raymix.io.readers import plan_read

    fs, root = storage.filesystem(uri, storage_options)
    if pairs is None:
        pairs = []
        for entry in sorted(fs.ls(root, detail=False)):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name not in ALL_CORRUPTIONS or not fs.isdir(entry):
                continue
            for sub in sorted(fs.ls(entry, detail=False)):
                s = sub.rstrip("/").rsplit("/", 1)[-1]
                if s.isdigit() and int(s) in SEVERITIES:
                    pairs.append((name, int(s)))
        pairs.sort(key=lambda p: (ALL_CORRUPTIONS.index(p[0]), p[1]))
        if not pairs:
            raise ValueError(f"no corruption/severity folders under {uri}")
    return {(n, s): plan_read(storage.join(uri, n, str(s)), layout="folder", classes=classes,
                              storage_options=storage_options, key_prefix=f"{n}/{s}/", **options)
            for n, s in pairs}
