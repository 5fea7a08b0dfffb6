"""On-the-fly corruptions: per-sample determinism, every name runs, released-tree reading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from raymix.eval import corruptions as c
from raymix.eval.metrics import ALL_CORRUPTIONS


def _image(seed=0, size=40):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size, dtype=np.float64)
    img = np.stack([np.add.outer(base, base) / 2, np.add.outer(base[::-1], base) / 2, np.full((size, size), 128.0)], -1)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_every_corruption_runs_and_is_deterministic_per_key(name):
    img = _image()
    a = c.corrupt_image(img, name, 3, seed=0, key="k1")
    b = c.corrupt_image(img, name, 3, seed=0, key="k1")
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, img)


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "glass_blur", "snow", "frost", "spatter"])
def test_random_corruptions_differ_per_key_and_seed(name):
    img = _image()
    a = c.corrupt_image(img, name, 3, seed=0, key="k1")
    assert not np.array_equal(a, c.corrupt_image(img, name, 3, seed=0, key="k2"))
    assert not np.array_equal(a, c.corrupt_image(img, name, 3, seed=1, key="k1"))


def test_global_numpy_state_is_restored():
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    c.corrupt_image(_image(), "gaussian_noise", 2, seed=0, key="k")
    assert np.array_equal(np.random.rand(3), expected)


def test_different_corruptions_and_severities_differ():
    img = _image()
    outs = [c.corrupt_image(img, n, s, seed=0, key="k") for n, s in
            [("gaussian_noise", 1), ("gaussian_noise", 5), ("fog", 3), ("contrast", 3)]]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not np.array_equal(outs[i], outs[j])


def test_corrupt_batch_keys_and_bad_rows():
    images = np.stack([_image(0), _image(1)])
    batch = {"key": np.array(["a", "b"], dtype=object), "image": images, "reason": np.array(["", "decode:x"], dtype=object)}
    out = c.corrupt_batch(batch, name="shot_noise", severity=2, seed=5)
    assert np.array_equal(out["image"][0], c.corrupt_image(images[0], "shot_noise", 2, seed=5, key="a"))
    assert np.array_equal(out["image"][1], images[1])  # failed upstream: passed through
    assert list(out["reason"]) == ["", "decode:x"]
    small = {"key": np.array(["s"], dtype=object), "image": np.zeros((1, 16, 16, 3), np.uint8)}
    assert c.corrupt_batch(small, name="fog", severity=1, seed=0)["reason"][0].startswith("corrupt:")


def test_parse_corruptions():
    assert c.parse_corruptions("fog,contrast", "1,3-4") == [
        ("fog", 1), ("fog", 3), ("fog", 4), ("contrast", 1), ("contrast", 3), ("contrast", 4)]
    assert len(c.parse_corruptions(["all"], [1])) == 19
    assert [n for n, _ in c.parse_corruptions("extra", "2")] == ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
    with pytest.raises(ValueError):
        c.parse_corruptions("fogg", "1")
    with pytest.raises(ValueError):
        c.parse_corruptions("fog", "6")


def test_plan_corruption_tree(tmp_path):
    for name in ("fog", "contrast"):
        for s in (1, 2):
            for cls in ("cat", "dog"):
                d = tmp_path / name / str(s) / cls
                d.mkdir(parents=True)
                Image.fromarray(_image()).save(d / "x.png")
    (tmp_path / "README").write_text("not a corruption")
    plans = c.plan_corruption_tree(str(tmp_path), classes=["dog", "cat"])
    assert list(plans) == [("fog", 1), ("fog", 2), ("contrast", 1), ("contrast", 2)]
    plan = plans[("fog", 2)]
    assert plan.layout == "folder" and plan.classes == ["dog", "cat"]
    assert plan.num_rows == 2
    only = c.plan_corruption_tree(str(tmp_path), [("contrast", 1)])
    assert list(only) == [("contrast", 1)]


class _CorruptActor:
    """The corruption stage on an actor pool (the job runs it as tasks; here the pool size is explicit)."""

    def __init__(self, pairs, seed):
        self.pairs, self.seed = pairs, seed

    def __call__(self, batch):
        for name, severity in self.pairs:
            batch = c.corrupt_batch(batch, name=name, severity=severity, seed=self.seed)
        return batch


@pytest.mark.slow
def test_same_corrupted_images_on_one_or_two_actors(ray_cluster):
    ray = ray_cluster
    items = [{"key": f"img{i}", "image": _image(i), "reason": ""} for i in range(6)]
    # numpy's global generator, then the library's own seed
    pairs = [("gaussian_noise", 3), ("impulse_noise", 2)]

    def corrupted(actors, batch_size):
        ds = ray.data.from_items(items).map_batches(
            _CorruptActor, fn_constructor_args=(pairs, 7), compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=batch_size, batch_format="numpy")
        rows = ds.take_all()
        assert all(not r["reason"] for r in rows)
        return {r["key"]: r["image"] for r in rows}

    one, two = corrupted(1, 4), corrupted(2, 1)
    assert sorted(one) == sorted(two) == [f"img{i}" for i in range(6)]
    for key, image in one.items():
        assert np.array_equal(image, two[key])
        expected = _image(int(key[3:]))
        for name, severity in pairs:
            expected = c.corrupt_image(expected, name, severity, seed=7, key=key)
        assert np.array_equal(image, expected)
