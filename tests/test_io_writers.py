import json
import os
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix.io.decode import decode_image, encode_jpeg
from raymix.io.readers import plan_read
from raymix.io.writers import output_spec, committed_keys, shard_stem, write_table
from raymix.schema import OUTPUT_COLUMNS, QUARANTINE_COLUMNS


def test_shard_stems_come_from_the_input_shard():
    assert shard_stem("s3://b/data/train-00003-of-00294.parquet") == "train-00003-of-00294"
    assert shard_stem("/data/train/n01440764#00002") == "n01440764-00002"
    assert shard_stem("gs://b/shards/imagenet-train-000123.tar.gz") == "imagenet-train-000123"
    assert shard_stem("/x/we ird:name.tar") == "we_ird_name"
    assert shard_stem("") == "unsourced"
    assert shard_stem("/hf/dict/validation/data-00000-of-00001.arrow") == "validation-data-00000-of-00001"
    assert shard_stem("/hf/other.arrow") == "other" and shard_stem("/imagenet/val#00003") == "val-00003"


def rows(n, source="s3://in/shard-0.parquet", start=0, bad=()):
    img = encode_jpeg(np.full((8, 8, 3), 100, np.uint8))
    return pa.table({
        "image": [b"" if i in bad else img for i in range(start, start + n)],
        "label": [i % 2 for i in range(start, start + n)],
        "class_name": [f"c{i % 2}" for i in range(start, start + n)],
        "key": [f"img.{i}/diffusemix/0" for i in range(start, start + n)],
        "source_key": [f"img.{i}" for i in range(start, start + n)],
        "method": ["diffusemix"] * n,
        "replica": [0] * n,
        "params": [json.dumps({"lambda": 0.2})] * n,
        "seed": [7] * n,
        "source": [source] * n,
        "stage": ["edit" if i in bad else "" for i in range(start, start + n)],
        "reason": ["model-error" if i in bad else "" for i in range(start, start + n)],
    })


def spec(tmp_path, fmt="parquet", classes=("c0", "c1")):
    return output_spec(str(tmp_path / "out"), fmt, None, classes, 95)


def test_parquet_output_is_a_hugging_face_dataset_with_provenance(tmp_path):
    table = pa.concat_tables([rows(5), rows(3, source="/in/n01#00001", start=5, bad={6})])
    summary = write_table(table, spec(tmp_path))
    assert (summary.written, summary.quarantined, summary.reasons) == (7, 1, {"model-error": 1})
    names = sorted(n for n in os.listdir(tmp_path / "out") if n != "__quarantine__")
    assert [n.rsplit("-", 1)[0] for n in names] == ["n01-00001", "shard-0"] and all(n.endswith(".parquet") for n in names)
    out = pq.read_table(tmp_path / "out")
    assert out.column_names == list(OUTPUT_COLUMNS) and out.num_rows == 7
    q = pq.read_table(tmp_path / "out" / "__quarantine__")
    assert q.column_names == list(QUARANTINE_COLUMNS)
    assert q.to_pylist() == [{"key": "img.6/diffusemix/0", "source": "/in/n01#00001", "stage": "edit",
                              "reason": "model-error", "source_key": "img.6", "replica": 0}]
    # One replica of one input failed: the other replicas of every input are written.
    assert summary.quarantined_replicas == 1 and summary.reconcile(rows_in=8, replicas=1)
    assert not summary.reconcile(rows_in=9, replicas=1)

    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.features["label"].names == ["c0", "c1"] and type(ds.features["image"]).__name__ == "Image"
    first = ds.sort("key")[0]
    assert first["image"].size == (8, 8) and json.loads(first["params"]) == {"lambda": 0.2} and first["seed"] == 7


def test_webdataset_output_members_and_read_back(tmp_path):
    summary = write_table(rows(4), spec(tmp_path, "webdataset"))
    [tar_path] = [p for p in summary.files]
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("img%2E0/diffusemix/0.json").read())
    assert names[:3] == ["img%2E0/diffusemix/0.jpg", "img%2E0/diffusemix/0.cls", "img%2E0/diffusemix/0.json"]
    assert meta["key"] == "img.0/diffusemix/0" and meta["params"] == {"lambda": 0.2} and meta["source_key"] == "img.0"
    plan = plan_read(str(tmp_path / "out"))
    back = [r for s in plan.shards for t in plan.read_shard(s) for r in t.to_pylist()]
    assert sorted(r["key"] for r in back) == [f"img.{i}/diffusemix/0" for i in range(4)]
    assert decode_image(back[0]["image"]).shape == (8, 8, 3) and back[1]["class_name"] == "c1"


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_rerun_with_other_bundles_writes_no_duplicates(tmp_path, fmt):
    s = spec(tmp_path, fmt)
    first = write_table(rows(6, bad={2}), s)
    again = write_table(rows(3, bad={2}), s)  # same rows, bundled differently
    rest = write_table(rows(4, start=6), s)   # new rows of the same shard
    assert (first.written, first.quarantined) == (5, 1)
    assert (again.written, again.already_written, again.quarantined, again.already_quarantined) == (0, 2, 0, 1)
    assert (rest.written, rest.files != first.files) == (4, True)
    keys = committed_keys(str(tmp_path / "out"), format=fmt, quarantine=False)
    assert keys == {f"img.{i}/diffusemix/0" for i in range(10)} - {"img.2/diffusemix/0"}
    assert "img.2/diffusemix/0" in committed_keys(str(tmp_path / "out"), format=fmt)
    if fmt == "parquet":
        assert pq.read_table(tmp_path / "out").num_rows == 9
        assert committed_keys(str(tmp_path / "out"), column="source_key", quarantine=False) == {f"img.{i}" for i in range(10)} - {"img.2"}


def test_same_rows_give_the_same_file_name(tmp_path):
    a = write_table(rows(4), spec(tmp_path / "a"))
    b = write_table(rows(4).slice(0).take([3, 1, 0, 2]), spec(tmp_path / "b"))
    assert [os.path.basename(f) for f in a.files] == [os.path.basename(f) for f in b.files]


def test_arrays_are_encoded_and_missing_columns_defaulted(tmp_path):
    from ray.data.extensions import ArrowTensorArray

    images = np.stack([np.full((6, 6, 3), v, np.uint8) for v in (10, 200)])
    table = pa.table({
        "key": ["a", None], "label": [0, 1], "source": ["/in/s.tar"] * 2,
        "image": ArrowTensorArray.from_numpy(images),
    })
    summary = write_table(table, spec(tmp_path, classes=None))
    assert (summary.written, summary.reasons) == (1, {"no-key": 1})
    row = pq.read_table(summary.files[0]).to_pylist()[0]
    assert (row["source_key"], row["method"], row["replica"], row["params"], row["seed"]) == ("a", "", 0, "{}", None)
    assert abs(int(decode_image(row["image"]["bytes"]).mean()) - 10) <= 2


def test_killed_write_leaves_whole_files_only_and_rerun_completes(tmp_path):
    """The writer process dies while committing its second file (three input shards):
    one whole file is visible, nothing partial; the rerun writes the rest once."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import pyarrow as pa
        from test_io_writers import rows, spec
        from raymix.io.writers import write_table
        import pathlib
        calls = []
        real = os.replace
        def dying_replace(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
        os.replace = dying_replace
        table = pa.concat_tables([rows(3, source=f"/in/shard-{{k}}.tar", start=3 * k) for k in range(3)])
        write_table(table, spec(pathlib.Path({str(tmp_path)!r})))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -9
    visible = [n for n in os.listdir(tmp_path / "out") if not n.startswith(".") and n.endswith(".parquet")]
    assert len(visible) == 1 and pq.read_table(tmp_path / "out" / visible[0]).num_rows == 3
    table = pa.concat_tables([rows(3, source=f"/in/shard-{k}.tar", start=3 * k) for k in range(3)])
    summary = write_table(table, spec(tmp_path))
    assert (summary.written, summary.already_written) == (6, 3)
    assert sorted(pq.read_table(tmp_path / "out").column("key").to_pylist()) == sorted(table.column("key").to_pylist())


def test_reconcile_counts_whole_rows_and_single_replicas():
    from raymix.io.writers import WriteSummary

    # 3 inputs x 2 replicas: one input failed at decode (whole row), one replica failed at edit.
    summary = WriteSummary(written=3, quarantined=2, quarantined_replicas=1)
    assert summary.reconcile(rows_in=3, replicas=2)
    assert not summary.reconcile(rows_in=4, replicas=2)
    # Counting the replica-level failure as a whole row would not add up.
    assert not WriteSummary(written=3, quarantined=2, quarantined_replicas=0).reconcile(rows_in=3, replicas=2)


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_extra_image_columns_are_kept(tmp_path, fmt):
    table = rows(3)
    extra = encode_jpeg(np.full((8, 8, 3), 30, np.uint8))
    table = table.append_column("generated", pa.array([extra] * 3, pa.binary()))
    summary = write_table(table, output_spec(str(tmp_path / "out"), fmt, None, None, 95, ("generated",)))
    assert summary.written == 3
    path = summary.files[0]
    if fmt == "parquet":
        out = pq.read_table(path)
        assert out.column("generated").to_pylist()[0] == {"bytes": extra, "path": "img.0/diffusemix/0.generated.jpg"}
        assert b"generated" in out.schema.metadata[b"huggingface"]
    else:
        import tarfile

        from raymix.io import wds

        with tarfile.open(path) as tar:
            members = {wds.split_member(n) for n in tar.getnames()}
        assert ("img.0/diffusemix/0", "generated.jpg") in members and ("img.0/diffusemix/0", "jpg") in members


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_completed_sources_need_every_replica(tmp_path, fmt):
    from raymix.io.writers import completed_sources

    out = str(tmp_path / "out")
    img = encode_jpeg(np.full((8, 8, 3), 100, np.uint8))
    # a: both replicas written; b: one written, one quarantined; c: one of two written; d: whole row failed.
    table = pa.table({
        "image": [img, img, img, b"", img, b""],
        "label": [0] * 6,
        "key": ["a/m/0", "a/m/1", "b/m/0", "b/m/1", "c/m/0", "d"],
        "source_key": ["a", "a", "b", "b", "c", "d"],
        "replica": [0, 1, 0, 1, 0, -1],
        "source": ["s"] * 6,
        "stage": ["", "", "", "edit", "", "decode"],
        "reason": ["", "", "", "blank-output", "", "truncated"],
    })
    summary = write_table(table, output_spec(out, fmt, None, None, 95))
    assert not summary.reconcile(rows_in=4, replicas=2)  # c has one replica missing
    assert completed_sources(out, 2, format=fmt) == {"a", "b", "d"}
    assert completed_sources(out, 1, format=fmt) == {"a", "b", "c", "d"}


def test_load_dataset_of_the_output_folder_reads_only_the_outputs(tmp_path):
    datasets = pytest.importorskip("datasets")
    from raymix.io.writers import QUARANTINE_DIR, prepare_output

    out_spec = spec(tmp_path)
    prepare_output(out_spec, ["zero", "one"])
    write_table(pa.concat_tables([rows(5), rows(3, source="/in/n01#00001", start=5, bad={6})]), out_spec)
    assert sorted(os.listdir(tmp_path / "out" / QUARANTINE_DIR)) and (tmp_path / "out" / "classes.json").exists()
    # No glob, no builder name: the loader must skip the quarantine and classes.json.
    ds = datasets.load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 7 and ds.features["label"].names == ["c0", "c1"]
    assert type(ds.features["image"]).__name__ == "Image" and "img.6/diffusemix/0" not in ds["key"]


def test_quarantine_of_an_older_output_still_counts_on_resume(tmp_path):
    from raymix.io.writers import LEGACY_QUARANTINE_DIRS, QUARANTINE_DIR, completed_sources

    out_spec = spec(tmp_path)
    write_table(rows(3, bad={1}), out_spec)
    out = tmp_path / "out"
    os.rename(out / QUARANTINE_DIR, out / LEGACY_QUARANTINE_DIRS[0])  # as an older raymix wrote it
    assert committed_keys(str(out)) == {f"img.{i}/diffusemix/0" for i in range(3)}
    assert completed_sources(str(out), 1) == {"img.0", "img.1", "img.2"}
    again = write_table(rows(3, bad={1}), out_spec)
    assert (again.written, again.quarantined, again.already_written, again.already_quarantined) == (0, 0, 2, 1)
    assert not (out / QUARANTINE_DIR).exists()


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_same_rows_in_any_order_give_the_same_bytes(tmp_path, fmt):
    """Rows are written in key order, so a file's bytes depend only on its rows."""
    table = rows(40)
    shuffled = table.take(np.random.default_rng(0).permutation(40))
    a, b = output_spec(str(tmp_path / "a"), fmt), output_spec(str(tmp_path / "b"), fmt)
    write_table(table, a)
    write_table(shuffled, b)
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == sorted(os.listdir(tmp_path / "b")) and len(names) == 1
    assert (tmp_path / "a" / names[0]).read_bytes() == (tmp_path / "b" / names[0]).read_bytes()
    if fmt == "parquet":
        keys = pq.read_table(tmp_path / "a" / names[0]).column("key").to_pylist()
        assert keys == sorted(keys)


def test_image_paths_are_sanitised_keys_are_kept(tmp_path):
    from raymix.io.writers import image_path

    raw = ["../../x/m/0", "/etc/passwd/m/0", "a/./b c/../m/0", "..", "ok/n01_1.JPEG/m/0"]
    table = rows(len(raw)).set_column(3, "key", pa.array(raw))
    write_table(table, spec(tmp_path))
    back = pq.read_table(tmp_path / "out").to_pylist()
    assert sorted(r["key"] for r in back) == sorted(raw)  # the key column keeps the key
    paths = {r["key"]: r["image"]["path"] for r in back}
    assert paths["../../x/m/0"] == "x/m/0.jpg" and paths["/etc/passwd/m/0"] == "etc/passwd/m/0.jpg"
    assert paths["a/./b c/../m/0"] == "a/b_c/m/0.jpg" and paths[".."] == "unnamed.jpg"
    assert paths["ok/n01_1.JPEG/m/0"] == "ok/n01_1.JPEG/m/0.jpg"
    for p in paths.values():
        assert not p.startswith("/") and ".." not in p.split("/")
        assert os.path.realpath(os.path.join(tmp_path, p)).startswith(str(tmp_path))
    assert image_path("") == "unnamed"


def test_temporary_files_of_a_killed_writer_are_removed_on_rerun(tmp_path):
    from raymix.io.writers import prepare_output, remove_temporaries

    s = spec(tmp_path)
    write_table(rows(4), s)
    tmp = "." + os.listdir(tmp_path / "out")[0] + ".tmp-" + "0" * 32
    for folder in ("", "__quarantine__", ".raymix"):
        (tmp_path / "out" / folder).mkdir(exist_ok=True)
        (tmp_path / "out" / folder / tmp).write_bytes(b"\0" * 2048)
    (tmp_path / "out" / ".raymix" / "summary.json").write_text("{}")
    prepare_output(s)
    left = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert not any(".tmp-" in p for p in left)
    assert ".raymix/summary.json" in left and "classes.json" in left and len(left) == 3
    assert remove_temporaries(s) == []


class _FlakyMemoryFS:
    """Fails the first ``fails`` calls of each listed method with ``error``, then passes."""

    def __init__(self, fs, error, fails=2, methods=("pipe_file", "ls")):
        self._fs, self._error, self._left = fs, error, {m: fails for m in methods}
        self.calls = {m: 0 for m in methods}

    def __getattr__(self, name):
        attr = getattr(self._fs, name)
        if name not in self._left:
            return attr

        def call(*args, **kwargs):
            self.calls[name] += 1
            if self._left[name] > 0:
                self._left[name] -= 1
                raise self._error
            return attr(*args, **kwargs)

        return call


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "Connection refused"), TimeoutError("read timed out"),
                                   OSError(16, "Please reduce your request rate. (SlowDown)")])
def test_transient_storage_errors_are_retried(error):
    import dataclasses
    import uuid

    from raymix.io.retry import RetryPolicy

    s = output_spec(f"memory://retry-{uuid.uuid4().hex}", "parquet")
    flaky = _FlakyMemoryFS(s.fs, error)
    s = dataclasses.replace(s, fs=flaky, retry=RetryPolicy(first_delay=0.001))
    summary = write_table(rows(6), s)
    assert summary.written == 6 and flaky.calls["pipe_file"] == 3 and flaky.calls["ls"] >= 3
    assert len(committed_keys(s.uri)) == 6


def test_permanent_storage_errors_fail_at_once():
    import dataclasses
    import uuid

    from raymix.io.retry import RetryPolicy, is_transient

    s = output_spec(f"memory://denied-{uuid.uuid4().hex}", "parquet")
    flaky = _FlakyMemoryFS(s.fs, PermissionError("Access Denied"), methods=("pipe_file",))
    s = dataclasses.replace(s, fs=flaky, retry=RetryPolicy(first_delay=0.001))
    with pytest.raises(PermissionError):
        write_table(rows(2), s)
    assert flaky.calls["pipe_file"] == 1
    assert not is_transient(FileNotFoundError("gone")) and not is_transient(ValueError("bad request"))
    wrapped = OSError(5, "Internal Error")
    wrapped.__cause__ = type("ClientError", (Exception,), {"response": {
        "Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}})()
    assert is_transient(wrapped)


def test_retries_stop_after_the_attempts():
    from raymix.io.retry import RetryPolicy

    calls = []

    def always_down():
        calls.append(1)
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        RetryPolicy(attempts=3, first_delay=0.001).call(always_down)
    assert len(calls) == 3
