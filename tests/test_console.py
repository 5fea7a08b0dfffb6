"""What jobs print, without Ray: the quiet session, the progress line, training's records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import os, sys
from raymix.pipeline import console
with console.session(verbose={verbose}, json_out=True, log_dir=sys.argv[1]):
    os.write(2, b"core_worker.cc: noise from C++\\n")
    os.write(1, b"more noise on fd 1\\n")
    print("raymix line")
    console.emit({{"ok": 1}})
"""


def _probe(tmp_path, verbose: bool):
    return subprocess.run([sys.executable, "-c", PROBE.format(verbose=verbose), str(tmp_path / "logs")],
                          capture_output=True, text=True, check=True, cwd=ROOT)


def test_quiet_session_sends_c_level_output_to_the_log_and_keeps_one_json_object_on_stdout(tmp_path):
    out = _probe(tmp_path, verbose=False)
    assert json.loads(out.stdout) == {"ok": 1}
    assert out.stderr.splitlines() == [f"Ray logs: {tmp_path / 'logs'} (--verbose shows them here)", "raymix line"]
    log = (tmp_path / "logs" / "driver.log").read_text()
    assert "noise from C++" in log and "more noise on fd 1" in log


def test_verbose_session_shows_everything_but_keeps_stdout_for_the_json(tmp_path):
    out = _probe(tmp_path, verbose=True)
    assert "noise from C++" in out.stderr and "raymix line" in out.stderr
    assert out.stdout.splitlines()[-1] == '{"ok": 1}'


def test_progress_line_has_rate_and_eta_when_the_total_is_known():
    from raymix.pipeline.console import Progress

    line = Progress(lambda: 0, 100).line(10)
    assert line.startswith("read 10/100 rows") and "rows/s" in line
    assert "ETA" not in Progress(lambda: 0, None).line(10)


def test_run_records_append_metrics_and_tensorboard_events(tmp_path):
    import io

    from raymix.train.records import RunRecords

    stream = io.StringIO()
    records = RunRecords(str(tmp_path / "run"), epochs=2, stream=stream)
    for epoch in range(2):
        records.add({"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "val_top1": 0.5, "val_top5": 0.9,
                     "images_per_s": 10.0, "epoch_time_s": 1.0, "epoch_complete": True})
    records.close()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1] and records.previous()[1]["train_loss"] == 0.5
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert stream.getvalue().splitlines()[1].startswith("epoch 2/2  loss 0.5000  val top-1 0.500 top-5 0.900")
