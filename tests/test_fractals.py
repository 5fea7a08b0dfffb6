"""Procedural fractals (raymix.fractals.generators) and fractal banks (raymix.fractals.bank)."""

from __future__ import annotations

import io
import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from raymix.fractals import bank as bank_module
from raymix.fractals import FractalBank
from raymix.fractals import generators as F

SIZE = 96  # small images keep the tests fast; the generators are resolution-independent


@pytest.fixture(autouse=True)
def fresh_caches(tmp_path, monkeypatch):
    """Every test starts with an empty process cache and its own disk cache, and runs the small
    generator ops on one thread (as banks do), which keeps them fast on a busy machine."""
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path / "cache"))
    bank_module._banks.clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    bank_module._banks.clear()


def accepted(kind: str, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """The first ``n`` images of generator ``kind`` that pass its filter, batch by batch."""
    draw = F.ifs_batch if kind == "ifs" else F.orbit_trap_batch
    parts, have = [], 0
    while have < n:
        parts.append(draw(16 if kind == "ifs" else 8, size, generator).images)
        have += len(parts[-1])
    return torch.cat(parts)[:n]


def spectral_slope(images: torch.Tensor) -> torch.Tensor:
    """Per image, the slope of log radial power vs log frequency of the luma (white noise ~0,
    natural and fractal images about -2)."""
    y = F.to_grayscale(images).squeeze(1).to(torch.float64)
    y = y - y.mean((-2, -1), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(y).abs() ** 2, dim=(-2, -1))
    S = y.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(S) - S // 2, torch.arange(S) - S // 2, indexing="ij")
    radius = torch.sqrt(xx.double() ** 2 + yy.double() ** 2).round().long()
    keep = (radius >= 2) & (radius < S // 2)
    r = radius[keep]
    freqs = torch.arange(2, S // 2)
    slopes = []
    counts = torch.bincount(r, minlength=S).clamp(min=1)
    for p in power:
        radial = torch.zeros(S, dtype=torch.float64).index_add_(0, r, p[keep]) / counts
        lx, ly = freqs.double().log(), radial[2 : S // 2].clamp(min=1e-12).log()
        lx = lx - lx.mean()
        slopes.append(float((lx * (ly - ly.mean())).sum() / (lx * lx).sum()))
    return torch.tensor(slopes)


# --------------------------------------------------------------------------------------------------
# Generators


def test_ifs_maps_are_contractive_with_det_probabilities():
    for sampler in ("svd", "fractaldb"):
        p = F.sample_ifs(64, torch.Generator().manual_seed(0), n_maps=(2, 5), sampler=sampler)
        used = p.probs > 0
        assert p.n_maps.min() >= 2 and p.n_maps.max() <= 5
        sv = torch.linalg.svdvals(p.linear)[used]
        assert sv.max() < 1.0
        det = torch.linalg.det(p.linear).abs() * used
        torch.testing.assert_close(p.probs, det / det.sum(1, keepdim=True))
        torch.testing.assert_close(p.probs.sum(1), torch.ones(64))


def _manual_ifs(linear, shift) -> F.IFSParams:
    linear = torch.tensor(linear, dtype=torch.float32)[None]
    shift = torch.tensor(shift, dtype=torch.float32)[None]
    K = linear.shape[1]
    probs = torch.full((1, K), 1.0 / K)
    hue = torch.linspace(0, 1, K)[None]
    palette = torch.tensor([[[0.5] * 3, [0.5] * 3, [1.0] * 3, [0.0, 0.33, 0.67]]])
    return F.IFSParams(linear, shift, probs, hue, palette)


def test_filling_rate_measures_occupied_area():
    half = [[0.5, 0.0], [0.0, 0.5]]
    sierpinski = _manual_ifs([half] * 3, [[0.0, 0.0], [0.5, 0.0], [0.25, 0.5]])
    square = _manual_ifs([half] * 4, [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5]])
    line = _manual_ifs([[[0.5, 0.0], [0.0, 0.0]]] * 2, [[0.0, 0.0], [0.5, 0.0]])
    rates = {}
    for name, params in (("sierpinski", sierpinski), ("square", square), ("line", line)):
        _, rate = F.render_ifs(params, 128, torch.Generator().manual_seed(0))
        rates[name] = float(rate)
    # FractalDB density (0.38 points per pixel): a filled square reaches 1 - exp(-0.38) ~ 0.32.
    assert 0.28 < rates["square"] < 0.36
    assert 0.15 < rates["sierpinski"] < rates["square"]
    assert rates["line"] < 0.02


def test_filling_rate_filter_keeps_exactly_the_range():
    for sampler, expected in (("svd", F.SVD_FILLING_RATE), ("fractaldb", F.FRACTALDB_FILLING_RATE)):
        res = F.ifs_batch(48, 64, torch.Generator().manual_seed(3), sampler=sampler, require_structure=False,
                          n_points=1024, n_steps=24)
        rate = res.candidate_filling_rate
        inside = (rate >= expected[0]) & (rate <= expected[1])
        assert torch.equal(res.accepted, inside)
        assert (~res.accepted).any(), "no candidate was rejected: the test says nothing"
        rejected = rate[~res.accepted]
        assert ((rejected < expected[0]) | (rejected > expected[1])).all()
        assert len(res.images) == int(inside.sum()) == len(res.params)
    custom = F.ifs_batch(32, 64, torch.Generator().manual_seed(4), filling_rate=(0.1, 0.15), require_structure=False,
                         n_points=1024, n_steps=24)
    assert ((custom.filling_rate >= 0.1) & (custom.filling_rate <= 0.15)).all()


@pytest.mark.parametrize("kind", ["ifs", "orbit"])
def test_generated_images_are_structured_not_uniform_not_noise(kind):
    g = torch.Generator().manual_seed(11)
    images = accepted(kind, 12, SIZE, g)
    assert images.dtype == torch.uint8 and images.shape == (12, 3, SIZE, SIZE)
    stats = F.structure_stats(images)
    assert (stats["std"] > 10).all()
    assert (stats["edge_density"] > 0.01).all() and (stats["edge_density"] < 0.6).all()
    assert (stats["neighbour_corr"] > 0.5).all()
    assert (spectral_slope(images) < -1.0).all()
    # Colour: not all gray.
    assert (images[:, 0].int() - images[:, 1].int()).abs().float().mean() > 5
    # And the checks do tell noise and flat images apart.
    noise = torch.randint(0, 256, (2, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    flat = torch.full((2, 3, SIZE, SIZE), 90, dtype=torch.uint8)
    flat[:, :, 40:42, 40:42] = 200
    assert not F.is_structured(noise).any() and not F.is_structured(flat).any()
    assert (spectral_slope(noise) > -0.5).all()


def test_orbit_trap_rejects_unstructured_views():
    res = F.orbit_trap_batch(8, 64, torch.Generator().manual_seed(5))
    rendered = F.render_orbit_trap(F.sample_orbit_trap(8, torch.Generator().manual_seed(5)), 64)
    assert torch.equal(res.accepted, F.is_structured(rendered, min_busy_tiles=0.5))
    assert torch.equal(res.images, rendered[res.accepted])


def test_generators_are_deterministic_in_the_generator_state():
    a = accepted("ifs", 4, 64, torch.Generator().manual_seed(1))
    b = accepted("ifs", 4, 64, torch.Generator().manual_seed(1))
    c = accepted("ifs", 4, 64, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    a = accepted("orbit", 3, 64, torch.Generator().manual_seed(1))
    b = accepted("orbit", 3, 64, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_to_grayscale_matches_torchvision():
    x = torch.randint(0, 256, (5, 3, 17, 19), dtype=torch.uint8)
    ours = F.to_grayscale(x)
    ref = TF.rgb_to_grayscale(x)
    assert ours.shape == (5, 1, 17, 19)
    assert (ours.int() - ref.int()).abs().max() <= 1
    three = F.to_grayscale(x, num_output_channels=3)
    assert three.shape == x.shape and torch.equal(three[:, 0], three[:, 2])


# --------------------------------------------------------------------------------------------------
# Generated banks


def test_generate_is_deterministic_and_seed_dependent():
    a = FractalBank.generate(6, SIZE, seed=1, cache=False)
    bank_module._banks.clear()
    b = FractalBank.generate(6, SIZE, seed=1, cache=False)
    c = FractalBank.generate(6, SIZE, seed=2, cache=False)
    assert a is not b
    assert torch.equal(a.images, b.images) and a.ids == b.ids
    assert not torch.equal(a.images, c.images)
    assert a.ids == ["ifs-000000", "orbit-000000", "ifs-000001", "orbit-000001", "ifs-000002", "orbit-000002"]
    assert a.images.dtype == torch.uint8 and a.images.shape == (6, 3, SIZE, SIZE)
    assert len(a) == 6 and not a.grayscale and a.resolution == SIZE


def test_smaller_bank_is_a_prefix_of_larger_bank():
    small = FractalBank.generate(3, SIZE, seed=5, kinds=("ifs",), cache=False)
    large = FractalBank.generate(5, SIZE, seed=5, kinds=("ifs",), cache=False)
    assert torch.equal(small.images, large.images[:3]) and large.ids[:3] == small.ids
    mixed = FractalBank.generate(4, SIZE, seed=5, cache=False)
    ifs_in_mixed = [i for i, name in enumerate(mixed.ids) if name.startswith("ifs-")]
    assert torch.equal(mixed.images[ifs_in_mixed], large.images[:2])


def test_process_cache_and_disk_cache(tmp_path):
    a = FractalBank.generate(4, SIZE, seed=9)
    assert FractalBank.generate(4, SIZE, seed=9) is a
    files = sorted(p.name for p in (tmp_path / "cache" / "fractals").iterdir())
    assert [f.rsplit(".", 1)[1] for f in files] == ["json", "lock", "npy"], files
    bank_module._banks.clear()  # as a second process on the machine: read, don't rebuild
    build = bank_module._generate
    bank_module._generate = lambda *a, **k: pytest.fail("rebuilt despite the disk cache")
    try:
        b = FractalBank.generate(4, SIZE, seed=9)
    finally:
        bank_module._generate = build
    assert b is not a and torch.equal(a.images, b.images) and a.ids == b.ids
    gray = FractalBank.generate(4, SIZE, seed=9, grayscale=True)  # made from the colour file, then cached
    assert len(list((tmp_path / "cache" / "fractals").glob("*.npy"))) == 2
    assert torch.equal(gray.images[:, :1], F.to_grayscale(a.images))
    bank_module._banks.clear()
    assert torch.equal(FractalBank.generate(4, SIZE, seed=9, grayscale=True).images, gray.images)


def test_grayscale_bank_has_three_equal_channels():
    bank = FractalBank.generate(4, SIZE, seed=3, grayscale=True, cache=False)
    assert bank.grayscale and bank.images.shape == (4, 3, SIZE, SIZE)
    assert torch.equal(bank.images[:, 0], bank.images[:, 1]) and torch.equal(bank.images[:, 1], bank.images[:, 2])
    out, _ = bank.sample([torch.Generator().manual_seed(i) for i in range(6)], (40, 50), flip=True)
    assert out.shape == (6, 3, 40, 50) and out.is_contiguous()
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])


def test_pickles_as_recipe():
    bank = FractalBank.generate(2, 64, seed=4)
    data = pickle.dumps(bank)
    assert len(data) < 2000
    assert pickle.loads(data) is bank
    bank_module._banks.clear()
    again = pickle.loads(data)
    assert torch.equal(again.images, bank.images)
    loose = FractalBank(bank.images.clone(), ["a", "b"])
    copy = pickle.loads(pickle.dumps(loose))
    assert torch.equal(copy.images, loose.images) and copy.ids == ["a", "b"]


def test_load_specs(tmp_path, monkeypatch):
    monkeypatch.setattr(bank_module, "DEFAULT_BANK_SIZE", 3)
    assert FractalBank.load("generated:3", size=64, seed=2) is FractalBank.generate(3, 64, 2)
    assert FractalBank.load(None, size=64, seed=2) is FractalBank.load("generated", size=64, seed=2)
    assert FractalBank.load(None, size=64, seed=2) is FractalBank.generate(3, 64, 2)
    for bad in ("generated:", "generated:0", "generated:x"):
        with pytest.raises(ValueError):
            FractalBank.load(bad, size=64)
    folder = tmp_path / "set"
    folder.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(folder / "a.png")
    bank = FractalBank.load(str(folder), size=32, grayscale=True)
    assert bank.ids == ["a.png"] and bank.grayscale


# --------------------------------------------------------------------------------------------------
# Sampling


def _window_of(crop: torch.Tensor, image: torch.Tensor) -> bool:
    H, W = crop.shape[-2:]
    windows = image.unfold(1, H, 1).unfold(2, W, 1)  # (C, nh, nw, H, W)
    return bool((windows == crop[:, None, None]).all(-1).all(-1).all(0).any())


@pytest.fixture
def small_bank() -> FractalBank:
    images = torch.randint(0, 256, (5, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return FractalBank(images, [f"f{i}" for i in range(5)])


def test_sample_crops_a_window_of_the_chosen_fractal(small_bank):
    gens = [torch.Generator().manual_seed(i) for i in range(12)]
    out, ids = small_bank.sample(gens, (28, 20))  # R = ceil(28 * 8/7) = 32 = S: no resize
    assert out.dtype == torch.uint8 and out.shape == (12, 3, 28, 20) and len(ids) == 12
    for crop, name in zip(out, ids, strict=True):
        assert _window_of(crop, small_bank.images[small_bank.ids.index(name)])
    assert len(set(ids)) > 2


def test_sample_flips_both_ways(small_bank):
    gens = [torch.Generator().manual_seed(i) for i in range(24)]
    out, ids = small_bank.sample(gens, (28, 28), flip=True)
    seen = set()
    for crop, name in zip(out, ids, strict=True):
        image = small_bank.images[small_bank.ids.index(name)]
        for h in (False, True):
            for v in (False, True):
                flipped = crop.flip(-1) if h else crop
                flipped = flipped.flip(-2) if v else flipped
                if _window_of(flipped, image):
                    seen.add((h, v))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_sample_is_per_generator_and_independent_of_the_batch(small_bank):
    seeds = [3, 1, 4, 1, 5, 9]
    batch, ids = small_bank.sample([torch.Generator().manual_seed(s) for s in seeds], (24, 24), flip=True)
    for i, s in enumerate(seeds):
        alone, one_id = small_bank.sample([torch.Generator().manual_seed(s)], (24, 24), flip=True)
        assert torch.equal(batch[i], alone[0]) and ids[i] == one_id[0]
    # Each generator advances by exactly one rand(4), whatever the options.
    for flip in (False, True):
        g = torch.Generator().manual_seed(7)
        small_bank.sample([g], (24, 24), flip=flip)
        ref = torch.Generator().manual_seed(7)
        torch.rand(4, generator=ref)
        assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=ref))


def test_sample_resizes_down_once_and_up_on_the_fly(small_bank):
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    down, _ = small_bank.sample(gens, (14, 14))  # R = 16 < 32: the whole bank resized once
    assert down.shape == (4, 3, 14, 14) and 16 in small_bank._resized
    again, _ = small_bank.sample([torch.Generator().manual_seed(i) for i in range(4)], (14, 14))
    assert torch.equal(down, again)
    up, ids = small_bank.sample(gens, (40, 48))  # R = 55 > 32: only the chosen ones are resized
    assert up.shape == (4, 3, 40, 48) and 55 not in small_bank._resized
    name = ids[0]
    big = TF.resize(small_bank.images[small_bank.ids.index(name)][None], [55, 55], antialias=True)[0]
    assert _window_of(up[0], big)
    empty, none = small_bank.sample([], (8, 8))
    assert empty.shape == (0, 3, 8, 8) and none == []


# --------------------------------------------------------------------------------------------------
# Folders


def _png(color, size=(60, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_of(image: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _folder_files() -> dict[str, bytes]:
    fractal = accepted("orbit", 1, 80, torch.Generator().manual_seed(0))[0]
    return {
        "b.png": _png((200, 20, 20)),
        "a.jpg": _jpeg_of(fractal),
        "sub/c.png": _png((20, 20, 200), size=(30, 90)),
        "broken.jpg": b"\xff\xd8 not really a jpeg",
        "README.txt": b"ignored: not an image suffix",
    }


def _check_folder_bank(bank: FractalBank, size: int):
    assert bank.ids == ["a.jpg", "b.png", "sub/c.png"]
    assert bank.images.shape == (3, 3, size, size) and bank.images.dtype == torch.uint8
    assert [s[0] for s in bank.skipped] == ["broken.jpg"]
    assert (bank.images[1].float().mean((1, 2)) - torch.tensor([200.0, 20, 20])).abs().max() < 2
    assert (bank.images[2].float().mean((1, 2)) - torch.tensor([20.0, 20, 200])).abs().max() < 2
    assert F.structure_stats(bank.images[:1])["std"][0] > 10


def test_from_folder_local_skips_corrupt_files(tmp_path):
    root = tmp_path / "fractals"
    for name, data in _folder_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        bank = FractalBank.from_folder(str(root), size=32)
    _check_folder_bank(bank, 32)
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        assert FractalBank.from_folder(f"file://{root}", size=32).ids == bank.ids
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        FractalBank.from_folder(str(tmp_path / "empty"), size=32)


def test_from_folder_cache_notices_changed_files(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "a.png").write_bytes(_png((0, 0, 0)))
    first = FractalBank.from_folder(str(root), size=16)
    (root / "b.png").write_bytes(_png((255, 255, 255)))
    bank_module._banks.clear()
    second = FractalBank.from_folder(str(root), size=16)
    assert first.ids == ["a.png"] and second.ids == ["a.png", "b.png"]


def test_from_folder_s3(s3_bucket):
    from raymix.io.storage import filesystem

    fs, root = filesystem(s3_bucket)
    for name, data in _folder_files().items():
        fs.pipe(f"{root}/set/{name}", data)
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        bank = FractalBank.from_folder(f"{s3_bucket}/set", size=24)
    _check_folder_bank(bank, 24)
    # A worker unpickling the bank reads the same folder (or its disk cache) again.
    bank_module._banks.clear()
    with pytest.warns(UserWarning, match="skipped 1 of 4"):  # cached skips are reported again
        again = pickle.loads(pickle.dumps(bank))
    assert torch.equal(again.images, bank.images) and again.ids == bank.ids


def test_spectral_slope_helper_is_sane():
    S = 64
    fy = torch.fft.fftfreq(S)[:, None]
    fx = torch.fft.fftfreq(S)[None, :]
    f = torch.sqrt(fx**2 + fy**2).clamp(min=1 / S)
    phase = torch.rand(S, S, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    field = torch.fft.ifft2(torch.polar(f ** -1.0, phase)).real  # power ~ 1/f^2
    img = ((field - field.min()) / (field.max() - field.min()) * 255).to(torch.uint8)
    slope = spectral_slope(img.expand(1, 3, S, S))
    assert -2.6 < float(slope) < -1.4
    assert np.isfinite(slope.numpy()).all()


@pytest.mark.parametrize("grayscale,flip", [(False, False), (True, True)])
def test_sample_channels_last_gives_the_same_values(grayscale, flip):
    bank = FractalBank.generate(8, 32, seed=3, grayscale=grayscale, cache=False)
    gens = lambda: [torch.Generator().manual_seed(s) for s in range(6)]  # noqa: E731
    plain, ids = bank.sample(gens(), (28, 24), flip=flip)
    fast, fast_ids = bank.sample(gens(), (28, 24), flip=flip, channels_last=True)
    assert ids == fast_ids and torch.equal(plain, fast)
    assert fast.is_contiguous(memory_format=torch.channels_last) and plain.is_contiguous()
