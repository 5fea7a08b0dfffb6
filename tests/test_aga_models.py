"""AGA's model wrappers on tiny random-weight models: subject isolation and its policies,
background generation, the caption LLM, loading from a local folder, the full-size architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raymix.models.aga_options import SubjectOptions
from raymix.models.backgrounds import BackgroundGenerator
from raymix.models.caption_llm import CaptionLLM
from raymix.models.random_models import (
    build_random_causal_lm,
    build_random_detector,
    build_random_segmenter,
    build_random_text_to_image,
)
from raymix.models.subjects import SubjectIsolator, choose_box, detector_prompt


def _images(sizes=((50, 70), (80, 60), (64, 64)), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in sizes]


@pytest.fixture(scope="module")
def subject_models():
    return build_random_detector("tiny"), build_random_segmenter("tiny")


def _isolator(subject_models, **options):
    det, sam = subject_models
    return SubjectIsolator(detector_model=det, segmenter_model=sam, **options)


@pytest.fixture(scope="module")
def text_to_image():
    return build_random_text_to_image("sdxl", "tiny")


@pytest.fixture(scope="module")
def causal_lm():
    return build_random_causal_lm("tiny")


# ---------------------------------------------------------------------- subjects


def test_detector_prompt_and_box_choice():
    assert detector_prompt("Water_Ouzel") == "water ouzel."
    assert detector_prompt("bird.") == "bird."
    boxes = np.array([[0, 0, 10, 10], [0, 0, 30, 5], [5, 5, 9, 9.0]])  # areas 100, 150, 16
    scores = np.array([0.5, 0.4, 0.9])
    assert choose_box(boxes, scores, "largest") == 1
    assert choose_box(boxes, scores, "highest-score") == 2


def test_subjects_have_masks_boxes_and_a_status(subject_models):
    images = _images()
    subjects = _isolator(subject_models)(images, ["bird", "snake", "water ouzel"])
    assert len(subjects) == 3
    for image, s in zip(images, subjects):
        assert s.mask.dtype == bool and s.mask.shape == image.shape[:2]
        assert s.status in ("ok", "several-boxes:largest")  # random weights find boxes everywhere
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 <= x1 <= image.shape[1] + 1e-3 and 0 <= y0 <= y1 <= image.shape[0] + 1e-3
        assert s.mask_area == pytest.approx(s.mask.mean()) and 0.01 <= s.mask_area <= 0.95
        assert s.boxes_found >= 1 and 0.35 < s.score <= 1
    again = _isolator(subject_models)(images, ["bird", "snake", "water ouzel"])
    assert all(np.array_equal(a.mask, b.mask) and a.box == b.box for a, b in zip(subjects, again))


def test_several_boxes_rule_picks_the_largest_or_the_best(subject_models):
    images = _images()[:1]
    det = _isolator(subject_models)
    boxes, scores = det.detect(images, ["bird"])[0]
    assert len(boxes) > 1
    largest = _isolator(subject_models, on_several="largest")(images, ["bird"])[0]
    best = _isolator(subject_models, on_several="highest-score")(images, ["bird"])[0]
    assert largest.box == tuple(boxes[choose_box(boxes, scores, "largest")])
    assert best.box == tuple(boxes[int(np.argmax(scores))]) and best.score == scores.max()
    assert best.status == "several-boxes:highest-score"


@pytest.mark.parametrize("action", ["quarantine", "whole-image"])
def test_no_box(subject_models, action):
    [s] = _isolator(subject_models, box_threshold=1.0, on_no_box=action)(_images()[:1], ["bird"])
    assert s.status == f"no-box:{action}" and s.box is None and s.boxes_found == 0
    assert s.quarantined == (action == "quarantine")
    assert s.mask.all() if action == "whole-image" else not s.mask.any()


@pytest.mark.parametrize("bounds,case,action", [((0.99, 1.0), "empty-mask", "quarantine"),
                                                 ((0.0, 0.001), "full-mask", "whole-image")])
def test_bad_masks(subject_models, bounds, case, action):
    lo, hi = bounds
    [s] = _isolator(subject_models, min_mask_area=lo, max_mask_area=hi, on_bad_mask=action)(_images()[:1], ["bird"])
    assert s.status == f"{case}:{action}" and s.box is not None and 0 < s.mask_area < 1
    assert s.quarantined == (action == "quarantine")
    assert s.mask.all() if action == "whole-image" else not s.mask.any()


def test_subject_options_are_checked():
    with pytest.raises(ValueError, match="on_no_box"):
        SubjectOptions(on_no_box="largest")
    with pytest.raises(ValueError, match="min_mask_area"):
        SubjectOptions(min_mask_area=0.5, max_mask_area=0.4)


# ---------------------------------------------------------------------- backgrounds


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_backgrounds_are_seeded_per_row_and_sized(text_to_image):
    gen = BackgroundGenerator(pipeline=text_to_image, steps=1)
    assert gen.settings["pipeline"] == "StableDiffusionXLPipeline"
    assert gen.settings["guidance_scale"] == 5.0 and gen.settings["resolution"] == 64  # the pipeline's default
    captions = ["a forest at dawn", "a beach in winter", "a forest at dawn"]
    a = gen(captions, _gens(1, 2, 3))
    assert [im.shape for im in a] == [(64, 64, 3)] * 3 and a[0].dtype == np.uint8
    assert not np.array_equal(a[0], a[2])  # same caption, another seed
    alone = gen(captions[:1], _gens(1))[0]
    assert np.abs(alone.astype(int) - a[0]).max() <= 1  # a row does not depend on its batch (rounding aside)
    sized = gen(captions[:2], _gens(1, 2), size=[(40, 50), (30, 20)])
    assert [im.shape for im in sized] == [(40, 50, 3), (30, 20, 3)]
    chunked = BackgroundGenerator(pipeline=text_to_image, steps=1, model_batch=1)(captions[:2], _gens(1, 2))
    assert all(np.abs(x.astype(int) - y).max() <= 1 for x, y in zip(chunked, a))


def test_sd15_option():
    gen = BackgroundGenerator("tiny-sd15", steps=1)
    assert gen.settings["pipeline"] == "StableDiffusionPipeline" and gen.settings["guidance_scale"] == 7.5
    [im] = gen(["a meadow"], _gens(0), size=(32, 48))
    assert im.shape == (32, 48, 3)


# ---------------------------------------------------------------------- caption LLM


def test_caption_llm_is_deterministic_per_seed(causal_lm):
    llm = CaptionLLM(model_and_tokenizer=causal_lm, max_new_tokens=12)
    assert llm.settings["do_sample"] and llm.settings["temperature"] == 0.6
    prompts = ["Describe a quiet forest at dawn.", "Describe a beach."]
    a = llm(prompts, [1, 2])
    assert a == llm(prompts, [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    assert llm(prompts[:1], [3]) != a[:1]  # the seed matters
    assert llm(prompts[1:], [2]) == a[1:]  # the shorter prompt, left-padded in the batch, alone
    assert all(isinstance(t, str) for t in a)


def test_chat_template_wraps_the_prompt():
    model, tok = build_random_causal_lm("tiny")
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    llm = CaptionLLM(model_and_tokenizer=(model, tok), max_new_tokens=4)
    assert llm.format("a forest") == "[user] a forest\n[assistant] "
    assert llm.settings["chat_template"]
    assert len(llm(["a forest"], [0])) == 1


# ---------------------------------------------------------------------- weights


def test_every_model_loads_from_a_local_folder(tmp_path, subject_models, text_to_image, causal_lm):
    """save_pretrained of the tiny builds, then loading by path, gives the same outputs."""
    (det, det_proc), (sam, sam_proc) = subject_models
    for (model, processor), name in (((det, det_proc), "det"), ((sam, sam_proc), "sam"), (causal_lm, "lm")):
        model.save_pretrained(tmp_path / name)
        processor.save_pretrained(tmp_path / name)
    text_to_image.save_pretrained(tmp_path / "sdxl")
    assert not list(tmp_path.rglob("*.bin"))  # safetensors only

    images = _images()[:2]
    built = _isolator(subject_models)(images, ["bird", "dog"])
    loaded = SubjectIsolator(str(tmp_path / "det"), str(tmp_path / "sam"))(images, ["bird", "dog"])
    assert all(a.box == b.box and np.array_equal(a.mask, b.mask) for a, b in zip(built, loaded))

    assert CaptionLLM(str(tmp_path / "lm"), max_new_tokens=3)(["a"], [5]) == \
        CaptionLLM(model_and_tokenizer=causal_lm, max_new_tokens=3)(["a"], [5])
    assert np.array_equal(BackgroundGenerator(str(tmp_path / "sdxl"), steps=1)(["a"], _gens(0))[0],
                          BackgroundGenerator(pipeline=text_to_image, steps=1)(["a"], _gens(0))[0])


def test_sam2_checkpoints_load_as_sam2(tmp_path, subject_models):
    """A SAM 2 folder is recognised by its config and runs with Sam2Model and Sam2Processor."""
    model, processor = build_random_segmenter("tiny", family="sam2")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    isolator = SubjectIsolator(detector_model=subject_models[0], segmenter=str(tmp_path))
    assert type(isolator.segmenter).__name__ == "Sam2Model"
    images = _images()[:2]
    subjects = isolator(images, ["bird", "dog"])
    assert [s.mask.shape for s in subjects] == [im.shape[:2] for im in images]
    assert all(s.box is not None and s.mask_area > 0 for s in subjects)


def test_full_size_architectures_match_the_published_ones():
    """Parameter counts on the meta device (no memory, no compute). Embedding tables are the
    in-process tokenizers' size, so text encoders are compared without them."""

    def count(module):
        return sum(p.numel() for p in module.parameters())

    det, _ = build_random_detector("full", device="meta")
    text = det.model.text_backbone
    # GroundingDINO-T: 172M with BERT-base's 30522-token embedding table.
    assert count(det) - count(text.embeddings.word_embeddings) + 30522 * 768 == pytest.approx(172.3e6, rel=0.002)
    sam, _ = build_random_segmenter("full", device="meta")
    assert count(sam) == pytest.approx(641.1e6, rel=0.001)  # SAM ViT-H
    llm, _ = build_random_causal_lm("full", device="meta")
    assert count(llm) == 13_015_864_320  # Llama-2-13B (raymix.tools.sizing.LLAMA2_13B_PARAMS)
    sdxl = build_random_text_to_image("sdxl", "full", device="meta")
    assert count(sdxl.unet) == 2_567_463_684  # SDXL base UNet
