"""Robustness evaluation: clean, corrupted (ImageNet-C style), out-of-distribution and
adversarial error and calibration of trained classifiers (``raymix eval``, docs/evaluation.md).

:mod:`~raymix.eval.metrics` and :mod:`~raymix.eval.adversarial` are plain torch/numpy;
:mod:`~raymix.eval.corruptions` wraps ``imagecorruptions`` with per-sample seeds;
:mod:`~raymix.eval.job` is the Ray Data job.
"""
