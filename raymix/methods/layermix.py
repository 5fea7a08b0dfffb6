"""LayerMix (Ahmad et al., "LayerMix: Enhanced Data Augmentation through Fractal Integration for
Robust Deep Learning"), Sec. 3 and Code Block 1.

Algorithm, per image ``x``::

    f = one op drawn from Table II         (the same op at every stage: "pipeline covariance",
                                            Sec. 3.1; its magnitude is drawn afresh per stage)
    sample 1 = f(x)
    sample 2 = clip(blend(f(x), f(x)))     (two independent draws of f)
    sample 3 = f(clip(blend(sample 2, fractal)))
    return one of samples 1, 2, 3          (p 1/3 each, Sec. 3.4)

Each blend is drawn independently from the reweighted mixture of Table I (Sec. 3.3): arithmetic
1/3, geometric 1/3, pixel 1/6, element 1/6, with ``get_ab(beta)`` weights and a pixel threshold
``t ~ U(0, 1)``. Fractals are grayscale with random horizontal and vertical flips (Sec. 3.2).
Defaults: magnitude ``m = 8`` and blending ratio ``beta = 3`` for CIFAR and ImageNet (Sec. 4.1,
4.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from raymix.methods.base import FractalSpec, MixingMethod, as_draws
from raymix.methods.captions import describe_ops
from raymix.ops.blends import BLENDS, blend_chain, sample_blend
from raymix.methods.op_tables import LAYERMIX_OPS, map_ops, sample_op
from raymix.ops.rng import Draws
from raymix.ops.tensors import stack

__all__ = ["LayerMix", "LayerMixParams", "LAYERMIX_BLEND_WEIGHTS", "LAYERMIX_CODE_OPS"]

#: Table I probabilities of add, multiply, pixel, element.
LAYERMIX_BLEND_WEIGHTS = (1 / 3, 1 / 3, 1 / 6, 1 / 6)

#: The op list of the public code (``augs_image + augs_spatial``): Table II without brightness.
LAYERMIX_CODE_OPS = tuple(name for name in LAYERMIX_OPS if name != "brightness")


@dataclass(frozen=True)
class LayerMixParams:
    """Everything drawn for one image: which sample is returned (``step`` 0, 1, 2 for samples 1,
    2, 3), the op ``f`` and its draw per stage, the blends, and the fractal (its child-generator
    seed; ``fractal`` is its id, ``None`` unless sample 3 is returned)."""

    step: int
    op: str
    stages: tuple[dict, ...]
    blends: tuple[dict, ...]
    fractal_seed: int
    fractal: str | None


class LayerMix(MixingMethod):
    """LayerMix: one op reused across stages, reweighted blends, grayscale flipped fractals.

    Args:
        magnitude: augmentation magnitude ``m`` (of 10), paper value 8 (the public code's
            default is 3).
        beta: blending ratio of ``get_ab``, paper value 3.
        ops: names from Table II (:data:`raymix.methods.op_tables.LAYERMIX_OPS`) to draw from; all of
            Table II by default. :data:`LAYERMIX_CODE_OPS` is the public code's list.
        blend_weights: probabilities of add, multiply, pixel, element (Table I by default).
        seed, fractals, fractal_size, bank_seed, chunk_size: see :class:`MixingMethod`. Fractals
            default to a generated grayscale bank, flipped at random.
    """

    name = "layermix"
    fractal_grayscale = True
    fractal_flip = True

    def __init__(self, *, magnitude: float = 8, beta: float = 3.0, ops: Sequence[str] | None = None,
                 blend_weights: Sequence[float] = LAYERMIX_BLEND_WEIGHTS, seed: int = 0,
                 fractals: FractalSpec = None, fractal_size: int | None = None,
                 bank_seed: int = 0, chunk_size: int = 32):
        super().__init__(seed=seed, fractals=fractals, fractal_size=fractal_size, bank_seed=bank_seed,
                         chunk_size=chunk_size)
        names = tuple(LAYERMIX_OPS) if ops is None else tuple(ops)
        unknown = [n for n in names if n not in LAYERMIX_OPS]
        if unknown or not names:
            raise ValueError(f"ops must be names from Table II {tuple(LAYERMIX_OPS)}, got {names}")
        if len(blend_weights) != len(BLENDS) or min(blend_weights) < 0 or sum(blend_weights) <= 0:
            raise ValueError(f"blend_weights: four non-negative weights for {BLENDS}")
        if not 0 < magnitude <= 10:
            raise ValueError(f"magnitude must be in (0, 10], got {magnitude}")
        self.magnitude = float(magnitude)
        self.beta = float(beta)
        self.op_names = names
        self.blend_weights = tuple(float(w) for w in blend_weights)
        self.ops = {n: LAYERMIX_OPS[n] for n in names}

    def config(self) -> dict:
        return {"magnitude": self.magnitude, "beta": self.beta}

    def _blend_params(self, draws: Draws) -> dict:
        return sample_blend(draws.choice(BLENDS, self.blend_weights), draws, self.beta)

    def make_params(self, generator: torch.Generator | Draws, size: tuple[int, int]) -> LayerMixParams:
        """Draw every choice for one image, in Code Block 1's order (no pixels touched)."""
        draws = as_draws(generator)
        step = draws.randint(3)
        name = draws.choice(self.op_names)
        stages = [sample_op(self.ops, draws, self.magnitude, size, name)]
        blends = []
        if step >= 1:
            stages.append(sample_op(self.ops, draws, self.magnitude, size, name))
            blends.append(self._blend_params(draws))
        if step == 2:
            blends.append(self._blend_params(draws))
            stages.append(sample_op(self.ops, draws, self.magnitude, size, name))
        fractal_seed = draws.seed()
        return LayerMixParams(step, name, tuple(stages), tuple(blends), fractal_seed,
                              self.fractal_id(fractal_seed) if step == 2 else None)

    def _apply(self, x: torch.Tensor, params: Sequence[LayerMixParams]) -> torch.Tensor:
        n, _, h, w = x.shape
        images = list(x)

        # f(x) and, for samples 2 and 3, the second f(x), in one grouped pass (an op without
        # parameters, e.g. equalize, gives the same image twice and runs once).
        two = [i for i, p in enumerate(params) if p.step >= 1]
        both = map_ops(images + [images[i] for i in two],
                       [p.stages[0] for p in params] + [params[i].stages[1] for i in two], self.ops)
        result, copies = both[:n], both[n:]
        three = [i for i, p in enumerate(params) if p.step == 2]
        fractal_of = {}
        if three:
            fractals, _ = self.sample_fractals([params[i].fractal_seed for i in three], h, w, x.device)
            fractal_of = dict(zip(three, fractals, strict=True))
        # Sample 2 = clip(blend(f(x), f(x))); sample 3 blends it on with the fractal. The means stay
        # float between the two blends, as the reference keeps floats between stages.
        for j, i in enumerate(two):
            steps = [(params[i].blends[0]["kind"], copies[j], params[i].blends[0])]
            if i in fractal_of:
                steps.append((params[i].blends[1]["kind"], fractal_of[i], params[i].blends[1]))
            result[i] = blend_chain(result[i], steps)
        final = map_ops([result[i] for i in three], [params[i].stages[2] for i in three], self.ops)
        for j, i in enumerate(three):
            result[i] = final[j]

        return stack(result)

    def describe(self, params: LayerMixParams) -> dict:
        return {"method": self.name, **self.config(), "output": params.step + 1, "op": params.op,
                "stages": list(params.stages), "blends": list(params.blends), "fractal": params.fractal}

    def caption(self, params: LayerMixParams) -> str:
        lines = [f"output {params.step + 1}: {params.op}"]
        stages = [describe_ops([s]).removeprefix(params.op).strip() for s in params.stages]
        if any(stages):
            lines.append(f"mag {', '.join(s or '-' for s in stages)}")
        blends = [b["kind"] + (f" t {b['threshold']:.2f}" if "threshold" in b else "") for b in params.blends]
        if blends:
            lines.append(f"blends: {', '.join(blends)}")
        if params.fractal:
            lines.append(params.fractal)
        return "\n".join(lines)
