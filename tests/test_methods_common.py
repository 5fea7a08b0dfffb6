"""What every method shares: the make_params/apply/describe/caption contract, determinism and the
torchvision-style path (the Ray Data rows: tests/test_pipeline_rows.py)."""

import json

import pytest
import torch
from PIL import Image

from fractal_double import NoiseBank
from methods_helpers import generators, smooth_images
from raymix import registry
from raymix.methods import IPMix, LayerMix, PixMix, get_method
from raymix.methods.aga import AGAParams
from raymix.methods.augmix import AugMix, AugMixParams
from raymix.methods.diffusemix import DiffuseMixParams
from raymix.methods.ipmix import IPMixParams
from raymix.methods.layermix import LayerMixParams
from raymix.methods.pixmix import PixMixParams
from raymix.ops.rng import sample_generator, sample_seed

ONE_IMAGE_METHODS = ["pixmix", "ipmix", "layermix"]
PARAMS = {"pixmix": PixMixParams, "ipmix": IPMixParams, "layermix": LayerMixParams, "augmix": AugMixParams,
          "diffusemix": DiffuseMixParams, "aga": AGAParams}


def make(name, **kwargs):
    if registry.method(name).fractals:
        kwargs["fractals"] = NoiseBank(grayscale=name == "layermix")
    if name == "ipmix":
        kwargs.setdefault("preset", "cifar")
    return get_method(name, **kwargs)


def run(method, x, gens):
    """``augment``, with the edited images a pair method also takes."""
    if registry.method(method.name).kind == "pair":
        return method.augment(x, gens, x.flip(-1).contiguous())
    return method.augment(x, gens)


@pytest.mark.parametrize("name", registry.method_names(kind="image") + registry.method_names(kind="pair"))
def test_make_params_then_apply_is_augment(name):
    x = smooth_images(7, size=32, seed=4)
    method = make(name, chunk_size=3)
    expected, infos = run(method, x, generators(7))
    params = [method.make_params(g, (32, 32)) for g in generators(7)]
    assert all(type(p) is PARAMS[name] for p in params)
    extra = (x.flip(-1).contiguous(),) if registry.method(name).kind == "pair" else ()
    assert torch.equal(method.apply(x, params, *extra), expected)
    assert [method.describe(p) for p in params] == infos
    # applying is deterministic: the same params give the same pixels, another image's do not
    assert torch.equal(method.apply(x, params, *extra), expected)
    assert not torch.equal(method.apply(x, params[1:] + params[:1], *extra), expected)


@pytest.mark.parametrize("name", registry.method_names(kind="image") + registry.method_names(kind="pair"))
def test_describe_is_json_and_caption_is_short_text(name):
    method = make(name)
    for g in generators(6):
        params = method.make_params(g, (32, 32))
        info = method.describe(params)
        assert info["method"] == name and json.loads(json.dumps(info)) == info
        text = method.caption(params)
        assert text and isinstance(text, str) and len(text.splitlines()) <= 8


def test_captions_spell_out_the_draws():
    pix = make("pixmix")
    p = next(p for g in generators(40) if (p := pix.make_params(g, (32, 32))).fractal and p.start)
    lines = pix.caption(p).splitlines()
    assert lines[0].startswith("start: ") and lines[0] != "start: x" and lines[-1] == p.fractal
    assert len(lines) == len(p.rounds) + 2
    lay = make("layermix").make_params(generators(1)[0], (32, 32))
    assert make("layermix").caption(lay).startswith(f"output {lay.step + 1}: {lay.op}")
    ip = make("ipmix").make_params(generators(1)[0], (32, 32))
    assert make("ipmix").caption(ip).splitlines()[-2 if ip.fractal else -1].startswith("w ")
    assert make("augmix").caption(AugMixParams(1)) == "severity 1, width 3, depth 1-3"
    dm = make("diffusemix").make_params(generators(1)[0])
    assert make("diffusemix").caption(dm) == f"mask: {dm.mask} half, lambda 0.2\n{dm.fractal}"


def test_fractal_ids_in_params_are_the_fractals_applied():
    method = make("layermix")
    params = [method.make_params(g, (32, 32)) for g in generators(30)]
    three = [p for p in params if p.step == 2]
    assert three and all(p.fractal is None for p in params if p.step != 2)
    _, ids = method.sample_fractals([p.fractal_seed for p in three], 32, 32, "cpu")
    assert ids == [p.fractal for p in three]


def test_augmix_joins_the_contract_through_the_registry():
    method = registry.create("augmix", seed=3)
    assert isinstance(method, AugMix) and method.salt == "augmix"
    gen = sample_generator(3, "img/0", 1, 2, method.salt)
    # the seed AugMix always ran torchvision under: sample_seed(seed, key, replica, epoch, "augmix")
    assert method.make_params(gen, (32, 32)) == AugMixParams(sample_seed(3, "img/0", 1, 2, salt="augmix"))
    x = smooth_images(4, 32)
    out, infos = method.augment(x, generators(4))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(infos[2]["seed"])
        assert torch.equal(out[2], method.augmix(x[2]))
    assert infos[0] == {"method": "augmix", "severity": 1, "mixture_width": 3, "chain_depth": -1, "alpha": 1.0,
                        "all_ops": False, "seed": generators(4)[0].initial_seed()}


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
        a, infos_a = method.augment(x, generators(6), edited)
        b, infos_b = method.augment(channels_last, generators(6), edited)
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
    for name in registry.method_names(kind="image") + registry.method_names(kind="pair"):
        assert type(get_method(name)) is registry.method(name).load() and get_method(name).name == name
    for cls in (PixMix, IPMix, LayerMix):
        m = cls(seed=3, fractals=NoiseBank(), fractal_size=64)
        assert (m.seed, m.fractal_size) == (3, 64)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ONE_IMAGE_METHODS + ["diffusemix"])
def test_cuda_matches_cpu(name):
    x = smooth_images(6, 32)
    method = make(name)
    if name == "diffusemix":
        cpu, infos = method.augment(x, generators(6), x.flip(-1))
        gpu, infos_g = method.augment(x.cuda(), generators(6), x.flip(-1).cuda())
    else:
        cpu, infos = method.augment(x, generators(6))
        gpu, infos_g = method.augment(x.cuda(), generators(6))
    assert gpu.is_cuda and gpu.dtype == torch.uint8 and infos == infos_g
    diff = (gpu.cpu().int() - cpu.int()).abs()
    assert (diff > 2).float().mean() < 0.01  # float rounding differs between devices, rarely by more


def test_methods_build_the_fractal_bank_from_a_spec(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path / "cache"))
    pix = PixMix(fractals="generated:4", fractal_size=32, seed=1)
    lay = LayerMix(fractals="generated:4", fractal_size=32, seed=1)
    assert not pix.fractals.grayscale and lay.fractals.grayscale
    assert set(pix.fractals.ids) == set(lay.fractals.ids)
    gray, ids = lay.sample_fractals([1, 2, 3], 24, 24, "cpu")
    assert gray.shape == (3, 3, 24, 24) and torch.equal(gray[:, 0], gray[:, 1])
    _, infos = pix.augment(smooth_images(8, 24), generators(8))
    used = {info["fractal"] for info in infos} - {None}
    assert used and used <= set(pix.fractals.ids)


@pytest.mark.parametrize("name", ["pixmix", "layermix"])
def test_generated_bank_is_the_same_whatever_the_run_seed(name, tmp_path, monkeypatch):
    """One fixed bank (bank_seed 0) for every run seed; another bank_seed, another bank."""
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path))
    a = get_method(name, seed=1, fractals="generated:3", fractal_size=32).fractals
    b = get_method(name, seed=2, fractals="generated:3", fractal_size=32).fractals
    c = get_method(name, seed=1, fractals="generated:3", fractal_size=32, bank_seed=5).fractals
    assert a.ids == b.ids and torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
