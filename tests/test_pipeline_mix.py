"""The CPU mixing job end to end: jobs/mix_imagenet.py on the session's Ray instance."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from raymix.pipeline.datasource import read_images
from raymix.tools.sample_data import write_sample
from raymix.io.storage import filesystem

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def load_job(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("mix") / "sample")
    write_sample(src, format="folder", classes=2, per_class=3, size=(96, 72))
    return src


@pytest.mark.parametrize("method", ["pixmix", "ipmix", "layermix"])
def test_mix_job_writes_replicas_with_provenance(ray_cluster, sample, tmp_path, method, capsys):
    out = str(tmp_path / method)
    job = load_job("mix_imagenet")
    code = job.main(["--method", method, "--input", sample, "--output", out, "--replicas", "2", "--image-size", "64",
                     "--fractals", "generated:16", "--seed", "5", "--json"])
    assert code == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (counts["rows_in"], counts["written"], counts["reconciled"]) == (6, 12, True)
    fs, root = filesystem(out)
    table = pq.read_table([p for p in fs.ls(root) if p.endswith(".parquet")])
    rows = table.to_pylist()
    assert {r["method"] for r in rows} == {method} and {r["replica"] for r in rows} == {0, 1}
    assert all(r["key"] == f"{r['source_key']}/{method}/{r['replica']}" and r["seed"] == 5 for r in rows)
    assert all(json.loads(r["params"]) for r in rows)
    assert {r["label"] for r in rows} == {0, 1}


def test_mix_job_on_s3_as_webdataset(ray_cluster, sample, s3_bucket, capsys):
    out = f"{s3_bucket}/layermix"
    job = load_job("mix_imagenet")
    assert job.main(["--method", "layermix", "--input", sample, "--output", out, "--format", "webdataset",
                     "--image-size", "64", "--fractals", "generated:16", "--limit", "4"]) == 0
    back = read_images(out).take_all()
    assert len(back) == 4 and all(r["image"][:2] == b"\xff\xd8" for r in back)
    assert "reconciled" in capsys.readouterr().out


def test_quiet_mix_job_prints_one_json_object_and_writes_a_run_record(ray_cluster, sample, tmp_path):
    """`raymix mix --json` as a user runs it: stdout is exactly one JSON object, stderr a few
    lines of raymix's own with none of Ray's, and OUT/.raymix/summary.json counts what was
    written, where `datasets.load_dataset(OUT)` does not take it for data."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "raymix.cli", "mix", "--method", "layermix", "--input", sample, "--output", str(out),
         "--replicas", "2", "--image-size", "64", "--fractals", "generated:16", "--json"],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    counts = json.loads(run.stdout)  # the whole of stdout: one object
    assert isinstance(counts, dict) and counts["written"] == 12 and counts["reconciled"]
    lines = run.stderr.splitlines()
    assert len(lines) <= 15, run.stderr
    for marker in ("INFO", "WARNING", "pid=", "core_worker", "streaming_executor", "Dataset", "(raylet)"):
        assert marker not in run.stderr, run.stderr
    assert lines[0].startswith("Ray logs: ") and (out / ".raymix" / "logs" / "driver.log").exists()

    record = json.loads((out / ".raymix" / "summary.json").read_text())
    written = sum(pq.read_metadata(p).num_rows for p in out.glob("*.parquet"))
    assert record["counts"]["written"] == written == counts["written"]
    assert record["counts"]["rows_in"] == 6 and record["counts"]["quarantined"] == 0
    assert record["quarantine_reasons"] == {} and record["counts"]["reconciled"]
    assert record["settings"]["method"] == "layermix" and "storage_options" not in record["settings"]
    assert record["versions"]["raymix"] and record["versions"]["ray"] and record["timings"]["seconds"] > 0

    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset(str(out), split="train")
    assert len(loaded) == written and "counts" not in loaded.column_names
