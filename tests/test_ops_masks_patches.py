import pytest
import torch

from freqs import assert_frequencies
from raymix.ops import blends, masks, patches
from raymix.ops.rng import Draws


def _pair(h=6, w=8, n=4):
    original = torch.full((n, 3, h, w), 10, dtype=torch.uint8)
    edited = torch.full((n, 3, h, w), 200, dtype=torch.uint8)
    return original, edited


@pytest.mark.parametrize("h,w", [(6, 8), (7, 9)])
def test_the_four_binary_masks_keep_each_half(h, w):
    original, edited = _pair(h, w, 4)
    out = masks.hybrid(original, edited, ["left", "right", "top", "bottom"])
    assert out.dtype == torch.uint8 and set(out.unique().tolist()) == {10, 200}
    from_original = out == 10
    assert from_original[0, :, :, : w // 2].all() and not from_original[0, :, :, w // 2:].any()
    assert from_original[1, :, :, w // 2:].all() and not from_original[1, :, :, : w // 2].any()
    assert from_original[2, :, : h // 2].all() and not from_original[2, :, h // 2:].any()
    assert from_original[3, :, h // 2:].all() and not from_original[3, :, : h // 2].any()
    # left/right and top/bottom are the same split with the images swapped
    assert torch.equal(from_original[0], ~from_original[1]) and torch.equal(from_original[2], ~from_original[3])
    if h % 2 == 0 and w % 2 == 0:  # exactly half of each image
        assert (from_original.float().mean(dim=(1, 2, 3)) == 0.5).all()


def test_hybrid_with_real_images_copies_pixels_exactly():
    g = torch.Generator().manual_seed(0)
    original = torch.randint(0, 256, (1, 3, 10, 12), dtype=torch.uint8, generator=g)
    edited = torch.randint(0, 256, (1, 3, 10, 12), dtype=torch.uint8, generator=g)
    out = masks.hybrid(original, edited, "top")
    assert torch.equal(out[..., :5, :], original[..., :5, :]) and torch.equal(out[..., 5:, :], edited[..., 5:, :])


def test_concat_mask_is_one_where_the_original_is_kept():
    m = masks.concat_mask("left", 4, 6)
    assert m.shape == (1, 4, 6) and m[..., :3].eq(1).all() and m[..., 3:].eq(0).all()
    m = masks.concat_mask("bottom", 4, 6)
    assert m[:, :2].eq(0).all() and m[:, 2:].eq(1).all()


def test_public_code_seam_is_a_20_pixel_linear_ramp():
    p = masks.mask_profile("top", 64, seam=20)
    assert p.shape == (64,)
    assert (p[:22] == 1).all() and (p[42:] == 0).all()
    ramp = p[22:42]
    assert torch.allclose(ramp, 1 - torch.linspace(0, 1, 20))
    assert torch.allclose(masks.mask_profile("bottom", 64, seam=20), 1 - p)
    original, edited = _pair(64, 64, 1)
    out = masks.hybrid(original, edited, "left", seam=20)
    row = out[0, 0, 0].float()
    assert (row[:22] == 10).all() and (row[42:] == 200).all() and (row[22:42].diff() >= 0).all()


def test_fractal_blend_is_the_papers_convex_combination():
    g = torch.Generator().manual_seed(1)
    h = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8, generator=g)
    f = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8, generator=g)
    out = masks.fractal_blend(h, f, 0.2)
    expected = (0.8 * h.double() + 0.2 * f.double() + 0.5).floor()
    assert out.dtype == torch.uint8 and (out.double() - expected).abs().max() <= 1
    assert (out.double() == expected).float().mean() > 0.95
    assert torch.equal(masks.fractal_blend(h, f, 0.0), h)
    per_sample = masks.fractal_blend(h, f, [0.0, 1.0])
    assert torch.equal(per_sample[0], h[0]) and torch.equal(per_sample[1], f[1])


def test_mask_errors():
    original, edited = _pair()
    with pytest.raises(ValueError):
        masks.hybrid(original, edited, "diagonal")
    with pytest.raises(ValueError):
        masks.hybrid(original, edited[:, :, :4], "left")


def test_patch_boxes_square_or_scar_within_the_image():
    d = Draws(torch.Generator().manual_seed(0))
    shapes, sizes = [], []
    for _ in range(3000):
        size = d.choice((4, 8, 16, 32, 64))
        shape, (top, bottom, left, right) = patches.sample_patch_box(d, size, 40, 50)
        size = min(size, 40)
        assert 0 <= top < bottom <= 40 and 0 <= left < right <= 50
        if shape == "square":
            assert bottom - top == size and right - left == size
        else:
            assert 2 <= bottom - top <= size and 2 <= right - left <= size
        shapes.append(shape)
        sizes.append(size)
    assert_frequencies(shapes, {"square": 0.5, "scar": 0.5})


def test_patch_mix_changes_only_the_box():
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8, generator=g)
    before = x.clone()
    box = (3, 9, 4, 15)
    out = patches.patch_mix(x, y, box, "add", {"kind": "add", "a": 0.5, "b": 0.5})
    inside = (slice(None), slice(None), slice(3, 9), slice(4, 15))
    outside = torch.ones(20, 20, dtype=torch.bool)
    outside[3:9, 4:15] = False
    assert torch.equal(out[..., outside], x[..., outside])
    assert not torch.equal(out[inside], x[inside])
    # a = 1, b = 0 keeps the image: the box blend is the conic mean restricted to the box
    same = patches.patch_mix(x, y, box, "add", {"kind": "add", "a": 1.0, "b": 0.0})
    assert torch.equal(same, x)
    assert torch.equal(x, before)  # inputs are not written


def _channels_last(x):
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


def test_mix_patches_in_place_equals_patch_mix_one_box_at_a_time():
    g = torch.Generator().manual_seed(4)
    x = _channels_last(torch.randint(0, 256, (1, 3, 30, 40), dtype=torch.uint8, generator=g))[0]
    y = _channels_last(torch.randint(0, 256, (1, 3, 30, 40), dtype=torch.uint8, generator=g))[0]
    y[0, :5, :5] = 0  # zeros exercise the geometric mean's clamp
    d = Draws(torch.Generator().manual_seed(5))
    steps = []
    for kind in ("pixel", "element", "add", "multiply", "pixel", "element") * 2:
        _, box = patches.sample_patch_box(d, d.choice((4, 8, 16, 64)), 30, 40)
        steps.append((y, box, kind, blends.sample_blend(kind, d, 3.0)))
    expected = x.clone()
    for source, box, kind, params in steps:
        expected = patches.patch_mix(expected, source, box, kind, params)
    before = x.clone()
    out = patches.mix_patches_(x.clone(), steps)
    assert torch.equal(x, before)
    assert (out.int() - expected.int()).abs().max() <= 1  # the means may round differently at ties
    assert (out == expected).float().mean() > 0.99


def test_hybrid_fractal_blend_equals_fractal_blend_of_the_hybrid():
    g = torch.Generator().manual_seed(6)
    x, e, f = (torch.randint(0, 256, (4, 3, 9, 12), dtype=torch.uint8, generator=g) for _ in range(3))
    kinds = ["left", "right", "top", "bottom"]
    expected = masks.fractal_blend(masks.hybrid(x, e, kinds), f, 0.2)
    for layout in (lambda t: t, _channels_last):
        out = masks.hybrid_fractal_blend(layout(x), layout(e), layout(f), kinds, 0.2)
        assert out.dtype == torch.uint8 and (out.int() - expected.int()).abs().max() <= 1
        assert (out == expected).float().mean() > 0.99
    target = _channels_last(torch.zeros_like(x))
    assert masks.hybrid_fractal_blend(_channels_last(x), _channels_last(e), _channels_last(f), kinds, 0.2,
                                      out=target) is target
    assert torch.equal(target, masks.hybrid_fractal_blend(x, e, f, kinds, 0.2))
