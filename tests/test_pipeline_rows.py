"""The one Ray Data adapter (:class:`raymix.pipeline.rows.MethodStage`): replicas, keys,
provenance columns, pass-through of failed rows and per-row failure isolation, for the
"image" methods and the "pair" method DiffuseMix."""

import json

import numpy as np
import pytest
import torch

from fractal_double import NoiseBank
from methods_helpers import rows
from raymix import registry
from raymix.ops.rng import sample_generator
from raymix.pipeline.rows import OUTPUT_COLUMNS, MethodStage, expand_replicas

IMAGE_METHODS = list(registry.method_names(kind="image"))


def stage(name, replicas=1, seed=0, epoch=0, **options):
    if registry.method(name).fractals:
        options["fractals"] = NoiseBank(grayscale=name == "layermix")
    return MethodStage(name, options, seed=seed, replicas=replicas, epoch=epoch)


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_ray_path_rows_per_replica_with_provenance(name):
    batch = rows(5)
    out = stage(name, replicas=3, seed=7)(batch)
    assert len(out["key"]) == 15
    assert out["image"].dtype == np.uint8 and out["image"].shape == (15, 16, 16, 3)
    for j in range(15):
        i, r = divmod(j, 3)
        assert out["key"][j] == f"{batch['key'][i]}/{name}/{r}"
        assert out["source_key"][j] == batch["key"][i]
        assert out["replica"][j] == r and out["method"][j] == name and out["seed"][j] == 7
        assert out["label"][j] == batch["label"][i] and out["class_name"][j] == batch["class_name"][i]
        assert out["source"][j] == batch["source"][i]
        assert out["stage"][j] == "" and out["reason"][j] == ""
        assert json.loads(out["params"][j])["method"] == name
    assert out["replica"].dtype == np.int32 and out["label"].dtype == np.int64
    # each row's randomness is sample_generator(seed, key, replica, epoch, salt)
    salt = registry.create(name).salt
    x = torch.from_numpy(np.array(batch["image"][1:2])).permute(0, 3, 1, 2)
    expected, _ = stage(name, seed=7).method.augment(x, [sample_generator(7, batch["key"][1], 2, 0, salt)])
    assert np.array_equal(out["image"][5], expected[0].permute(1, 2, 0).numpy())
    # replicas differ from each other
    assert not np.array_equal(out["image"][0], out["image"][1])


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_ray_path_never_writes_its_input_and_returns_new_memory(name):
    batch = rows(5, readonly=False)  # writable: the method works on a view of it
    before = batch["image"].copy()
    out = stage(name)(batch)
    assert np.array_equal(batch["image"], before)
    assert not np.shares_memory(out["image"], batch["image"])


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_ray_path_is_independent_of_how_rows_are_batched(name):
    batch = rows(6)
    method = stage(name, replicas=2)
    whole = method(batch)
    halves = [method({k: v[s] for k, v in batch.items()}) for s in (slice(0, 2), slice(2, 6))]
    assert np.array_equal(whole["image"], np.concatenate([h["image"] for h in halves]))
    assert list(whole["params"]) == [p for h in halves for p in h["params"]]


def test_epoch_column_and_argument_change_the_draws():
    batch = rows(3)
    base = stage("pixmix")(batch)
    later = stage("pixmix", epoch=1)(batch)
    with_column = stage("pixmix")(dict(batch, epoch=np.ones(3, dtype=np.int64)))
    assert not np.array_equal(base["image"], later["image"])
    assert np.array_equal(later["image"], with_column["image"])


def test_failed_rows_pass_through_once_and_bad_rows_are_quarantined():
    batch = rows(4)
    batch["stage"][1], batch["reason"][1] = "decode", "truncated"
    out = stage("pixmix", replicas=2)(batch)
    assert len(out["key"]) == 7  # 3 good rows x 2 replicas + 1 passed-through row
    passed = [j for j in range(7) if out["reason"][j]]
    assert passed == [2]
    assert out["key"][2] == batch["key"][1] and out["stage"][2] == "decode" and out["reason"][2] == "truncated"
    assert np.array_equal(out["image"][2], batch["image"][1])

    # Images of different shapes (an object column): the odd one is quarantined at "augment".
    images = np.empty(3, dtype=object)
    images[0] = batch["image"][0]
    images[1] = np.zeros((16, 16), dtype=np.uint8)
    images[2] = batch["image"][2]
    ragged = {k: v[:3] for k, v in batch.items()}
    ragged["image"] = images
    ragged["reason"] = np.array([""] * 3, dtype=object)
    out = stage("pixmix")(ragged)
    assert list(out["stage"]) == ["", "augment", ""]
    assert "HxWx3" in out["reason"][1]
    assert out["image"].dtype == object


@pytest.mark.parametrize("name", ["layermix", "augmix"])
def test_a_row_that_raises_is_quarantined_and_the_rest_are_mixed(monkeypatch, name):
    method = stage(name, replicas=2)
    batch = rows(4)
    poisoned = 2
    real = method.method._apply

    def flaky(images, params):
        if any(int(im[0, 0, 0]) == int(batch["image"][poisoned][0, 0, 0]) for im in images):
            raise RuntimeError("kernel failed")
        return real(images, params)

    monkeypatch.setattr(method.method, "_apply", flaky)
    out = method(batch)
    assert len(out["key"]) == 3 * 2 + 1
    bad = [j for j in range(len(out["key"])) if out["stage"][j] == "augment"]
    assert len(bad) == 1 and out["key"][bad[0]] == batch["key"][poisoned]
    assert "RuntimeError: kernel failed" in out["reason"][bad[0]]
    assert sorted(set(out["source_key"])) == sorted(batch["key"])


@pytest.mark.slow
def test_map_batches_on_ray_data(ray_cluster):
    import fractal_double
    import ray

    ray.cloudpickle.register_pickle_by_value(fractal_double)
    batch = rows(6, readonly=False)
    ds = ray.data.from_items([{k: v[i] for k, v in batch.items()} for i in range(6)])
    out = ds.map_batches(
        MethodStage,
        fn_constructor_kwargs={"method": "pixmix", "options": {"fractals": NoiseBank()}, "replicas": 2, "seed": 5},
        batch_format="numpy",
        batch_size=4,
        compute=ray.data.ActorPoolStrategy(size=1),
    ).take_all()
    assert len(out) == 12
    assert sorted(r["key"] for r in out) == sorted(f"{k}/pixmix/{r}" for k in batch["key"] for r in range(2))
    local = MethodStage("pixmix", {"fractals": NoiseBank()}, replicas=2, seed=5)(batch)
    by_key = {r["key"]: r for r in out}
    for j, key in enumerate(local["key"]):
        assert np.array_equal(by_key[key]["image"], local["image"][j])
        assert by_key[key]["label"] == local["label"][j]




def test_output_columns_in_order_for_every_image_method():
    for name in IMAGE_METHODS:
        assert tuple(stage(name)(rows(2))) == OUTPUT_COLUMNS


def test_batch_methods_are_not_row_stages():
    with pytest.raises(ValueError, match="batch"):
        MethodStage("miamix")


# ---------------------------------------------------------------------------------------- pair: DiffuseMix


def edited_rows(n=4, replicas=2):
    """Rows as the editing stage leaves them: expanded per replica, with an ``edited`` image."""
    batch = expand_replicas(rows(n, size=24), replicas=replicas, method="diffusemix")
    batch["edited"] = np.ascontiguousarray(batch["image"][:, ::-1])
    batch["prompt"] = np.array([f"p{i}" for i in range(len(batch["key"]))], dtype=object)
    batch["edit_params"] = np.array([json.dumps({"prompt_index": i}) for i in range(len(batch["key"]))],
                                    dtype=object)
    return batch


def pair_stage(**kwargs):
    return MethodStage("diffusemix", {"fractals": NoiseBank()}, seed=4, **kwargs)


def test_pair_rows_keep_their_replica_and_key_and_record_the_edit():
    batch = edited_rows()
    out = pair_stage()(batch)
    assert tuple(out)[:len(OUTPUT_COLUMNS)] == OUTPUT_COLUMNS and "prompt" in out
    assert list(out["key"]) == [f"{k}/diffusemix/{r}" for k, r in zip(batch["source_key"], batch["replica"])]
    assert list(out["replica"]) == [0, 1] * 4 and out["replica"].dtype == np.int32
    method = pair_stage().method
    for j in range(8):
        params = json.loads(out["params"][j])
        assert params["prompt"] == f"p{j}" and params["edit"] == {"prompt_index": j}
        drawn = method.make_params(sample_generator(4, batch["source_key"][j], batch["replica"][j], 0, "mix"))
        assert {k: params[k] for k in ("mask", "fractal")} == {"mask": drawn.mask, "fractal": drawn.fractal}
    x = torch.from_numpy(np.array(batch["image"][3:4])).permute(0, 3, 1, 2)
    e = torch.from_numpy(np.array(batch["edited"][3:4])).permute(0, 3, 1, 2)
    gen = sample_generator(4, batch["source_key"][3], 1, 0, "mix")
    assert np.array_equal(out["image"][3], method.augment(x, [gen], e)[0][0].permute(1, 2, 0).numpy())


def test_pair_rows_that_failed_pass_through_and_a_raising_row_is_quarantined(monkeypatch):
    batch = edited_rows(3)
    batch["stage"][2], batch["reason"][2] = "edit", "blank-output"
    s = pair_stage(keep_intermediates=True)
    real = s.method.apply_with_hybrids
    poisoned = batch["image"][4]

    def flaky(images, params, edited):
        if any(torch.equal(im.permute(1, 2, 0), torch.from_numpy(np.asarray(poisoned))) for im in images):
            raise RuntimeError("mix failed")
        return real(images, params, edited)

    monkeypatch.setattr(s.method, "apply_with_hybrids", flaky)
    out = s(batch)
    assert len(out["key"]) == 6  # pair rows: one out per row in
    assert list(out["stage"]) == ["", "", "edit", "", "augment", "augment"]  # rows 4, 5: one image
    assert out["reason"][2] == "blank-output" and out["key"][2] == batch["source_key"][2]
    assert "RuntimeError: mix failed" in out["reason"][4] and list(out["replica"][4:]) == [0, 1]
    assert out["params"][2] == out["params"][4] == "{}"
    assert np.array_equal(out["image"][2], batch["image"][2])
    assert np.array_equal(out["generated"][0], batch["edited"][0]) and "hybrid" in out
    assert all(out["key"][j].endswith(f"/diffusemix/{out['replica'][j]}") for j in (0, 1, 3))
