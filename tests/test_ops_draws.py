import math

import torch

from freqs import assert_frequencies, assert_mean
from raymix.ops.rng import Draws, child_generator


def test_draws_depend_only_on_the_generator():
    a = Draws(torch.Generator().manual_seed(3))
    b = Draws(torch.Generator().manual_seed(3), block=5)
    assert [a.uniform() for _ in range(100)] == [b.uniform() for _ in range(100)]


def test_distributions():
    d = Draws(torch.Generator().manual_seed(0))
    assert_frequencies([d.randint(5) for _ in range(5000)], {k: 0.2 for k in range(5)})
    assert_frequencies([d.randint(2, 4) for _ in range(2000)], {2: 0.5, 3: 0.5})
    assert_frequencies([d.choice("abc", [1, 1, 2]) for _ in range(4000)], {"a": 0.25, "b": 0.25, "c": 0.5})
    assert_frequencies([d.sign() for _ in range(2000)], {1: 0.5, -1: 0.5})
    # Beta(2, 5): mean 2/7; Beta(3, 1) by inverse CDF: mean 3/4
    assert_mean([d.beta(2.0, 5.0) for _ in range(3000)], 2 / 7, math.sqrt(10 / (49 * 8)))
    assert_mean([d.beta(3.0, 1.0) for _ in range(3000)], 3 / 4, math.sqrt(3 / (16 * 5)))
    w = [d.dirichlet([2.0, 1.0, 1.0]) for _ in range(3000)]
    assert all(abs(sum(x) - 1) < 1e-9 for x in w)
    assert_mean([x[0] for x in w], 0.5, math.sqrt(0.25 / 5))
    assert 0 <= d.seed() < 2**53


def test_child_generators_are_seeded():
    assert torch.equal(torch.rand(3, generator=child_generator(9)), torch.rand(3, generator=child_generator(9)))
