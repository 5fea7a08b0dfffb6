"""FGSM and PGD: untargeted L-infinity attacks on a classifier (no Ray).

Inputs are images in [0, 1] (float NCHW); the model's normalisation runs inside the attacked
function (``normalize``), so the budget ``eps`` is in pixel units as the papers state it.
The model is put in eval mode for the attack (batch-norm statistics and dropout frozen) and
restored to its mode after.

Defaults are the CIFAR ones of PixMix/IPMix's evaluation (Madry et al. 2018's PGD):
eps 2/255, 20 steps of 0.5/255, random start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AttackConfig", "fgsm", "pgd", "attack"]


@dataclass(frozen=True)
class AttackConfig:
    """``kind``: ``"fgsm"`` or ``"pgd"``; ``eps`` and ``step_size`` in [0, 1] pixel units."""

    kind: str = "pgd"
    eps: float = 2 / 255
    steps: int = 20
    step_size: float = 0.5 / 255
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("fgsm", "pgd"):
            raise ValueError(f"attack must be 'fgsm' or 'pgd', not {self.kind!r}")
        if self.eps < 0 or self.step_size <= 0 or self.steps < 1:
            raise ValueError("eps must be >= 0, step_size > 0 and steps >= 1")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _EvalMode:
    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


def _loss_grad(model, normalize, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(normalize(x)), labels)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float = 2 / 255,
         normalize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` (Goodfellow et al. 2015), clipped to [0, 1]."""
    normalize = normalize or _identity
    with _EvalMode(model):
        grad = _loss_grad(model, normalize, images, labels)
    return (images + eps * grad.sign()).clamp_(0, 1).detach()


def pgd(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float = 2 / 255,
        steps: int = 20, step_size: float = 0.5 / 255, random_start: bool = True,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Projected gradient descent on the cross-entropy (Madry et al. 2018): ``steps`` signed
    steps of ``step_size``, each projected back into the ``eps`` L-infinity ball around
    ``images`` and into [0, 1]. ``random_start``: begin at a uniform point of the ball, drawn
    from ``generator`` (seed it for a reproducible attack; it must live on the images' device),
    or given as ``noise``: uniform [0, 1) of the images' shape (per-sample seeded draws)."""
    normalize = normalize or _identity
    x0 = images.detach()
    x = x0.clone()
    if random_start and eps > 0:
        if noise is None:
            noise = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x = (x0 + (2 * noise - 1) * eps).clamp_(0, 1)
    with _EvalMode(model):
        for _ in range(steps):
            grad = _loss_grad(model, normalize, x, labels)
            x = x + step_size * grad.sign()
            x = torch.min(torch.max(x, x0 - eps), x0 + eps).clamp_(0, 1).detach()
    return x


def attack(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig, *,
           normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
           generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The adversarial images of ``config``."""
    if config.kind == "fgsm":
        return fgsm(model, images, labels, eps=config.eps, normalize=normalize)
    return pgd(model, images, labels, eps=config.eps, steps=config.steps, step_size=config.step_size,
               random_start=config.random_start, normalize=normalize, generator=generator, noise=noise)
