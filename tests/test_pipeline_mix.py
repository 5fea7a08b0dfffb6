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
