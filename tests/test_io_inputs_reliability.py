"""What the input side guarantees when the input is damaged or the store blips
(docs/reliability.md, "Inputs"): every sample the input holds is counted, transient errors
are retried and then recorded as retryable (a rerun retries them), only bad data is
quarantined for good, tars are read past a bad header, and keys are unique.

Each input is built with the library that makes such inputs (``tarfile``, ``pyarrow``,
``datasets``, ``os.symlink``); the store outages go through a fault proxy on 127.0.0.1
in front of the local S3 server. Most tests run the job's steps without Ray (read each
shard, decode, encode, write: what one read task and one write task do); the last runs
``raymix mix`` end to end.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fault_proxy import fault_proxy  # noqa: F401  (fixture)
from PIL import Image

from raymix.io.decode import decode_batch, encode_batch
from raymix.io.readers import plan_read
from raymix.io.writers import QUARANTINE_DIR, WriteSummary, completed_sources, output_spec, prepare_output, write_table


def jpeg(value: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value % 256, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def run_steps(plan, out: str, *, skip=None, limit=None, storage_options=None) -> tuple[WriteSummary, int]:
    """The job's steps without Ray: each shard read, decoded, encoded and written (one
    write per block, as write tasks do), at most ``limit`` rows (``--limit``). Returns the
    write summary and the rows read."""
    spec = output_spec(out, storage_options=storage_options, classes=plan.classes)
    prepare_output(spec)
    summary, rows_in = WriteSummary(spec.uri), 0
    skip_keys = pa.array(sorted(skip), pa.string()) if skip else None
    for shard in plan.shards:
        for table in plan.read_shard(shard, skip_keys):
            if limit is not None:
                table = table.slice(0, max(0, limit - rows_in))
            if not table.num_rows:
                continue
            rows_in += table.num_rows
            batch = {c: np.asarray(table.column(c).to_pylist(), dtype=object) for c in table.column_names}
            batch = encode_batch(decode_batch(batch, size=8))
            summary.merge(write_table(pa.table({k: pa.array(list(v)) for k, v in batch.items()}), spec))
    return summary, rows_in


def quarantine(out: str) -> list[dict]:
    folder = os.path.join(out, QUARANTINE_DIR)
    if not os.path.isdir(folder):
        return []
    return [r for f in sorted(os.listdir(folder)) if f.endswith(".parquet")
            for r in pq.read_table(os.path.join(folder, f)).to_pylist()]


def written_keys(out: str) -> list[str]:
    return [k for f in sorted(os.listdir(out)) if f.endswith(".parquet")
            for k in pq.read_table(os.path.join(out, f), columns=["key"]).column("key").to_pylist()]


# -- WebDataset tars: a bad header is not the end of the archive -----------------------------------


def wds_tar(n: int) -> bytes:
    """A WebDataset tar of ``n`` samples ``k000.jpg`` + ``k000.cls``, written by ``tarfile``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(n):
            for ext, data in (("jpg", jpeg(3 * i)), ("cls", str(i % 4).encode())):
                info = tarfile.TarInfo(f"k{i:03d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def member_offsets(data: bytes) -> dict[str, int]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m.offset for m in tar.getmembers()}


def test_a_corrupt_tar_header_mid_archive_loses_one_sample_not_the_rest(tmp_path):
    data = bytearray(wds_tar(64))
    at = member_offsets(bytes(data))["k032.jpg"]
    data[at + 148 : at + 156] = b"garbage!"  # the header's checksum field: tarfile calls it the end
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "train-0.tar").write_bytes(bytes(data))
    plan = plan_read(str(tmp_path / "in"))
    summary, rows_in = run_steps(plan, str(tmp_path / "out"))
    assert rows_in == 64  # every sample is accounted for
    assert summary.written == 63 and summary.reconcile(rows_in)
    assert {q["key"]: q["reason"] for q in quarantine(str(tmp_path / "out"))} == {"k032": "unreadable"}
    assert sorted(written_keys(str(tmp_path / "out")))[-1] == "k063"


def test_a_truncated_tar_counts_what_it_lost(tmp_path):
    data = wds_tar(20)
    at = member_offsets(data)["k012.jpg"]
    (tmp_path / "t.tar").write_bytes(data[: at + 512 + 100])  # cut inside k012's image
    summary, rows_in = run_steps(plan_read(str(tmp_path / "t.tar")), str(tmp_path / "out"))
    records = quarantine(str(tmp_path / "out"))
    assert summary.written == 12 and rows_in == summary.written + summary.quarantined
    # The cut sample by its own key, and a record saying the tar ends early (what followed is unknown).
    assert [(q["key"], q["reason"]) for q in records if q["key"] == "k012"] == [("k012", "unreadable")]
    assert any(q["key"].endswith("t.tar#unreadable") and q["reason"] == "unreadable" for q in records)


def test_tar_damage_is_charged_to_the_sample_that_lost_a_member_else_counted_on_its_own():
    from raymix.io import wds

    def problems(data: bytes):
        got = [(k, p) for k, _, p in wds.read_samples(io.BytesIO(data))]
        return len(got), [g for g in got if g[1]]

    labelled = bytearray(wds_tar(16))
    at = member_offsets(bytes(labelled))["k008.cls"]
    labelled[at + 148 : at + 156] = b"garbage!"  # k008 keeps its image but loses its label
    assert problems(bytes(labelled)) == (16, [("k008", wds.DAMAGED)])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(10):  # samples of one member each: a lost header is a lost sample
            info = tarfile.TarInfo(f"u{i}.jpg")
            info.size = 600
            tar.addfile(info, io.BytesIO(b"x" * 600))
    single = bytearray(buf.getvalue())
    at = member_offsets(bytes(single))["u5.jpg"]
    single[at + 148 : at + 156] = b"garbage!"
    assert problems(bytes(single)) == (10, [(str(at), wds.LOST)])
    assert problems(b"") == (1, [("", wds.ENDS_EARLY)])


def test_tars_read_header_by_header_keep_pax_and_gnu_long_names(tmp_path):
    from raymix.io import wds

    long_key = "n01440764/" + "é" * 80 + "/diffusemix/0"  # over 100 bytes: a PAX header
    pax = wds.build_tar([(long_key, {"jpg": b"A", "cls": b"1"}), ("short", {"jpg": b"B"})])
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("g" * 120 + ".jpg")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"C"))
    got = [(k, m, p) for data in (pax, gnu.getvalue()) for k, m, p in wds.read_samples(io.BytesIO(data))]
    assert got == [(long_key, {"jpg": b"A", "cls": b"1"}, ""), ("short", {"jpg": b"B"}, ""), ("g" * 120, {"jpg": b"C"}, "")]


# -- parquet: a broken shard counts every row its footer declares ----------------------------------


def hf_parquet(path, n: int, *, label=None, row_group_size: int = 10) -> None:
    label = label if label is not None else [i % 3 for i in range(n)]
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([{"bytes": jpeg(i), "path": f"img{i:04d}.jpg"} for i in range(n)], struct),
                      "label": label})
    pq.write_table(table, path, row_group_size=row_group_size, compression="none")


def test_a_shard_that_breaks_part_way_counts_every_row_it_held(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    hf_parquet(src / "a.parquet", 100)
    hf_parquet(src / "b.parquet", 30)
    raw = bytearray((src / "a.parquet").read_bytes())
    meta = pq.read_metadata(src / "a.parquet")
    start = meta.row_group(5).column(0).data_page_offset
    raw[start : start + 64] = b"\xff" * 64  # row groups 5..9 unreadable; the footer still says 100 rows
    (src / "a.parquet").write_bytes(bytes(raw))
    plan = plan_read(str(src))
    assert plan.num_rows == 130  # counted from the footers, before any row is read
    summary, rows_in = run_steps(plan, str(tmp_path / "out"))
    assert rows_in == 130 and summary.reconcile(rows_in)
    assert summary.written >= 80 and summary.quarantined == 130 - summary.written
    assert {q["reason"] for q in quarantine(str(tmp_path / "out"))} == {"unreadable"}


def test_a_string_label_column_is_read_as_class_names_not_a_broken_shard(tmp_path):
    names = ["cat", "dog", "eel"]
    hf_parquet(tmp_path / "s.parquet", 12, label=[names[i % 3] for i in range(12)])
    plan = plan_read(str(tmp_path / "s.parquet"))
    summary, rows_in = run_steps(plan, str(tmp_path / "out"))
    assert (rows_in, summary.written, summary.quarantined) == (12, 12, 0)
    rows = [r for f in os.listdir(tmp_path / "out") if f.endswith(".parquet")
            for r in pq.read_table(tmp_path / "out" / f, columns=["key", "class_name"]).to_pylist()]
    assert {r["key"]: r["class_name"] for r in rows}["img0004"] == "dog"


# -- names fsspec would take for globs -------------------------------------------------------------


def test_file_names_with_glob_characters_are_read(tmp_path):
    names = ["a?b.jpg", "c[1].jpg", "d].jpg", "plain.jpg"]
    (tmp_path / "in" / "c").mkdir(parents=True)
    for i, n in enumerate(names):
        (tmp_path / "in" / "c" / n).write_bytes(jpeg(40 * i))
    summary, rows_in = run_steps(plan_read(str(tmp_path / "in")), str(tmp_path / "out"))
    assert (rows_in, summary.written, summary.quarantined) == (4, 4, 0)
    assert sorted(written_keys(str(tmp_path / "out"))) == ["c/a?b", "c/c[1]", "c/d]", "c/plain"]


# -- duplicate keys ---------------------------------------------------------------------------------


def imagefolder_parquet(tmp_path, shards: int = 2):
    """A Caltech-style tree (the same file names in every class) as ``push_to_hub`` writes it:
    ``load_dataset("imagefolder")``, images embedded (paths become base names), parquet shards."""
    datasets = pytest.importorskip("datasets")
    from datasets.table import embed_table_storage

    tree = tmp_path / "tree"
    for c, cls in enumerate(("cat", "dog")):
        (tree / cls).mkdir(parents=True)
        for i in range(4):
            (tree / cls / f"image_{i:04d}.jpg").write_bytes(jpeg(60 * c + 10 * i))
    ds = datasets.load_dataset("imagefolder", data_dir=str(tree), split="train", cache_dir=str(tmp_path / "hf"))
    ds = ds.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True).with_format(None)
    out = tmp_path / "hub"
    out.mkdir()
    for i in range(shards):
        ds.shard(shards, i, contiguous=True).to_parquet(str(out / f"train-{i:05d}-of-{shards:05d}.parquet"))
    paths = [s["path"] for f in sorted(out.iterdir()) for s in pq.read_table(f).column("image").to_pylist()]
    assert len(paths) == 8 and len(set(paths)) == 4  # what the library writes: base names only
    return out


def test_the_same_file_name_in_two_classes_gives_two_keys_and_a_rerun_finishes_both(tmp_path):
    src = imagefolder_parquet(tmp_path)
    plan = plan_read(str(src))
    keys = [r["key"] for s in plan.shards for t in plan.read_shard(s) for r in t.to_pylist()]
    assert len(keys) == 8 and len(set(keys)) == 8
    out = str(tmp_path / "out")
    # A first run with --limit 4 (the first shard: the cats), then the rerun without.
    first, _ = run_steps(plan, out, limit=4)
    assert first.written == 4
    summary, _ = run_steps(plan, out, skip=completed_sources(out, 1))
    assert summary.written == 4
    rows = [r for f in sorted(os.listdir(out)) if f.endswith(".parquet")
            for r in pq.read_table(os.path.join(out, f), columns=["key", "class_name"]).to_pylist()]
    assert len(rows) == 8 and len({r["key"] for r in rows}) == 8
    assert sorted(r["class_name"] for r in rows) == ["cat"] * 4 + ["dog"] * 4


def test_a_key_repeated_across_shards_is_made_unique_and_says_so(tmp_path, caplog):
    for name in ("x", "y"):
        pq.write_table(pa.table({"key": ["k0", "k1", "k1"], "image": [jpeg(1), jpeg(2), jpeg(3)], "label": [0, 1, 1]}),
                       tmp_path / f"{name}.parquet")
    plan = plan_read(str(tmp_path))
    keys = [r["key"] for s in plan.shards for t in plan.read_shard(s) for r in t.to_pylist()]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert "duplicate" in caplog.text.lower()


# -- a block whose images are all null --------------------------------------------------------------


def test_all_null_blocks_are_quarantined_not_a_crash(tmp_path):
    src = tmp_path / "pq"
    src.mkdir()
    hf_parquet(src / "good.parquet", 6)
    hf_parquet(src / "cut.parquet", 6)
    (src / "cut.parquet").write_bytes((src / "cut.parquet").read_bytes()[:300])  # no footer left
    summary, rows_in = run_steps(plan_read(str(src)), str(tmp_path / "out1"))
    assert summary.written == 6 and summary.quarantined == rows_in - 6 >= 1
    assert {q["reason"] for q in quarantine(str(tmp_path / "out1"))} == {"unreadable"}
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "b").mkdir()
    (tree / "a" / "x.jpg").write_bytes(jpeg(5))
    os.symlink(tmp_path / "nowhere.jpg", tree / "b" / "y.jpg")  # a class holding only a dangling link
    summary, rows_in = run_steps(plan_read(str(tree)), str(tmp_path / "out2"))
    assert (rows_in, summary.written, summary.quarantined) == (2, 1, 1)
    assert [(q["key"], q["reason"]) for q in quarantine(str(tmp_path / "out2"))] == [("b/y", "missing")]


# -- a store that refuses, then blackholes, connections while the shards are read ---------------------

#: Short socket timeouts, so a blackholed request fails in about a second (the defaults wait
#: 5 s to connect and 15 s to read, five times over).
FAST_FAIL = {"config_kwargs": {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}}}


def s3_inputs(s3_bucket) -> tuple[str, str]:
    """A class-folder tree (3 x 8 images, one named with glob characters) and a 100-row
    parquet shard on the local S3 server."""
    from raymix.io.storage import filesystem

    fs, root = filesystem(s3_bucket)
    for c in range(3):
        for i in range(8):
            name = "odd[1]?.jpg" if (c, i) == (2, 7) else f"img{i}.jpg"
            fs.pipe(f"{root}/tree/c{c}/{name}", jpeg(10 * c + i))
    buf = io.BytesIO()
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array([{"bytes": jpeg(i), "path": f"p{i}.jpg"} for i in range(100)], struct),
                             "label": [i % 3 for i in range(100)]}), buf, row_group_size=25)
    fs.pipe(f"{root}/pq/train-0.parquet", buf.getvalue())
    return f"{s3_bucket}/tree", f"{s3_bucket}/pq"


def proxied_plan(uri, proxy):
    plan = plan_read(uri, storage_options={**proxy.storage_options, **FAST_FAIL})
    plan.fs.retries = 1  # s3fs's own retries (not an option): ours are what is tested
    return plan


@pytest.mark.slow
def test_a_short_outage_while_reading_is_retried_and_loses_nothing(s3_bucket, fault_proxy, tmp_path):
    tree, shards = s3_inputs(s3_bucket)
    for uri, n in ((tree, 24), (shards, 100)):
        plan = proxied_plan(uri, fault_proxy)
        fault_proxy.schedule([("refuse", 1.5), ("blackhole", 1.5)])
        out = str(tmp_path / uri.rsplit("/", 1)[1])
        summary, rows_in = run_steps(plan, out)
        fault_proxy.wait()
        assert fault_proxy.stats["accepted_blackhole"] + fault_proxy.stats["blackholed_open"] >= 1
        assert (rows_in, summary.written, summary.quarantined) == (n, n, 0), quarantine(out)


@pytest.mark.slow
def test_an_outage_that_outlasts_the_retries_is_recorded_as_retryable_and_the_rerun_finishes(
        s3_bucket, fault_proxy, tmp_path):
    tree, shards = s3_inputs(s3_bucket)
    for uri, n in ((tree, 24), (shards, 100)):
        plan = proxied_plan(uri, fault_proxy)
        plan.retry_seconds = 1.0
        out = str(tmp_path / uri.rsplit("/", 1)[1])
        fault_proxy.set_mode("refuse")
        summary, rows_in = run_steps(plan, out)
        fault_proxy.set_mode("pass")
        # Every row is counted (the shard's 100 rows from its footer, read when planning) ...
        assert (rows_in, summary.written, summary.quarantined) == (n, 0, n) and summary.reconcile(rows_in)
        # ... as retryable, which a rerun does not take for finished work.
        assert summary.reasons == {"retryable": n}
        assert completed_sources(out, 1) == set()
        from raymix.io.writers import forget_retryable

        forget_retryable(out)  # what a rerun does first (raymix.pipeline.stages.read_input)
        again, _ = run_steps(plan, out, skip=completed_sources(out, 1))
        assert (again.written, again.quarantined) == (n, 0)
        assert quarantine(out) == [] and len(set(written_keys(out))) == n  # no stale record left behind


def test_a_run_that_leaves_rows_retryable_says_it_is_not_finished():
    from raymix.pipeline.stages import JobResult

    left = JobResult(WriteSummary(written=5, quarantined=3, reasons={"retryable": 2, "corrupt": 1}), 8, 1, 1.0)
    assert left.reconciled and left.retryable == 2 and "run the same command again" in left.unfinished()
    down = JobResult(WriteSummary(quarantined=4, reasons={"retryable": 4}), 4, 1, 1.0)
    assert down.nothing_written() is None and "4 input rows" in down.unfinished()  # not "check --input"
    done = JobResult(WriteSummary(written=7, quarantined=1, reasons={"corrupt": 1}), 8, 1, 1.0)
    assert done.unfinished() is None


# -- the same inputs through `raymix mix` on Ray ------------------------------------------------------


@pytest.mark.slow
def test_mix_job_over_damaged_inputs_and_duplicate_keys_reconciles_honestly(ray_cluster, tmp_path, capsys):
    """Parquet shards with one file name in two classes next to a truncated shard, and a
    class folder holding only a dangling link (blocks whose images are all null): no
    crash, every row counted, and a --limit run followed by a rerun writes every class."""
    from raymix.cli import main

    src = imagefolder_parquet(tmp_path)
    hf_parquet(src / "train-cut.parquet", 6)
    (src / "train-cut.parquet").write_bytes((src / "train-cut.parquet").read_bytes()[:300])
    out = tmp_path / "out"
    args = ["mix", "--method", "augmix", "--input", str(src), "--output", str(out), "--image-size", "16", "--json"]
    assert main([*args, "--limit", "4"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["reconciled"] and first["written"] + first["quarantined"] == first["rows_in"] == 4
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["reconciled"] and again["reasons"] == {"unreadable": 1}
    rows = [r for f in out.glob("*.parquet") for r in pq.read_table(f, columns=["source_key", "class_name"]).to_pylist()]
    assert len(rows) == 8 and len({r["source_key"] for r in rows}) == 8
    assert sorted(r["class_name"] for r in rows) == ["cat"] * 4 + ["dog"] * 4

    tree = tmp_path / "links"
    (tree / "a").mkdir(parents=True)
    (tree / "b").mkdir()
    (tree / "a" / "x.jpg").write_bytes(jpeg(5, size=32))
    os.symlink(tmp_path / "nowhere.jpg", tree / "b" / "y.jpg")
    from raymix.pipeline.datasource import read_images

    rows = (read_images(str(tree)).map_batches(decode_batch, batch_format="numpy", fn_kwargs={"size": 8})
            .take_all())  # the class b block: one row, its image null
    assert sorted((r["key"], r["stage"], r["reason"]) for r in rows) == [("a/x", "", ""), ("b/y", "read", "missing")]
