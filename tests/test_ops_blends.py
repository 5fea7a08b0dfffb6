import math

import pytest
import torch

from freqs import assert_frequencies, assert_mean
from raymix.ops import blends
from raymix.ops.rng import Draws, child_generator
from raymix.ops.tensors import to_uint8


def _images(n=3, seed=0, size=(3, 12, 10)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *size), dtype=torch.uint8, generator=g)
    x[0, 0, 0, :3] = 0  # exact zeros exercise the geometric blend's log(0)
    return x


def test_get_ab_is_pixmix_conic_mixture():
    beta = 3.0
    d = Draws(torch.Generator().manual_seed(1))
    draws = [blends.get_ab(beta, d) for _ in range(6000)]
    first = [(a, b) for a, b in draws if b >= 0]
    second = [(a, b) for a, b in draws if b < 0]
    assert_frequencies(["first" if b >= 0 else "second" for _, b in draws], {"first": 0.5, "second": 0.5})
    assert all(0 < a <= 1 and 0 <= b <= 1 for a, b in first)
    assert all(1 <= a <= 2 and -1 <= b <= 0 for a, b in second)
    # Beta(beta, 1) has mean beta/(beta+1); Beta(1, beta) mean 1/(beta+1); E[a + b] = 1 either way.
    sd_b1 = math.sqrt(beta / ((beta + 1) ** 2 * (beta + 2)))
    assert_mean([a for a, _ in first], beta / (beta + 1), sd_b1)
    assert_mean([b for _, b in first], 1 / (beta + 1), sd_b1)
    assert_mean([a - 1 for a, _ in second], 1 / (beta + 1), sd_b1)
    assert_mean([a + b for a, b in draws], 1.0, 2 * sd_b1)


def test_get_ab_accepts_a_torch_generator_and_is_reproducible():
    a1 = blends.get_ab(4.0, torch.Generator().manual_seed(5))
    a2 = blends.get_ab(4.0, torch.Generator().manual_seed(5))
    assert a1 == a2


@pytest.mark.parametrize("a,b", [(0.7, 0.2), (1.3, -0.4), (0.0, 0.5), (1.0, -1.0)])
def test_conic_blends_match_the_reference_formulas(a, b):
    x, y = _images(seed=1), _images(seed=2)
    xf, yf = x.float() / 255, y.float() / 255
    ref_add = (a * (2 * xf - 1) + b * (2 * yf - 1) + 1) / 2
    ref_mul = (2 * xf) ** a * (2 * yf).clamp(min=2e-37) ** b / 2
    for fn, ref in ((blends.additive, ref_add), (blends.multiplicative, ref_mul)):
        ref = ref.clamp(0, 1)
        for xx, yy in ((x, y), (xf, yf), (x, yf), (xf, y)):
            out = fn(xx, yy, [a] * 3, [b] * 3, float_out=True)
            assert out.dtype == torch.float32
            assert (out - ref).abs().max() < 1e-5
            single = fn(xx[1], yy[1], a, b, float_out=True)
            assert single.shape == x.shape[1:] and torch.allclose(single, out[1])
        out8 = fn(x, y, a, b)
        assert out8.dtype == torch.uint8
        rounded = (ref * 255 + 0.5).floor()
        assert (out8.float() - rounded).abs().max() <= 1  # ties (x.5) may round either way
        assert (out8.float() == rounded).float().mean() > 0.8


def test_float_inputs_give_float_and_results_are_clipped():
    x, y = _images(seed=3).float() / 255, _images(seed=4).float() / 255
    out = blends.additive(x, y, 2.0, -1.0)
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1


def test_random_mask_probability_and_reproducibility():
    for t in (0.1, 0.5, 0.9):
        m = blends.random_mask((3, 64, 64), t, child_generator(7))
        assert m.dtype == torch.bool and m.shape == (3, 64, 64)
        k = round(256 * t) / 256
        n = m.numel()
        assert abs(m.sum().item() - n * k) <= 5 * math.sqrt(n * k * (1 - k))
        assert torch.equal(m, blends.random_mask((3, 64, 64), t, child_generator(7)))
    assert not blends.random_mask((1, 4, 4), 0.0, child_generator(1)).any()
    assert blends.random_mask((1, 4, 4), 1.0, child_generator(1)).all()


def test_pixel_mixing_shares_the_mask_across_channels_and_element_mixing_does_not():
    x = torch.zeros((2, 3, 40, 40), dtype=torch.uint8)
    y = torch.full((2, 3, 40, 40), 255, dtype=torch.uint8)
    params = [{"kind": "pixel", "threshold": 0.3, "mask_seed": 11}, {"kind": "pixel", "threshold": 0.7, "mask_seed": 12}]
    out = blends.blend("pixel", x, y, params)
    assert out.dtype == torch.uint8 and set(out.unique().tolist()) <= {0, 255}
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    frac_x = (out == 0).float().mean(dim=(1, 2, 3))
    assert abs(frac_x[0] - 0.3) < 0.06 and abs(frac_x[1] - 0.7) < 0.06
    out_e = blends.blend("element", x, y, [dict(p, kind="element") for p in params])
    assert not torch.equal(out_e[:, 0], out_e[:, 1])
    # The same parameters give the same mask, batched or not.
    assert torch.equal(out[1], blends.blend("pixel", x[1], y[1], [params[1]]))


def test_pixel_mix_with_float_input_selects_values():
    x = torch.rand(1, 3, 8, 8)
    y = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4] = True
    out = blends.pixel_mix(x, y, mask)
    assert out.dtype == torch.float32
    assert torch.equal(out[..., :4], x[..., :4]) and (out[..., 4:] == 0).all()


def test_sample_blend_records_what_it_drew():
    d = Draws(torch.Generator().manual_seed(0))
    p = blends.sample_blend("multiply", d, 3.0)
    assert p["kind"] == "multiply" and {"a", "b"} <= set(p)
    q = blends.sample_blend("element", d, 3.0)
    assert 0 <= q["threshold"] < 1 and isinstance(q["mask_seed"], int)
    with pytest.raises(ValueError):
        blends.sample_blend("screen", d, 3.0)


def _channels_last(x):
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


def test_blend_chain_equals_rounds_of_blend_one_rounded_once():
    g = torch.Generator().manual_seed(8)
    d = Draws(torch.Generator().manual_seed(9))
    total = same = 0
    for trial in range(60):
        x, *ys = _channels_last(torch.randint(0, 256, (5, 3, 12, 10), dtype=torch.uint8, generator=g))
        ys[0][0, :2] = 0  # zeros exercise log(0) and the clamp of the second image
        steps = []
        for y in ys[: d.randint(1, 5)]:
            kind = d.choice(blends.BLENDS)
            steps.append((kind, y, blends.sample_blend(kind, d, 3.0)))
        expected = x
        for kind, y, p in steps:  # the reference: floats between rounds, selections on uint8
            expected = blends.blend_one(kind, to_uint8(expected) if kind in ("pixel", "element") else expected,
                                        y, p, float_out=True)
        expected = to_uint8(expected)
        out = blends.blend_chain(x, steps)
        assert out.dtype == torch.uint8 and out.shape == x.shape
        assert (out.int() - expected.int()).abs().max() <= 1  # float rounding, at ties only
        total += out.numel()
        same += (out == expected).sum().item()
        target = torch.empty_like(x)
        assert blends.blend_chain(x, steps, out=target) is target and torch.equal(target, out)
    assert same / total > 0.999
    x = _channels_last(torch.randint(0, 256, (1, 3, 4, 4), dtype=torch.uint8, generator=g))[0]
    unchanged = blends.blend_chain(x, [])
    assert torch.equal(unchanged, x) and unchanged.data_ptr() != x.data_ptr()


def test_select_into_is_blend_one_in_place():
    g = torch.Generator().manual_seed(10)
    for kind, threshold in (("pixel", 0.3), ("element", 0.7), ("pixel", 0.0), ("element", 1.0)):
        x, y = _channels_last(torch.randint(0, 256, (2, 3, 70, 80), dtype=torch.uint8, generator=g))
        params = {"kind": kind, "threshold": threshold, "mask_seed": 21}
        expected = blends.blend_one(kind, x, y, params)
        assert blends.select_into_(x, y, kind, params) is x
        assert torch.equal(x, expected)
