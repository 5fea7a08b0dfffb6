import numpy as np
import pytest

from raymix.cli import main
from raymix.io.readers import plan_read
from raymix.tools.sample_data import class_names, make_image, write_sample


def test_images_are_deterministic_and_vary():
    a = make_image(0, 3, 1, (120, 90))
    assert np.array_equal(a, make_image(0, 3, 1, (120, 90)))
    assert not np.array_equal(a, make_image(1, 3, 1, (120, 90)))
    assert not np.array_equal(a, make_image(0, 3, 2, (120, 90)))
    assert a.dtype == np.uint8 and a.shape[2] == 3 and {a.shape[:2]} <= {(90, 120), (120, 90), (80, 120)}
    assert a.std() > 10  # structure, not a flat colour


def test_classes_have_their_own_look():
    """Images of one class resemble each other more than images of another class (mean
    colour of the object palette), so a classifier has something to learn."""
    def feature(c, i):
        img = make_image(0, c, i, (96, 72)).astype(np.float32)
        return np.concatenate([img.reshape(-1, 3).mean(0), np.percentile(img.reshape(-1, 3), 90, axis=0)])

    feats = {c: np.stack([feature(c, i) for i in range(4)]) for c in range(4)}
    within = np.mean([np.linalg.norm(f - f.mean(0), axis=1).mean() for f in feats.values()])
    centres = np.stack([f.mean(0) for f in feats.values()])
    between = np.mean([np.linalg.norm(centres[i] - centres[j]) for i in range(4) for j in range(i + 1, 4)])
    assert between > within
    names, descriptions = class_names(9)
    assert names[0] == "c0000" and len(set(descriptions)) == 9


@pytest.mark.parametrize("fmt,shards", [("folder", 3), ("parquet", 2), ("webdataset", 2)])
def test_sample_layouts_read_back_without_ray(tmp_path, fmt, shards):
    summary = write_sample(str(tmp_path), format=fmt, classes=3, per_class=3, size=(64, 48), rows_per_shard=5)
    assert summary.images == 9
    plan = plan_read(str(tmp_path))
    assert plan.layout == fmt and len(plan.shards) == shards and plan.classes == summary.classes
    rows = [r for s in plan.shards for t in plan.read_shard(s) for r in t.to_pylist()]
    assert len(rows) == 9 and len({r["key"] for r in rows}) == 9
    assert sorted(r["label"] for r in rows) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(plan.classes[r["label"]] == r["class_name"] for r in rows)
    again = write_sample(str(tmp_path / "again"), format=fmt, classes=3, per_class=3, size=(64, 48), rows_per_shard=5)
    assert [open(f, "rb").read() for f in summary.files] == [open(f, "rb").read() for f in again.files]


def test_cli_sample(tmp_path, capsys):
    assert main(["sample", "--out", str(tmp_path), "--format", "parquet", "--classes", "2", "--per-class", "3",
                 "--size", "32x24", "--seed", "5"]) == 0
    assert "wrote 6 images of 2 classes" in capsys.readouterr().out
    assert plan_read(str(tmp_path)).shards[0].source.endswith("train-00000-of-00001.parquet")
    with pytest.raises(SystemExit):
        main(["sample", "--out", str(tmp_path), "--size", "big"])
