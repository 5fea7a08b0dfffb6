"""Training losses that augmentation methods rely on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["jsd_consistency"]


def jsd_consistency(*logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Jensen-Shannon consistency between the predictions of several views of a batch.

    AugMix (Hendrycks et al., ICLR 2020, eq. 1-2): with ``p_i = softmax(logits_i)`` and
    ``M = mean_i p_i``, ``JS = mean_i KL(p_i || M)``, averaged over the batch. It is 0
    when every view gets the same prediction. The paper adds ``12 * JS`` to the
    cross-entropy of the clean view (clean, augmented 1, augmented 2); IPMix and LayerMix
    report results with the same term. ``M`` is clamped at ``eps`` before the log, as in
    the reference implementation.
    """
    if len(logits) < 2:
        raise ValueError("the JSD consistency loss needs at least two views")
    probs = [F.softmax(x.float(), dim=1) for x in logits]
    log_mixture = torch.clamp(torch.stack(probs).mean(0), eps, 1.0).log()
    kl = [F.kl_div(log_mixture, p, reduction="batchmean") for p in probs]
    return torch.stack(kl).mean()
