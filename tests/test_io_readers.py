import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix.io import wds
from raymix.io.readers import parse_class_list, plan_read
from raymix.io.schema import INPUT_SCHEMA
from raymix.schema import INPUT_COLUMNS


def rows_of(plan, skip=None):
    rows = []
    for shard in plan.shards:
        for table in plan.read_shard(shard, skip):
            assert table.schema == INPUT_SCHEMA
            rows += table.to_pylist()
    return rows


def make_tree(root, classes=("b_cls", "a_cls"), per_class=5):
    for c in classes:
        d = root / c / "sub"
        d.mkdir(parents=True)
        for i in range(per_class):
            (root / c / f"{c}_{i}.JPEG").write_bytes(f"{c}-{i}".encode())
        (d / "nested.jpg").write_bytes(b"nested")
        (root / c / ".DS_Store").write_bytes(b"hidden")
        (root / c / "_partial.jpg").write_bytes(b"hidden")


def test_folder_tree_virtual_shards_keys_and_sorted_labels(tmp_path):
    make_tree(tmp_path)
    plan = plan_read(str(tmp_path), files_per_shard=4)
    assert plan.layout == "folder" and plan.classes == ["a_cls", "b_cls"]
    assert [s.source.rsplit("/", 1)[1] for s in plan.shards] == ["a_cls#00000", "a_cls#00001", "b_cls#00000", "b_cls#00001"]
    assert plan.num_rows == 12
    rows = rows_of(plan)
    assert len(rows) == 12 and set(rows[0]) == set(INPUT_COLUMNS)
    by_key = {r["key"]: r for r in rows}
    assert by_key["a_cls/a_cls_3"]["image"] == b"a_cls-3" and by_key["a_cls/a_cls_3"]["label"] == 0
    assert by_key["b_cls/sub/nested"]["label"] == 1 and by_key["b_cls/sub/nested"]["class_name"] == "b_cls"
    assert not any("DS_Store" in k or "_partial" in k for k in by_key)


def test_folder_labels_from_a_synset_file_and_explicit_lists(tmp_path):
    make_tree(tmp_path, per_class=1)
    (tmp_path / "LOC_synset_mapping.txt").write_text("b_cls bee, the insect\na_cls ant\nz_cls unused\n")
    plan = plan_read(str(tmp_path))
    assert plan.classes == ["b_cls", "a_cls", "z_cls"] and plan.descriptions[0] == "bee, the insect"
    assert {r["class_name"]: r["label"] for r in rows_of(plan)} == {"b_cls": 0, "a_cls": 1}
    plan = plan_read(str(tmp_path), classes=["a_cls", "b_cls", "c_cls"])
    assert {r["class_name"]: r["label"] for r in rows_of(plan)} == {"a_cls": 0, "b_cls": 1}
    with pytest.raises(ValueError, match="missing from the class list"):
        plan_read(str(tmp_path), classes=["a_cls"])


def test_parse_class_list_forms():
    assert parse_class_list("n01 tench, Tinca tinca\nn02 goldfish\n") == (["n01", "n02"], ["tench, Tinca tinca", "goldfish"])
    assert parse_class_list("golden retriever\ntabby\n", folders=["golden retriever", "tabby"])[0] == ["golden retriever", "tabby"]
    assert parse_class_list(json.dumps(["x", "y"]), "classes.json") == (["x", "y"], ["", ""])
    with pytest.raises(ValueError):
        parse_class_list("a\na\n")


def test_folder_keys_stay_unique_and_limits_and_skips_apply_before_fetching(tmp_path):
    (tmp_path / "c").mkdir()
    for name in ("img.jpg", "img.png", "other.jpg"):
        (tmp_path / "c" / name).write_bytes(name.encode())
    plan = plan_read(str(tmp_path), key_prefix="train/")
    assert sorted(k for s in plan.shards for k in s.keys) == ["train/c/img.jpg", "train/c/img.png", "train/c/other"]
    assert plan.head(2).num_rows == 2
    assert [k for s in plan.without_keys({"train/c/other"}).shards for k in s.keys] == ["train/c/img.jpg", "train/c/img.png"]
    assert plan_read(str(tmp_path), extensions=["jpg"]).num_rows == 2


def test_unreadable_file_gives_a_row_without_bytes(tmp_path):
    make_tree(tmp_path, classes=("a",), per_class=2)
    plan = plan_read(str(tmp_path))
    (tmp_path / "a" / "a_0.JPEG").unlink()
    rows = {r["key"]: r for r in rows_of(plan)}
    assert rows["a/a_0"]["image"] is None and rows["a/a_1"]["image"] == b"a-1"


def hf_shard(path, n, *, names=None, key=False, start=0, paths=True):
    fields = [pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), pa.field("label", pa.int64())]
    data = {
        "image": [{"bytes": f"img{start + i}".encode(), "path": f"f{start + i}.JPEG" if paths else None} for i in range(n)],
        "label": [i % 3 for i in range(n)],
    }
    if key:
        fields.append(pa.field("key", pa.string()))
        data["key"] = [f"k/{start + i}" for i in range(n)]
    meta = None
    if names:
        meta = {b"huggingface": json.dumps({"info": {"features": {"label": {"_type": "ClassLabel", "names": names}}}}).encode()}
    pq.write_table(pa.table(data, schema=pa.schema(fields, metadata=meta)), path, row_group_size=2)


def test_parquet_shards_keys_and_class_names(tmp_path):
    hf_shard(tmp_path / "train-00000-of-00002.parquet", 5, names=["x", "y", "z"])
    hf_shard(tmp_path / "train-00001-of-00002.parquet", 4, names=["x", "y", "z"], start=5, paths=False)
    (tmp_path / "_quarantine").mkdir()
    hf_shard(tmp_path / "_quarantine" / "q.parquet", 3)
    plan = plan_read(str(tmp_path))
    assert plan.layout == "parquet" and len(plan.shards) == 2 and plan.classes == ["x", "y", "z"]
    plan.block_rows = 2
    rows = rows_of(plan)
    assert len(rows) == 9
    assert rows[1] == {"key": "f1", "image": b"img1", "label": 1, "class_name": "y", "source": plan.shards[0].source,
                       "stage": "", "reason": ""}
    assert rows[5]["key"] == "train-00001-of-00002/0"
    single = plan_read(str(tmp_path / "train-00000-of-00002.parquet"))
    assert single.layout == "parquet" and len(rows_of(single)) == 5
    globbed = plan_read(str(tmp_path / "train-*.parquet"))
    assert len(globbed.shards) == 2


def test_parquet_key_column_wins_and_skip_keys_filter(tmp_path):
    hf_shard(tmp_path / "a.parquet", 4, key=True)
    plan = plan_read(str(tmp_path))
    assert [r["key"] for r in rows_of(plan, pa.array(["k/1", "k/2"]))] == ["k/0", "k/3"]
    assert [r["class_name"] for r in rows_of(plan)] == ["0", "1", "2", "0"]


def tar_of(samples):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in samples:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_webdataset_tars_with_encoded_keys_and_metadata(tmp_path):
    key = "dir/name.with.dots%"
    member = wds.encode_key(key)
    assert "." not in member and wds.split_member(member + ".jpg") == (key, "jpg")
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["zero", "one"]}))
    (tmp_path / "s-0.tar").write_bytes(
        tar_of([
            ("a.jpg", b"A"), ("a.cls", b"1"),
            (member + ".png", b"B"), (member + ".cls", b"0"),
            ("c.jpg", b"C"), ("c.json", json.dumps({"key": "real/c", "class_name": "custom", "label": 1}).encode()),
            ("d.txt", b"no image"),
        ])
    )
    plan = plan_read(str(tmp_path))
    assert plan.layout == "webdataset" and plan.classes == ["zero", "one"]
    rows = rows_of(plan)
    assert [(r["key"], r["image"], r["label"], r["class_name"]) for r in rows] == [
        ("a", b"A", 1, "one"), (key, b"B", 0, "zero"), ("real/c", b"C", 1, "custom"), ("d", None, -1, ""),
    ]


def test_broken_tar_keeps_the_rows_before_the_break(tmp_path):
    data = tar_of([(f"k{i}.jpg", b"x" * 3000) for i in range(4)])
    (tmp_path / "broken.tar").write_bytes(data[:7000])
    plan = plan_read(str(tmp_path))
    rows = rows_of(plan)
    assert [(r["key"], r["reason"]) for r in rows][:-1] == [("k0", ""), ("k1", "unreadable")]  # k1 is cut in its data
    assert rows[-1]["key"].endswith("broken.tar#unreadable") and rows[-1]["image"] is None
    assert rows[-1]["stage"] == "read" and rows[-1]["reason"] == "unreadable"


def test_auto_layout_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no class folders"):
        plan_read(str(tmp_path))
    (tmp_path / "x.parquet").write_bytes(b"")
    (tmp_path / "y.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="mix of files"):
        plan_read([str(tmp_path / "x.parquet"), str(tmp_path / "y.tar")])
    with pytest.raises(ValueError, match="layout must be"):
        plan_read(str(tmp_path), layout="csv")


# -- the inputs people already have, each written by the library that makes it --

def jpeg(value, size=8):
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def hf_dataset(n, names=("ant", "bee", "cat")):
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset.from_dict(
        {"image": [jpeg(10 * i) for i in range(n)], "label": [i % len(names) for i in range(n)]}
    ).cast_column("image", datasets.Image()).cast_column("label", datasets.ClassLabel(names=list(names)))


def test_hugging_face_save_to_disk_folders_and_arrow_files(tmp_path):
    datasets = pytest.importorskip("datasets")
    hf_dataset(5).save_to_disk(str(tmp_path / "one"))
    plan = plan_read(str(tmp_path / "one"))
    assert plan.layout == "arrow" and plan.classes == ["ant", "bee", "cat"] and len(plan.shards) == 1
    plan.block_rows = 2
    rows = rows_of(plan)
    assert [r["key"] for r in rows] == [f"data-00000-of-00001/{i}" for i in range(5)]
    assert [(r["label"], r["class_name"]) for r in rows][:4] == [(0, "ant"), (1, "bee"), (2, "cat"), (0, "ant")]
    assert all(r["image"] == jpeg(10 * i) for i, r in enumerate(rows))
    # A DatasetDict: one folder per split; keys stay unique across splits.
    datasets.DatasetDict({"train": hf_dataset(4), "validation": hf_dataset(2)}).save_to_disk(str(tmp_path / "dict"))
    plan = plan_read(str(tmp_path / "dict"))
    keys = [r["key"] for r in rows_of(plan)]
    assert plan.layout == "arrow" and len(keys) == len(set(keys)) == 6 and keys[0] == "train/data-00000-of-00001/0"
    # One .arrow file given as the input.
    arrow = next((tmp_path / "one").glob("*.arrow"))
    single = plan_read(str(arrow))
    assert single.layout == "arrow" and single.classes == ["ant", "bee", "cat"] and len(rows_of(single)) == 5


def test_parquet_whose_images_are_stored_by_path(tmp_path):
    datasets = pytest.importorskip("datasets")
    for c in ("cat", "dog"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "imgs" / c / f"{c}{i}.jpg").write_bytes(jpeg(40 * i))
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "imgs"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    ds.to_parquet(str(tmp_path / "if.parquet"))
    stored = pq.read_table(tmp_path / "if.parquet").column("image").to_pylist()
    assert all(s["bytes"] is None and s["path"] for s in stored)  # what the library writes
    (tmp_path / "imgs" / "dog" / "dog1.jpg").unlink()
    plan = plan_read(str(tmp_path / "if.parquet"))
    assert plan.layout == "parquet" and plan.classes == ["cat", "dog"]
    by_key = {r["key"]: r for r in rows_of(plan)}
    assert len(by_key) == 6 and by_key["imgs/cat/cat2"]["image"] == jpeg(80)
    assert by_key["imgs/dog/dog0"]["label"] == 1 and by_key["imgs/dog/dog0"]["class_name"] == "dog"
    assert by_key["imgs/dog/dog1"]["image"] is None and by_key["imgs/dog/dog1"]["reason"] == "missing"  # gone

    # Paths relative to the shard's folder.
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array([{"bytes": None, "path": "imgs/cat/cat0.jpg"},
                                                {"bytes": None, "path": "imgs/nope.jpg"}], struct),
                             "label": [0, 1]}), tmp_path / "rel.parquet")
    rows = rows_of(plan_read(str(tmp_path / "rel.parquet")))
    assert [(r["key"], r["image"]) for r in rows] == [("imgs/cat/cat0", jpeg(0)), ("imgs/nope", None)]

    from raymix.io.decode import decode_batch

    out = decode_batch({"image": [r["image"] for r in rows], "key": [r["key"] for r in rows]}, size=8)
    assert list(out["reason"]) == ["", "missing"]


def test_single_image_and_single_shard_files(tmp_path):
    (tmp_path / "one.JPEG").write_bytes(jpeg(5))
    plan = plan_read(str(tmp_path / "one.JPEG"))
    assert plan.layout == "folder" and plan.num_rows == 1
    assert rows_of(plan) == [{"key": "one", "image": jpeg(5), "label": -1, "class_name": "",
                              "source": plan.shards[0].source, "stage": "", "reason": ""}]
    (tmp_path / "s.tar").write_bytes(tar_of([("k0.jpg", b"a"), ("k0.cls", b"2"), ("k1.jpg", b"b")]))
    plan = plan_read(str(tmp_path / "s.tar"))
    assert plan.layout == "webdataset" and [(r["key"], r["label"]) for r in rows_of(plan)] == [("k0", 2), ("k1", -1)]
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="cannot tell the layout of"):
        plan_read(str(tmp_path / "notes.txt"))


def make_val(root, n=5):
    root.mkdir(parents=True)
    synsets = ["n02", "n01", "n03"]
    for i in range(1, n + 1):
        (root / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(jpeg(i))
    csv = "ImageId,PredictionString\n" + "".join(
        f"ILSVRC2012_val_{i:08d},{synsets[i % 3]} 1 2 30 40 {synsets[i % 3]} 5 6 70 80\n" for i in range(1, n + 1)
    )
    return synsets, csv


def test_imagenet_flat_val_folder_labelled_by_the_kaggle_csv(tmp_path):
    synsets, csv = make_val(tmp_path / "val")
    (tmp_path / "LOC_val_solution.csv").write_text(csv)  # one level up, as Kaggle ships it
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01 tench, Tinca tinca\nn02 goldfish\nn03 shark\n")
    plan = plan_read(str(tmp_path / "val"), files_per_shard=2)
    assert plan.layout == "folder" and plan.classes == ["n01", "n02", "n03"] and plan.descriptions[0] == "tench, Tinca tinca"
    assert len(plan.shards) == 3 and plan.num_rows == 5
    rows = rows_of(plan)
    assert [r["key"] for r in rows] == [f"ILSVRC2012_val_{i:08d}" for i in range(1, 6)]
    expect = [synsets[i % 3] for i in range(1, 6)]
    assert [r["class_name"] for r in rows] == expect and [r["label"] for r in rows] == [int(s[-1]) - 1 for s in expect]
    # Skips and limits keep the per-file labels in step.
    skipped = rows_of(plan.without_keys({"ILSVRC2012_val_00000001"}).head(2))
    assert [(r["key"], r["class_name"]) for r in skipped] == [("ILSVRC2012_val_00000002", "n03"),
                                                             ("ILSVRC2012_val_00000003", "n02")]


def test_flat_folder_with_the_csv_beside_it_and_without_one(tmp_path):
    synsets, csv = make_val(tmp_path / "val", n=3)
    (tmp_path / "val" / "LOC_val_solution.csv").write_text(csv)
    plan = plan_read(str(tmp_path / "val"))
    assert plan.classes == sorted(synsets)  # no class list: the CSV's synsets, sorted
    assert [r["class_name"] for r in rows_of(plan)] == ["n01", "n03", "n02"]
    (tmp_path / "val" / "LOC_val_solution.csv").unlink()
    plan = plan_read(str(tmp_path / "val"))
    assert [(r["label"], r["class_name"]) for r in rows_of(plan)] == [(-1, "")] * 3


@pytest.mark.slow
def test_images_stored_by_path_on_an_object_store(s3_bucket):
    from raymix.io.storage import filesystem

    fs, root = filesystem(s3_bucket)
    fs.pipe(f"{root}/data/imgs/a.jpg", jpeg(3))
    fs.pipe(f"{root}/other/b.jpg", jpeg(4))
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    buf = io.BytesIO()
    pq.write_table(pa.table({"image": pa.array([{"bytes": None, "path": "imgs/a.jpg"},
                                                {"bytes": None, "path": f"{s3_bucket}/other/b.jpg"},
                                                {"bytes": None, "path": "imgs/gone.jpg"}], struct),
                             "label": [0, 1, 0]}), buf)
    fs.pipe(f"{root}/data/train.parquet", buf.getvalue())
    rows = rows_of(plan_read(f"{s3_bucket}/data"))
    assert [r["image"] for r in rows] == [jpeg(3), jpeg(4), None]
    assert [r["key"] for r in rows][0::2] == ["imgs/a", "imgs/gone"]
