"""AGA end to end on the session's simulated GPU cluster (2 fake GPUs, no CUDA).

The tiny random-weight GroundingDINO, SAM, causal LM and SDXL run the real code path on CPU:
the model pools are scheduled with ``num_gpus`` fractions and fall back to the CPU device
because torch sees no CUDA.
"""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from raymix.methods.aga_captions import avoid_words, mentioned
from raymix.models.aga_options import BackgroundOptions, CaptionLLMOptions, SubjectOptions
from raymix.pipeline import aga, stages
from raymix.pipeline.output_settings import OutputSettingsMismatch
from raymix.tools.sample_data import class_names, write_sample

pytestmark = pytest.mark.slow


def job(src, out, *, subject=None, **kw):
    settings = dict(
        input=src, output=out, replicas=2, seed=5, image_size=48,
        subject=SubjectOptions(detector="tiny", segmenter="tiny",
                               **(subject or {"on_no_box": "whole-image", "on_bad_mask": "whole-image"})),
        llm=CaptionLLMOptions(model="tiny", max_new_tokens=8),
        background=BackgroundOptions(model="tiny", steps=2),
        subject_actors=1, llm_actors=1, background_actors=1, composite_actors=1,
    )
    return aga.AGAJob(**{**settings, **kw})


def parquet_files(out):
    return sorted(os.path.join(out, n) for n in os.listdir(out) if n.endswith(".parquet"))


def read_rows(out):
    table = pq.read_table(parquet_files(out), columns=["key", "source_key", "replica", "method", "params", "seed",
                                                       "image"])
    return {r["key"]: r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("aga") / "sample")
    write_sample(src, format="folder", classes=3, per_class=2, size=(64, 48))
    return src


def test_model_stages_are_scheduled_on_gpu_fractions(ray_cluster):
    # 2 fake GPUs: a quarter-GPU pool may grow to 8 actors unless capped; the tiny models fall back
    # to the CPU only where the cluster has no GPU.
    gpu = {"num_gpus": 0.25, "num_cpus": 0.5}
    assert stages.actor_resources(0.25, None, cpu_fallback=True, what="x", cpus=0.5) == (gpu, 8)
    assert stages.actor_resources(0.5, 1, cpu_fallback=True, what="x")[1] == 1


def test_job_quarantines_images_without_a_subject_then_writes_only_what_is_missing(ray_cluster, sample, tmp_path):
    out = str(tmp_path / "out")
    # No box clears a threshold of 1: with --on-no-box quarantine the first 3 images are quarantined
    # (template captions: no LLM pool to start for rows that never reach it).
    first = aga.run(job(sample, out, limit=3, subject={"box_threshold": 1.0, "on_no_box": "quarantine"},
                        llm=CaptionLLMOptions(model="none")))
    assert first.reconciled and first.rows_in == 3
    assert (first.summary.written, first.summary.quarantined) == (0, 3)
    quarantine = pq.read_table(os.path.join(out, "__quarantine__")).to_pylist()
    assert {(q["stage"], q["reason"], q["replica"]) for q in quarantine} == {("segment", "no-box:quarantine", -1)}

    # A rerun with other settings (whole-image subjects, the LLM) would mix two kinds of rows in
    # one folder: it is refused before any work; asked to, it writes beside it
    # (3 sources x 2 replicas in a folder of its own).
    with pytest.raises(OutputSettingsMismatch, match="--box-threshold 1.0 there, 0.35 here"):
        aga.run(job(sample, out))
    again = aga.run(job(sample, out, limit=3, write_beside=True))
    assert again.reconciled and again.skipped == 0 and again.summary.output_uri.startswith(out + "-")
    assert (again.summary.written, again.summary.quarantined) == (6, 0)
    rows = read_rows(again.summary.output_uri)
    assert len(rows) == 6
    names, descriptions = class_names(3)
    avoid = avoid_words(names, descriptions, names)
    for key, row in rows.items():
        params = json.loads(row["params"])
        assert key == f"{row['source_key']}/aga/{row['replica']}" and row["seed"] == 5
        assert {"flip", "angle", "scale", "shift"} <= set(params) and -15 <= params["angle"] <= 15
        subject = params["subject"]
        assert subject["status"] and 0 <= subject["mask_area"] <= 1 and {"score", "box", "superclass"} <= set(subject)
        caption = params["caption"]
        assert caption["source"] in ("llm", "template-fallback") and "llm_output" in caption
        assert params["prompt"] and not mentioned(params["prompt"], avoid)  # the caption the background used
