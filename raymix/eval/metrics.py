"""Robustness metrics: top-k error, corruption error (CE, mCE, relative mCE), RMS calibration
error and the 200-class restriction of ImageNet-R/-A. Pure numpy/torch, no Ray.

References:

- Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
  Perturbations", ICLR 2019 (ImageNet-C, CE/mCE normalised by AlexNet, relative mCE).
- Hendrycks et al., "PixMix", CVPR 2022 and "AugMix", ICLR 2020: RMS calibration error with
  adaptive bins of 100 samples, computed by ``calib_err`` of the authors'
  ``utils/calibration_tools.py`` (hendrycks/outlier-exposure), reproduced by
  :func:`rms_calibration_error`.

Errors are fractions in [0, 1]; CE and mCE are x100 as the papers print them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "CORRUPTIONS", "EXTRA_CORRUPTIONS", "ALL_CORRUPTIONS", "SEVERITIES", "ALEXNET_ERRORS",
    "topk_correct", "topk_errors", "corruption_error", "mean_corruption_error", "relative_mce",
    "rms_calibration_error", "reliability_bins", "restrict_logits", "softmax_confidence",
]

#: ImageNet-C's 15 corruptions, in the paper's order (noise, blur, weather, digital).
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
#: The 4 held-out ones ("extra" in the release), not part of mCE.
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS = CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES = (1, 2, 3, 4, 5)

#: AlexNet's top-1 error per corruption, averaged over severities 1-5 (Hendrycks and Dietterich
#: 2019; the constants of the authors' evaluation code), in :data:`CORRUPTIONS` order.
ALEXNET_ERRORS = dict(zip(CORRUPTIONS, (
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816,
    0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500,
)))


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def topk_correct(logits, labels, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """How many rows have their label among the ``k`` highest logits, for each ``k``
    (``k`` larger than the number of classes counts every row)."""
    logits = torch.as_tensor(_np(logits))
    labels = torch.as_tensor(_np(labels)).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits (N, C) and labels (N,) expected, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    out = {}
    for k in ks:
        k_eff = min(int(k), logits.shape[1])
        top = logits.topk(k_eff, dim=1).indices
        out[int(k)] = int((top == labels[:, None]).any(dim=1).sum())
    return out


def topk_errors(logits, labels, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k error (fraction in [0, 1]) for each ``k``; ``nan`` for no rows."""
    n = len(_np(labels))
    correct = topk_correct(logits, labels, ks)
    return {k: (1.0 - c / n) if n else float("nan") for k, c in correct.items()}


def corruption_error(errors: Mapping[int, float] | Sequence[float], baseline: Mapping[int, float] | Sequence[float]
                     | float | None = None) -> float:
    """CE of one corruption: sum over severities of the error divided by the same sum for the
    baseline, x100 (Hendrycks and Dietterich 2019, Eq. 1). ``baseline`` may be per-severity
    errors, or a float: the baseline's error averaged over the same severities (as
    :data:`ALEXNET_ERRORS` holds it). ``None``: the unnormalised mean error x100 (CIFAR-10-C)."""
    values = list(errors.values()) if isinstance(errors, Mapping) else list(errors)
    if not values:
        raise ValueError("no severities")
    if baseline is None:
        return 100.0 * float(np.mean(values))
    if isinstance(baseline, (int, float)):
        return 100.0 * float(np.mean(values)) / float(baseline)
    if isinstance(errors, Mapping) and isinstance(baseline, Mapping):
        base = [baseline[s] for s in errors]
    else:
        base = list(baseline)
        if len(base) != len(values):
            raise ValueError(f"{len(values)} severities but {len(base)} baseline errors")
    return 100.0 * float(np.sum(values)) / float(np.sum(base))


def mean_corruption_error(errors: Mapping[str, Mapping[int, float]], *,
                          normalize: str | Mapping[str, object] | None = "alexnet",
                          corruptions: Sequence[str] | None = None) -> dict:
    """mCE over ``corruptions`` (default: those of :data:`CORRUPTIONS` in ``errors``).

    ``errors``: corruption -> severity -> top-1 error. ``normalize``: ``"alexnet"`` (ImageNet-C:
    :data:`ALEXNET_ERRORS`), ``None`` (unnormalised mean error, CIFAR-10-C's "mCE"), or a mapping
    corruption -> a baseline's errors (per severity, or the mean). Returns ``{"mce": ..., "ce":
    {corruption: CE}}``; with ``"alexnet"``, every one of the 15 corruptions must be there and
    all five severities, since AlexNet's constants are five-severity means.
    """
    if corruptions is None:
        corruptions = [c for c in CORRUPTIONS if c in errors] if normalize == "alexnet" else \
            [c for c in ALL_CORRUPTIONS if c in errors] + [c for c in errors if c not in ALL_CORRUPTIONS]
    if normalize == "alexnet":
        missing = [c for c in CORRUPTIONS if c not in errors]
        partial = [c for c in corruptions if sorted(errors[c]) != list(SEVERITIES)]
        if missing or partial:
            raise ValueError(f"AlexNet-normalised mCE needs all 15 corruptions at severities 1-5; missing "
                             f"{missing}, incomplete {partial} (use normalize=None for a partial run)")
        base = ALEXNET_ERRORS
    elif normalize is None or isinstance(normalize, Mapping):
        base = normalize
    else:
        raise ValueError(f"normalize must be 'alexnet', None or a mapping, not {normalize!r}")
    if not corruptions:
        raise ValueError("no corruptions to average")
    ce = {c: corruption_error(errors[c], None if base is None else base[c]) for c in corruptions}
    return {"mce": float(np.mean(list(ce.values()))), "ce": ce}


def relative_mce(errors: Mapping[str, Mapping[int, float]], clean_error: float,
                 baseline_errors: Mapping[str, Mapping[int, float]], baseline_clean_error: float,
                 corruptions: Sequence[str] | None = None) -> dict:
    """Relative mCE (Hendrycks and Dietterich 2019, Sec. 3): per corruption,
    ``sum_s (E_s - E_clean) / sum_s (E^base_s - E^base_clean)`` x100, then the mean. The
    baseline's errors are per severity, at the severities of ``errors``."""
    corruptions = list(corruptions) if corruptions is not None else [c for c in errors if c in baseline_errors]
    if not corruptions:
        raise ValueError("no corruption both in errors and baseline_errors")
    rel = {}
    for c in corruptions:
        sev = list(errors[c])
        num = sum(errors[c][s] - clean_error for s in sev)
        den = sum(baseline_errors[c][s] - baseline_clean_error for s in sev)
        if den == 0:
            raise ValueError(f"baseline's corrupted and clean errors are equal for {c}: relative CE undefined")
        rel[c] = 100.0 * num / den
    return {"relative_mce": float(np.mean(list(rel.values()))), "relative_ce": rel}


def softmax_confidence(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, correct)``: the maximum softmax probability and whether its class is the label."""
    logits = torch.as_tensor(_np(logits)).float()
    prob = logits.softmax(dim=1)
    conf, pred = prob.max(dim=1)
    return conf.numpy(), (pred == torch.as_tensor(_np(labels)).long()).numpy()


def _bins(n: int, bin_size: int) -> list[tuple[int, int]]:
    """The papers' adaptive bins: consecutive runs of ``bin_size``, the last taking the remainder."""
    bins = [[i * bin_size, (i + 1) * bin_size] for i in range(n // bin_size)]
    if not bins:
        return [(0, n)] if n else []
    bins[-1][1] = n
    return [tuple(b) for b in bins]


def rms_calibration_error(confidence, correct, *, bin_size: int = 100, skip_last_bin: bool = True) -> float:
    """RMS calibration error with adaptive bins, as ``calib_err(p='2', beta=100)`` of the
    authors' code computes it: sort by confidence, cut consecutive bins of ``bin_size`` samples
    (the last also takes the remainder), sum ``(n_bin / N) * (mean confidence - accuracy)^2``
    and take the square root.

    ``skip_last_bin=True`` keeps a quirk of that code: its loop runs over all bins but the last
    (``range(len(bins) - 1)``) while still dividing by every sample, so the most confident bin
    never counts; the papers' numbers are computed that way. ``False`` counts every bin.
    With fewer than ``2 * bin_size`` samples the papers' way has no bin left and gives 0.
    """
    confidence = _np(confidence).astype(np.float64).ravel()
    correct = _np(correct).astype(np.float64).ravel()
    if confidence.shape != correct.shape:
        raise ValueError("confidence and correct differ in length")
    n = len(confidence)
    if n == 0:
        return float("nan")
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    bins = _bins(n, bin_size)
    if skip_last_bin:
        bins = bins[:-1]
    total = 0.0
    for lo, hi in bins:
        diff = confidence[lo:hi].mean() - correct[lo:hi].mean()
        total += (hi - lo) / n * diff * diff
    return float(np.sqrt(total))


def reliability_bins(confidence, correct, *, bin_size: int = 100) -> list[dict]:
    """Per adaptive bin (as :func:`rms_calibration_error`, every bin): sample count, mean
    confidence and accuracy: the points of a reliability diagram."""
    confidence = _np(confidence).astype(np.float64).ravel()
    correct = _np(correct).astype(np.float64).ravel()
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    return [{"count": hi - lo, "confidence": float(confidence[lo:hi].mean()), "accuracy": float(correct[lo:hi].mean())}
            for lo, hi in _bins(len(confidence), bin_size)]


def restrict_logits(logits, indices: Sequence[int]):
    """The columns ``indices`` of 1000-way logits, in that order: a 200-class ImageNet-R/-A
    model output, whose class ``j`` is ImageNet class ``indices[j]`` (labels of the 200-class
    set are positions in ``indices``). Keeps the input's type (tensor or array)."""
    idx = list(indices)
    if len(set(idx)) != len(idx):
        raise ValueError("indices repeat a class")
    if isinstance(logits, torch.Tensor):
        if max(idx) >= logits.shape[1]:
            raise ValueError(f"index {max(idx)} out of range for {logits.shape[1]} classes")
        return logits[:, torch.as_tensor(idx, device=logits.device, dtype=torch.long)]
    arr = np.asarray(logits)
    if max(idx) >= arr.shape[1]:
        raise ValueError(f"index {max(idx)} out of range for {arr.shape[1]} classes")
    return arr[:, idx]
