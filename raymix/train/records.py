"""A training run's records in its run folder (``STORAGE/NAME``), written by the driver:

- ``metrics.jsonl``: one JSON object per epoch, the metrics the workers reported;
- ``tensorboard/``: TensorBoard event files (``tensorboard --logdir STORAGE/NAME/tensorboard``),
  one scalar per numeric metric, step = epoch number (1-based);

and one readable line per epoch on stderr. A resumed run appends to both. For an object
store the event files are written to a local folder and uploaded after every epoch.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

__all__ = ["RunRecords", "epoch_line", "METRICS_FILE", "TENSORBOARD_DIR"]

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def epoch_line(metrics: dict[str, Any], epochs: int | None = None) -> str:
    """``epoch 1/2  loss 2.301  val top-1 0.125 top-5 0.500  210 img/s  12.3 s``"""
    epoch = int(metrics.get("epoch", 0)) + 1
    parts = [f"epoch {epoch}" + (f"/{epochs}" if epochs else "")]
    if "train_loss" in metrics:
        parts.append(f"loss {metrics['train_loss']:.4f}")
    if "train_top1" in metrics:
        parts.append(f"train top-1 {metrics['train_top1']:.3f}")
    if "val_top1" in metrics:
        parts.append(f"val top-1 {metrics['val_top1']:.3f} top-5 {metrics.get('val_top5', 0.0):.3f}")
    if "images_per_s" in metrics:
        parts.append(f"{metrics['images_per_s']:.0f} img/s")
    if "epoch_time_s" in metrics:
        parts.append(f"{metrics['epoch_time_s']:.1f} s")
    if metrics.get("epoch_complete") is False:
        parts.append("(stopped at max_steps)")
    return "  ".join(parts)


class RunRecords:
    """``metrics.jsonl`` and TensorBoard events of the run at ``run_uri``."""

    def __init__(self, run_uri: str, storage_options: dict | None = None, *, epochs: int | None = None,
                 stream=None) -> None:
        from raymix.io.storage import filesystem, is_local, join

        self.run_uri, self.epochs = run_uri, epochs
        self.stream = stream
        self.fs, self.root = filesystem(run_uri, storage_options)
        self.local = is_local(self.fs)
        self.metrics_path = join(self.root, METRICS_FILE)
        self.tb_remote = join(self.root, TENSORBOARD_DIR)
        self.tb_dir = self.tb_remote if self.local else tempfile.mkdtemp(prefix="raymix-tb-")
        self._writer = None
        self.reported = 0  # epochs reported during this run

    def previous(self) -> list[dict[str, Any]]:
        """The epochs an earlier run of the same name recorded."""
        if not self.fs.exists(self.metrics_path):
            return []
        with self.fs.open(self.metrics_path, "rb") as f:
            return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]

    def add(self, metrics: dict[str, Any]) -> None:
        """Record one epoch's metrics and print its line."""
        from raymix.io.storage import atomic_write

        metrics = {k: v for k, v in metrics.items()}
        line = json.dumps(metrics, default=str) + "\n"
        if self.local:
            os.makedirs(self.root, exist_ok=True)
            with open(self.metrics_path, "a") as f:
                f.write(line)
        else:
            old = "".join(json.dumps(m, default=str) + "\n" for m in self.previous())
            atomic_write(self.fs, self.metrics_path, (old + line).encode())
        self._tensorboard(metrics)
        self.reported += 1
        stream = self.stream or sys.stderr
        stream.write(epoch_line(metrics, self.epochs) + "\n")
        stream.flush()

    def _tensorboard(self, metrics: dict[str, Any]) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboardX comes with ray[train]
            return
        if self._writer is None:
            os.makedirs(self.tb_dir, exist_ok=True)
            self._writer = SummaryWriter(self.tb_dir)
        step = int(metrics.get("epoch", 0)) + 1
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self._writer.add_scalar(key, value, step)
        self._writer.flush()
        if not self.local:
            self.fs.put(self.tb_dir.rstrip("/") + "/", self.tb_remote, recursive=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
