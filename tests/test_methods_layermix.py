import pytest
import torch

from fractal_double import NoiseBank
from freqs import assert_frequencies
from methods_helpers import generators, run_many, smooth_images
from raymix.methods import LayerMix
from raymix.methods.layermix import LAYERMIX_CODE_OPS
from raymix.methods.op_tables import LAYERMIX_OPS, map_ops


@pytest.fixture(scope="module")
def sampled():
    method = LayerMix(fractals=NoiseBank(grayscale=True))
    return run_many(method, 3000, size=12)


def test_each_of_the_three_outputs_is_chosen_a_third_of_the_time(sampled):
    _, infos = sampled
    assert_frequencies([i["output"] for i in infos], {1: 1 / 3, 2: 1 / 3, 3: 1 / 3})


def test_blends_are_reweighted_add_multiply_pixel_element(sampled):
    _, infos = sampled
    kinds = [b["kind"] for i in infos for b in i["blends"]]
    assert_frequencies(kinds, {"add": 1 / 3, "multiply": 1 / 3, "pixel": 1 / 6, "element": 1 / 6})


def test_one_op_is_reused_at_every_stage_with_fresh_magnitudes(sampled):
    _, infos = sampled
    assert_frequencies([i["op"] for i in infos], {name: 1 / len(LAYERMIX_OPS) for name in LAYERMIX_OPS})
    fresh = 0
    for info in infos:
        stages = info["stages"]
        assert len(stages) == info["output"] and len(info["blends"]) == info["output"] - 1
        assert all(s["op"] == info["op"] for s in stages)
        if info["op"] == "rotate" and len(stages) > 1:
            fresh += stages[0]["degrees"] != stages[1]["degrees"]
    assert fresh > 0


def test_only_the_third_output_uses_a_fractal(sampled):
    _, infos = sampled
    for info in infos:
        assert (info["fractal"] is not None) == (info["output"] == 3)


def test_paper_hyperparameters_and_dtype(sampled):
    out, infos = sampled
    assert out.dtype == torch.uint8 and out.shape == (3000, 3, 12, 12)
    assert infos[0]["magnitude"] == 8 and infos[0]["beta"] == 3
    a_b = [(b["a"], b["b"]) for i in infos for b in i["blends"] if b["kind"] in ("add", "multiply")]
    assert all((0 < a <= 1 and 0 <= b <= 1) or (1 <= a <= 2 and -1 <= b <= 0) for a, b in a_b)
    rot = [s["degrees"] for i in infos if i["op"] == "rotate" for s in i["stages"]]
    assert max(abs(r) for r in rot) <= 24 and max(abs(r) for r in rot) > 20


def test_first_output_is_the_op_applied_to_the_image():
    method = LayerMix(fractals=NoiseBank(grayscale=True))
    x = smooth_images(40, 16)
    out, infos = method.augment(x, generators(40))
    for i, info in enumerate(infos):
        if info["output"] == 1:
            assert torch.equal(out[i], map_ops([x[i]], info["stages"], LAYERMIX_OPS)[0])


def test_fractals_are_grayscale_and_flipped_by_default():
    assert LayerMix.fractal_grayscale and LayerMix.fractal_flip


def test_code_op_list_and_uniform_blends_are_options():
    method = LayerMix(fractals=NoiseBank(grayscale=True), ops=LAYERMIX_CODE_OPS, blend_weights=(1, 1, 1, 1))
    _, infos = run_many(method, 1500, size=8)
    assert "brightness" not in {i["op"] for i in infos}
    kinds = [b["kind"] for i in infos for b in i["blends"]]
    assert_frequencies(kinds, {k: 0.25 for k in ("add", "multiply", "pixel", "element")})
