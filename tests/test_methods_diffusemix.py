import json

import numpy as np
import pytest
import torch

from fractal_double import ConstantBank, NoiseBank
from freqs import assert_frequencies
from methods_helpers import generators, rows, smooth_images
from raymix.methods import DiffuseMix
from raymix.methods.diffusemix import CODE_MASKS, CODE_SEAM
from raymix.pipeline.rows import MethodStage


def stage(seed=0, keep_intermediates=False, **options):
    return MethodStage("diffusemix", {"fractals": NoiseBank(), **options}, seed=seed,
                       keep_intermediates=keep_intermediates)


def _pair(n=40, size=16):
    x = smooth_images(n, size, seed=1)
    return x, 255 - x.flip(-1)


def test_masks_drawn_uniformly_from_the_four():
    x, e = _pair(2000, 4)
    _, infos = DiffuseMix(fractals=NoiseBank()).augment(x, generators(2000), e)
    assert_frequencies([i["mask"] for i in infos], {m: 0.25 for m in ("left", "right", "top", "bottom")})
    assert all(i["lambda"] == 0.2 and i["seam"] == 0 and i["fractal"] for i in infos)


def test_output_is_the_hybrid_blended_with_the_fractal():
    x, e = _pair(40, 16)
    out, infos = DiffuseMix(fractals=ConstantBank(100)).augment(x, generators(40), e)
    for i, info in enumerate(infos):
        keep = torch.zeros(16, 16, dtype=torch.bool)
        half = {"left": (slice(None), slice(0, 8)), "right": (slice(None), slice(8, 16)),
                "top": (slice(0, 8), slice(None)), "bottom": (slice(8, 16), slice(None))}[info["mask"]]
        keep[half] = True
        hybrid = torch.where(keep, x[i], e[i]).double()
        expected = (0.8 * hybrid + 0.2 * 100 + 0.5).floor()
        assert (out[i].double() - expected).abs().max() <= 1
        assert keep.float().mean() == 0.5  # exactly half of each image


def test_deterministic_and_batch_independent():
    x, e = _pair(9, 16)
    m = DiffuseMix(fractals=NoiseBank())
    whole, infos = m.augment(x, generators(9), e)
    parts = [m.augment(x[i:i + 1], generators(9)[i:i + 1], e[i:i + 1]) for i in range(9)]
    assert torch.equal(whole, torch.cat([p[0] for p in parts])) and infos == [p[1][0] for p in parts]


def test_public_code_variant():
    x, e = _pair(1000, 40)
    m = DiffuseMix(fractals=ConstantBank(0), masks=CODE_MASKS, seam=CODE_SEAM, lam=0.0)
    out, infos = m.augment(x, generators(1000), e)
    assert_frequencies([i["mask"] for i in infos], {"left": 0.5, "top": 0.5})
    i = next(k for k, info in enumerate(infos) if info["mask"] == "left")
    assert torch.equal(out[i, :, :, :10], x[i, :, :, :10]) and torch.equal(out[i, :, :, 30:], e[i, :, :, 30:])


def test_edited_images_of_another_size_are_resized():
    x = smooth_images(2, 16)
    e = smooth_images(2, 32, seed=3)
    out, _ = DiffuseMix(fractals=NoiseBank()).augment(x, generators(2), e)
    assert out.shape == x.shape


def test_augment_and_transform_need_the_edited_image():
    m = DiffuseMix(fractals=NoiseBank())
    x, e = _pair(2, 16)
    with pytest.raises(ValueError):
        m.augment(x, generators(2))
    assert m.augment(x, generators(2), edited=e)[0].shape == x.shape
    with pytest.raises(TypeError):
        m(x[0])
    out = m(x[0], e[0], generator=torch.Generator().manual_seed(0))
    assert out.shape == x[0].shape and out.dtype == torch.uint8


def _edit_rows(n=4, size=16):
    batch = rows(n, size)
    expanded = {k: np.repeat(v, 2, axis=0) for k, v in batch.items()}
    expanded["replica"] = np.tile(np.arange(2, dtype=np.int32), n)
    expanded["edited"] = np.ascontiguousarray(255 - expanded["image"][:, :, ::-1])
    expanded["prompt"] = np.array(["autumn", "snowy"] * n, dtype=object)
    expanded["edit_params"] = np.array(['{"steps": 20}'] * (2 * n), dtype=object)
    return expanded


def test_pipeline_stage_mixes_each_expanded_row_once():
    batch = _edit_rows()
    out = stage(seed=3, keep_intermediates=True)(batch)
    assert len(out["key"]) == 8
    for j in range(8):
        assert out["key"][j] == f"{batch['key'][j]}/diffusemix/{batch['replica'][j]}"
        assert out["label"][j] == batch["label"][j] and out["stage"][j] == ""
        params = json.loads(out["params"][j])
        assert params["prompt"] == batch["prompt"][j] and params["mask"] in ("left", "right", "top", "bottom")
        assert params["lambda"] == 0.2 and params["edit"] == {"steps": 20}
    assert out["generated"].shape == out["hybrid"].shape == out["image"].shape == (8, 16, 16, 3)
    assert np.array_equal(out["generated"], batch["edited"])
    # the hybrid holds exactly half of the original
    same = (out["hybrid"] == batch["image"]).all(axis=3).mean(axis=(1, 2))
    assert (same >= 0.5).all()


def test_almost_white_generations_can_be_quarantined():
    batch = _edit_rows(2)
    batch["edited"] = np.array(batch["edited"])
    batch["edited"][1] = 255
    plain = stage()(batch)
    assert list(plain["stage"]) == [""] * 4
    strict = stage(reject_white=True)(batch)
    assert list(strict["stage"]) == ["", "augment", "", ""]
    assert "white" in strict["reason"][1]
