"""DiffuseMix end to end on the session's simulated GPU cluster (2 fake GPUs, no CUDA).

The tiny random-weight editor runs the real code path on CPU: GPU actors are scheduled
with ``num_gpus`` and fall back to the CPU device because torch sees no CUDA.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from raymix.tools.sample_data import write_sample
from raymix.models.editor_options import EditorOptions
from raymix.pipeline import diffusemix
from raymix.pipeline.rows import expand_replicas

pytestmark = pytest.mark.slow


def job(src, out, **kw):
    editor = EditorOptions(model="tiny", steps=2, resolution=64, model_batch=4)
    settings = dict(input=src, output=out, editor=editor, replicas=2, seed=3, fractals="generated:16")
    return diffusemix.DiffuseMixJob(**{**settings, **kw})


def parquet_files(out):
    return sorted(os.path.join(out, n) for n in os.listdir(out) if n.endswith(".parquet"))


def read_rows(out):
    table = pq.read_table(parquet_files(out), columns=["key", "source_key", "replica", "method", "params", "seed", "image", "label"])
    return {r["key"]: r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("diffusemix") / "sample")
    write_sample(src, format="folder", classes=3, per_class=3, size=(96, 72))
    with open(os.path.join(src, "c0001", "broken.JPEG"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    return src


def test_expand_replicas_keys_and_failed_rows():
    batch = {"key": np.array(["a", "b"], dtype=object), "image": np.zeros((2, 4, 4, 3), np.uint8),
             "reason": np.array(["", "truncated"], dtype=object)}
    out = expand_replicas(batch, replicas=3, method="diffusemix")
    assert out["key"].tolist() == ["a/diffusemix/0", "a/diffusemix/1", "a/diffusemix/2", "b"]
    assert out["source_key"].tolist() == ["a", "a", "a", "b"]
    assert out["replica"].tolist() == [0, 1, 2, -1]


def test_job_writes_replicas_with_provenance_and_quarantines_bad_input(ray_cluster, sample, tmp_path):
    out = str(tmp_path / "out")
    assert diffusemix.edit_resources(job(sample, out))[0] == {"num_gpus": 1.0, "num_cpus": 1.0}
    result = diffusemix.run(job(sample, out, keep_intermediates=True))

    assert result.rows_in == 10 and result.reconciled
    assert (result.summary.written, result.summary.quarantined) == (18, 1)
    rows = read_rows(out)
    assert len(rows) == 18 and {r["replica"] for r in rows.values()} == {0, 1}
    for key, row in rows.items():
        params = json.loads(row["params"])
        assert key == f"{row['source_key']}/diffusemix/{row['replica']}" and row["method"] == "diffusemix"
        assert params["mask"] in ("left", "right", "top", "bottom") and params["lambda"] == 0.2
        assert params["fractal"] and params["prompt"].startswith("A transformed version of image into")
        # The editor ran in a GPU actor and fell back to the CPU device (no CUDA here).
        assert params["edit"]["device"] == "cpu" and row["seed"] == 3
    # Replicas of one image draw their own prompt/noise: the two copies differ.
    a, b = rows["c0000/c0000_00000/diffusemix/0"], rows["c0000/c0000_00000/diffusemix/1"]
    assert a["image"]["bytes"] != b["image"]["bytes"]

    quarantine = pq.read_table(os.path.join(out, "__quarantine__")).to_pylist()
    assert [(q["key"], q["stage"], q["replica"]) for q in quarantine] == [("c0001/broken", "decode", -1)]
    kept = pq.read_table(parquet_files(out), columns=["generated", "hybrid"]).to_pylist()
    assert all(r["generated"]["bytes"][:2] == b"\xff\xd8" and r["hybrid"]["bytes"] for r in kept)
    assert os.path.exists(os.path.join(out, "classes.json"))


def test_same_seed_same_bytes_whatever_the_pool_sizes(ray_cluster, sample, tmp_path):
    first = str(tmp_path / "one")
    second = str(tmp_path / "two")
    diffusemix.run(job(sample, first, limit=3, edit_actors=1, mix_actors=1))
    diffusemix.run(job(sample, second, limit=3, edit_actors=2, mix_actors=2))
    a, b = read_rows(first), read_rows(second)
    assert a.keys() == b.keys() and len(a) == 6
    assert all(a[k]["image"]["bytes"] == b[k]["image"]["bytes"] for k in a)
    other = str(tmp_path / "other-seed")
    diffusemix.run(job(sample, other, limit=3, seed=4))
    c = read_rows(other)
    assert any(a[k]["image"]["bytes"] != c[k]["image"]["bytes"] for k in a)


def test_rerun_resumes_without_duplicates(ray_cluster, sample, tmp_path):
    out = str(tmp_path / "out")
    first = diffusemix.run(job(sample, out, limit=3))
    assert first.summary.written == 6
    # A file lost (e.g. a run killed before it committed) is redone; finished sources are not read again.
    lost = parquet_files(out)[0]
    lost_table = pq.read_table(lost)
    touched = set(lost_table.column("source_key").to_pylist())
    os.remove(lost)
    again = diffusemix.run(job(sample, out))
    assert again.reconciled and again.skipped == 3 - len(touched) and again.rows_in == 10 - again.skipped
    # Replicas of a touched source that survived are found committed, not written twice.
    assert again.summary.written == 18 - (6 - lost_table.num_rows)
    assert len(read_rows(out)) == 18
