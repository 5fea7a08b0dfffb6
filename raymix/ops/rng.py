"""Per-sample random generators.

Every random draw for a sample comes from a generator seeded by
``(run seed, source key, replica, epoch)``, never from global state or worker
identity, so outputs do not depend on batch size, worker count or scheduling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["sample_seed", "sample_generator", "sample_generators", "numpy_generator"]


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
