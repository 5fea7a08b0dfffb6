"""FGSM and PGD on a tiny linear model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raymix.eval.adversarial import AttackConfig, attack, fgsm, pgd


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    images = torch.rand(64, 3, 4, 4)
    with torch.no_grad():
        labels = model(images).argmax(1)  # clean error 0 by construction
    return model, images, labels


def _err(model, x, labels):
    with torch.no_grad():
        return (model(x).argmax(1) != labels).float().mean().item()


def test_pgd_beats_fgsm_beats_clean_and_stays_in_the_ball():
    model, images, labels = _setup()
    eps = 8 / 255
    clean = _err(model, images, labels)
    x_fgsm = fgsm(model, images, labels, eps=eps)
    x_pgd = pgd(model, images, labels, eps=eps, steps=20, step_size=2 / 255,
                generator=torch.Generator().manual_seed(1))
    e_fgsm, e_pgd = _err(model, x_fgsm, labels), _err(model, x_pgd, labels)
    assert clean == 0.0
    assert e_fgsm > clean
    assert e_pgd >= e_fgsm
    for x in (x_fgsm, x_pgd):
        assert (x - images).abs().max().item() <= eps + 1e-6
        assert x.min().item() >= 0.0 and x.max().item() <= 1.0


def test_normalisation_runs_inside_and_model_mode_is_restored():
    model, images, labels = _setup()
    model.train()
    mean, std = 0.5, 0.25
    calls = []

    def normalize(x):
        calls.append(x.min().item() >= 0)
        return (x - mean) / std

    x = pgd(model, images, labels, steps=3, normalize=normalize)
    assert calls and all(calls)  # the attacked function saw [0, 1] pixels
    assert model.training
    assert (x - images).abs().max().item() <= 2 / 255 + 1e-6


def test_seeded_random_start_is_reproducible():
    model, images, labels = _setup()
    a = pgd(model, images, labels, steps=2, generator=torch.Generator().manual_seed(7))
    b = pgd(model, images, labels, steps=2, generator=torch.Generator().manual_seed(7))
    c = pgd(model, images, labels, steps=2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_attack_config():
    cfg = AttackConfig()
    assert (cfg.kind, cfg.eps, cfg.steps, cfg.step_size, cfg.random_start) == ("pgd", 2 / 255, 20, 0.5 / 255, True)
    model, images, labels = _setup()
    x = attack(model, images, labels, AttackConfig(kind="fgsm", eps=1 / 255))
    assert (x - images).abs().max().item() == pytest.approx(1 / 255, abs=1e-6)
    with pytest.raises(ValueError):
        AttackConfig(kind="cw")


def test_pgd_breaks_a_trained_model():
    """Two classes told apart by the mean brightness (0.45 vs 0.55): a trained linear model is
    right on clean images and wrong under PGD (eps 16/255 moves the mean past the boundary),
    while FGSM's single step at a tenth of that eps leaves it mostly right."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 2
    images = (0.45 + 0.1 * labels.float())[:, None, None, None] + 0.02 * torch.randn(400, 3, 4, 4, generator=g)
    images = images.clamp(0, 1)
    torch.manual_seed(0)
    trained = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    optimizer = torch.optim.SGD(trained.parameters(), lr=5.0)
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(trained(images), labels).backward()
        optimizer.step()

    def under_pgd(model):
        x = pgd(model, images, labels, eps=16 / 255, steps=20, step_size=2 / 255,
                generator=torch.Generator().manual_seed(1))
        return _err(model, x, labels)

    assert _err(trained, images, labels) < 0.05
    assert under_pgd(trained) > 0.9
    assert _err(trained, fgsm(trained, images, labels, eps=1.6 / 255), labels) < 0.5
