import math

import numpy as np
import pytest
import torch

from raymix.methods.miamix import MASK_GENERATORS, MiAMix, smoothing_windows
from raymix.ops import msda


def chi2_p_value(observed: np.ndarray, expected: np.ndarray) -> float:
    """Upper-tail p-value of Pearson's chi-square statistic (Wilson-Hilferty approximation)."""
    stat = float(((observed - expected) ** 2 / expected).sum())
    dof = len(observed) - 1
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


@pytest.fixture(scope="module")
def big_draw():
    """One large batch of parameters at paper defaults (k_max raised to 3 for the k test)."""
    module = MiAMix(num_classes=10, k_max=3)
    gen = torch.Generator().manual_seed(1234)
    return module, module.sample(6000, 16, 16, generator=gen)


def test_method_frequencies_follow_the_weights(big_draw):
    module, params = big_draw
    used = params.methods[params.methods >= 0].numpy()
    observed = np.bincount(used, minlength=len(MASK_GENERATORS)).astype(float)
    weights = module.weights.numpy()
    expected = weights / weights.sum() * observed.sum()
    assert chi2_p_value(observed, expected) > 1e-3, (observed, expected)


def test_layer_count_is_uniform(big_draw):
    _, params = big_draw
    observed = np.bincount(params.layers.numpy(), minlength=4)[1:].astype(float)
    assert params.layers.min() >= 1 and params.layers.max() <= 3
    assert chi2_p_value(observed, np.full(3, observed.sum() / 3)) > 1e-3
    # Layers past k are unused.
    for k in (1, 2, 3):
        rows = params.methods[params.layers == k]
        assert (rows[:, :k] >= 0).all() and (rows[:, k:] == -1).all()


def test_dirichlet_ratios(big_draw):
    module, params = big_draw
    ratios, layers = params.ratios, params.layers
    assert torch.allclose(ratios.sum(1), torch.ones(len(ratios)), atol=1e-5)
    a = module.alpha
    for k in (1, 2, 3):
        r = ratios[layers == k].double()
        assert (r[:, k:-1] == 0).all()
        # Dir(a, ..., a, k a): E[l_j] = 1 / (2k), E[rest] = 1/2, Var[rest] = 1 / (4 (2 k a + 1)).
        n = len(r)
        for j in range(k):
            var = (1 / (2 * k)) * (1 - 1 / (2 * k)) / (2 * k * a + 1)
            assert abs(r[:, j].mean().item() - 1 / (2 * k)) < 5 * math.sqrt(var / n)
        rest = r[:, -1]
        assert abs(rest.mean().item() - 0.5) < 5 * math.sqrt(1 / (4 * (2 * k * a + 1)) / n)
        assert abs(rest.var().item() - 1 / (4 * (2 * k * a + 1))) < 0.2 / (4 * (2 * k * a + 1))


def test_self_mixing_and_augmentation_rates(big_draw):
    module, params = big_draw
    n = len(params.self_mix)
    p = params.self_mix.double().mean().item()
    assert abs(p - module.p_self) < 5 * math.sqrt(module.p_self * (1 - module.p_self) / n)
    assert torch.equal(params.partner[params.self_mix], torch.nonzero(params.self_mix).squeeze(1))
    names = np.array(MASK_GENERATORS + ("none",))[params.methods.numpy()]
    augmentable = np.isin(names, ("cutmix", "fmix", "gridmix"))
    augmented = params.augmented.numpy()
    smoothed = params.windows.numpy() > 0
    # Only CutMix, FMix and GridMix masks are ever augmented (section 3.2.3) ...
    assert not augmented[~augmentable].any() and not smoothed[~augmentable].any()
    # ... at the configured rates.
    m = augmentable.sum()
    for rate, p_cfg in ((augmented[augmentable].mean(), module.p_aug), (smoothed[augmentable].mean(), module.p_smooth)):
        assert abs(rate - p_cfg) < 5 * math.sqrt(p_cfg * (1 - p_cfg) / m)
    assert set(np.unique(params.windows.numpy()[smoothed])) <= set(smoothing_windows(16))


def test_masks_in_unit_range_and_label_weight_is_mask_mean(big_draw):
    _, params = big_draw
    assert params.mask.min() >= 0 and params.mask.max() <= 1
    assert torch.allclose(params.lam, params.mask.mean(dim=(1, 2, 3)))
    # The kept share tracks the Dirichlet's rest (it exceeds it where layers overlap).
    assert abs(params.lam.mean().item() - params.ratios[:, -1].mean().item()) < 0.1


def test_mixed_images_and_targets_follow_the_mask():
    torch.manual_seed(0)
    module = MiAMix(num_classes=5)
    x = torch.randn(32, 3, 24, 24)
    y = torch.randint(0, 5, (32,))
    mixed, targets, params = module.mix(x, y, generator=torch.Generator().manual_seed(3))
    lam = params.lam.view(-1, 1)
    onehot = torch.nn.functional.one_hot(y, 5).float()
    assert torch.allclose(targets, lam * onehot + (1 - lam) * onehot[params.partner])
    assert torch.allclose(targets.sum(1), torch.ones(32))
    others = ~params.self_mix
    expected = params.mask * x + (1 - params.mask) * x[params.partner]
    assert torch.allclose(mixed[others], expected[others], atol=1e-6)
    # Self-mixed rows keep their own label and differ from the plain image.
    if params.self_mix.any():
        assert torch.allclose(targets[params.self_mix], onehot[params.self_mix])


def test_second_view_supplies_partners():
    module = MiAMix(num_classes=3, p_self=0.5)
    x, x2 = torch.zeros(16, 3, 8, 8), torch.ones(16, 3, 8, 8)
    mixed, _, params = module.mix(x, torch.zeros(16, dtype=torch.long), x2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(mixed, (1 - params.mask).expand_as(mixed))


def test_same_generator_seed_same_batch():
    module = MiAMix(num_classes=4)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    a = module(x, y, generator=torch.Generator().manual_seed(9))
    b = module(x, y, generator=torch.Generator().manual_seed(9))
    c = module(x, y, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_options_sum_merge_ratio_label_and_soft_labels():
    module = MiAMix(merge="sum", label_weight="ratio", methods=("cutmix",), weights=(1,), p_aug=0, p_smooth=0)
    soft = torch.softmax(torch.randn(10, 6), 1)
    mixed, targets, params = module.mix(torch.randn(10, 3, 16, 16), soft, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(params.lam, params.ratios[:, -1])
    assert torch.allclose(targets.sum(1), torch.ones(10), atol=1e-6)
    with pytest.raises(ValueError):
        MiAMix(methods=("mixup", "bogus"), weights=(1, 1))
    with pytest.raises(TypeError):
        MiAMix(num_classes=2)(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))


def test_mixup_only_is_a_constant_mask():
    module = MiAMix(num_classes=2, methods=("mixup",), weights=(1,), k_max=1, p_self=0)
    params = module.sample(50, 8, 8, generator=torch.Generator().manual_seed(0))
    flat = params.mask.view(50, -1)
    assert torch.allclose(flat, flat[:, :1].expand_as(flat))
    assert torch.allclose(params.lam, params.ratios[:, -1], atol=1e-6)


def test_loss_is_soft_cross_entropy():
    module = MiAMix(num_classes=3)
    logits = torch.randn(4, 3)
    targets = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0, 0, 1], [0.2, 0.3, 0.5]])
    expected = -(targets * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(module.loss(logits, targets), expected)


def test_mask_kernels_cover_the_requested_share():
    lam = torch.tensor([0.1, 0.3, 0.5, 0.8])
    g = torch.Generator().manual_seed(0)
    fm = msda.fmix_masks(lam, torch.randn(4, 32, 17, 2, generator=g), 32, 32)
    assert torch.equal(fm.sum(dim=(1, 2, 3)), (lam * 1024).round())
    cells = torch.tensor([2, 4, 5, 8])
    gm = msda.grid_masks(lam, cells, torch.rand(4, 8, 8, generator=g), 40, 40)
    assert torch.allclose(gm.mean(dim=(1, 2, 3)), (lam * cells.float() ** 2).round() / cells.float() ** 2)
    cm = msda.cutmix_masks(lam, torch.full((4, 2), 0.5), 40, 40)
    assert torch.allclose(cm.mean(dim=(1, 2, 3)), lam, atol=0.03)
    gauss = msda.gaussian_masks(torch.full((1,), 0.05), torch.full((1, 2), 0.5), torch.zeros(1), torch.zeros(1), 64, 64)
    assert abs(gauss.mean().item() - 0.05) < 0.005
    smooth = msda.smooth_masks(cm, torch.tensor([0, 5, 7, 9]))
    assert torch.equal(smooth[0], cm[0]) and smooth.min() >= 0 and smooth.max() <= 1
    # Away from the border, smoothing moves mass but keeps the share.
    assert torch.allclose(smooth.mean(dim=(1, 2, 3))[:3], cm.mean(dim=(1, 2, 3))[:3], atol=0.01)


def test_smoothing_windows_follow_the_paper():
    assert smoothing_windows(64) == (5, 7, 11, 13)
    assert smoothing_windows(224) == (9, 15, 25, 35, 45)
    assert all(w % 2 == 1 and w >= 3 for w in smoothing_windows(32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_gpu():
    module = MiAMix(num_classes=10).cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    mixed, targets = module(torch.randn(64, 3, 224, 224, device="cuda"), torch.randint(0, 10, (64,), device="cuda"), generator=gen)
    assert mixed.is_cuda and targets.is_cuda


def test_shuffled_partners_are_never_the_image_itself():
    mix = MiAMix(num_classes=4, p_self=0.0)
    for seed in range(20):
        params = mix.sample(5, 8, 8, generator=torch.Generator().manual_seed(seed))
        assert not (params.partner == torch.arange(5)).any()


def test_self_mixes_take_the_samples_own_second_view():
    module = MiAMix(num_classes=4, p_self=1.0)
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 8, 8).clone()
    x2 = x + 100  # the second view of sample i holds 100 + i
    mixed, _, params = module.mix(x, torch.zeros(6, dtype=torch.long), x2, generator=torch.Generator().manual_seed(1))
    assert params.self_mix.all() and torch.equal(params.partner, torch.arange(6))
    expected = params.mask * x + (1 - params.mask) * x2
    assert torch.allclose(mixed, expected)
    assert not torch.allclose(mixed, x)  # not the same tensor mixed with itself
