"""The InstructPix2Pix editor (the model, raymix.models.editor) and its Ray stage
(raymix.pipeline.edit_stage) with the tiny random-weight pipeline on the CPU (64x64, 2 steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raymix.models.editor import PRESETS
from raymix.pipeline.edit_stage import EDIT_PARAMS, EDITED, PROMPT, EditStage
from raymix.models.prompts import PAPER_PROMPTS, PAPER_TEMPLATE, PUBLIC_CODE_PROMPTS
from raymix.ops.blank import BLANK_KINDS, blank_kinds

TINY = dict(preset="fast", steps=2, resolution=64)


@pytest.fixture(scope="module")
def editor():
    return EditStage("tiny", seed=7, **TINY)


def _batch(n=4, size=(48, 80), seed=0, replica=None):
    rng = np.random.default_rng(seed)
    batch = {
        "image": rng.integers(0, 256, (n, *size, 3), dtype=np.uint8),
        "source_key": np.array([f"train/n0/img{i}" for i in range(n)], dtype=object),
    }
    if replica is not None:
        batch["replica"] = np.full(n, replica)
    return batch


def _generators(n, offset=0):
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def test_edit_matches_the_diffusers_pipeline(editor):
    """The batched loop computes what StableDiffusionInstructPix2PixPipeline computes, row by row."""
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 3, 64, 64), dtype=np.uint8))
    prompts = [editor.model.library.text(i) for i in range(3)]
    ours = editor.model.edit(images, prompts, _generators(3))
    theirs = editor.model.pipeline(
        prompts,
        image=images.float() / 255,
        num_inference_steps=2,
        guidance_scale=4.0,
        image_guidance_scale=1.5,
        generator=_generators(3),
        output_type="np",
    ).images
    theirs = torch.from_numpy((theirs * 255).round().astype(np.uint8)).permute(0, 3, 1, 2)
    assert ours.shape == (3, 3, 64, 64) and ours.dtype == torch.uint8
    assert (ours.int() - theirs.int()).abs().max() <= 1  # rounding of the same float32 math


def test_batch_contract(editor):
    batch = _batch()
    out = editor(batch)
    assert out[EDITED].shape == (4, 48, 80, 3) and out[EDITED].dtype == np.uint8
    assert np.array_equal(out["image"], batch["image"]) and list(out["source_key"]) == list(batch["source_key"])
    assert list(out["stage"]) == [""] * 4 and list(out["reason"]) == [""] * 4
    for key, prompt, params in zip(batch["source_key"], out[PROMPT], out[EDIT_PARAMS]):
        params = json.loads(params)
        order = editor.prompt_order(key, 0)
        assert prompt == PAPER_TEMPLATE.format(prompt=PAPER_PROMPTS[order[0]]) == params["prompt"]
        assert params["prompt_index"] == order[0] and params["retries"] == 0
        assert params["steps"] == 2 and params["device"] == "cpu" and params["dtype"] == "float32"
    assert not np.array_equal(out[EDITED], batch["image"])


def test_same_seed_same_bytes_and_seed_matters():
    a = EditStage("tiny", seed=1, **TINY)(_batch())
    b = EditStage("tiny", seed=1, **TINY)(_batch())
    c = EditStage("tiny", seed=2, **TINY)(_batch())
    assert np.array_equal(a[EDITED], b[EDITED]) and list(a[PROMPT]) == list(b[PROMPT])
    assert not np.array_equal(a[EDITED], c[EDITED])


def test_batch_grouping_does_not_change_rows():
    """With a fixed model batch, a batch of 4 and two batches of 2 give the same bytes.

    Without it, CPU GEMM kernels are chosen by matrix shape, so a row may differ by one
    grey level between batch sizes (the float results differ in the last bits).
    """
    fixed = EditStage("tiny", seed=3, model_batch=4, **TINY)
    whole = fixed(_batch())
    halves = [fixed({k: v[s] for k, v in _batch().items()}) for s in (slice(0, 2), slice(2, 4))]
    assert np.array_equal(whole[EDITED], np.concatenate([h[EDITED] for h in halves]))

    free = EditStage("tiny", seed=3, **TINY)
    whole_free = free(_batch())
    halves_free = np.concatenate([free({k: v[s] for k, v in _batch().items()})[EDITED] for s in (slice(0, 2), slice(2, 4))])
    assert np.abs(whole_free[EDITED].astype(int) - halves_free.astype(int)).max() <= 1


def test_replicas_draw_their_own_prompts(editor):
    keys = [f"k{i}" for i in range(40)]
    first = {editor.prompt_order(k, 0)[0] for k in keys}
    assert len(first) >= 6  # nine prompts, drawn at random per image
    assert [editor.prompt_order("k0", r) for r in range(3)] != [editor.prompt_order("k0", 0)] * 3
    assert sorted(editor.prompt_order("k0", 0)) == list(range(len(PAPER_PROMPTS)))


def test_public_code_preset_cycles_bare_prompts():
    ed = EditStage("tiny", preset="public-code", steps=2, resolution=64)
    assert ed.model.settings.steps == 2 and PRESETS["public-code"].steps == 100
    for replica in range(3):
        out = ed(_batch(n=2, replica=replica))
        assert list(out[PROMPT]) == [PUBLIC_CODE_PROMPTS[replica]] * 2


def test_prompt_file(tmp_path):
    import fsspec

    with fsspec.open("memory://raymix-test/prompts.txt", "w") as f:
        f.write("# my prompts\n\nfoggy morning\n  pencil drawing  \n")
    ed = EditStage("tiny", prompt_file="memory://raymix-test/prompts.txt", template="{prompt}", **TINY)
    assert ed.model.library.prompts == ("foggy morning", "pencil drawing")
    out = ed(_batch(n=6))
    assert set(out[PROMPT]) <= {"foggy morning", "pencil drawing"}
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no prompts"):
        EditStage("tiny", prompt_file=str(empty), **TINY)


def _force_white(editor, calls: int | None):
    """Make the VAE decoder return white for its first ``calls`` calls (all calls if None)."""
    seen = {"n": 0}

    def hook(module, inputs, output):
        seen["n"] += 1
        if calls is None or seen["n"] <= calls:
            return torch.ones_like(output)
        return output

    return editor.model.vae.decoder.register_forward_hook(hook)


def test_blank_output_is_retried_with_the_next_prompt():
    ed = EditStage("tiny", seed=5, **TINY)
    handle = _force_white(ed, calls=1)
    try:
        out = ed(_batch(n=3))
    finally:
        handle.remove()
    assert list(out["reason"]) == [""] * 3
    for key, prompt, params in zip(_batch(n=3)["source_key"], out[PROMPT], out[EDIT_PARAMS]):
        params = json.loads(params)
        order = ed.prompt_order(key, 0)
        assert params["retries"] == 1 and params["prompt_index"] == order[1]
        assert params["rejected"] == [{"prompt": ed.model.library.text(order[0]), "blank": "near-white"}]
        assert prompt == ed.model.library.text(order[1])
    assert (blank_kinds(torch.from_numpy(out[EDITED]).permute(0, 3, 1, 2)) == 0).all()


def test_always_blank_rows_are_quarantined():
    ed = EditStage("tiny", max_retries=2, **TINY)
    handle = _force_white(ed, calls=None)
    try:
        batch = _batch(n=2)
        out = ed(batch)
    finally:
        handle.remove()
    assert list(out["stage"]) == ["edit"] * 2 and list(out["reason"]) == ["blank-output"] * 2
    assert all(len(json.loads(p)["rejected"]) == 3 for p in out[EDIT_PARAMS])
    assert np.array_equal(out[EDITED], batch["image"])  # the row carries its input, flagged


def test_rows_with_a_reason_and_bad_images_pass_through(editor):
    good = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    images = np.empty(5, dtype=object)
    images[:] = [good, good[:40, :50], good[:, :, 0], good.astype(np.float32), good]
    batch = {
        "image": images,
        "key": np.array(list("abcde"), dtype=object),
        "stage": np.array(["", "", "", "", "decode"], dtype=object),
        "reason": np.array(["", "", "", "", "corrupt JPEG"], dtype=object),
    }
    out = editor(batch)
    assert list(out["reason"][:3]) == ["", "", ""]
    assert out[EDITED][1].shape == (40, 50, 3) and out[EDITED][2].shape == (64, 64, 3)  # grey -> RGB
    assert out["stage"][3] == "edit" and out["reason"][3].startswith("bad-image")
    assert (out["stage"][4], out["reason"][4], out[PROMPT][4], out[EDIT_PARAMS][4]) == ("decode", "corrupt JPEG", "", "")
    assert out[EDITED][4] is good or np.array_equal(out[EDITED][4], good)
    with pytest.raises(KeyError, match="source_key"):
        editor({"image": batch["image"][:1]})


def test_blank_kinds():
    rng = np.random.default_rng(0)
    images = torch.stack(
        [
            torch.full((3, 32, 32), 255, dtype=torch.uint8),
            torch.zeros((3, 32, 32), dtype=torch.uint8),
            torch.full((3, 32, 32), 120, dtype=torch.uint8),
            torch.from_numpy(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)),
        ]
    )
    assert [BLANK_KINDS[k] for k in blank_kinds(images)] == ["near-white", "near-black", "near-uniform", ""]
    assert BLANK_KINDS[blank_kinds(images[0].float() / 255)] == "near-white"


def test_ray_map_batches_on_fake_gpus_falls_back_to_cpu(ray_cluster):
    """Actors are scheduled with num_gpus=1 on the fake GPUs, edit on the CPU, and match a direct call."""
    import ray

    batch = _batch(n=6, size=(64, 64))
    rows = [{"image": img, "source_key": key, "replica": 1} for img, key in zip(batch["image"], batch["source_key"])]
    kwargs = dict(model="tiny", seed=11, model_batch=3, **TINY)
    ds = ray.data.from_items(rows).map_batches(
        EditStage,
        fn_constructor_kwargs=kwargs,
        batch_size=3,
        num_gpus=1,
        compute=ray.data.ActorPoolStrategy(size=2),
    )
    out = sorted(ds.take_all(), key=lambda r: r["source_key"])
    assert len(out) == 6 and all(r["reason"] == "" for r in out)
    assert all(json.loads(r[EDIT_PARAMS])["device"] == "cpu" for r in out)
    # Ray runs a num_gpus=1 actor with one CPU thread; CPU kernels split their sums by
    # thread count, so compare with a single-threaded direct call.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = EditStage(**kwargs)({**batch, "replica": np.ones(6, dtype=np.int64)})
    finally:
        torch.set_num_threads(threads)
    for row, edited in zip(out, direct[EDITED]):
        assert np.array_equal(row[EDITED], edited)
