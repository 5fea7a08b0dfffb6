import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageEnhance, ImageOps

from raymix.ops import image_ops as ops


@pytest.fixture(scope="module")
def image():
    """A blocky random image (so equalize/autocontrast have structure), 3x90x120 uint8."""
    rng = np.random.default_rng(0)
    a = (rng.random((3, 24, 32)) * 200 + 20).astype(np.uint8)
    return torch.from_numpy(np.kron(a, np.ones((1, 4, 4), dtype=np.uint8))[:, :90, :120].copy())


def _pil(x):
    return Image.fromarray(x.permute(1, 2, 0).numpy())


def _tensor(p):
    return torch.from_numpy(np.asarray(p).transpose(2, 0, 1).copy())


def _diff(a, b):
    return (a.int() - b.int()).abs()


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda x: ops.equalize(x), ImageOps.equalize),
        (lambda x: ops.autocontrast(x), ImageOps.autocontrast),
        (lambda x: ops.posterize(x, 3), lambda p: ImageOps.posterize(p, 3)),
        (lambda x: ops.posterize(x, 0), lambda p: Image.new("RGB", p.size)),  # older PIL's 0 bits: black
        (lambda x: ops.solarize(x, 100), lambda p: ImageOps.solarize(p, 100)),
        (lambda x: ops.solarize(x, 256), lambda p: ImageOps.solarize(p, 256)),
        (lambda x: ops.translate_x(x, -7), lambda p: p.transform(p.size, Image.AFFINE, (1, 0, 7, 0, 1, 0))),
        (lambda x: ops.translate_y(x, 5), lambda p: p.transform(p.size, Image.AFFINE, (1, 0, 0, 0, 1, -5))),
        (lambda x: ops.mirror(x), ImageOps.mirror),
        (lambda x: ops.invert(x), ImageOps.invert),
    ],
)
def test_matches_pil_exactly(image, ours, theirs):
    out = ours(image)
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert torch.equal(out, _tensor(theirs(_pil(image))))


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda x: ops.grayscale(x), lambda p: p.convert("L").convert("RGB")),
        (lambda x: ops.brightness(x, 0.6), lambda p: ImageEnhance.Brightness(p).enhance(0.6)),
        (lambda x: ops.contrast(x, 0.6), lambda p: ImageEnhance.Contrast(p).enhance(0.6)),
        (lambda x: ops.color(x, 0.4), lambda p: ImageEnhance.Color(p).enhance(0.4)),
        (lambda x: ops.sharpness(x, 1.7), lambda p: ImageEnhance.Sharpness(p).enhance(1.7)),
    ],
)
def test_enhance_ops_match_pil_within_rounding(image, ours, theirs):
    assert _diff(ours(image), _tensor(theirs(_pil(image)))).max() <= 1


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda x: ops.rotate(x, 17.0), lambda p: p.rotate(17, resample=Image.BILINEAR)),
        (lambda x: ops.shear_x(x, 0.2), lambda p: p.transform(p.size, Image.AFFINE, (1, 0.2, 0, 0, 1, 0), Image.BILINEAR)),
        (lambda x: ops.shear_y(x, -0.2), lambda p: p.transform(p.size, Image.AFFINE, (1, 0, 0, -0.2, 1, 0), Image.BILINEAR)),
    ],
)
def test_geometric_ops_match_pil_away_from_the_borders(image, ours, theirs):
    d = _diff(ours(image), _tensor(theirs(_pil(image))))
    # PIL treats the last half pixel at the image border differently; inside, bilinear agrees.
    assert (d > 1).float().mean() < 0.03
    assert d.float().median() == 0


def test_centre_shear_and_rotation_match_torchvision(image):
    bil = TF.InterpolationMode.BILINEAR
    assert _diff(ops.rotate(image, -23.0), TF.rotate(image, -23.0, interpolation=bil)).max() <= 1
    sx = math.degrees(math.atan(0.25))
    theirs = TF.affine(image, angle=0, translate=[0, 0], scale=1, shear=[sx, 0], interpolation=bil)
    assert _diff(ops.shear_x(image, 0.25, center=True), theirs).max() <= 1
    theirs = TF.affine(image, angle=0, translate=[0, 0], scale=1, shear=[0, sx], interpolation=bil)
    assert _diff(ops.shear_y(image, 0.25, center=True), theirs).max() <= 1
    assert torch.equal(ops.translate_x(image, 9), TF.affine(image, angle=0, translate=[9, 0], scale=1, shear=[0, 0]))


def test_rotating_by_whole_turns_is_a_copy(image):
    assert torch.equal(ops.rotate(image, 0.0), image)
    assert torch.equal(ops.rotate(image[None].expand(2, -1, -1, -1), [360.0, 0.0])[1], image)


@pytest.mark.parametrize(
    "fn,params",
    [
        (ops.rotate, [5.0, -12.0, 30.0]),
        (ops.shear_x, [0.1, -0.3, 0.0]),
        (ops.solarize, [0, 128, 256]),
        (ops.posterize, [1, 4, 8]),
        (ops.translate_y, [3, -50, 200]),
        (ops.brightness, [0.5, 1.0, 1.9]),
    ],
)
def test_per_sample_parameters_batched_equal_one_by_one(image, fn, params):
    batch = torch.stack([image, image.flip(-1), image.flip(-2)])
    out = fn(batch, params)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    for i, p in enumerate(params):
        assert torch.equal(out[i], fn(batch[i], p))


def test_kernels_reject_float_images():
    with pytest.raises(TypeError):
        ops.equalize(torch.rand(3, 8, 8))


def _channels_last(x):
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("factor", [0.03, -0.02, 0.27, -0.3, 2.5])
def test_shears_match_the_bilinear_grid(image, factor, center):
    h, w = image.shape[-2:]
    for fn, mat in ((ops.shear_x, [[1.0, factor, -factor * (h / 2 if center else 0)], [0.0, 1.0, 0.0]]),
                    (ops.shear_y, [[1.0, 0.0, 0.0], [factor, 1.0, -factor * (w / 2 if center else 0)]])):
        d = _diff(fn(image, factor, center=center), ops.affine(image, [mat]))
        assert d.max() <= 1 and (d > 0).float().mean() < 0.03  # float rounding of the weights, at ties


def test_grayscale_is_torchvisions_exactly(image):
    batch = _channels_last(torch.stack([image, image.flip(-1)]))
    assert torch.equal(ops.grayscale(batch), TF.rgb_to_grayscale(batch.contiguous(), num_output_channels=3))
