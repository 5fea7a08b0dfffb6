"""Shared fixtures: one local Ray instance per test session.

Ray starts only when a test asks for ``ray_cluster``; pure-python tests never pay for it.
Four logical CPUs on a 2-core machine keep actor pools from starving read tasks, and two
fake GPUs let tests check GPU scheduling (``torch.cuda.is_available()`` stays False, so
models fall back to the CPU device).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    ray.init(
        "local",
        num_cpus=4,
        num_gpus=2,
        include_dashboard=False,
        object_store_memory=512 * 2**20,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
