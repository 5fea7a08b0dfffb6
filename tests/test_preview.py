"""`raymix preview`: contact sheets on generated sample data (no Ray, no download)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from raymix.cli import main
from raymix.tools.sample_data import write_sample
from raymix.ops.masks import fractal_blend
from raymix.tools.preview import PAD, Tile, contact_sheet, sheet_layout
from raymix.tools.preview_methods import (
    build_method,
    diffusemix_samples,
    image_samples,
    load_editor,
    miamix_samples,
    read_originals,
)

SIZE, TILE = 64, 48


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("preview") / "sample"
    write_sample(str(root), format="folder", classes=3, per_class=2, size=(96, 72), workers=1)
    return str(root)


@pytest.fixture(scope="module")
def tiny_editor():
    return load_editor("tiny", seed=0, steps=2)


def _sheet(path):
    img = Image.open(path)
    img.load()
    return img, json.loads(img.text["raymix:preview"])


def _fitted(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((TILE, TILE), Image.Resampling.LANCZOS), dtype=np.float64)


def test_cpu_method_sheet_has_one_row_per_original_and_a_column_per_sample(sample_dir, tmp_path):
    out = tmp_path / "pixmix.png"
    threads = torch.get_num_threads()
    assert main(["preview", "--method", "pixmix", "--input", sample_dir, "--out", str(out), "--n", "2",
                 "--samples", "3", "--image-size", str(SIZE), "--tile", str(TILE), "--fractals", "generated:4",
                 "--captions"]) == 0
    assert torch.get_num_threads() == threads  # --threads applies only while the command runs
    img, meta = _sheet(out)
    assert (meta["rows"], meta["columns"]) == (2, 4)
    assert img.width == PAD + 4 * (TILE + PAD)
    assert len({k.split("/")[0] for k in meta["keys"]}) == 2  # originals from two classes

    originals, _ = read_originals(sample_dir, 2, size=SIZE)
    assert [o.key for o in originals] == meta["keys"]
    sheet = np.asarray(img.convert("RGB"), dtype=np.float64)
    for row, original in zip(meta["boxes"], originals):
        assert len(row) == 4
        x, y = row[0]
        assert y + TILE <= img.height
        first = sheet[y:y + TILE, x:x + TILE]
        assert np.abs(first - _fitted(original.image)).mean() < 2  # the first column is the original
        for x, y in row[1:]:
            assert sheet[y:y + TILE, x:x + TILE].std() > 5  # a picture, not the background


def test_diffusemix_sheet_with_the_tiny_editor(sample_dir, tmp_path):
    out = tmp_path / "diffusemix.png"
    assert main(["preview", "--method", "diffusemix", "--editor", "tiny", "--steps", "2", "--input", sample_dir,
                 "--out", str(out), "--n", "1", "--samples", "2", "--image-size", str(SIZE), "--tile", str(TILE),
                 "--fractals", "generated:4", "--captions"]) == 0
    img, meta = _sheet(out)
    assert (meta["rows"], meta["columns"]) == (2, 6)  # input, generated, mask, hybrid, fractal, final
    assert img.width == PAD + 6 * (TILE + PAD)
    assert meta["editor"] == "tiny"
    assert "RANDOM weights" in img.text["Description"]


def test_diffusemix_stages_are_the_ones_mixed(sample_dir, tiny_editor):
    originals, _ = read_originals(sample_dir, 2, size=SIZE)
    results = diffusemix_samples(originals, 3, tiny_editor, seed=3, fractals="generated:4")
    for row in results:
        for s in row:
            assert not s.reason
            assert s.mask.shape == (SIZE, SIZE) and s.mask.mean() == 0.5
            keep = s.mask.astype(bool)[..., None]
            assert np.array_equal(s.hybrid, np.where(keep, s.input, s.generated))
            chw = [torch.from_numpy(a).permute(2, 0, 1) for a in (s.hybrid, s.fractal)]
            final = fractal_blend(*chw, s.params["lambda"])
            assert np.array_equal(final.permute(1, 2, 0).numpy(), s.final)
            assert s.params["prompt"].startswith("A transformed version of image into")


@pytest.mark.parametrize("name", ["layermix", "augmix"])
def test_samples_are_what_the_ray_path_writes(sample_dir, name):
    from raymix.pipeline.rows import MethodStage

    originals, _ = read_originals(sample_dir, 2, size=SIZE)
    method = build_method(name, seed=5, fractals="generated:4")
    shown = image_samples(method, originals, 2)
    batch = {"key": np.array([o.key for o in originals], dtype=object),
             "image": np.stack([o.image for o in originals]),
             "label": np.array([o.label for o in originals]), "class_name": np.array(["x", "y"], dtype=object),
             "source": np.array(["s", "s"], dtype=object)}
    options = {"fractals": "generated:4"} if name == "layermix" else {}
    rows = MethodStage(name, options, seed=5, replicas=2)(batch)
    for j, key in enumerate(rows["key"]):
        i, r = j // 2, j % 2
        assert key == f"{originals[i].key}/{name}/{r}"
        assert np.array_equal(rows["image"][j], shown[i][r][0])
        assert json.loads(rows["params"][j]) == method.describe(shown[i][r][1])


def test_miamix_samples_carry_label_weights(sample_dir):
    originals, _ = read_originals(sample_dir, 3, size=SIZE)
    results = miamix_samples(originals, 2, seed=0)
    assert [len(r) for r in results] == [2, 2, 2]
    for i, row in enumerate(results):
        for s in row:
            assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
            assert 0.0 <= s.lam <= 1.0 and 0 <= s.partner < 3
            assert 1 <= len(s.layers) <= 2
            if s.partner == i:
                # mixed with itself: the image is the original, up to rounding
                assert np.abs(s.image.astype(int) - originals[i].image.astype(int)).max() <= 1 or s.self_mix


def test_originals_come_from_different_classes_in_parquet(tmp_path):
    root = tmp_path / "pq"
    write_sample(str(root), format="parquet", classes=3, per_class=3, size=(40, 32), rows_per_shard=4, workers=1)
    originals, skipped = read_originals(str(root), 3, size=32)
    assert skipped == []
    assert sorted(o.label for o in originals) == [0, 1, 2]


def test_bad_method_name_is_a_clear_error(sample_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["preview", "--method", "mixup", "--input", sample_dir, "--out", str(tmp_path / "x.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'mixup'" in err and "pixmix" in err and "diffusemix" in err
    assert not (tmp_path / "x.png").exists()


def test_input_without_images_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "data" / "cats").mkdir(parents=True)
    (tmp_path / "data" / "cats" / "notes.txt").write_text("not an image")
    with pytest.raises(SystemExit) as exc:
        main(["preview", "--method", "augmix", "--input", str(tmp_path / "data"), "--out", str(tmp_path / "x.png")])
    assert "no decodable image" in str(exc.value.code)
    assert "cats/notes: not-an-image" in capsys.readouterr().err


def test_contact_sheet_geometry():
    rows = [[Tile(np.zeros((10, 20, 3), np.uint8), "a caption long enough to wrap over two lines"), None],
            [Tile(np.ones((30, 30))[..., None].repeat(3, 2).astype(np.uint8) * 200, "")]]
    sheet = contact_sheet(rows, tile=40, title="title", note="note", headings={1: "second"})
    layout = sheet_layout(rows, tile=40, title="title", note="note", headings={1: "second"})
    assert sheet.size == layout.size
    assert len(layout.captions[0][0]) >= 2
    (x0, y0), (x1, _) = layout.boxes[0]
    assert x1 - x0 == 40 + PAD
    assert layout.boxes[1][0][1] > y0 + 40 + len(layout.captions[0][0]) * 10
    pixels = np.asarray(sheet)
    x, y = layout.boxes[1][0]
    assert (pixels[y + 5:y + 35, x + 5:x + 35] == 200).all()  # a 30 px image scaled up to fill the tile
    with pytest.raises(ValueError):
        contact_sheet([[]], tile=40)


def test_aga_sheet_shows_the_stages_the_job_composites(sample_dir, tmp_path):
    from raymix.ops.composite import composite
    from raymix.tools.preview_methods import aga_samples, load_aga_models

    out = tmp_path / "aga.png"
    tiny = ["--detector", "tiny", "--segmenter", "tiny", "--background-model", "tiny"]
    assert main(["preview", "--method", "aga", *tiny, "--llm", "none", "--steps", "2", "--input", sample_dir,
                 "--out", str(out), "--n", "1", "--samples", "2", "--image-size", str(SIZE), "--tile", str(TILE),
                 "--captions", "--whole-image"]) == 0
    img, meta = _sheet(out)
    assert (meta["rows"], meta["columns"]) == (2, 5)  # input, box, mask, background + caption, result
    assert meta["aga_models"]["llm"] == "none" and "RANDOM weights" in img.text["Description"]

    models = load_aga_models("tiny", "tiny", "tiny", "none", seed=1, steps=2, whole_image=True)
    originals, _ = read_originals(sample_dir, 1, size=SIZE)
    for s in aga_samples(originals, 2, models, seed=1)[0]:
        assert not s.reason and s.caption.startswith("A photo of ") and s.params["caption"]["source"] == "template"
        p = s.params
        chw = [torch.from_numpy(np.ascontiguousarray(a)) for a in (s.input, s.background)]
        expected, _ = composite(chw[0].permute(2, 0, 1), torch.from_numpy(s.mask), chw[1].permute(2, 0, 1),
                                flip=p["flip"], angle=p["angle"], scale=p["scale"], shift=tuple(p["shift"]))
        assert np.array_equal(expected.permute(1, 2, 0).numpy(), s.final)  # the shown stages make the result
