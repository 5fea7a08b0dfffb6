import numpy as np
import pytest

from raymix.train.config import TrainConfig, TrainInput, parse_input, parse_ratio
from raymix.train.data import crop_flip_batch, finalize, prepare_images, tag_epoch
from raymix.train.transforms import crop_flip


def rows(n, size=(40, 48), bad=(), seed=0, prefix="k"):
    rng = np.random.default_rng(seed)
    return [
        {
            "key": f"{prefix}{i}",
            "image": rng.integers(0, 256, (*size, 3), dtype=np.uint8),
            "label": i % 3,
            "reason": "decode: broken" if i in bad else "",
        }
        for i in range(n)
    ]


def as_batch(items):
    return {k: np.array([r[k] for r in items], dtype=object if k in ("key", "reason") else None) for k in items[0]}


def test_input_specs():
    assert parse_input("s3://b/x@0.25") == TrainInput("s3://b/x", weight=0.25)
    assert parse_input("s3://user@host/x") == TrainInput("s3://user@host/x")
    assert parse_ratio("3:1", 2) == [3.0, 1.0]
    with pytest.raises(ValueError):
        parse_ratio("1:1", 3)
    with pytest.raises(ValueError):
        TrainConfig(jsd=True)  # JSD needs augmented views
    with pytest.raises(ValueError):
        TrainConfig(online="nope")


def test_tag_epoch_draws_a_fresh_subset_each_epoch():
    b = as_batch(rows(400))
    half = [set(tag_epoch(b, clock=e, seed=0, fraction=0.5)["key"]) for e in (0, 0, 1)]
    assert half[0] == half[1] and half[0] != half[2]
    assert 150 < len(half[0]) < 250
    double = tag_epoch(b, clock=2, seed=0, fraction=2.0)
    assert len(double["key"]) == 800 and set(double["epoch"]) == {2}
    assert {"k7", "k7#1"} <= set(double["key"])
    assert (tag_epoch(b, clock=5, seed=0, fraction=None)["epoch"] == 5).all()


def test_crop_flip_depends_on_key_and_epoch():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    a = crop_flip(image, 32, "random_resized", True, 0, "k", 0)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, crop_flip(image, 32, "random_resized", True, 0, "k", 0))
    assert not np.array_equal(a, crop_flip(image, 32, "random_resized", True, 0, "k", 1))
    assert crop_flip(image, 32, "pad", True, 0, "k", 0).shape == (32, 32, 3)
    assert np.array_equal(crop_flip(image, 64, "none", False, 0, "k", 0), image)


def test_batch_stages_keep_bad_rows_flagged():
    b = prepare_images(as_batch(rows(4, bad=(1,))), size=36)
    assert b["image"].shape == (4, 36, 36, 3)
    b = crop_flip_batch({**b, "epoch": np.zeros(4, dtype=np.int64)}, size=32, crop="random_resized", flip=True, seed=0)
    assert not b["image"][1].any()
    out = finalize(b)
    assert set(out) == {"image", "label", "valid"}
    assert out["valid"].tolist() == [True, False, True, True]


def _per_key(ds, clock, epoch, column="image"):
    import ray

    ray.get(clock.set.remote(epoch))
    batches = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    return np.concatenate([b[column] for b in batches]), np.concatenate([b["label"] for b in batches])


@pytest.mark.slow
def test_draws_follow_the_epoch_clock(ray_cluster):
    import ray

    from raymix.train.data import build_train_dataset, create_epoch_clock

    clock = create_epoch_clock()
    items = rows(12, bad=(4,))
    # A unique label per row lets us line rows up whatever order they stream in.
    for i, r in enumerate(items):
        r["label"] = i
    ds = ray.data.from_items(items)

    def images(data_batch_size, epoch):
        # Random-resized crops are drawn per (seed, key, epoch) like the online methods' draws.
        cfg = TrainConfig(image_size=24, data_batch_size=data_batch_size, seed=5)
        imgs, labels = _per_key(build_train_dataset([TrainInput(ds)], cfg, clock), clock, epoch)
        return imgs[np.argsort(labels)]

    e0 = images(4, 0)
    assert e0.shape == (12, 24, 24, 3)
    assert np.array_equal(e0, images(3, 0))  # same epoch: same pixels, whatever the batching
    e1 = images(4, 1)
    assert not np.array_equal(e0[0], e1[0])  # a fresh draw next epoch
    ray.kill(clock)


@pytest.mark.slow
def test_weighted_inputs_and_jsd_views(ray_cluster):
    import ray

    from raymix.train.data import build_train_dataset, create_epoch_clock

    clock = create_epoch_clock()
    originals = ray.data.from_items(rows(40, size=(24, 24), prefix="orig"))
    augmented = ray.data.from_items(rows(120, size=(24, 24), prefix="aug", seed=1))
    cfg = TrainConfig(image_size=16, crop="none", epoch_size=80)
    ds = build_train_dataset([TrainInput(originals, weight=1), TrainInput(augmented, weight=1)], cfg, clock)
    ray.get(clock.set.remote(0))
    labels = [b for b in ds.iter_batches(batch_size=None, batch_format="numpy")]
    n = sum(len(b["label"]) for b in labels)
    assert 60 < n < 100  # 40 originals (all) + about 40 of the 120 augmented rows

    cfg = TrainConfig(image_size=16, crop="none", online="augmix", jsd=True)
    ds = build_train_dataset([TrainInput(originals.limit(6))], cfg, clock)
    batch = ds.take_batch(6, batch_format="numpy")
    assert set(batch) == {"image", "image_aug1", "image_aug2", "label", "valid"}
    assert batch["image_aug1"].shape == batch["image"].shape == (6, 16, 16, 3)
    assert not np.array_equal(batch["image_aug1"], batch["image_aug2"])
    ray.kill(clock)


@pytest.mark.slow
@pytest.mark.parametrize("online", ["pixmix", "ipmix", "layermix"])
def test_every_fractal_method_runs_in_the_training_data_stage(ray_cluster, online):
    """The data stage of training with each fractal method (test_train.py trains through Ray
    Train with AugMix and LayerMix; the others share the same MethodStage path)."""
    import ray

    from raymix.train.data import build_train_dataset, create_epoch_clock

    clock = create_epoch_clock()
    originals = ray.data.from_items(rows(6, size=(24, 24), prefix="orig"))
    cfg = TrainConfig(image_size=16, crop="none", online=online, online_options={"fractals": "generated:8"})
    ray.get(clock.set.remote(0))
    plain = build_train_dataset([TrainInput(originals)], TrainConfig(image_size=16, crop="none"), clock).take_batch(6)
    batch = build_train_dataset([TrainInput(originals)], cfg, clock).take_batch(6, batch_format="numpy")
    assert batch["image"].shape == (6, 16, 16, 3) and batch["valid"].all()
    assert sorted(batch["label"]) == sorted(plain["label"])
    assert not np.array_equal(np.sort(batch["image"].reshape(6, -1), axis=0), np.sort(plain["image"].reshape(6, -1), axis=0))
    ray.kill(clock)


@pytest.mark.parametrize("name, batch, epochs, jsd", [("pixmix-imagenet", 256, 90, False),
                                                      ("layermix-imagenet", 128, 90, False),
                                                      ("ipmix-imagenet", 128, 180, True)])
def test_imagenet_recipes_follow_the_authors_scripts(name, batch, epochs, jsd):
    """Where the papers are silent, the values of the authors' imagenet.py scripts (wd 5e-4,
    Nesterov momentum 0.9, their batch sizes, IPMix's JSD loss; docs/training.md)."""
    from raymix.train.config import apply_recipe

    cfg = apply_recipe(name)
    assert (cfg.weight_decay, cfg.momentum, cfg.nesterov, cfg.lr, cfg.schedule) == (5e-4, 0.9, True, 0.01, "cosine")
    assert (cfg.batch_size, cfg.epochs, cfg.jsd, cfg.online) == (batch, epochs, jsd, name.split("-")[0])


def test_random_resized_crops_see_the_whole_image():
    """The decode keeps the aspect for random-resized crops, so crops reach the image's edges
    (a centre square would hide them), as the papers' RandomResizedCrop on the full image."""
    red_green_blue = np.zeros((32, 96, 3), dtype=np.uint8)
    red_green_blue[:, :32, 0] = red_green_blue[:, 32:64, 1] = red_green_blue[:, 64:, 2] = 255
    cfg = TrainConfig(image_size=14, crop="random_resized")
    batch = {"key": np.array(["k"], dtype=object), "image": np.array([red_green_blue]),
             "label": np.array([0]), "epoch": np.array([0])}
    prepared = prepare_images(batch, size=cfg.train_decode_size, resize=cfg.train_resize)
    assert prepared["image"][0].shape == (16, 48, 3)
    seen = set()
    for epoch in range(40):
        prepared["epoch"] = np.array([epoch])
        crop = crop_flip_batch(prepared, size=14, crop="random_resized", flip=False, seed=0)["image"][0]
        seen |= {c for c in range(3) if (crop[..., c] > 200).any()}
    assert seen == {0, 1, 2}
    assert TrainConfig(crop="pad").train_resize == "center_crop"


def test_miamix_second_view_is_an_independent_crop_of_the_same_row():
    from raymix.train.data import VIEW2

    b = prepare_images(as_batch(rows(6, bad=(2,))), size=40)
    b = {**b, "epoch": np.zeros(6, dtype=np.int64)}
    one = crop_flip_batch(b, size=32, crop="random_resized", flip=True, seed=3)
    two = crop_flip_batch(b, size=32, crop="random_resized", flip=True, seed=3, views=2)
    assert np.array_equal(one["image"], two["image"])  # the training view is unchanged
    assert two[VIEW2].shape == (6, 32, 32, 3)
    assert all(not np.array_equal(two["image"][i], two[VIEW2][i]) for i in (0, 1, 3, 4, 5))
    assert not two[VIEW2][2].any()  # a bad row stays a zero image in both views
    again = crop_flip_batch({k: v[::-1] for k, v in b.items()}, size=32, crop="random_resized", flip=True, seed=3,
                            views=2)
    assert np.array_equal(again[VIEW2][::-1], two[VIEW2])  # per key, not per position
    out = finalize(two, views=2)
    assert set(out) == {"image", VIEW2, "label", "valid"}


def test_second_view_draws_the_online_method_again_for_the_other_crop():
    from raymix.pipeline.rows import MethodStage
    from raymix.train.data import VIEW2, SecondView, online_stage_kwargs

    cfg = TrainConfig(image_size=32, online="layermix", miamix=True, seed=2)
    b = prepare_images(as_batch(rows(5, bad=(1,))), size=40)
    b = crop_flip_batch({**b, "epoch": np.ones(5, dtype=np.int64)}, size=32, crop="pad", flip=True, seed=2, views=2)
    out = SecondView(online_stage_kwargs(cfg, replicas=1))(b)
    plain = MethodStage(**online_stage_kwargs(cfg, replicas=1))({k: v for k, v in b.items() if k != VIEW2})
    assert np.array_equal(out["image"], plain["image"])  # the first view is what the plain stage makes
    assert out[VIEW2].shape == out["image"].shape
    assert all(not np.array_equal(out["image"][i], out[VIEW2][i]) for i in (0, 2, 3, 4))
    assert list(out["reason"]) == ["", "decode: broken", "", "", ""]
    assert np.array_equal(SecondView(online_stage_kwargs(cfg, replicas=1))(b)[VIEW2], out[VIEW2])


def test_train_step_hands_miamix_the_second_view():
    import torch

    from raymix.train.data import VIEW2
    from raymix.train.loop import TrainStep, normalize

    cfg = TrainConfig(arch="wrn10_1", num_classes=3, image_size=16, miamix=True, miamix_options={"p_self": 1.0})
    step = TrainStep(cfg, torch.device("cpu"))
    seen = {}
    mix = step.miamix

    def spy(x, labels, images2=None, *, generator=None):
        seen["view2"] = images2
        return mix(x, labels, images2, generator=generator)

    step.miamix = spy
    rng = np.random.default_rng(0)
    batch = {"image": torch.from_numpy(rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)),
             VIEW2: torch.from_numpy(rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)),
             "label": torch.tensor([0, 1, 2, 0]), "valid": torch.tensor([True, True, False, True])}
    loss, _, used, dropped = step(batch, 0)
    assert (used, dropped) == (3, 1) and torch.isfinite(loss)
    assert torch.equal(seen["view2"], normalize(batch[VIEW2][batch["valid"]], False))


@pytest.mark.slow
def test_ray_pipeline_and_local_training_make_the_same_two_views(ray_cluster):
    """MiAMix's second view through the Ray Data stage (SecondView on the actor pool) is what
    raymix.train.local makes from the same rows: one code path, two drivers."""
    import ray

    from raymix.train.data import VIEW2, build_train_dataset, create_epoch_clock
    from raymix.train.local import online_stage, train_batch

    items = rows(6, size=(24, 24), bad=(2,))
    for i, r in enumerate(items):
        r["label"] = i  # one label per row: lines the rows up whatever order they stream in
    cfg = TrainConfig(image_size=16, crop="pad", online="augmix", miamix=True, seed=4, data_batch_size=4)
    clock = create_epoch_clock()
    ray.get(clock.set.remote(1))
    batch = build_train_dataset([TrainInput(ray.data.from_items(items))], cfg, clock).take_batch(6, batch_format="numpy")
    ray.kill(clock)
    order = np.argsort(batch["label"])
    local = train_batch(as_batch(items), cfg, 1, online_stage(cfg))
    assert set(batch) == set(local) == {"image", VIEW2, "label", "valid"}
    for column in ("image", VIEW2, "valid"):
        assert np.array_equal(np.asarray(batch[column])[order], local[column])
    assert not np.array_equal(local["image"][0], local[VIEW2][0])
