"""What every method shares: determinism, the Ray Data path and the torchvision-style path."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fractal_double import NoiseBank
from methods_helpers import generators, rows, smooth_images
from raymix.methods import METHODS, IPMix, LayerMix, PixMix, get_method
from raymix.ops.rng import sample_generator

ONE_IMAGE_METHODS = ["pixmix", "ipmix", "layermix"]


def make(name, **kwargs):
    bank = NoiseBank(grayscale=name == "layermix")
    if name == "ipmix":
        kwargs.setdefault("preset", "cifar")
    return get_method(name, fractals=bank, **kwargs)


@pytest.mark.parametrize("name", ONE_IMAGE_METHODS)
def test_same_bytes_whatever_the_batch_or_chunk_size(name):
    x = smooth_images(11, size=32, seed=1)
    whole, infos = make(name).augment(x, generators(11))
    chunked, infos_c = make(name, chunk_size=3).augment(x, generators(11))
    singles = [make(name).augment(x[i:i + 1], generators(11)[i:i + 1]) for i in range(11)]
    assert whole.dtype == torch.uint8 and whole.shape == x.shape
    assert torch.equal(whole, chunked) and infos == infos_c
    assert torch.equal(whole, torch.cat([s[0] for s in singles]))
    assert infos == [s[1][0] for s in singles]
    # the same seed repeats itself, another seed or epoch does not
    assert torch.equal(whole, make(name).augment(x, generators(11))[0])
    assert not torch.equal(whole, make(name).augment(x, generators(11, seed=1))[0])
    assert not torch.equal(whole, make(name).augment(x, generators(11, epoch=1))[0])
    assert not torch.equal(whole, x)


@pytest.mark.parametrize("name", ONE_IMAGE_METHODS + ["diffusemix"])
def test_same_bytes_whatever_the_memory_format_which_the_output_keeps(name):
    x = smooth_images(6, size=32, seed=2)
    channels_last = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    method = make(name)
    if name == "diffusemix":
        edited = x.flip(-1).contiguous()
        a, infos_a = method.mix(x, edited, generators(6))
        b, infos_b = method.mix(channels_last, edited, generators(6))
    else:
        a, infos_a = method.augment(x, generators(6))
        b, infos_b = method.augment(channels_last, generators(6))
    assert torch.equal(a, b) and infos_a == infos_b
    assert a.is_contiguous() and b.permute(0, 2, 3, 1).is_contiguous()


@pytest.mark.parametrize("name", ONE_IMAGE_METHODS)
def test_params_are_json_and_name_the_method(name):
    _, infos = make(name).augment(smooth_images(5, 32), generators(5))
    for info in infos:
        assert json.loads(json.dumps(info)) == info
        assert info["method"] == name


@pytest.mark.parametrize("name", ONE_IMAGE_METHODS)
def test_ray_path_rows_per_replica_with_provenance(name):
    batch = rows(5)
    method = make(name, replicas=3, seed=7)
    out = method(batch)
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
    # each row's randomness is sample_generator(seed, key, replica, epoch)
    x = torch.from_numpy(np.array(batch["image"][1:2])).permute(0, 3, 1, 2)
    expected, _ = make(name, seed=7).augment(x, [sample_generator(7, batch["key"][1], 2, 0)])
    assert np.array_equal(out["image"][5], expected[0].permute(1, 2, 0).numpy())
    # replicas differ from each other
    assert not np.array_equal(out["image"][0], out["image"][1])


@pytest.mark.parametrize("name", ONE_IMAGE_METHODS)
def test_ray_path_never_writes_its_input_and_returns_new_memory(name):
    batch = rows(5, readonly=False)  # writable: the method works on a view of it
    before = batch["image"].copy()
    out = make(name, replicas=1)(batch)
    assert np.array_equal(batch["image"], before)
    assert not np.shares_memory(out["image"], batch["image"])


@pytest.mark.parametrize("name", ONE_IMAGE_METHODS)
def test_ray_path_is_independent_of_how_rows_are_batched(name):
    batch = rows(6)
    method = make(name, replicas=2)
    whole = method(batch)
    halves = [method({k: v[s] for k, v in batch.items()}) for s in (slice(0, 2), slice(2, 6))]
    assert np.array_equal(whole["image"], np.concatenate([h["image"] for h in halves]))
    assert list(whole["params"]) == [p for h in halves for p in h["params"]]


def test_epoch_column_and_attribute_change_the_draws():
    batch = rows(3)
    method = make("pixmix")
    base = method(batch)
    method.set_epoch(1)
    later = method(batch)
    method.set_epoch(0)
    with_column = method(dict(batch, epoch=np.ones(3, dtype=np.int64)))
    assert not np.array_equal(base["image"], later["image"])
    assert np.array_equal(later["image"], with_column["image"])


def test_failed_rows_pass_through_once_and_bad_rows_are_quarantined():
    batch = rows(4)
    batch["stage"][1], batch["reason"][1] = "decode", "truncated"
    out = make("pixmix", replicas=2)(batch)
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
    out = make("pixmix")(ragged)
    assert list(out["stage"]) == ["", "augment", ""]
    assert "HxWx3" in out["reason"][1]
    assert out["image"].dtype == object


def test_a_row_that_raises_is_quarantined_and_the_rest_are_mixed(monkeypatch):
    method = make("layermix", replicas=2)
    batch = rows(4)
    poisoned = 2
    real = method._augment

    def flaky(images, gens):
        if any(int(im[0, 0, 0]) == int(batch["image"][poisoned][0, 0, 0]) for im in images):
            raise RuntimeError("kernel failed")
        return real(images, gens)

    monkeypatch.setattr(method, "_augment", flaky)
    out = method(batch)
    assert len(out["key"]) == 3 * 2 + 1
    bad = [j for j in range(len(out["key"])) if out["stage"][j] == "augment"]
    assert len(bad) == 1 and out["key"][bad[0]] == batch["key"][poisoned]
    assert "RuntimeError: kernel failed" in out["reason"][bad[0]]
    assert sorted(set(out["source_key"])) == sorted(batch["key"])


@pytest.mark.parametrize("name", ONE_IMAGE_METHODS)
def test_torchvision_style_on_pil_tensor_and_batch(name):
    method = make(name)
    x = smooth_images(2, 32)
    pil = Image.fromarray(x[0].permute(1, 2, 0).numpy())
    out = method(pil)
    assert isinstance(out, Image.Image) and out.size == pil.size and out.mode == "RGB"
    single = method(x[0], generator=torch.Generator().manual_seed(3))
    assert single.shape == x[0].shape and single.dtype == torch.uint8 and single.is_contiguous()
    assert torch.equal(single, method(x[0], generator=torch.Generator().manual_seed(3)))
    batch = method(x)
    assert batch.shape == x.shape
    torch.manual_seed(0)
    a = method(x)
    torch.manual_seed(0)
    assert torch.equal(a, method(x))  # torch's default generator drives it


def test_works_in_a_plain_dataloader_with_workers():
    class Images(torch.utils.data.Dataset):
        def __init__(self, transform):
            self.x = smooth_images(8, 32)
            self.transform = transform

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.transform(self.x[i]), i

    def epoch(seed):
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(Images(make("pixmix")), batch_size=4, num_workers=2)
        return torch.cat([b for b, _ in loader])

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert first.shape == (8, 3, 32, 32) and first.dtype == torch.uint8
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_registry_and_constructor_arguments():
    assert set(METHODS) == {"pixmix", "ipmix", "layermix", "diffusemix"}
    for cls in (PixMix, IPMix, LayerMix):
        m = cls(seed=3, replicas=2, epoch=1, fractals=NoiseBank(), size=64)
        assert (m.seed, m.replicas, m.epoch, m.size) == (3, 2, 1, 64)
    with pytest.raises(ValueError):
        get_method("cutmix")
    with pytest.raises(ValueError):
        PixMix(preset="svhn")
    with pytest.raises(ValueError):
        LayerMix(ops=["rotate", "zoom"])


def test_input_validation():
    method = make("pixmix")
    with pytest.raises(TypeError):
        method.augment(torch.rand(1, 3, 8, 8), generators(1))
    with pytest.raises(ValueError):
        method.augment(smooth_images(2), generators(1))
    with pytest.raises(ValueError):
        method.augment(smooth_images(1)[:, :1], generators(1))


def test_pickles_without_a_built_bank():
    import pickle

    method = PixMix(fractals=NoiseBank())
    clone = pickle.loads(pickle.dumps(method))
    x = smooth_images(2, 32)
    assert torch.equal(method.augment(x, generators(2))[0], clone.augment(x, generators(2))[0])


@pytest.mark.slow
def test_map_batches_on_ray_data(ray_cluster):
    import fractal_double
    import ray

    ray.cloudpickle.register_pickle_by_value(fractal_double)
    batch = rows(6, readonly=False)
    ds = ray.data.from_items([{k: v[i] for k, v in batch.items()} for i in range(6)])
    out = ds.map_batches(
        PixMix,
        fn_constructor_kwargs={"fractals": NoiseBank(), "replicas": 2, "seed": 5},
        batch_format="numpy",
        batch_size=4,
        compute=ray.data.ActorPoolStrategy(size=1),
    ).take_all()
    assert len(out) == 12
    assert sorted(r["key"] for r in out) == sorted(f"{k}/pixmix/{r}" for k in batch["key"] for r in range(2))
    local = PixMix(fractals=NoiseBank(), replicas=2, seed=5)(batch)
    by_key = {r["key"]: r for r in out}
    for j, key in enumerate(local["key"]):
        assert np.array_equal(by_key[key]["image"], local["image"][j])
        assert by_key[key]["label"] == local["label"][j]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ONE_IMAGE_METHODS + ["diffusemix"])
def test_cuda_matches_cpu(name):
    x = smooth_images(6, 32)
    method = make(name)
    if name == "diffusemix":
        cpu, infos = method.mix(x, x.flip(-1), generators(6))
        gpu, infos_g = method.mix(x.cuda(), x.flip(-1).cuda(), generators(6))
    else:
        cpu, infos = method.augment(x, generators(6))
        gpu, infos_g = method.augment(x.cuda(), generators(6))
    assert gpu.is_cuda and gpu.dtype == torch.uint8 and infos == infos_g
    diff = (gpu.cpu().int() - cpu.int()).abs()
    assert (diff > 2).float().mean() < 0.01  # float rounding differs between devices, rarely by more


def test_methods_build_the_fractal_bank_from_a_spec(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path / "cache"))
    pix = PixMix(fractals="generated:4", size=32, seed=1)
    lay = LayerMix(fractals="generated:4", size=32, seed=1)
    assert not pix.fractals.grayscale and lay.fractals.grayscale
    assert set(pix.fractals.ids) == set(lay.fractals.ids)
    gray, ids = lay.sample_fractals([1, 2, 3], 24, 24, "cpu")
    assert gray.shape == (3, 3, 24, 24) and torch.equal(gray[:, 0], gray[:, 1])
    out = pix(rows(4, 24))
    used = {json.loads(p)["fractal"] for p in out["params"]} - {None}
    assert used and used <= set(pix.fractals.ids)
