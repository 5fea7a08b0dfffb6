import pytest
import torch

from raymix.ops.losses import jsd_consistency


def test_zero_when_views_agree():
    logits = torch.randn(8, 10)
    assert jsd_consistency(logits, logits.clone(), logits.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # Shifting logits by a constant does not change the softmax.
    assert jsd_consistency(logits, logits + 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_positive_bounded_and_symmetric():
    torch.manual_seed(0)
    a, b, c = torch.randn(3, 16, 10).unbind(0)
    value = jsd_consistency(a, b, c)
    assert value.item() > 0
    assert value.item() <= torch.log(torch.tensor(3.0)).item() + 1e-6  # JS of 3 distributions <= log 3
    assert torch.allclose(value, jsd_consistency(c, a, b))


def test_matches_the_two_distribution_formula():
    p = torch.tensor([[0.9, 0.1]])
    q = torch.tensor([[0.2, 0.8]])
    m = (p + q) / 2
    expected = 0.5 * ((p * (p / m).log()).sum() + (q * (q / m).log()).sum())
    assert torch.allclose(jsd_consistency(p.log(), q.log()), expected, atol=1e-6)


def test_gradients_flow_to_every_view():
    views = [torch.randn(4, 5, requires_grad=True) for _ in range(3)]
    jsd_consistency(*views).backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in views)
    with pytest.raises(ValueError):
        jsd_consistency(views[0])
