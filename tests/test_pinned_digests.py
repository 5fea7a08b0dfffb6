"""Pinned output digests: the same seed writes the same bytes, release after release.

Each digest covers every column a method writes for a small batch (images, keys, replicas,
provenance JSON, stage and reason), taken with a real generated fractal bank. A change to a
digest means a change of behaviour: it needs a reason in the CHANGELOG, not a new number.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from methods_helpers import rows, smooth_images

from raymix.ops.rng import sample_generator

PINNED = {
    "pixmix": "b52eeaa5610f6064",
    "ipmix": "b82bc2ace8fe3d13",
    "layermix": "fb82d12d4ad9a5aa",
    "diffusemix": "ccece030969e1209",
    "augmix": "f3a5c8076ee595ba",
    "aga": "ad051f0e3c631942",
    "miamix": "85defbca06cb7e7f",
    "editor-tiny": "cef8c9e6b717a2f7",
    "encode": "af6a95b8f3ab039f",
}


def digest_columns(columns: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(columns):
        values = columns[name]
        h.update(name.encode())
        if isinstance(values, np.ndarray) and values.dtype != object:
            h.update(str(values.dtype).encode() + str(values.shape).encode())
            h.update(np.ascontiguousarray(values).tobytes())
            continue
        for v in values:
            if isinstance(v, np.ndarray):
                h.update(str(v.shape).encode() + np.ascontiguousarray(v).tobytes())
            elif isinstance(v, (bytes, bytearray)):
                h.update(bytes(v))
            elif isinstance(v, dict):
                h.update(repr(sorted(v.items())).encode())
            else:
                h.update(repr(v).encode())
            h.update(b"|")
    return h.hexdigest()[:16]


def input_rows() -> dict:
    """Six decoded rows at 40 px: four fine, one failed upstream, one too small to mix."""
    batch = rows(6, size=40, seed=3, readonly=False)
    batch["reason"][3] = "decode: truncated"
    batch["stage"][3] = "decode"
    images = list(batch["image"])
    images[5] = images[5][:1]
    column = np.empty(6, dtype=object)
    for i, im in enumerate(images):
        column[i] = im
    batch["image"] = column
    return batch


def fractal_bank(grayscale: bool):
    from raymix.fractals import FractalBank

    return FractalBank.load("generated:6", size=48, seed=0, grayscale=grayscale)


def image_method_rows(name: str) -> dict:
    from raymix.pipeline.rows import MethodStage

    stage = MethodStage(name, {"fractals": fractal_bank(name == "layermix")}, seed=11, replicas=2)
    return stage(input_rows())


def diffusemix_rows() -> dict:
    from raymix.pipeline.rows import MethodStage

    batch = rows(4, size=40, seed=5, readonly=False)
    batch["edited"] = np.ascontiguousarray(batch["image"][:, ::-1])
    batch["replica"] = np.array([0, 1, 0, 1], dtype=np.int32)
    batch["source_key"] = batch["key"].copy()
    batch["prompt"] = np.array(["a", "b", "c", "d"], dtype=object)
    return MethodStage("diffusemix", {"fractals": fractal_bank(False)}, seed=4)(batch)


def aga_rows() -> dict:
    """AGA's compositing on rows as its model stages leave them: a background, a blob mask (one
    row rotated and scaled, one flipped only, the rest drawn), a caption and provenance."""
    from raymix.pipeline.rows import MethodStage

    batch = rows(4, size=40, seed=12, readonly=False)
    batch["background"] = np.ascontiguousarray(batch["image"][::-1, ::-1])
    yy, xx = np.mgrid[:40, :40]
    batch["subject_mask"] = np.stack([((xx - 12 - 4 * i) / 9.0) ** 2 + ((yy - 20) / 12.0) ** 2 <= 1 for i in range(4)])
    batch["replica"] = np.array([0, 1, 0, 1], dtype=np.int32)
    batch["source_key"] = batch["key"].copy()
    batch["caption"] = np.array(["A photo of a snowy field at dawn."] * 4, dtype=object)
    batch["subject_params"] = np.array(['{"status": "ok"}'] * 4, dtype=object)
    return MethodStage("aga", {"max_shift": 0.1, "feather": 1.5}, seed=8)(batch)


def augmix_rows() -> dict:
    from raymix.pipeline.rows import MethodStage

    batch = rows(4, size=40, seed=6, readonly=False)
    batch["reason"][1] = "decode: bad"
    out = MethodStage("augmix", seed=2, replicas=2)(batch)
    return {k: out[k] for k in ("image", "key", "source_key", "replica", "label", "reason")}


def miamix_rows() -> dict:
    from raymix.methods.miamix import MiAMix

    x = smooth_images(8, size=32, seed=7).float() / 255
    labels = torch.arange(8) % 4
    mixed, targets = MiAMix(num_classes=4)(x, labels, generator=sample_generator(1, "miamix", 0))
    return {"mixed": mixed.numpy(), "targets": targets.numpy()}


def editor_rows() -> dict:
    from raymix.pipeline.edit_stage import EditStage

    editor = EditStage(model="tiny", seed=3, steps=2, resolution=32)
    batch = rows(3, size=32, seed=8, readonly=False)
    batch["replica"] = np.array([0, 1, 0], dtype=np.int32)
    batch["source_key"] = batch["key"].copy()
    return editor(batch)


def encode_rows() -> dict:
    from raymix.io.decode import encode_batch

    batch = rows(3, size=40, seed=9, readonly=False)
    return encode_batch(batch, quality=95)


PRODUCERS = {
    "pixmix": lambda: image_method_rows("pixmix"),
    "ipmix": lambda: image_method_rows("ipmix"),
    "layermix": lambda: image_method_rows("layermix"),
    "diffusemix": diffusemix_rows,
    "augmix": augmix_rows,
    "aga": aga_rows,
    "miamix": miamix_rows,
    "editor-tiny": editor_rows,
    "encode": encode_rows,
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_same_seed_same_bytes_as_pinned(name):
    assert digest_columns(PRODUCERS[name]()) == PINNED[name]
