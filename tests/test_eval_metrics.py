"""raymix.eval.metrics against small hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raymix.eval import metrics as m


def test_topk_errors_hand_example():
    logits = torch.tensor([
        [0.1, 0.9, 0.0, 0.0, 0.0, 0.0],   # label 1: top-1 right
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],   # label 4: 5th highest -> top-5 right, top-1 wrong
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],   # label 5: lowest -> both wrong
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],   # label 2: top-1 right
    ])
    labels = torch.tensor([1, 4, 5, 2])
    err = m.topk_errors(logits, labels, ks=(1, 5))
    assert err[1] == pytest.approx(2 / 4)  # rows 1 and 2
    assert err[5] == pytest.approx(1 / 4)


def test_topk_errors_counts():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]])
    labels = np.array([0, 0, 0])
    assert m.topk_correct(logits, labels, ks=(1, 2, 5)) == {1: 1, 2: 2, 5: 3}
    assert m.topk_errors(logits, labels, ks=(1,)) == {1: pytest.approx(2 / 3)}


def test_ce_and_mce_alexnet_normalised():
    errors = {c: {s: m.ALEXNET_ERRORS[c] for s in m.SEVERITIES} for c in m.CORRUPTIONS}
    out = m.mean_corruption_error(errors)
    assert out["mce"] == pytest.approx(100.0)
    errors["fog"] = {s: m.ALEXNET_ERRORS["fog"] / 2 for s in m.SEVERITIES}
    out = m.mean_corruption_error(errors)
    assert out["ce"]["fog"] == pytest.approx(50.0)
    assert out["mce"] == pytest.approx((14 * 100 + 50) / 15)
    assert list(out["ce"]) == list(m.CORRUPTIONS)


def test_alexnet_constants_in_order():
    assert list(m.ALEXNET_ERRORS) == list(m.CORRUPTIONS)
    assert m.ALEXNET_ERRORS["gaussian_noise"] == 0.886428
    assert m.ALEXNET_ERRORS["brightness"] == 0.564592
    assert m.ALEXNET_ERRORS["jpeg_compression"] == 0.606500
    assert len(m.ALL_CORRUPTIONS) == 19


def test_mce_alexnet_needs_every_corruption_and_severity():
    with pytest.raises(ValueError, match="missing"):
        m.mean_corruption_error({"fog": {s: 0.5 for s in m.SEVERITIES}})


def test_mce_unnormalised_cifar():
    errors = {"fog": {1: 0.1, 2: 0.3}, "snow": {1: 0.2, 2: 0.2}}
    out = m.mean_corruption_error(errors, normalize=None)
    assert out["ce"] == {"fog": pytest.approx(20.0), "snow": pytest.approx(20.0)}
    assert out["mce"] == pytest.approx(20.0)
    out = m.mean_corruption_error({"fog": {1: 0.1}, "snow": {1: 0.5}}, normalize=None)
    assert out["mce"] == pytest.approx(30.0)


def test_ce_against_a_baseline_per_severity():
    # sum(0.2, 0.4) / sum(0.4, 0.8) = 0.5
    assert m.corruption_error({1: 0.2, 2: 0.4}, {1: 0.4, 2: 0.8}) == pytest.approx(50.0)
    assert m.corruption_error([0.2, 0.4], 0.6) == pytest.approx(50.0)


def test_relative_mce():
    errors = {"fog": {1: 0.30, 2: 0.50}, "snow": {1: 0.2, 2: 0.2}}
    base = {"fog": {1: 0.60, 2: 0.80}, "snow": {1: 0.5, 2: 0.7}}
    out = m.relative_mce(errors, 0.1, base, 0.4)
    # fog: (0.2 + 0.4) / (0.2 + 0.4) = 100; snow: (0.1 + 0.1) / (0.1 + 0.3) = 50
    assert out["relative_ce"]["fog"] == pytest.approx(100.0)
    assert out["relative_ce"]["snow"] == pytest.approx(50.0)
    assert out["relative_mce"] == pytest.approx(75.0)


def _calib_err_reference(confidence, correct, beta=100):
    """The authors' calib_err(p='2') as published (hendrycks/outlier-exposure)."""
    idxs = np.argsort(confidence)
    confidence, correct = confidence[idxs], correct[idxs]
    bins = [[i * beta, (i + 1) * beta] for i in range(len(confidence) // beta)]
    bins[-1] = [bins[-1][0], len(confidence)]
    cerr = 0
    total = len(confidence)
    for i in range(len(bins) - 1):
        bc, bk = confidence[bins[i][0]:bins[i][1]], correct[bins[i][0]:bins[i][1]]
        if len(bc) > 0:
            cerr += len(bc) / total * np.square(np.abs(np.nanmean(bc) - np.nanmean(bk)))
    return np.sqrt(cerr)


def test_rms_calibration_hand_example():
    # 300 samples: bins [0,100) conf 0.2 acc 0.0, [100,200) conf 0.5 acc 0.5, [200,300) conf 0.9 acc 0.5.
    conf = np.concatenate([np.full(100, 0.2), np.full(100, 0.5), np.full(100, 0.9)])
    correct = np.concatenate([np.zeros(100), np.arange(100) % 2, np.arange(100) % 2])
    # papers' code: last bin skipped -> sqrt(1/3 * 0.2^2 + 1/3 * 0) = 0.2 / sqrt(3)
    assert m.rms_calibration_error(conf, correct) == pytest.approx(0.2 / math.sqrt(3))
    # every bin: sqrt((0.04 + 0 + 0.16) / 3)
    assert m.rms_calibration_error(conf, correct, skip_last_bin=False) == pytest.approx(math.sqrt(0.2 / 3))


def test_rms_calibration_matches_the_papers_code():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 1234)
    correct = (rng.uniform(size=1234) < conf ** 2).astype(float)
    assert m.rms_calibration_error(conf, correct) == pytest.approx(_calib_err_reference(conf, correct))
    # the remainder (34 samples) joins the last bin
    bins = m.reliability_bins(conf, correct)
    assert [b["count"] for b in bins] == [100] * 11 + [134]


def test_perfect_calibration_is_zero():
    conf = np.full(400, 0.75)
    correct = np.tile([1, 1, 1, 0], 100)
    assert m.rms_calibration_error(conf, correct, skip_last_bin=False) == pytest.approx(0.0)


def test_softmax_confidence():
    conf, correct = m.softmax_confidence(torch.tensor([[0.0, 0.0], [math.log(3), 0.0]]), torch.tensor([1, 0]))
    assert conf == pytest.approx([0.5, 0.75])
    assert correct.tolist() == [False, True]  # ties pick the first class


def test_restrict_logits_200_class_subset():
    logits = torch.arange(2 * 1000, dtype=torch.float32).view(2, 1000)
    indices = [999, 1, 500]
    sub = m.restrict_logits(logits, indices)
    assert sub.tolist() == [[999.0, 1.0, 500.0], [1999.0, 1001.0, 1500.0]]
    assert m.restrict_logits(logits.numpy(), indices).tolist() == sub.tolist()
    # top-1 over the subset: label = position in indices
    assert m.topk_errors(sub, torch.tensor([0, 0]), ks=(1,))[1] == 0.0
    with pytest.raises(ValueError):
        m.restrict_logits(logits, [1, 1])
    with pytest.raises(ValueError):
        m.restrict_logits(logits, [1000])
