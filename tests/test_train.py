"""Ray Train runs: two CPU workers, a few steps each; resume after a killed driver."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from raymix.train import TrainConfig, fit
from raymix.train.loop import CHECKPOINT_FILE

sys.path.insert(0, str(Path(__file__).parent))
from train_driver import resume_config, sample_rows  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


# MiAMix runs in the resume test; here AugMix also brings the JSD loss (three views). PixMix
# and IPMix take the same MethodStage path as LayerMix (test_train_data.py runs them in the
# data stage).
@pytest.mark.parametrize("online, jsd", [("augmix", True), ("layermix", False)])
def test_two_workers_with_online_method(ray_cluster, s3_bucket, online, jsd):
    """Checkpoints go to S3 (the local moto server)."""
    from raymix.io.storage import filesystem

    ray = ray_cluster
    items = sample_rows(16)
    config = TrainConfig(
        arch="resnet18", num_classes=3, image_size=32, batch_size=8, epochs=1, lr=0.01,
        online=online, jsd=jsd, data_batch_size=8, log_every=0,
    )
    result = fit(
        [ray.data.from_items(items)], val=ray.data.from_items(items[:8]), config=config, workers=2,
        storage=f"{s3_bucket}/runs", name=f"online-{online}",
    )
    m = result.metrics
    # 16 rows, one bad: two workers x two steps of four rows, the bad row dropped and counted.
    assert m["step"] == 2 and m["epoch_complete"]
    assert m["train_rows"] == 15 and m["rows_dropped"] == 1
    assert np.isfinite(m["train_loss"]) and 0 <= m["val_top1"] <= m["val_top5"] <= 1
    assert m["val_rows"] == 7 and m["val_rows_dropped"] == 1
    fs, root = filesystem(s3_bucket)
    assert result.checkpoint.path.startswith(f"{root}/runs/online-")
    with fs.open(f"{result.checkpoint.path}/{CHECKPOINT_FILE}", "rb") as f:
        state = torch.load(f, weights_only=False)
    assert state["epoch"] == 1 and state["step"] == 2 and state["config"]["online"] == online


def _registered_checkpoint(run_dir: Path) -> dict | None:
    """The state of the latest checkpoint Ray Train has registered for the run, if any."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
        latest = snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
        return torch.load(run_dir / latest / CHECKPOINT_FILE, weights_only=False)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None


def test_resume_after_killed_driver_continues_from_last_checkpoint(ray_cluster, tmp_path):
    """Kill the driver process (and with it the run) after its first checkpoint, rerun with
    the same name: training continues at the next epoch and step, not from scratch.
    Both runs use MiAMix on two workers."""
    ray = ray_cluster
    storage, name, epochs = tmp_path / "runs", "resume", 3
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "train_driver.py"), str(storage), name, str(epochs)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while _registered_checkpoint(storage / name) is None:
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        log.close()
    saved = _registered_checkpoint(storage / name)
    assert 1 <= saved["epoch"] < epochs, "the driver finished before it was killed"
    steps_per_epoch = saved["step"] // saved["epoch"]

    result = fit([ray.data.from_items(sample_rows())], config=resume_config(epochs), workers=2,
                 storage=str(storage), name=name)
    m = result.metrics
    assert m["resumed_from_epoch"] == saved["epoch"]
    assert m["epoch"] == epochs - 1 and m["step"] == epochs * steps_per_epoch
    assert m["rows_dropped"] == 1
    final = torch.load(Path(result.checkpoint.path) / CHECKPOINT_FILE, weights_only=False)
    assert final["epoch"] == epochs and final["step"] == epochs * steps_per_epoch


def _write_shard(directory: Path, n: int, method: str | None, seed: int) -> None:
    """An HF-layout parquet shard of JPEGs; with ``method``, shaped like raymix's augmented output."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    from raymix import schema
    from raymix.io.schema import OUTPUT_SCHEMA

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, format="JPEG")
        source_key = f"train/c{i % 3}/img{i:03d}"
        rows.append({
            "image": {"bytes": buf.getvalue() if i != 3 else b"not a jpeg", "path": None},
            "label": i % 3, "class_name": f"c{i % 3}",
            "key": schema.output_key(source_key, method, 0) if method else source_key,
            "source_key": source_key, "method": method or "original", "replica": 0, "params": "{}", "seed": 0,
        })
    directory.mkdir(parents=True)
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), directory / "train-00000-of-00001.parquet")


def test_job_trains_on_original_and_augmented_shards(ray_cluster, tmp_path):
    """jobs/train_resnet50.py end to end: a class-folder tree of originals plus a parquet shard
    of augmented rows (one undecodable) mixed 1:1, an online method and MiAMix on two
    workers, validation and checkpoints."""
    from raymix.tools.sample_data import write_sample

    online = "layermix"
    write_sample(str(tmp_path / "originals"), format="folder", classes=3, per_class=6, size=(48, 40))
    _write_shard(tmp_path / "diffusemix", 16, "diffusemix", 1)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train_resnet50.py"),
         "--input", str(tmp_path / "originals"), "--input", str(tmp_path / "diffusemix"), "--ratio", "1:1",
         "--val", str(tmp_path / "originals"),
         "--arch", "resnet18", "--num-classes", "3", "--image-size", "32", "--batch-size", "8",
         "--epochs", "1", "--online", online, "--miamix", "--workers", "2",
         "--storage", str(tmp_path / "runs"), "--name", "job"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)  # stdout is the one JSON object; the rest went to stderr
    m = report["metrics"]
    run_dir = tmp_path / "runs" / "job"
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0] and epochs[0]["train_rows"] == m["train_rows"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "epoch 1/1  loss " in out.stderr and "pid=" not in out.stderr
    # An epoch of 34 rows, about half from each input; the undecodable row is dropped and
    # counted whenever the epoch's draw includes it.
    assert 20 <= m["train_rows"] + m["rows_dropped"] <= 40 and m["rows_dropped"] <= 2
    assert m["val_rows"] == 18 and m["val_rows_dropped"] == 0
    assert report["checkpoint"] and (Path(report["checkpoint"]) / CHECKPOINT_FILE).exists()

    again = subprocess.run(out.args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already complete at epoch 1; raise --epochs to continue" in again.stderr
    assert json.loads(again.stdout)["checkpoint"] and len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def test_job_chains_diffusemix_straight_into_training(ray_cluster, tmp_path):
    """--chain: the DiffuseMix stream (tiny editor) feeds Ray Train in the same job, no shards written."""
    from raymix.tools.sample_data import write_sample

    write_sample(str(tmp_path / "originals"), format="folder", classes=2, per_class=4, size=(48, 40))
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    chain = {"editor": "tiny", "steps": 1, "resolution": 32, "edit_batch_size": 4, "fractals": "generated:8"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train_resnet50.py"),
         "--input", str(tmp_path / "originals"), "--chain", "diffusemix", "--chain-options", json.dumps(chain),
         "--arch", "resnet18", "--num-classes", "2", "--image-size", "32", "--batch-size", "4",
         "--epochs", "1", "--workers", "1", "--storage", str(tmp_path / "runs"), "--name", "chained"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])["metrics"]
    # 8 originals + 8 DiffuseMix rows (one replica each) in the epoch.
    assert m["train_rows"] == 16 and m["rows_dropped"] == 0
    assert not any(p.suffix == ".parquet" for p in tmp_path.rglob("*"))
