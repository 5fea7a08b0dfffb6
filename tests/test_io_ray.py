"""End-to-end I/O through Ray Data, on local disk and on the local S3 server."""

import os
from collections import Counter

import pytest
from badimages import corpus

from raymix.cli import main
from raymix.io.decode import decode_batch, encode_batch
from raymix.io.readers import plan_read
from raymix.tools.sample_data import write_sample
from raymix.io.storage import filesystem
from raymix.io.writers import committed_keys
from raymix.pipeline.datasink import write_dataset
from raymix.pipeline.datasource import read_dataset, read_images

pytestmark = pytest.mark.slow


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("s3_bucket")


@pytest.mark.parametrize("layout", ["folder", "parquet", "webdataset"])
def test_raymix_sample_then_read_back(ray_cluster, store, layout, capsys):
    out = f"{store}/sample-{layout}"
    assert main(["sample", "--out", out, "--format", layout, "--classes", "3", "--per-class", "4",
                 "--size", "64x48", "--rows-per-shard", "5"]) == 0
    assert "wrote 12 images" in capsys.readouterr().out
    rows = read_images(out, layout="auto").take_all()
    assert len(rows) == 12 and len({r["key"] for r in rows}) == 12
    assert Counter(r["label"] for r in rows) == {0: 4, 1: 4, 2: 4}
    assert {(r["label"], r["class_name"]) for r in rows} == {(0, "c0000"), (1, "c0001"), (2, "c0002")}
    assert all(r["image"][:2] == b"\xff\xd8" for r in rows)
    assert len(read_images(out, limit=5).take_all()) == 5


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_augmented_write_round_trips_and_reruns_without_duplicates(ray_cluster, store, fmt):
    src, out = f"{store}/in", f"{store}/out-{fmt}"
    write_sample(src, format="folder", classes=3, per_class=4, size=(64, 48))
    plan = plan_read(src, files_per_shard=3)
    keys = {k for s in plan.shards for k in s.keys}

    def pipeline(p):
        return (
            read_dataset(p)
            .map_batches(decode_batch, batch_format="numpy", fn_kwargs={"size": 32}, batch_size=4)
            .map_batches(encode_batch, batch_format="numpy", batch_size=4)
        )

    first = write_dataset(pipeline(plan), out, format=fmt, classes=plan.classes, rows_per_file=5, rows_in=12)
    assert (first.written, first.quarantined) == (12, 0) and first.reconcile(12)
    stems = {os.path.basename(f).rsplit("-", 1)[0] for f in first.files}
    assert stems == {f"c000{c}-0000{k}" for c in range(3) for k in range(2)}  # named from the input shards

    back = read_images(out).take_all()
    assert {r["key"] for r in back} == keys and {r["class_name"] for r in back} == set(plan.classes)

    again = write_dataset(pipeline(plan), out, format=fmt, rows_per_file=2)
    assert (again.written, again.already_written, again.files) == (0, 12, [])
    assert read_images(out).count() == 12

    done = committed_keys(out, format=fmt)
    assert done == keys and read_images(src, skip_keys=done).count() == 0

    if fmt == "parquet":
        import ray

        fs, path = filesystem(out)
        assert ray.data.read_parquet(path, filesystem=fs).count() == 12
        if not out.startswith("s3://"):
            datasets = pytest.importorskip("datasets")
            hf = datasets.load_dataset("parquet", data_files=f"{out}/*.parquet", split="train",
                                       cache_dir=f"{store}/hf-cache")
            assert len(hf) == 12 and hf.features["label"].names == plan.classes


def test_bad_input_corpus_is_quarantined_and_counts_reconcile(ray_cluster, tmp_path, capsys):
    src = tmp_path / "in"
    write_sample(str(src), format="folder", classes=2, per_class=3, size=(64, 48))
    cases = corpus()
    for name, (data, _) in cases.items():
        (src / "c0001" / f"bad-{name}").write_bytes(data)
    plan = plan_read(str(src))
    key_of = {os.path.basename(f): k for s in plan.shards for f, k in zip(s.files, s.keys)}
    expected = {key_of[f"bad-{n}"]: e for n, (_, e) in cases.items() if isinstance(e, str)}
    assert len(expected) == 9 and "c0001/bad-truncated.png" in expected  # same stem: keys keep the extension
    rows_in = plan.num_rows
    ds = (
        read_dataset(plan)
        .map_batches(decode_batch, batch_format="numpy", fn_kwargs={"size": 32}, batch_size=8)
        .map_batches(encode_batch, batch_format="numpy", batch_size=8)
    )
    summary = write_dataset(ds, str(tmp_path / "out"), classes=plan.classes, rows_in=rows_in)
    assert summary.reconcile(rows_in) and summary.written + summary.quarantined == rows_in == 6 + len(cases)
    assert summary.quarantined == len(expected) and summary.reasons == dict(Counter(expected.values()))
    assert "reconciled" in capsys.readouterr().out

    import pyarrow.parquet as pq

    quarantine = pq.read_table(tmp_path / "out" / "__quarantine__").to_pylist()
    assert {q["key"]: q["reason"] for q in quarantine} == expected
    assert all(q["stage"] == "decode" and q["source"].endswith("c0001#00000") for q in quarantine)


def test_save_to_disk_and_path_only_parquet_through_ray_data(ray_cluster, tmp_path):
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_io_readers import hf_dataset, jpeg

    hf_dataset(6).save_to_disk(str(tmp_path / "disk"))
    rows = read_images(str(tmp_path / "disk")).take_all()
    assert sorted((r["key"], r["class_name"]) for r in rows)[:2] == [("data-00000-of-00001/0", "ant"),
                                                                     ("data-00000-of-00001/1", "bee")]
    assert len(rows) == 6 and datasets is not None
    # Every image of the block stored by a path that is gone: one clear reason, no crash.
    (tmp_path / "here.jpg").write_bytes(jpeg(9))
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for name, paths in (("gone", ["a.jpg", "b.jpg"]), ("mixed", ["here.jpg", "c.jpg"])):
        pq.write_table(pa.table({"image": pa.array([{"bytes": None, "path": p} for p in paths], struct),
                                 "label": [0, 1]}), tmp_path / f"{name}.parquet")
        out = (read_images(str(tmp_path / f"{name}.parquet"))
               .map_batches(decode_batch, batch_format="numpy", fn_kwargs={"size": 8}).take_all())
        reasons = {r["key"]: r["reason"] for r in out}
        assert reasons == ({"a": "missing", "b": "missing"} if name == "gone" else {"here": "", "c": "missing"})
