"""The papers' op tables: magnitudes as the authors' code draws them, uniform op choice,
and running a different op per sample (each op once per batch, either memory format)."""

import numpy as np
import pytest
import torch

from freqs import assert_frequencies
from raymix.methods import op_tables as tables
from raymix.ops import image_ops as ops
from raymix.ops.rng import Draws
from raymix.ops.tensors import is_channels_last


@pytest.fixture(scope="module")
def image():
    """A blocky random image (so equalize/autocontrast have structure), 3x90x120 uint8."""
    rng = np.random.default_rng(0)
    a = (rng.random((3, 24, 32)) * 200 + 20).astype(np.uint8)
    return torch.from_numpy(np.kron(a, np.ones((1, 4, 4), dtype=np.uint8))[:, :90, :120].copy())


def _levels(table, name, level, size, n=400, seed=0):
    d = Draws(torch.Generator().manual_seed(seed))
    return [table[name].sample(d, level, size) for _ in range(n)]


def test_augmix_magnitudes_follow_the_authors_scaling():
    size = (224, 224)
    for severity in (1, 3):
        rot = [p["degrees"] for p in _levels(tables.AUGMIX_OPS, "rotate", severity, size)]
        assert all(float(r).is_integer() and abs(r) <= 3 * severity for r in rot)
        assert min(rot) < 0 < max(rot) or severity == 1
        bits = {p["bits"] for p in _levels(tables.AUGMIX_OPS, "posterize", severity, size)}
        assert bits <= set(range(4 - int(0.4 * severity), 5))
        thr = [p["threshold"] for p in _levels(tables.AUGMIX_OPS, "solarize", severity, size)]
        assert all(256 - 25.6 * severity <= t <= 256 for t in thr)
        shear = [p["factor"] for p in _levels(tables.AUGMIX_OPS, "shear_x", severity, size)]
        assert all(0.003 - 1e-12 <= abs(f) <= 0.03 * severity for f in shear)
        shift = [p["pixels"] for p in _levels(tables.AUGMIX_OPS, "translate_y", severity, size)]
        assert all(abs(s) <= 224 / 3 * severity / 10 for s in shift)
    assert {"color", "contrast", "brightness", "sharpness"} <= set(tables.AUGMIX_ALL_OPS)
    assert not {"color", "contrast", "brightness", "sharpness"} & set(tables.AUGMIX_OPS)
    assert set(tables.AUGMIX_OPS) == {"autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x",
                                   "shear_y", "translate_x", "translate_y"}


def test_layermix_table_ii_ranges():
    table, size, m = tables.LAYERMIX_OPS, (224, 224), 8
    assert set(table) == {"equalize", "grayscale", "autocontrast", "rotate", "brightness", "posterize", "solarize",
                          "shear_x", "shear_y", "translate_x", "translate_y"}
    rot = [p["degrees"] for p in _levels(table, "rotate", m, size)]
    assert all(0.1 <= abs(r) <= 30 * m / 10 for r in rot) and min(rot) < 0 < max(rot)
    bright = [p["factor"] for p in _levels(table, "brightness", m, size)]
    assert all(0.1 <= abs(f - 1) <= 0.9 * m / 10 for f in bright)
    assert {p["bits"] for p in _levels(table, "posterize", m, size)} <= {1, 2, 3, 4}
    thr = [p["threshold"] for p in _levels(table, "solarize", m, size)]
    assert all(0.1 * 255 <= t <= 255 * m / 10 + 1 for t in thr)
    shear = [p["factor"] for p in _levels(table, "shear_y", m, size)]
    assert all(0.1 <= abs(f) <= 0.3 * m / 10 for f in shear)
    shift = [p["pixels"] for p in _levels(table, "translate_x", m, size)]
    assert all(abs(s) <= int(224 * 0.33) * m / 10 + 1 for s in shift) and max(abs(s) for s in shift) > 40


def test_sample_op_draws_uniformly_from_the_table():
    d = Draws(torch.Generator().manual_seed(3))
    names = [tables.sample_op(tables.AUGMIX_OPS, d, 3, (32, 32))["op"] for _ in range(4500)]
    assert_frequencies(names, {name: 1 / 9 for name in tables.AUGMIX_OPS})


def _counting(table, calls):
    """``table`` with each op recording ``(name, batch size)`` in ``calls`` when applied."""
    def counting(op):
        def apply(images, params):
            calls.append((op.name, images.shape[0]))
            return op.apply(images, params)

        return tables.ImageOp(op.name, op.sample, apply)

    return {k: counting(v) for k, v in table.items()}


def test_map_ops_calls_each_op_once_per_batch(image):
    calls = []
    table = _counting(tables.AUGMIX_OPS, calls)
    d = Draws(torch.Generator().manual_seed(0))
    images = [image.flip(-1) if i % 2 else image.clone() for i in range(12)]
    chosen = [tables.sample_op(table, d, 3, (90, 120), name) for name in
              ["rotate", "equalize", "rotate", "posterize", "equalize", "rotate"] * 2]
    chosen[5] = None
    out = tables.map_ops(images, chosen, table)
    assert sorted(calls) == [("equalize", 4), ("posterize", 2), ("rotate", 5)]
    assert out[5] is images[5]
    for i, op in enumerate(chosen):
        if op is not None:
            assert torch.equal(out[i], tables.map_ops([images[i]], [op], tables.AUGMIX_OPS)[0])


def _channels_last(x):
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


_TABLES = {"augmix": (tables.AUGMIX_ALL_OPS, 3.0), "ipmix-code": (tables.IPMIX_CODE_OPS, 3.0),
           "layermix": (tables.LAYERMIX_OPS, 8.0)}


@pytest.mark.parametrize("table,name", [(t, n) for t, (ops_, _) in _TABLES.items() for n in ops_])
def test_ops_give_the_same_bytes_in_either_memory_format_and_keep_it(image, table, name):
    ops_, level = _TABLES[table]
    d = Draws(torch.Generator().manual_seed(1))
    batch = torch.stack([image, image.flip(-1), image.flip(-2)])
    params = [tables.sample_op(ops_, d, level, (90, 120), name) for _ in range(3)]
    contiguous = ops_[name].apply(batch, params)
    channels_last = ops_[name].apply(_channels_last(batch), params)
    assert torch.equal(contiguous, channels_last)
    assert contiguous.is_contiguous() and is_channels_last(channels_last)


def test_map_ops_runs_a_repeated_op_on_the_same_image_once(image):
    calls = []
    table = _counting(tables.LAYERMIX_OPS, calls)
    other = image.flip(-1)
    out = tables.map_ops([image, image, other, image], [{"op": "equalize"}, {"op": "equalize"}, {"op": "equalize"},
                                                     {"op": "rotate", "degrees": 3.0}], table)
    assert sorted(calls) == [("equalize", 2), ("rotate", 1)]  # image twice with equalize: once
    assert out[0] is out[1] and torch.equal(out[0], ops.equalize(image))
    assert torch.equal(out[2], ops.equalize(other)) and torch.equal(out[3], ops.rotate(image, 3.0))
    assert tables.map_ops([image], [None], table)[0] is image
