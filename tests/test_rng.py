import torch

from raymix.ops.rng import numpy_generator, sample_generator, sample_generators, sample_seed


def test_seed_depends_on_every_part():
    base = sample_seed(0, "a", 0, 0)
    assert base == sample_seed(0, "a", 0, 0)
    others = {sample_seed(1, "a", 0, 0), sample_seed(0, "b", 0, 0), sample_seed(0, "a", 1, 0),
              sample_seed(0, "a", 0, 1), sample_seed(0, "a", 0, 0, salt="mix")}
    assert base not in others and len(others) == 5
    assert 0 <= base < 2**63


def test_generators_are_independent_of_batching():
    keys = [f"k{i}" for i in range(6)]
    whole = [torch.rand(3, generator=g) for g in sample_generators(7, keys, 2, 1)]
    split = [torch.rand(3, generator=sample_generator(7, k, 2, 1)) for k in keys]
    for a, b in zip(whole, split):
        assert torch.equal(a, b)
    assert numpy_generator(7, "k0").random() == numpy_generator(7, "k0").random()
