"""Statistical checks for sampled choices: binomial bounds per category and a chi-square test.

Bounds are loose (5 standard deviations, p ~ 1e-6 per check) so correct code does not flake,
yet a wrong probability (e.g. 1/4 instead of 1/6 over a few thousand draws) is far outside them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

Z = 5.0


def chi2_critical(df: int, z: float = Z) -> float:
    """Upper critical value of chi-square with ``df`` degrees of freedom at the normal
    quantile ``z`` (Wilson-Hilferty approximation)."""
    k = 2.0 / (9.0 * df)
    return df * (1.0 - k + z * math.sqrt(k)) ** 3


def assert_frequencies(samples: Iterable, expected: Mapping, z: float = Z) -> Counter:
    """Observed categories match ``expected`` probabilities (which must cover every category)."""
    counts = Counter(samples)
    n = sum(counts.values())
    assert n > 0
    unexpected = set(counts) - set(expected)
    assert not unexpected, f"unexpected categories {unexpected}"
    total_p = sum(expected.values())
    assert abs(total_p - 1.0) < 1e-9, expected
    stat = 0.0
    for key, p in expected.items():
        c = counts.get(key, 0)
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        assert abs(c - mean) <= z * sd + 1, f"{key}: {c} of {n}, expected {mean:.1f} +- {sd:.1f} ({dict(counts)})"
        stat += (c - mean) ** 2 / mean
    if len(expected) > 1:
        assert stat <= chi2_critical(len(expected) - 1, z), f"chi2 {stat:.1f} for {dict(counts)} vs {dict(expected)}"
    return counts


def assert_mean(values: Iterable[float], mean: float, sd: float, z: float = Z) -> None:
    """The sample mean of draws from a distribution with this ``mean`` and ``sd``."""
    values = list(values)
    n = len(values)
    m = sum(values) / n
    assert abs(m - mean) <= z * sd / math.sqrt(n), f"mean {m:.4f} of {n}, expected {mean:.4f} (sd {sd:.4f})"
