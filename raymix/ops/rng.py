"""Per-sample random generators.

Every random draw for a sample comes from a generator seeded by
``(run seed, source key, replica, epoch)``, never from global state or worker
identity, so outputs do not depend on batch size, worker count or scheduling.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "sample_seed",
    "sample_generator",
    "sample_generators",
    "numpy_generator",
    "Draws",
    "child_generator",
]


def sample_seed(seed: int, key: str, replica: int = 0, epoch: int = 0, salt: str = "") -> int:
    """A 63-bit seed derived from the run seed, the sample's key, replica and epoch.

    ``salt`` separates independent streams for the same sample (e.g. ``"edit"`` and
    ``"mix"``) so that adding draws to one stage does not shift another.
    """
    text = f"{int(seed)}\x1f{key}\x1f{int(replica)}\x1f{int(epoch)}\x1f{salt}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def sample_generator(
    seed: int, key: str, replica: int = 0, epoch: int = 0, salt: str = "", device: str | torch.device = "cpu"
) -> torch.Generator:
    """A ``torch.Generator`` for one sample; see :func:`sample_seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(sample_seed(seed, key, replica, epoch, salt))
    return gen


def sample_generators(
    seed: int,
    keys: Sequence[str],
    replicas: Sequence[int] | int = 0,
    epoch: int = 0,
    salt: str = "",
    device: str | torch.device = "cpu",
) -> list[torch.Generator]:
    """One generator per sample of a batch."""
    if isinstance(replicas, int):
        replicas = [replicas] * len(keys)
    return [sample_generator(seed, k, r, epoch, salt, device) for k, r in zip(keys, replicas, strict=True)]


def numpy_generator(seed: int, key: str, replica: int = 0, epoch: int = 0, salt: str = "") -> np.random.Generator:
    """A NumPy ``Generator`` for one sample; see :func:`sample_seed`."""
    return np.random.default_rng(sample_seed(seed, key, replica, epoch, salt))


class Draws:
    """Scalar random draws for one sample, read from its generator in blocks.

    Python-level choices (which op, which blend, weights) cost one small tensor call per
    ``block`` draws instead of one per draw. The sequence depends only on the generator's
    state, so the same generator gives the same draws however samples are batched.
    Distributions follow NumPy's conventions (``randint`` excludes ``high``).
    """

    def __init__(self, generator: torch.Generator | None = None, block: int = 64):
        self.generator = generator
        self._block = block
        self._values = iter(())

    def _u(self) -> float:
        """The next ``U[0, 1)`` value (the hot path of every draw)."""
        for u in self._values:
            return u
        self._values = iter(torch.rand(self._block, dtype=torch.float64, generator=self.generator).tolist())
        return next(self._values)

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        """``U[low, high)``."""
        return low + (high - low) * self._u()

    def bernoulli(self, p: float = 0.5) -> bool:
        return self._u() < p

    def sign(self) -> int:
        """+1 or -1 with probability 1/2 each."""
        return -1 if self._u() < 0.5 else 1

    def randint(self, low: int, high: int | None = None) -> int:
        """An integer in ``[low, high)`` (or ``[0, low)`` with one argument), uniformly."""
        if high is None:
            low, high = 0, low
        span = high - low
        if span <= 0:
            raise ValueError(f"empty range [{low}, {high})")
        return low + min(int(self._u() * span), span - 1)

    def choice(self, options: Sequence, weights: Sequence[float] | None = None):
        """One element of ``options``; uniform unless ``weights`` (need not sum to 1) are given."""
        if weights is None:
            n = len(options)
            if n == 0:
                raise ValueError("cannot choose from no options")
            return options[min(int(self._u() * n), n - 1)]
        total = float(sum(weights))
        u = self._u() * total
        acc = 0.0
        for option, w in zip(options, weights, strict=True):
            acc += w
            if u < acc:
                return option
        return options[-1]

    def beta(self, a: float, b: float) -> float:
        """``Beta(a, b)``; exact inverse-CDF draws when ``a`` or ``b`` is 1 (the cases the
        mixing papers use), gamma ratios otherwise."""
        if b == 1.0:
            return (1.0 - self.uniform()) ** (1.0 / a)
        if a == 1.0:
            return 1.0 - (1.0 - self.uniform()) ** (1.0 / b)
        seed = self.seed()
        g = torch.Generator().manual_seed(seed)
        x, y = torch._standard_gamma(torch.tensor([a, b], dtype=torch.float64), generator=g).tolist()
        return x / (x + y)

    def dirichlet(self, alpha: Sequence[float]) -> list[float]:
        """``Dirichlet(alpha)``; all-ones ``alpha`` (AugMix/IPMix) uses normalised exponentials."""
        if all(a == 1.0 for a in alpha):
            e = [-math.log(1.0 - self.uniform()) for _ in alpha]
        else:
            g = torch.Generator().manual_seed(self.seed())
            e = torch._standard_gamma(torch.tensor(list(alpha), dtype=torch.float64), generator=g).tolist()
        total = sum(e)
        if total == 0.0:
            return [1.0 / len(e)] * len(e)
        return [x / total for x in e]

    def seed(self) -> int:
        """A 53-bit seed for a child generator (e.g. a pixel-mixing mask)."""
        return int(self.uniform() * 2**53)


def child_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded with ``seed`` (one drawn by :meth:`Draws.seed`)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen
