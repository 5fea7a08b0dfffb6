"""PixMix (Hendrycks et al., "PixMix: Dreamlike Pictures Comprehensively Improve Safety
Measures", CVPR 2022), as described in LayerMix Sec. 2.2 and IPMix Sec. 2 and implemented in the
authors' code.

Algorithm, per image ``x``::

    mixed = aug(x) or x                     (p 1/2 each)
    for _ in range(randint(0..k)):          (k + 1 equally likely round counts)
        other = aug(x) or fractal           (p 1/2 each; one fractal per image)
        mixed = clip(add(mixed, other) or multiply(mixed, other))   (p 1/2 each, weights get_ab(beta))
    return mixed

``aug`` applies one op drawn uniformly from the AugMix set at ``severity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from raymix.methods.base import FractalSpec, MixingMethod, as_draws, choose_preset
from raymix.methods.captions import BLEND_SHORT, describe_ops
from raymix.ops.blends import blend_chain, sample_blend
from raymix.methods.op_tables import AUGMIX_ALL_OPS, AUGMIX_OPS, map_ops, sample_op
from raymix.ops.rng import Draws

__all__ = ["PixMix", "PixMixParams", "PixMixRound"]

PRESETS = {
    # PixMix ImageNet code defaults (k=4, beta=4, aug severity 1); LayerMix Sec. 4.3 uses the same.
    "imagenet": {"k": 4, "beta": 4.0, "severity": 1.0},
    # PixMix CIFAR code defaults (k=4, beta=3, aug severity 3).
    "cifar": {"k": 4, "beta": 3.0, "severity": 3.0},
}


@dataclass(frozen=True)
class PixMixRound:
    """One mixing round: the other image (``"augmented"``: ``op`` applied to ``x``, or
    ``"fractal"``) and the blend (:func:`raymix.ops.blends.sample_blend`'s record)."""

    source: str
    op: dict | None
    blend: dict


@dataclass(frozen=True)
class PixMixParams:
    """Everything drawn for one image: the starting op (``None``: ``x`` itself), the rounds, and
    the fractal (its child-generator seed; ``fractal`` is its id, ``None`` when no round uses it)."""

    start: dict | None
    rounds: tuple[PixMixRound, ...]
    fractal_seed: int
    fractal: str | None


class PixMix(MixingMethod):
    """PixMix: rounds of conic arithmetic/geometric blends with augmented copies and fractals.

    Args:
        preset: ``"imagenet"`` (``k=4, beta=4, severity=1``) or ``"cifar"`` (``k=4, beta=3,
            severity=3``), the authors' defaults; explicit arguments override the preset.
        k: maximum number of mixing rounds (rounds are ``randint(0..k)``).
        beta: blending ratio of ``get_ab``.
        severity: AugMix severity of the image ops.
        all_ops: also use color, contrast, brightness and sharpness (off by default: they overlap
            ImageNet-C).
        seed, fractals, fractal_size, bank_seed, chunk_size: see :class:`MixingMethod`. Fractals
            default to a generated colour bank.
    """

    name = "pixmix"

    def __init__(self, *, preset: str = "imagenet", k: int | None = None, beta: float | None = None,
                 severity: float | None = None, all_ops: bool = False, seed: int = 0,
                 fractals: FractalSpec = None, fractal_size: int | None = None,
                 bank_seed: int = 0, chunk_size: int = 32):
        p = choose_preset(PRESETS, preset, k=k, beta=beta, severity=severity)
        super().__init__(seed=seed, fractals=fractals, fractal_size=fractal_size, bank_seed=bank_seed,
                         chunk_size=chunk_size)
        self.preset = preset
        self.k, self.beta, self.severity = int(p["k"]), float(p["beta"]), float(p["severity"])
        self.all_ops = bool(all_ops)
        self.ops = AUGMIX_ALL_OPS if all_ops else AUGMIX_OPS
        if self.k < 0 or self.beta <= 0 or self.severity <= 0.1:
            raise ValueError("need k >= 0, beta > 0 and severity > 0.1")

    def config(self) -> dict:
        return {"k": self.k, "beta": self.beta, "severity": self.severity, "all_ops": self.all_ops}

    def make_params(self, generator: torch.Generator | Draws, size: tuple[int, int]) -> PixMixParams:
        """Draw every choice for one image (no pixels touched)."""
        draws = as_draws(generator)
        start = sample_op(self.ops, draws, self.severity, size) if draws.bernoulli(0.5) else None
        rounds = []
        for _ in range(draws.randint(self.k + 1)):
            if draws.bernoulli(0.5):
                source, op = "augmented", sample_op(self.ops, draws, self.severity, size)
            else:
                source, op = "fractal", None
            kind = draws.choice(("add", "multiply"))
            rounds.append(PixMixRound(source, op, sample_blend(kind, draws, self.beta)))
        fractal_seed = draws.seed()
        uses_fractal = any(rd.source == "fractal" for rd in rounds)
        return PixMixParams(start, tuple(rounds), fractal_seed, self.fractal_id(fractal_seed) if uses_fractal else None)

    def _apply(self, x: torch.Tensor, params: Sequence[PixMixParams]) -> torch.Tensor:
        # Every augmented copy of x, all ops in one grouped pass.
        slots, ops = [], []
        for i, p in enumerate(params):
            for slot, op in [("start", p.start)] + [(r, rd.op) for r, rd in enumerate(p.rounds)]:
                if op is not None:
                    slots.append((i, slot))
                    ops.append(op)
        images = list(x)
        copies = map_ops([images[i] for i, _ in slots], ops, self.ops)
        augmented = dict(zip(slots, copies, strict=True))

        need = [i for i, p in enumerate(params) if p.fractal is not None]
        fractal_of = {}
        if need:
            fractals, _ = self.sample_fractals([params[i].fractal_seed for i in need], x.shape[2], x.shape[3], x.device)
            fractal_of = dict(zip(need, fractals, strict=True))

        # Blends run image by image: per-image weights are Python floats and the float chain
        # stays in cache, which beats stacking groups on the CPU. The chain stays float between
        # rounds, as in the reference code, and is rounded once at the end.
        out = torch.empty_like(x)
        for i, p in enumerate(params):
            steps = [(rd.blend["kind"], augmented[(i, r)] if rd.source == "augmented" else fractal_of[i], rd.blend)
                     for r, rd in enumerate(p.rounds)]
            blend_chain(augmented.get((i, "start"), images[i]), steps, out=out[i])
        return out

    def describe(self, params: PixMixParams) -> dict:
        rounds = [{"source": rd.source, "op": rd.op, **rd.blend} for rd in params.rounds]
        return {"method": self.name, **self.config(), "start": params.start, "rounds": rounds,
                "fractal": params.fractal}

    def caption(self, params: PixMixParams) -> str:
        lines = [f"start: {describe_ops([params.start]) if params.start else 'x'}"]
        for k, rd in enumerate(params.rounds, 1):
            other = "fractal" if rd.source == "fractal" else describe_ops([rd.op]) or "x"
            lines.append(f"{k}: {BLEND_SHORT.get(rd.blend['kind'], rd.blend['kind'])} {other}")
        if params.fractal:
            lines.append(params.fractal)
        return "\n".join(lines)
