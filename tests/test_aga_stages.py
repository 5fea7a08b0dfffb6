"""AGA's Ray Data stages on numpy batches (tiny models), one run on fake GPUs, and the benchmark's CPU path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raymix.models.random_models import build_random_causal_lm, build_random_detector, build_random_segmenter
from raymix.ops.rng import sample_generator
from raymix.pipeline.aga_stages import (
    BACKGROUND,
    CAPTION_RAW,
    SUBJECT_BOX,
    SUBJECT_MASK,
    SUBJECT_STATUS,
    SUPERCLASS,
    BackgroundStage,
    CaptionLLMStage,
    SubjectStage,
)

WATER_OUZEL, TICK = "n01601694", "n01776313"  # ImageNet10 classes of the paper (App. A.1)


@pytest.fixture(scope="module")
def subject_models():
    return {"detector_model": build_random_detector("tiny"), "segmenter_model": build_random_segmenter("tiny")}


def _batch(classes, sizes=None, seed=0):
    rng = np.random.default_rng(seed)
    sizes = sizes or [(48 + 8 * i, 64) for i in range(len(classes))]
    images = np.empty(len(classes), dtype=object)
    for i, s in enumerate(sizes):
        images[i] = rng.integers(0, 256, (*s, 3), dtype=np.uint8)
    return {"image": images, "class_name": np.array(classes, dtype=object),
            "key": np.array([f"k{i}" for i in range(len(classes))], dtype=object)}


def test_subject_stage_columns_and_quarantine(subject_models):
    batch = _batch([WATER_OUZEL, TICK, WATER_OUZEL, "c0003"])
    batch["image"][2] = np.zeros((8, 8, 3), np.float32)  # a bad image
    batch["reason"] = np.array(["", "", "", "read-error"], dtype=object)
    out = SubjectStage(**subject_models)(batch)
    assert list(out[SUPERCLASS]) == ["bird", "tick", "bird", "c0003"]  # the packaged ImageNet table
    assert list(out["reason"][2:]) == ["bad-image: expected uint8 pixels, got float32", "read-error"]
    for i in (0, 1):
        assert out[SUBJECT_MASK][i].shape == batch["image"][i].shape[:2] and out[SUBJECT_MASK][i].any()
        assert np.isfinite(out[SUBJECT_BOX][i]).all() and out["reason"][i] == ""
        assert out[SUBJECT_STATUS][i] in ("ok", "several-boxes:largest")
    assert np.isnan(out[SUBJECT_BOX][3]).all() and out[SUBJECT_STATUS][3] == ""

    none = SubjectStage(**subject_models, box_threshold=1.0)(_batch([WATER_OUZEL]))
    assert (none["stage"][0], none["reason"][0], none[SUBJECT_STATUS][0]) == ("segment", "no-box:quarantine",
                                                                               "no-box:quarantine")
    kept = SubjectStage(**subject_models, box_threshold=1.0, on_no_box="whole-image")(_batch([WATER_OUZEL]))
    assert kept["reason"][0] == "" and kept[SUBJECT_MASK][0].all()


def test_subject_stage_isolates_a_failing_row(subject_models):
    stage = SubjectStage(**subject_models, superclasses={"a": "bird", "b": "boom"})
    detect = stage.model.detect

    def failing(images, prompts):
        if "boom" in prompts:
            raise RuntimeError("kernel failed on this input")
        return detect(images, prompts)

    stage.model.detect = failing
    out = stage(_batch(["a", "b", "a"]))
    assert list(out["stage"]) == ["", "segment", ""]
    assert out["reason"][1] == "segment-error: RuntimeError: kernel failed on this input"
    assert out[SUBJECT_MASK][0].any() and out[SUBJECT_MASK][2].any()


def test_user_superclass_file(subject_models, tmp_path):
    table = tmp_path / "super.json"
    table.write_text(json.dumps({"c0001": "disc"}))
    out = SubjectStage(**subject_models, superclasses=str(table))(_batch(["c0001", "sea_snake"]))
    assert list(out[SUPERCLASS]) == ["disc", "sea snake"]  # not in the table: the class name itself


def test_background_stage_noise_comes_from_the_row():
    stage = BackgroundStage("tiny", seed=3, steps=1)
    batch = _batch(["a", "a", "a"], sizes=[(40, 48), (40, 48), (24, 32)])
    batch.update(caption=np.array(["a forest", "a forest", "a beach"], dtype=object),
                 source_key=batch["key"], replica=np.array([0, 1, 0]), reason=np.array(["", "", "x"], dtype=object))
    out = stage(batch)
    assert [b.shape for b in out[BACKGROUND]] == [(40, 48, 3), (40, 48, 3), (0, 0, 3)]
    direct = stage.model(["a forest"], [sample_generator(3, "k0", 0, salt="background")], size=(40, 48))[0]
    assert np.abs(direct.astype(int) - out[BACKGROUND][0]).max() <= 1
    assert np.abs(out[BACKGROUND][0].astype(int) - out[BACKGROUND][1]).mean() > 1  # replicas differ


def test_caption_llm_stage():
    stage = CaptionLLMStage(model_and_tokenizer=build_random_causal_lm("tiny"), seed=1, max_new_tokens=6)
    batch = {"caption_prompt": np.array(["Describe a forest."] * 3, dtype=object),
             "source_key": np.array(["a", "a", "b"], dtype=object), "replica": np.array([0, 0, 0])}
    out = stage(batch)
    assert out[CAPTION_RAW][0] == out[CAPTION_RAW][1] and out[CAPTION_RAW][0] != out[CAPTION_RAW][2]
    assert stage(batch, attempt=1)[CAPTION_RAW][0] != out[CAPTION_RAW][0]  # a retry draws afresh


@pytest.mark.slow
def test_stages_on_fake_gpus(ray_cluster):
    """Both GPU stages scheduled with num_gpus on the fake GPUs; they fall back to the CPU."""
    import ray

    batch = _batch([WATER_OUZEL, TICK, WATER_OUZEL, TICK], sizes=[(40, 48)] * 4)
    rows = [{"image": im, "class_name": c, "key": k, "source_key": k, "replica": 0, "caption": "a forest"}
            for im, c, k in zip(batch["image"], batch["class_name"], batch["key"])]
    ds = ray.data.from_items(rows).map_batches(
        SubjectStage, fn_constructor_kwargs=dict(detector="tiny", segmenter="tiny"), batch_size=2,
        num_gpus=0.5, compute=ray.data.ActorPoolStrategy(size=1),
    ).map_batches(
        BackgroundStage, fn_constructor_kwargs=dict(model="tiny", seed=0, steps=1), batch_size=2,
        num_gpus=0.5, compute=ray.data.ActorPoolStrategy(size=1),
    )
    out = sorted(ds.take_all(), key=lambda r: r["key"])
    assert len(out) == 4 and all(r["reason"] == "" for r in out)
    assert [r[SUPERCLASS] for r in out] == ["bird", "tick", "bird", "tick"]
    assert all(r[BACKGROUND].shape == (40, 48, 3) and r[SUBJECT_MASK].shape == (40, 48) for r in out)


def test_bench_aga_smoke_on_cpu(capsys):
    from raymix.bench.__main__ import main

    argv = ["aga", "--json", "--detector", "tiny", "--segmenter", "tiny", "--llm", "tiny", "--background-model",
            "tiny", "--image-size", "40,48", "--subject-batch", "2", "--caption-batch", "2", "--background-batch", "2",
            "--background-steps", "1", "--llm-max-new-tokens", "2", "--iters", "1", "--replicas", "2"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    stages = {r["stage"]: r for r in lines if r["kind"] == "stage"}
    assert set(stages) == {"subject", "caption", "background"}
    assert stages["subject"]["seconds_per_output"] == pytest.approx(1 / stages["subject"]["items_per_s"] / 2)
    result = lines[-1]
    seconds = result["seconds_per_output"]
    assert result["bound_by"] == max(seconds, key=seconds.get)
    assert result["images_per_s_one_gpu"] == pytest.approx(1 / sum(seconds.values()))
    assert result["images_per_s_pipelined"] == pytest.approx(1 / max(seconds.values()))

