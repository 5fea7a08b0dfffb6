"""AGA without models: the caption engine (Sec. 4.2), the compositing kernels and the method
(Sec. 4.3, Fig. 5), and its rows through the one row adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from methods_helpers import rows, smooth_images

from raymix.methods.aga import AGA, AGAParams
from raymix.methods.aga_captions import (
    PAPER_SET_SIZES, CaptionEngine, CaptionSets, avoid_words, check_caption, clean_llm_output, default_sets,
    mentioned, parse_set,
)
from raymix.ops.composite import composite, paste, subject_box, transform_subject
from raymix.ops.rng import sample_generator
from raymix.pipeline.rows import MethodStage, expand_replicas

# ImageNet10 of the paper (supplementary A.1) with ImageNet's synonyms, and superclasses.
IMAGENET10 = ["chickadee", "water ouzel, dipper", "loggerhead, loggerhead turtle, Caretta caretta",
              "box turtle, box tortoise", "garter snake, grass snake", "sea snake",
              "black and gold garden spider, Argiope aurantia", "tick", "ptarmigan", "prairie chicken, prairie grouse"]
SUPER = ["bird", "turtle", "snake", "spider"]


# ---------------------------------------------------------------------------------------- captions


def test_default_sets_have_the_papers_sizes_and_parse_like_user_files():
    assert default_sets().sizes() == PAPER_SET_SIZES == {"instructions": 3, "backgrounds": 18, "temporal": 13}
    assert parse_set("# comment\n\n  at dawn \nat dusk\n") == ("at dawn", "at dusk")
    with pytest.raises(ValueError, match="no entries"):
        parse_set("# only a comment\n")


def test_check_caption_matches_whole_words_any_case_and_plurals():
    avoid = avoid_words(["n01601694", "c0001"], IMAGENET10, SUPER)
    assert "n01601694" not in avoid and "water ouzel" in avoid and "dipper" in avoid and "bird" in avoid
    assert mentioned("Two Birds over a WATER  OUZEL nest", avoid) == ["birds", "water  ouzel"]
    assert mentioned("snakes and ticks", avoid) == ["snakes", "ticks"]
    for fine in ("a birdhouse on a pole", "a ticket booth", "sticky mud", "a quiet street at dusk"):
        assert check_caption(fine, avoid), fine
    assert not check_caption("   ", avoid)


def test_captions_never_mention_a_word_to_avoid():
    avoid = avoid_words([], IMAGENET10, SUPER)
    # a set entry that names a class is never drawn, so the template always passes
    sets = CaptionSets(default_sets().instructions, default_sets().backgrounds + ("a spider web in a barn",),
                       default_sets().temporal)
    engine = CaptionEngine(sets, avoid)
    assert engine.left_out["backgrounds"] == ["a spider web in a barn"]
    outputs = ["", "\n\n", "Caption: \"A chickadee perched on mossy rocks at dawn\"",
               "A grassy meadow with two Snakes in summer", "Misty pine forest at dawn, soft light",
               "Answer: A sandy beach by the sea on a warm, sunny day\nSure! Here is a bird too"]
    sources = []
    for i in range(300):
        draw = engine.draw(sample_generator(0, f"img{i}", i % 3, salt="caption"), own=["tick"])
        assert check_caption(draw.template, avoid) and draw.template.startswith("A photo of ")
        assert "do not mention: " in draw.prompt and "chickadee" in draw.prompt  # 16 words: all listed
        llm = None if i % 7 == 0 else outputs[i % len(outputs)]
        caption, source, why = engine.choose(draw.template, llm)
        assert check_caption(caption, avoid), (llm, caption)
        sources.append(source)
        if source == "template-fallback":
            assert caption == draw.template and why
    assert {"llm", "template", "template-fallback"} <= set(sources)
    assert clean_llm_output("Caption: \"Misty pine forest at dawn\"\nmore") == "Misty pine forest at dawn"


def test_draws_are_per_sample_and_prompts_list_only_the_rows_words_when_too_many():
    engine = CaptionEngine(avoid=avoid_words([f"class{i}" for i in range(100)]))
    a = engine.draw(sample_generator(1, "k", 0, salt="caption"), own=["class7", "bird"])
    assert a == engine.draw(sample_generator(1, "k", 0, salt="caption"), own=["class7", "bird"])
    assert a.prompt.endswith("do not mention: class7, bird. Answer with the caption only.")
    draws = {engine.draw(sample_generator(1, "k", r, salt="caption")).template for r in range(40)}
    assert len(draws) > 20  # 18 x 13 combinations
    with pytest.raises(ValueError, match="temporal"):
        CaptionEngine(CaptionSets(("Describe",), ("a field",), ("at night",)), avoid=["night"])


# ---------------------------------------------------------------------------------------- compositing


def scene(size=48, seed=0):
    """An image, a blob-shaped subject mask and a background of another size."""
    image = smooth_images(1, size, seed)[0]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask = ((xx - 20) ** 2 / 120 + (yy - 26) ** 2 / 60) <= 1
    background = smooth_images(1, 64, seed + 1)[0]
    return image, mask, background


def test_identity_copies_the_subject_exactly_and_the_background_elsewhere():
    image, mask, background = scene()
    out, landed = composite(image, mask, background)
    bg = torch.nn.functional.interpolate(background[None].float(), size=(48, 48), mode="bilinear",
                                         antialias=True, align_corners=False)
    assert torch.equal(landed, mask)
    assert torch.equal(out[:, mask], image[:, mask])  # every subject pixel, bit for bit
    assert (out[:, ~mask].int() - bg[0].round().clamp(0, 255).int()[:, ~mask]).abs().max() <= 1
    assert subject_box(mask) == (10, 19, 30, 33) and subject_box(torch.zeros(4, 4, dtype=torch.bool)) is None


def test_flips_and_whole_pixel_shifts_move_subject_pixels_without_resampling():
    image, mask, background = scene()
    x0, y0, x1, y1 = subject_box(mask)
    moved, moved_mask = transform_subject(image, mask, flip=True, shift=(3.0, -2.0))
    ys, xs = torch.nonzero(mask, as_tuple=True)
    new_x, new_y = x0 + x1 - xs + 3, ys - 2
    assert torch.equal(moved_mask[new_y, new_x], torch.ones(len(ys), dtype=torch.bool))
    assert int(moved_mask.sum()) == int(mask.sum())
    assert torch.equal(moved[:, new_y, new_x], image[:, ys, xs])


def test_rotation_and_scale_resample_without_the_old_background_bleeding_in():
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    image[1] = 255  # green all over; the subject is a red square
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[12:28, 12:28] = True
    image[:, mask] = torch.tensor([200, 0, 0], dtype=torch.uint8)[:, None]
    moved, moved_mask = transform_subject(image, mask, angle=30.0, scale=1.2)
    assert abs(int(moved_mask.sum()) - 16 * 16 * 1.44) < 30
    assert moved[1][moved_mask].max() == 0 and moved[0][moved_mask].min() >= 199  # no green, still red
    assert subject_box(moved_mask)[0] < 12  # rotated about the box centre: corners stick out


def test_feathering_keeps_the_outside_background_and_the_inside_exact():
    image, mask, background = scene()
    background = background[:, :48, :48].contiguous()
    soft = paste(image, mask, background, feather=2.0)
    assert torch.equal(soft[:, ~mask], background[:, ~mask])
    inner = torch.nn.functional.max_pool2d((~mask)[None, None].float(), 13, stride=1, padding=6)[0, 0] == 0
    assert inner.any() and torch.equal(soft[:, inner], image[:, inner])
    edge = mask & ~inner
    assert not torch.equal(soft[:, edge], image[:, edge])


# ---------------------------------------------------------------------------------------- the method


def test_params_are_drawn_in_the_documented_ranges_and_identity_is_exact():
    method = AGA(max_shift=0.1)
    params = [method.make_params(sample_generator(0, f"k{i}", 0, salt="composite"), (50, 100)) for i in range(200)]
    assert all(-15 <= p.angle <= 15 and 0.8 <= p.scale <= 1.2 for p in params)
    assert all(abs(p.shift[0]) <= 10 and abs(p.shift[1]) <= 5 for p in params)
    assert 70 < sum(p.flip for p in params) < 130
    info = method.describe(params[0])
    assert json.loads(json.dumps(info)) == info and info["method"] == "aga" and set(info) >= {"flip", "angle", "scale"}
    assert len(method.caption(params[0]).splitlines()) <= 2

    image, mask, background = scene()
    out = method.apply(image[None], [AGAParams(False, 0.0, 1.0)], background[None], mask[None])
    assert torch.equal(out[0][:, mask], image[:, mask])
    whole = method.apply(image[None], [AGAParams(False, 0.0, 1.0)], background[None])  # no mask: whole image
    assert torch.equal(whole[0], image)
    with pytest.raises(ValueError, match="masks must be bool"):
        method.apply(image[None], [params[0]], background[None], mask[None].int())


def test_aga_rows_through_the_row_adapter_keep_masks_and_provenance():
    batch = expand_replicas(rows(3, size=32), replicas=2, method="aga")
    n = len(batch["key"])
    masks = np.zeros((n, 32, 32), dtype=bool)
    masks[:, 8:24, 4:20] = True
    batch["subject_mask"] = np.empty(n, dtype=object)
    for j in range(n):
        batch["subject_mask"][j] = masks[j] if j != 5 else np.zeros((31, 32), dtype=bool)  # row 5: wrong size
    batch["background"] = np.zeros((n, 40, 40, 3), dtype=np.uint8)
    batch["caption"] = np.array([f"A photo of place {i}." for i in range(n)], dtype=object)
    batch["subject_params"] = np.array([json.dumps({"box": [4, 8, 19, 23], "score": 0.9})] * n, dtype=object)
    batch["caption_params"] = np.array([json.dumps({"source": "template"})] * n, dtype=object)
    stage = MethodStage("aga", {"max_angle": 0.0, "scale": (1.0, 1.0), "flip_p": 0.0}, seed=2)
    out = stage(batch)
    assert list(out["reason"][:5]) == [""] * 5 and "mask must be bool" in out["reason"][5]
    for j in range(5):
        params = json.loads(out["params"][j])
        assert params["subject"]["score"] == 0.9 and params["caption"] == {"source": "template"}
        assert params["prompt"] == f"A photo of place {j}." and out["key"][j].endswith(f"/aga/{j % 2}")
        image = np.asarray(batch["image"][j])
        assert np.array_equal(out["image"][j][masks[j]], image[masks[j]])  # identity: exact subject
        assert out["image"][j][~masks[j]].max() == 0  # black background everywhere else


def test_ray_llm_requests_carry_the_rows_prompt_and_seed_and_keep_its_columns():
    from raymix.models.aga_options import CaptionLLMOptions
    from raymix.pipeline.aga_llm import _answer, chat_request, llm_seed
    from raymix.pipeline.specs import AGAJob

    job = AGAJob(input="in", output="out", seed=3, llm=CaptionLLMOptions(model="m", max_new_tokens=20, top_p=0.9))
    row = {"key": "k/aga/1", "source_key": "k", "replica": 1, "caption_prompt": "Write ...", "reason": ""}
    messages, sampling = chat_request(row, job)
    assert messages == [{"role": "user", "content": "Write ..."}]
    assert sampling == {"max_tokens": 20, "seed": llm_seed(3, "k", 1), "top_p": 0.9}
    assert llm_seed(3, "k", 0) != sampling["seed"]
    failed = {**row, "reason": "no-box:quarantine"}
    assert chat_request(failed, job)[1]["max_tokens"] == 1
    assert _answer(row, "A misty forest.") == {**row, "caption_raw": "A misty forest."}
    assert _answer(failed, "anything")["caption_raw"] == ""


def test_a_caption_set_given_as_a_file_replaces_only_its_own(tmp_path):
    from raymix.pipeline.aga_rows import read_caption_sets

    (tmp_path / "temporal.txt").write_text("at dawn\nat dusk\n")
    sets = read_caption_sets(temporal=str(tmp_path / "temporal.txt"))
    assert sets.temporal == ("at dawn", "at dusk")
    assert (len(sets.instructions), len(sets.backgrounds)) == (3, 18)
