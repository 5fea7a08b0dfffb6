"""Real images that ship inside a package: scikit-learn's handwritten digits, as class folders.

``sklearn.datasets.load_digits`` holds the 1,797 8x8 images (10 classes, about 180 each) of
the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin and Kaynak 1998),
inside the scikit-learn wheel: no download. :func:`write_digits` splits them (stratified,
seeded), upsamples each to ``size`` pixels (bicubic; ImageNet-C's corruptions need sides of
at least 32) as grey RGB PNGs, and writes ``OUT/train/<digit>/<i>.png`` and
``OUT/test/<digit>/<i>.png``: the class-folder layout every raymix job reads.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

__all__ = ["write_digits", "digit_images"]


def digit_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, size, size, 3), labels (N,))`` of scikit-learn's digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = np.empty((len(grey), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(grey):
        big = Image.fromarray(image, mode="L").resize((size, size), Image.BICUBIC)
        out[i] = np.asarray(big.convert("RGB"))
    return out, digits.target.astype(np.int64)


def write_digits(out: str, *, size: int = 32, test_fraction: float = 1 / 3, seed: int = 0,
                 limit: int | None = None) -> dict:
    """Write the split to ``out/train`` and ``out/test``; returns the counts and paths.

    ``limit`` keeps that many images in all (stratified; for smoke tests).
    """
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = digit_images(size)
    index = np.arange(len(labels))
    if limit is not None and limit < len(labels):
        index, _ = train_test_split(index, train_size=limit, stratify=labels, random_state=seed)
    train, test = train_test_split(index, test_size=test_fraction, stratify=labels[index], random_state=seed)
    counts = {}
    for split, rows in (("train", np.sort(train)), ("test", np.sort(test))):
        for i in rows:
            folder = os.path.join(out, split, str(int(labels[i])))
            os.makedirs(folder, exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(images[i]).save(buffer, format="PNG")
            with open(os.path.join(folder, f"{int(i):04d}.png"), "wb") as f:
                f.write(buffer.getvalue())
        counts[split] = len(rows)
    return {"train": os.path.join(out, "train"), "test": os.path.join(out, "test"), "rows": counts,
            "classes": 10, "image_size": size}
