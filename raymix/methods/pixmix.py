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

import torch

from raymix.methods.base import FractalSpec, MixingMethod, choose_preset
from raymix.ops.blends import blend_chain, sample_blend
from raymix.methods.op_tables import AUGMIX_ALL_OPS, AUGMIX_OPS, map_ops, sample_op
from raymix.ops.rng import Draws

__all__ = ["PixMix"]

PRESETS = {
    # PixMix ImageNet code defaults (k=4, beta=4, aug severity 1); LayerMix Sec. 4.3 uses the same.
    "imagenet": {"k": 4, "beta": 4.0, "severity": 1.0},
    # PixMix CIFAR code defaults (k=4, beta=3, aug severity 3).
    "cifar": {"k": 4, "beta": 3.0, "severity": 3.0},
}


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
        seed, replicas, epoch, fractals, size, chunk_size: see :class:`MixingMethod`. Fractals
            default to a generated colour bank.
    """

    name = "pixmix"

    def __init__(self, *, preset: str = "imagenet", k: int | None = None, beta: float | None = None,
                 severity: float | None = None, all_ops: bool = False, seed: int = 0, replicas: int = 1,
                 epoch: int = 0, fractals: FractalSpec = None, size: int | None = None, chunk_size: int = 32):
        p = choose_preset(PRESETS, preset)
        super().__init__(seed=seed, replicas=replicas, epoch=epoch, fractals=fractals,
                         size=size, chunk_size=chunk_size)
        self.preset = preset
        self.k = int(p["k"] if k is None else k)
        self.beta = float(p["beta"] if beta is None else beta)
        self.severity = float(p["severity"] if severity is None else severity)
        self.all_ops = bool(all_ops)
        self.ops = AUGMIX_ALL_OPS if all_ops else AUGMIX_OPS
        if self.k < 0 or self.beta <= 0 or self.severity <= 0.1:
            raise ValueError("need k >= 0, beta > 0 and severity > 0.1")

    def config(self) -> dict:
        return {"k": self.k, "beta": self.beta, "severity": self.severity, "all_ops": self.all_ops}

    def plan(self, draws: Draws, size: tuple[int, int]) -> dict:
        """Draw every choice for one image (no pixels touched)."""
        start = sample_op(self.ops, draws, self.severity, size) if draws.bernoulli(0.5) else None
        rounds = []
        for _ in range(draws.randint(self.k + 1)):
            if draws.bernoulli(0.5):
                source, op = "augmented", sample_op(self.ops, draws, self.severity, size)
            else:
                source, op = "fractal", None
            kind = draws.choice(("add", "multiply"))
            rounds.append({"source": source, "op": op, "blend": sample_blend(kind, draws, self.beta)})
        return {"start": start, "rounds": rounds, "fractal_seed": draws.seed()}

    def _augment(self, x: torch.Tensor, generators: Sequence[torch.Generator]) -> tuple[torch.Tensor, list[dict]]:
        n, _, h, w = x.shape
        plans = [self.plan(Draws(g), (h, w)) for g in generators]

        # Every augmented copy of x, all ops in one grouped pass.
        slots, ops = [], []
        for i, p in enumerate(plans):
            for slot, op in [("start", p["start"])] + [(r, rd["op"]) for r, rd in enumerate(p["rounds"])]:
                if op is not None:
                    slots.append((i, slot))
                    ops.append(op)
        images = list(x)
        copies = map_ops([images[i] for i, _ in slots], ops, self.ops)
        augmented = dict(zip(slots, copies, strict=True))

        fractal_of, fractal_ids = self._fractals_for(plans, x)

        # Blends run image by image: per-image weights are Python floats and the float chain
        # stays in cache, which beats stacking groups on the CPU. The chain stays float between
        # rounds, as in the reference code, and is rounded once at the end.
        out = torch.empty_like(x)
        for i, p in enumerate(plans):
            steps = [(rd["blend"]["kind"], augmented[(i, r)] if rd["source"] == "augmented" else fractal_of[i],
                      rd["blend"]) for r, rd in enumerate(p["rounds"])]
            blend_chain(augmented.get((i, "start"), images[i]), steps, out=out[i])
        infos = [self._info(p, fractal_ids.get(i)) for i, p in enumerate(plans)]
        return out, infos

    def _fractals_for(self, plans: list[dict], x: torch.Tensor) -> tuple[dict, dict]:
        need = [i for i, p in enumerate(plans) if any(rd["source"] == "fractal" for rd in p["rounds"])]
        if not need:
            return {}, {}
        images, ids = self.sample_fractals([plans[i]["fractal_seed"] for i in need], x.shape[2], x.shape[3], x.device)
        return {i: images[j] for j, i in enumerate(need)}, {i: ids[j] for j, i in enumerate(need)}

    def _info(self, plan: dict, fractal_id: str | None) -> dict:
        rounds = [{"source": rd["source"], "op": rd["op"], **rd["blend"]} for rd in plan["rounds"]]
        return {"method": self.name, **self.config(), "start": plan["start"], "rounds": rounds,
                "fractal": fractal_id}
