"""AugMix: torchvision's, seeded per sample; its rows through the pipeline's MethodStage."""

import numpy as np
import pytest
import torch

from raymix.methods.augmix import AugMix
from raymix.pipeline.rows import MethodStage


def stage(seed=0, replicas=1, epoch=0):
    return MethodStage("augmix", seed=seed, replicas=replicas, epoch=epoch)


def batch(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "key": np.array([f"img{i}" for i in range(n)], dtype=object),
        "image": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        "label": np.arange(n, dtype=np.int64),
        "class_name": np.array(["c"] * n, dtype=object),
        "source": np.array(["mem"] * n, dtype=object),
        "stage": np.array([""] * n, dtype=object),
        "reason": np.array(["", "", "decode: truncated", "", "", ""], dtype=object)[:n],
    }


def test_rows_per_replica_with_provenance():
    out = stage(seed=1, replicas=2)(batch())
    # Row 2 failed upstream: it passes once, with replica -1.
    assert out["image"].shape == (11, 32, 32, 3) and out["image"].dtype == np.uint8
    assert list(out["key"][:2]) == ["img0/augmix/0", "img0/augmix/1"]
    assert list(out["source_key"][:2]) == ["img0", "img0"]
    assert list(out["replica"][:7]) == [0, 1, 0, 1, -1, 0, 1]
    assert list(out["key"][4:6]) == ["img2", "img3/augmix/0"]
    assert (out["label"] == np.array([0, 0, 1, 1, 2, 3, 3, 4, 4, 5, 5])).all()
    assert not np.array_equal(out["image"][0], out["image"][1])
    assert out["params"][4] == "{}" and '"seed": ' in out["params"][0] and list(out["seed"][:2]) == [1, 1]


def test_bad_rows_pass_through_untouched():
    b = batch()
    out = stage(seed=1)(b)
    assert np.array_equal(out["image"][2], b["image"][2]) and out["reason"][2]
    assert not np.array_equal(out["image"][0], b["image"][0])


def test_draws_depend_on_seed_key_replica_epoch_only():
    b = batch()
    whole = stage(seed=3)(b)["image"]
    halves = [stage(seed=3)({k: v[s] for k, v in b.items()})["image"] for s in (slice(0, 2), slice(2, 6))]
    assert np.array_equal(whole, np.concatenate(halves))
    assert not np.array_equal(whole, stage(seed=4)(b)["image"])
    # The epoch column overrides the constructor's epoch.
    later = stage(seed=3)({**b, "epoch": np.full(6, 1)})["image"]
    assert np.array_equal(later, stage(seed=3, epoch=1)(b)["image"])
    assert not np.array_equal(later, whole)


def test_torchvision_style_transform_on_tensors():
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    out = AugMix()(image)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert AugMix()(image.unsqueeze(0).repeat(4, 1, 1, 1)).shape == (4, 3, 24, 24)


def test_presets_are_the_authors_severities():
    assert AugMix().severity == 1 and AugMix(preset="imagenet").severity == 1  # imagenet.py
    assert AugMix(preset="cifar").severity == 3  # cifar.py
    assert AugMix(preset="cifar", severity=2).severity == 2
    with pytest.raises(ValueError, match="unknown preset"):
        AugMix(preset="svhn")


def test_augmix_recipes():
    from raymix.train.config import apply_recipe
    from raymix.train.loop import learning_rate

    imagenet = apply_recipe("augmix-imagenet")
    assert (imagenet.epochs, imagenet.batch_size, imagenet.weight_decay, imagenet.nesterov) == (180, 256, 1e-4, False)
    assert imagenet.online == "augmix" and imagenet.online_options == {"preset": "imagenet"} and imagenet.jsd
    # imagenet.py divides the rate by 10 at 1/3 and 2/3 of the epochs
    assert [round(learning_rate(imagenet, e), 6) for e in (59, 60, 119, 120)] == [0.1, 0.01, 0.01, 0.001]
    cifar = apply_recipe("augmix-cifar")
    assert (cifar.arch, cifar.epochs, cifar.batch_size, cifar.weight_decay, cifar.nesterov) == (
        "wrn40_2", 100, 128, 5e-4, True)
    assert cifar.online_options == {"preset": "cifar"} and cifar.jsd and cifar.crop == "pad"
