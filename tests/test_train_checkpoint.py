"""Training checkpoints load with ``weights_only=True``: a real state loads, a file that
would run code when unpickled is refused without running it."""

from __future__ import annotations

import os

import pytest
import torch

from raymix.train.config import TrainConfig
from raymix.train.loop import load_state


class _RunsCode:
    """Unpickling this object calls ``os.system``-like code: here, writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_training_state_loads_and_code_does_not_run(tmp_path):
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
             "epoch": 2, "step": 40, "config": TrainConfig(num_classes=10).to_dict()}
    path = tmp_path / "state.pt"
    torch.save(state, path)
    back = load_state(str(path))
    assert back["epoch"] == 2 and back["config"]["num_classes"] == 10
    assert torch.equal(back["model"]["weight"], model.state_dict()["weight"])

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": model.state_dict(), "epoch": _RunsCode(str(marker))}, evil)
    with pytest.raises(ValueError, match="weights_only"):
        load_state(str(evil))
    assert not os.path.exists(marker)
