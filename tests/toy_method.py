"""A toy method, written the way docs/architecture.md ("Add a method") says: this one file plus
one ``register_method`` call, and the jobs, training, a DataLoader and preview run it.

Posterize-and-shift: keep the top ``bits`` bits of every channel, then roll the image by a
random offset. Not from a paper; just enough to show every part of the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from raymix.methods.base import MixingMethod, as_draws

PRESETS = {"coarse": {"bits": 2}, "fine": {"bits": 5}}


@dataclass(frozen=True)
class ToyParams:
    """What :meth:`Toy.make_params` draws for one image."""

    bits: int
    shift: tuple[int, int]


class Toy(MixingMethod):
    """Posterize to ``bits`` bits (or a random 2-6 when ``None``), then a random circular shift."""

    name = "toy"
    salt = "toy"

    def __init__(self, *, preset: str = "coarse", bits: int | None = None, seed: int = 0, chunk_size: int = 32):
        super().__init__(seed=seed, chunk_size=chunk_size)
        self.bits = PRESETS[preset]["bits"] if bits is None else int(bits)

    def config(self) -> dict:
        return {"bits": self.bits}

    def make_params(self, generator, size: tuple[int, int]) -> ToyParams:
        draws = as_draws(generator)
        h, w = size
        return ToyParams(self.bits, (draws.randint(h), draws.randint(w)))

    def _apply(self, x: torch.Tensor, params: Sequence[ToyParams]) -> torch.Tensor:
        out = torch.empty_like(x)
        for i, p in enumerate(params):
            mask = (0xFF << (8 - p.bits)) & 0xFF
            out[i] = torch.roll(x[i] & mask, shifts=p.shift, dims=(1, 2))
        return out

    def describe(self, params: ToyParams) -> dict:
        return {"method": self.name, **self.config(), "shift": list(params.shift)}

    def caption(self, params: ToyParams) -> str:
        return f"{params.bits} bits\nshift {params.shift[0]},{params.shift[1]}"
