"""IPMix (Huang et al., "IPMix: Label-Preserving Data Augmentation Method for Training Robust
Classifiers", NeurIPS 2023), Sec. 4 and Appendix D ("Chain-Mixed", the default framework).

Algorithm, per image ``x``::

    w ~ Dirichlet(1, ..., 1)  (k weights),  m ~ Beta(1, 1)
    for each of k chains:
        image-level or P-level, p 1/2 each
        apply randint(0..t) operations of that level to a copy of x:
            image-level: one op drawn uniformly from the AugMix set at ``severity``
            P-level: a patch (square or scar, p 1/2) of a size drawn from ``patch_sizes``,
                     blended with the same box of a fractal by add, multiply, pixel or element
                     mixing (p 1/4 each; Sec. 4.2 "Random mixing")
    return (1 - m) * x + m * sum_i w_i * chain_i

One fractal per image serves all its patches. Chains are ``uint8`` between operations, as the
reference code keeps PIL images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from raymix.methods.base import FractalSpec, MixingMethod, as_draws, choose_preset
from raymix.methods.captions import BLEND_SHORT, describe_ops
from raymix.ops.blends import BLENDS, sample_blend
from raymix.methods.op_tables import AUGMIX_ALL_OPS, AUGMIX_OPS, IPMIX_CODE_OPS, map_ops, sample_op
from raymix.ops.patches import mix_patches_, sample_patch_box
from raymix.ops.rng import Draws
from raymix.ops.tensors import round_to_uint8, stack

__all__ = ["IPMix", "IPMixParams"]

PRESETS = {
    # IPMix ImageNet code: k=3, t=3, beta=4, aug severity 1, patch sizes up to the whole image.
    "imagenet": {"k": 3, "t": 3, "beta": 4.0, "severity": 1.0, "patch_sizes": (4, 8, 16, 32, 64, 224)},
    # IPMix CIFAR code: k=3, t=3, beta=3, aug severity 3, patch sizes 4-32.
    "cifar": {"k": 3, "t": 3, "beta": 3.0, "severity": 3.0, "patch_sizes": (4, 8, 16, 32)},
}

OP_SETS = {"augmix": AUGMIX_OPS, "all": AUGMIX_ALL_OPS, "ipmix-code": IPMIX_CODE_OPS}


@dataclass(frozen=True)
class IPMixParams:
    """Everything drawn for one image: the Dirichlet chain ``weights``, the Beta ``skip`` weight
    ``m``, the chains (``{"level": "image", "ops": [...]}`` or ``{"level": "P", "patches":
    [...]}``, as the provenance JSON records them) and the fractal (its child-generator seed;
    ``fractal`` is its id, ``None`` when no patch uses it)."""

    weights: tuple[float, ...]
    skip: float
    chains: tuple[dict, ...]
    fractal_seed: int
    fractal: str | None


class IPMix(MixingMethod):
    """IPMix: a Dirichlet mix of image-level and P-level (patch and pixel) chains with a Beta skip.

    Args:
        preset: ``"imagenet"`` or ``"cifar"``, the authors' code defaults; explicit arguments
            override the preset.
        k: number of chains. t: maximum operations per chain.
        beta: blending ratio of ``get_ab`` for add/multiply patches.
        severity: AugMix severity of image-level ops.
        patch_sizes: nominal patch sizes; sizes larger than the image are clamped to it.
        ops: ``"augmix"`` (default), ``"all"`` (+color, contrast, brightness, sharpness) or
            ``"ipmix-code"`` (the public code's list: no autocontrast, plus mirror and invert).
        augmented_patches: as the ImageNet public code, take each patch with probability 1/2 from
            an augmented copy of ``x`` instead of the fractal (the paper mixes with synthetic
            images only).
        seed, fractals, fractal_size, bank_seed, chunk_size: see :class:`MixingMethod`. Fractals
            default to a generated colour bank.
    """

    name = "ipmix"

    def __init__(self, *, preset: str = "imagenet", k: int | None = None, t: int | None = None,
                 beta: float | None = None, severity: float | None = None,
                 patch_sizes: Sequence[int] | None = None, ops: str = "augmix", augmented_patches: bool = False,
                 seed: int = 0, fractals: FractalSpec = None, fractal_size: int | None = None,
                 bank_seed: int = 0, chunk_size: int = 32):
        if ops not in OP_SETS:
            raise ValueError(f"unknown op set {ops!r}; expected one of {sorted(OP_SETS)}")
        p = choose_preset(PRESETS, preset, k=k, t=t, beta=beta, severity=severity, patch_sizes=patch_sizes)
        super().__init__(seed=seed, fractals=fractals, fractal_size=fractal_size, bank_seed=bank_seed,
                         chunk_size=chunk_size)
        self.preset = preset
        self.k, self.t, self.beta, self.severity = int(p["k"]), int(p["t"]), float(p["beta"]), float(p["severity"])
        self.patch_sizes = tuple(int(s) for s in p["patch_sizes"])
        self.op_set = ops
        self.ops = OP_SETS[ops]
        self.augmented_patches = bool(augmented_patches)
        if self.k < 1 or self.t < 0 or not self.patch_sizes or min(self.patch_sizes) < 2:
            raise ValueError("need k >= 1, t >= 0 and patch sizes >= 2")

    def config(self) -> dict:
        return {"k": self.k, "t": self.t, "beta": self.beta, "severity": self.severity}

    def make_params(self, generator: torch.Generator | Draws, size: tuple[int, int]) -> IPMixParams:
        """Draw every choice for one image (no pixels touched)."""
        draws = as_draws(generator)
        h, w = size
        weights = draws.dirichlet([1.0] * self.k)
        skip = draws.beta(1.0, 1.0)
        chains = []
        for _ in range(self.k):
            level = draws.choice(("image", "P"))
            count = draws.randint(self.t + 1)
            if level == "image":
                chains.append({"level": "image",
                               "ops": [sample_op(self.ops, draws, self.severity, size) for _ in range(count)]})
                continue
            patches = []
            for _ in range(count):
                patch_size = draws.choice(self.patch_sizes)
                kind = draws.choice(BLENDS)
                augmented = self.augmented_patches and draws.bernoulli(0.5)
                op = sample_op(self.ops, draws, self.severity, size) if augmented else None
                shape, box = sample_patch_box(draws, patch_size, h, w)
                patches.append({"size": patch_size, "shape": shape, "box": list(box),
                                "source": "augmented" if augmented else "fractal", "op": op,
                                **sample_blend(kind, draws, self.beta)})
            chains.append({"level": "P", "patches": patches})
        fractal_seed = draws.seed()
        uses_fractal = any(pt["source"] == "fractal" for ch in chains if ch["level"] == "P" for pt in ch["patches"])
        return IPMixParams(tuple(weights), skip, tuple(chains), fractal_seed,
                           self.fractal_id(fractal_seed) if uses_fractal else None)

    def _apply(self, x: torch.Tensor, params: Sequence[IPMixParams]) -> torch.Tensor:
        n, _, h, w = x.shape
        chain_out: dict[tuple[int, int], torch.Tensor] = {}

        images = list(x)
        # Image-level chains: op number s of every chain in one grouped pass.
        image_chains = [(i, c) for i, p in enumerate(params) for c, ch in enumerate(p.chains)
                        if ch["level"] == "image" and ch["ops"]]
        state = {ic: images[ic[0]] for ic in image_chains}
        for s in range(self.t):
            active = [ic for ic in image_chains if len(params[ic[0]].chains[ic[1]]["ops"]) > s]
            if not active:
                break
            out = map_ops([state[ic] for ic in active], [params[i].chains[c]["ops"][s] for i, c in active],
                          self.ops)
            state.update(zip(active, out, strict=True))
        chain_out.update(state)

        # P-level chains: patch sources first (augmented copies and fractals), then the patches.
        patch_chains = [(i, c) for i, p in enumerate(params) for c, ch in enumerate(p.chains)
                        if ch["level"] == "P" and ch["patches"]]
        copies = [(i, c, q) for i, c in patch_chains
                  for q, patch in enumerate(params[i].chains[c]["patches"]) if patch["source"] == "augmented"]
        copy_of = dict(zip(copies, map_ops([images[i] for i, _, _ in copies],
                                           [params[i].chains[c]["patches"][q]["op"] for i, c, q in copies],
                                           self.ops), strict=True))
        need = [i for i, p in enumerate(params) if p.fractal is not None]
        fractal_of = {}
        if need:
            fractals, _ = self.sample_fractals([params[i].fractal_seed for i in need], h, w, x.device)
            fractal_of = dict(zip(need, fractals, strict=True))
        for i, c in patch_chains:
            steps = [(copy_of[(i, c, q)] if patch["source"] == "augmented" else fractal_of[i], patch["box"],
                      patch["kind"], patch) for q, patch in enumerate(params[i].chains[c]["patches"])]
            chain_out[(i, c)] = mix_patches_(images[i].clone(), steps)

        outs = [self._combine(images[i], params[i], [chain_out.get((i, c)) for c in range(self.k)]) for i in range(n)]
        return stack(outs)

    @staticmethod
    def _combine(x: torch.Tensor, params: IPMixParams, chains: list[torch.Tensor | None]) -> torch.Tensor:
        """``(1 - m) * x + m * sum_i w_i * chain_i``; unchanged chains fold into x's weight."""
        m = params.skip
        own = (1.0 - m) + m * sum(wi for wi, ch in zip(params.weights, chains, strict=True) if ch is None)
        acc = x.float().mul_(own)
        for wi, ch in zip(params.weights, chains, strict=True):
            if ch is not None:
                acc.add_(ch.float(), alpha=m * wi)
        return round_to_uint8(acc, clip=False)  # convex weights: stays in [0, 255]

    def describe(self, params: IPMixParams) -> dict:
        return {"method": self.name, **self.config(), "weights": list(params.weights), "skip": params.skip,
                "chains": list(params.chains), "fractal": params.fractal}

    def caption(self, params: IPMixParams) -> str:
        lines = []
        for k, chain in enumerate(params.chains, 1):
            if chain["level"] == "image":
                lines.append(f"c{k} image: {describe_ops(chain['ops']) or '-'}")
            else:
                patches = [f"{pt['size']}{'sq' if pt['shape'] == 'square' else 'scar'} "
                           f"{BLEND_SHORT.get(pt['kind'], pt['kind'])}" for pt in chain["patches"]]
                lines.append(f"c{k} P: {', '.join(patches) or '-'}")
        weights = "/".join(f"{w:.2f}" for w in params.weights)
        lines.append(f"w {weights}, m {params.skip:.2f}")
        if params.fractal:
            lines.append(params.fractal)
        return "\n".join(lines)
