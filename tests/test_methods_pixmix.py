import pytest
import torch

from fractal_double import NoiseBank
from freqs import assert_frequencies
from methods_helpers import run_many, smooth_images
from raymix.methods import PixMix
from raymix.methods.op_tables import AUGMIX_ALL_OPS, AUGMIX_OPS


@pytest.fixture(scope="module")
def sampled():
    return run_many(PixMix(fractals=NoiseBank()), 3000, size=12)


def test_imagenet_defaults_and_cifar_preset():
    m = PixMix(fractals=NoiseBank())
    assert (m.k, m.beta, m.severity, m.fractal_size) == (4, 4.0, 1.0, None)
    c = PixMix(preset="cifar", fractals=NoiseBank())
    assert (c.k, c.beta, c.severity) == (4, 3.0, 3.0)
    assert PixMix(preset="cifar", beta=5, fractals=NoiseBank()).beta == 5


def test_start_rounds_sources_and_blends_follow_pixmix(sampled):
    _, infos = sampled
    assert_frequencies([i["start"] is not None for i in infos], {True: 0.5, False: 0.5})
    assert_frequencies([len(i["rounds"]) for i in infos], {n: 1 / 5 for n in range(5)})
    rounds = [r for i in infos for r in i["rounds"]]
    assert_frequencies([r["source"] for r in rounds], {"augmented": 0.5, "fractal": 0.5})
    assert_frequencies([r["kind"] for r in rounds], {"add": 0.5, "multiply": 0.5})
    for r in rounds:
        assert (r["op"] is not None) == (r["source"] == "augmented")


def test_ops_are_the_augmix_set_drawn_uniformly(sampled):
    _, infos = sampled
    names = [i["start"]["op"] for i in infos if i["start"]] + [r["op"]["op"] for i in infos for r in i["rounds"]
                                                                 if r["op"]]
    assert_frequencies(names, {n: 1 / len(AUGMIX_OPS) for n in AUGMIX_OPS})


def test_fractal_recorded_exactly_when_used(sampled):
    _, infos = sampled
    for info in infos:
        assert (info["fractal"] is not None) == any(r["source"] == "fractal" for r in info["rounds"])


def test_no_rounds_and_no_start_op_returns_the_image(sampled):
    out, infos = sampled
    x = smooth_images(3000, 12)
    untouched = [i for i, info in enumerate(infos) if info["start"] is None and not info["rounds"]]
    assert untouched and all(torch.equal(out[i], x[i]) for i in untouched)


def test_all_ops_option_adds_the_imagenet_c_overlapping_ops():
    _, infos = run_many(PixMix(fractals=NoiseBank(), all_ops=True), 2000, size=8)
    names = {i["start"]["op"] for i in infos if i["start"]}
    assert names == set(AUGMIX_ALL_OPS)
