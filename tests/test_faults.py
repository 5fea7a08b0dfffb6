"""Fault injection on the output side: what a job writes survives killed actors, a killed or
interrupted driver, and a storage outage during writes, and matches an uninterrupted run
byte for byte (docs/reliability.md).

Every test compares against ``reference``: one uninterrupted run of the same job. Rows are
compared whole (every column, image bytes included); files of the same name (the same
rows) must be byte-identical; each file's rows are sorted by key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from raymix.io.storage import filesystem
from raymix.models.editor_options import EditorOptions
from raymix.pipeline import diffusemix, mix
from raymix.pipeline.specs import DiffuseMixJob, MixJob
from raymix.tools.sample_data import write_sample

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FLAGS = {"method": "pixmix", "replicas": 1, "image_size": 32, "fractals": "generated:8", "seed": 7,
         "rows_per_file": 24, "batch_size": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """240 small images in 5 parquet shards."""
    src = str(tmp_path_factory.mktemp("faults") / "data")
    write_sample(src, format="parquet", classes=4, per_class=60, size=(40, 40), rows_per_shard=48, workers=1)
    return src


def mix_job(src, out, **kw) -> MixJob:
    return MixJob(input=src, output=out, **{**FLAGS, **kw})


@pytest.fixture(scope="module")
def reference(ray_cluster, data, tmp_path_factory):
    """The uninterrupted run every fault is compared with."""
    out = str(tmp_path_factory.mktemp("reference") / "out")
    result = mix.run(mix_job(data, out, actors=2))
    assert result.reconciled and result.summary.written == 240
    return out


def output_files(out: str, storage_options: dict | None = None) -> dict[str, bytes]:
    fs, root = filesystem(out, storage_options)
    fs.invalidate_cache()
    return {os.path.basename(p): fs.cat_file(p) for p in fs.ls(root, detail=False) if p.endswith(".parquet")}


def hidden_leftovers(out: str) -> list[str]:
    return [str(p) for p in Path(out).rglob(".*tmp*")]


def assert_same_output(out: str, ref: str, storage_options: dict | None = None) -> None:
    """Same rows, every byte of every column; files of one name identical; rows sorted by key."""
    import io

    got, want = output_files(out, storage_options), output_files(ref)
    rows_got, rows_want = {}, {}
    for files, rows in ((got, rows_got), (want, rows_want)):
        for name, data in files.items():
            table = pq.read_table(io.BytesIO(data))
            keys = table.column("key").to_pylist()
            assert keys == sorted(keys), f"{name}: rows not sorted by key"
            for row in table.to_pylist():
                assert row["key"] not in rows, f"duplicate row {row['key']}"
                rows[row["key"]] = row
    assert rows_got.keys() == rows_want.keys()
    assert all(rows_got[k] == rows_want[k] for k in rows_want), "rows differ from the uninterrupted run"
    common = got.keys() & want.keys()
    assert all(got[n] == want[n] for n in common), "files of one name differ"


# ---------------------------------------------------------------------------------------------- actors


def busy_actor(stage: str) -> psutil.Process | None:
    """An actor process of this test session's Ray running the map stage ``stage`` and, at
    this moment, executing a batch: Ray titles it ``ray::MapWorker(...MapBatches(STAGE)).submit``
    while it runs a task (``...)`` when idle, ``....__init__`` while it starts). Only
    processes under this one count (the machine may run other Ray sessions)."""
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline()).strip()
        except psutil.Error:
            continue
        if cmd.startswith("ray::") and f"MapBatches({stage})" in cmd and cmd.endswith(".submit"):
            return p
    return None


def kill_actor_mid_batch(stage: str, job_thread: threading.Thread, timeout: float = 180) -> int:
    """SIGKILL an actor of ``stage`` 20 ms into a batch it executes (one Ray must redo, and
    whose rows the read counter has seen); returns its pid. Fails if the job finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert job_thread.is_alive(), f"the job finished before a {stage} actor was killed"
        p = busy_actor(stage)
        if p is not None:
            time.sleep(0.02)  # well into the batch: past the read counter, fused before the stage
            try:
                if " ".join(p.cmdline()).strip().endswith(".submit"):
                    p.send_signal(signal.SIGKILL)
                    return p.pid
            except psutil.Error:
                pass
        time.sleep(0.005)
    raise AssertionError(f"no busy {stage} actor within {timeout} s")


def run_in_thread(run, job):
    box = {}

    def target():
        try:
            box["result"] = run(job)
        except BaseException as err:  # noqa: BLE001 - re-raised by the test
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def finished(thread, box, timeout=300):
    thread.join(timeout)
    assert not thread.is_alive(), "the job did not finish"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_killed_mixing_actor_is_replaced_and_counted_once(ray_cluster, data, reference, tmp_path):
    """SIGKILL of the busy mixing actor: Ray restarts it and redoes its batches; the output
    is the uninterrupted run's and the counts reconcile (the retried rows count once)."""
    out = str(tmp_path / "out")
    thread, box = run_in_thread(mix.run, mix_job(data, out, actors=1, batch_size=4))
    kill_actor_mid_batch("MethodStage", thread)
    result = finished(thread, box)
    assert result.rows_in == 240 and result.reconciled, result.report()
    assert_same_output(out, reference)


def test_killed_editing_actor_is_replaced(ray_cluster, tmp_path):
    """SIGKILL of the DiffuseMix editing actor (tiny editor on CPU) mid-run: same output
    as an uninterrupted run, counts reconciled."""
    src = str(tmp_path / "src")
    write_sample(src, format="parquet", classes=2, per_class=4, size=(40, 40), rows_per_shard=4, workers=1)
    editor = EditorOptions(model="tiny", steps=2, resolution=32, model_batch=2)
    settings = dict(input=src, editor=editor, replicas=1, seed=3, fractals="generated:8", rows_per_file=4,
                    edit_actors=1, mix_actors=1)
    ref = str(tmp_path / "ref")
    assert diffusemix.run(DiffuseMixJob(output=ref, **settings)).reconciled
    out = str(tmp_path / "out")
    thread, box = run_in_thread(diffusemix.run, DiffuseMixJob(output=out, **settings))
    kill_actor_mid_batch("EditStage", thread)
    result = finished(thread, box)
    assert result.rows_in == 8 and result.reconciled, result.report()
    assert_same_output(out, ref)


# ---------------------------------------------------------------------------------------------- storage


def test_storage_outage_during_writes_is_retried(ray_cluster, data, reference, s3_bucket, fault_proxy):
    """The store refuses connections for 4 s, then accepts and never answers for 6 s, while
    the job writes: the writes wait and retry, the job completes with the same output."""
    out = f"{s3_bucket}/out"
    # Short timeouts, so that a blackholed request fails in seconds (botocore waits 60 s by
    # default), and no retries inside botocore (s3fs still retries for ~2 s): raymix's own
    # retries are what must ride out the outage.
    options = {**fault_proxy.storage_options,
               "config_kwargs": {"connect_timeout": 1, "read_timeout": 2, "retries": {"max_attempts": 1}}}
    direct, root = filesystem(out)  # straight to the server, for watching

    def first_file():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            direct.invalidate_cache()
            if direct.exists(root) and any(p.endswith(".parquet") for p in direct.ls(root, detail=False)):
                break
            time.sleep(0.05)
        box["before"] = len([p for p in direct.ls(root, detail=False) if p.endswith(".parquet")])
        fault_proxy.schedule([("refuse", 4), ("blackhole", 6)])

    box = {}
    watcher = threading.Thread(target=first_file, daemon=True)
    watcher.start()
    result = mix.run(mix_job(data, out, storage_options=options, actors=1, batch_size=4))
    watcher.join()
    assert fault_proxy.stats["switch_refuse"] == 1, "the outage never started"
    assert box["before"] < len(result.summary.files), "every file was written before the outage"
    assert fault_proxy.stats["accepted_blackhole"] + fault_proxy.stats["blackholed_open"] > 0
    assert result.reconciled and result.summary.written == 240
    assert_same_output(out, reference)


# ---------------------------------------------------------------------------------------------- driver


def cli(out: str, data: str, *extra: str) -> subprocess.Popen:
    """``raymix mix`` as a user runs it, with its own local Ray (no RAY_ADDRESS)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "raymix.cli", "mix", "--input", data, "--output", out, "--actors", "1"]
    for name, value in FLAGS.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return subprocess.Popen([*argv, *extra], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def interrupt_after_first_file(proc: subprocess.Popen, out: str, sig: int) -> None:
    deadline = time.monotonic() + 180
    while not any(Path(out).glob("*.parquet")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no output file within 180 s"
        time.sleep(0.05)
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(sig)
    try:
        proc.wait(60)
    finally:
        for pid in family:  # whatever the driver started and left behind
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
    assert proc.returncode != 0, "the job finished before it was interrupted"


def test_driver_interrupted_then_killed_then_rerun_completes(ray_cluster, data, reference, tmp_path):
    """SIGINT of the driver mid-run, a rerun SIGKILLed mid-run, then a rerun to the end: the
    output is the uninterrupted run's, no hidden temporary file is left, and a rerun with
    another seed refuses the folder instead of claiming it finished."""
    out = str(tmp_path / "out")
    first = cli(out, data)
    interrupt_after_first_file(first, out, signal.SIGINT)
    text = first.stdout.read()
    assert first.returncode == 130 and "run the same command again" in text, (first.returncode, text[-3000:])

    second = cli(out, data)
    interrupt_after_first_file(second, out, signal.SIGKILL)
    # What a writer killed mid-write leaves (a hidden temporary file beside the outputs).
    (Path(out) / f".train-00000-of-00005-0123456789abcdef.parquet.tmp-{'ab' * 16}").write_bytes(b"\0" * 4096)

    third = mix.run(mix_job(data, out, actors=1))  # the rerun (on the session's Ray: one Ray start less)
    s = third.summary
    assert third.reconciled and third.skipped > 0 and third.skipped + s.already_written + s.written == 240
    assert hidden_leftovers(out) == []
    assert_same_output(out, reference)

    before = output_files(out)
    other = cli(out, data, "--seed", "8")
    text, _ = other.communicate(timeout=120)
    assert other.returncode != 0 and "seed" in text and "--write-beside" in text, text
    assert output_files(out) == before


def test_other_settings_write_beside_when_asked(ray_cluster, data, reference):
    from raymix.pipeline import output_settings

    with pytest.raises(ValueError, match="options"):
        mix.run(mix_job(data, reference, method_options={"k": 3}))
    beside = mix.run(mix_job(data, reference, seed=8, limit=8, write_beside=True))
    assert beside.summary.written == 8 and beside.summary.output_uri.startswith(reference + "-")
    assert_same_output(reference, reference)  # untouched
    # The same other settings find the same folder beside, and resume there.
    again = output_settings.claim_output(mix_job(data, reference, seed=8, write_beside=True))
    assert again.output == beside.summary.output_uri


def test_job_settings_fields_are_known():
    """Every job setting is either recorded in the output folder or declared run-only."""
    from raymix.pipeline import output_settings

    from raymix.settings import settings_of

    from raymix.pipeline.specs import AGAJob

    for cls in (MixJob, DiffuseMixJob, AGAJob):
        keys = set(settings_of(cls))
        assert keys <= output_settings.RUN_ONLY | output_settings.RECORDED, keys - output_settings.RUN_ONLY
    assert not output_settings.RUN_ONLY & output_settings.RECORDED
