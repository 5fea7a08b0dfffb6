import math

import pytest
import torch

from fractal_double import NoiseBank
from freqs import assert_frequencies, assert_mean
from methods_helpers import run_many, smooth_images
from raymix.methods import IPMix
from raymix.ops.blends import BLENDS
from raymix.methods.op_tables import AUGMIX_OPS


@pytest.fixture(scope="module")
def sampled():
    return run_many(IPMix(preset="cifar", fractals=NoiseBank()), 2500, size=32)


def test_presets():
    m = IPMix(fractals=NoiseBank())
    assert (m.k, m.t, m.beta, m.severity) == (3, 3, 4.0, 1.0) and m.patch_sizes == (4, 8, 16, 32, 64, 224)
    c = IPMix(preset="cifar", fractals=NoiseBank())
    assert (c.k, c.t, c.beta, c.severity) == (3, 3, 3.0, 3.0) and c.patch_sizes == (4, 8, 16, 32)


def test_chain_types_and_lengths(sampled):
    _, infos = sampled
    chains = [c for i in infos for c in i["chains"]]
    assert all(len(i["chains"]) == 3 for i in infos)
    assert_frequencies([c["level"] for c in chains], {"image": 0.5, "P": 0.5})
    lengths = [len(c["ops"]) if c["level"] == "image" else len(c["patches"]) for c in chains]
    assert_frequencies(lengths, {n: 0.25 for n in range(4)})


def test_dirichlet_weights_and_beta_skip(sampled):
    _, infos = sampled
    for info in infos:
        assert abs(sum(info["weights"]) - 1) < 1e-9 and min(info["weights"]) >= 0
        assert 0 <= info["skip"] <= 1
    # Dirichlet(1, 1, 1): each weight ~ Beta(1, 2), mean 1/3, sd sqrt(2/36)
    for k in range(3):
        assert_mean([i["weights"][k] for i in infos], 1 / 3, math.sqrt(2 / 36))
    assert_mean([i["weights"][0] ** 2 for i in infos], 1 / 6, 0.2)  # E[w^2] = 2/12 for Beta(1, 2)
    # m ~ Beta(1, 1): uniform
    assert_mean([i["skip"] for i in infos], 0.5, math.sqrt(1 / 12))
    assert_mean([i["skip"] ** 2 for i in infos], 1 / 3, 0.3)


def test_patches_mix_with_fractals_by_four_blends(sampled):
    _, infos = sampled
    patches = [p for i in infos for c in i["chains"] if c["level"] == "P" for p in c["patches"]]
    assert_frequencies([p["kind"] for p in patches], {k: 0.25 for k in BLENDS})
    assert_frequencies([p["shape"] for p in patches], {"square": 0.5, "scar": 0.5})
    assert_frequencies([p["size"] for p in patches], {s: 0.25 for s in (4, 8, 16, 32)})
    assert {p["source"] for p in patches} == {"fractal"}
    ops = [o["op"] for i in infos for c in i["chains"] if c["level"] == "image" for o in c["ops"]]
    assert_frequencies(ops, {n: 1 / len(AUGMIX_OPS) for n in AUGMIX_OPS})


def test_output_is_the_skip_mix_of_the_chains():
    """With every chain empty, (1 - m) x + m * sum w_i x = x."""
    method = IPMix(preset="cifar", fractals=NoiseBank(), t=0)
    x = smooth_images(20, 32)
    out, infos = run_many(method, 20, size=32)
    assert torch.equal(out, x)


def test_public_code_patch_source_option():
    method = IPMix(fractals=NoiseBank(), augmented_patches=True)
    _, infos = run_many(method, 600, size=32)
    patches = [p for i in infos for c in i["chains"] if c["level"] == "P" for p in c["patches"]]
    assert_frequencies([p["source"] for p in patches], {"fractal": 0.5, "augmented": 0.5})
    assert all((p["op"] is not None) == (p["source"] == "augmented") for p in patches)
    sizes = {p["size"] for p in patches}
    assert sizes == {4, 8, 16, 32, 64, 224}


def test_whole_image_patch_is_clamped_to_the_image():
    method = IPMix(fractals=NoiseBank(), patch_sizes=(224,))
    _, infos = run_many(method, 50, size=32)
    boxes = [p["box"] for i in infos for c in i["chains"] if c["level"] == "P" for p in c["patches"]]
    assert boxes and all(b[1] <= 32 and b[3] <= 32 for b in boxes)
    assert any(b == [0, 32, 0, 32] for b in boxes)
