"""Mistakes on the command line: one readable line on stderr, no traceback, the right exit
status, and Ray never started (docs/io.md, "Common mistakes")."""

from __future__ import annotations

import dataclasses
import json
import socket

import pytest

from raymix import registry
from raymix.cli import main
from raymix.io.writers import WriteSummary
from raymix.pipeline import runtime
from raymix.tools.sample_data import write_sample

AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "RAYMIX_STORAGE_OPTIONS")
ran = []


def _record(job) -> int:
    """Stands in for a job's run once the checks pass: keeps the settings it was given."""
    ran.append(job)
    return 0


def _fail(job) -> int:
    raise RuntimeError("the editor ran out of GPU memory\nsecond line of detail")


@pytest.fixture
def ray_starts(monkeypatch):
    """Every start of Ray through raymix, recorded (and refused: the tests start none)."""
    started = []

    def refuse(*args, **kwargs):
        started.append(args)
        raise AssertionError("Ray was started")

    monkeypatch.setattr(runtime, "init_ray", refuse)
    return started


@pytest.fixture
def data(tmp_path):
    """Two classes of two small JPEGs."""
    write_sample(str(tmp_path / "data"), classes=2, per_class=2, size=(32, 32))
    return str(tmp_path / "data")


def fails(capsys, ray_starts, argv, code=2) -> str:
    """Run ``raymix ARGV``; check the exit status, one line on stderr, no traceback, no Ray; the line."""
    ran.clear()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and not ray_starts and not ran
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_missing_input(capsys, ray_starts, tmp_path):
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", str(tmp_path / "nope"),
                                      "--output", str(tmp_path / "out")])
    assert line == f"raymix mix: --input {tmp_path / 'nope'}: no such file or folder; check the path"


def test_empty_input(capsys, ray_starts, tmp_path):
    (tmp_path / "empty").mkdir()
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", str(tmp_path / "empty"),
                                      "--output", str(tmp_path / "out")])
    assert line == f"raymix mix: --input {tmp_path / 'empty'} holds no class folders (and no parquet or tar files)"


def test_input_without_images_says_what_it_holds(capsys, ray_starts, tmp_path):
    for name in ("a/1.txt", "a/2.txt", "b/3.csv"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text("not an image")
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", str(tmp_path / "in"),
                                      "--output", str(tmp_path / "out")])
    assert line.startswith(f"raymix mix: --input {tmp_path / 'in'}: 3 files, none an image (.txt, .csv); "
                           "images end in .jpg")


def test_output_that_cannot_be_written(capsys, ray_starts, data, tmp_path):
    (tmp_path / "a-file").write_text("")
    out = str(tmp_path / "a-file" / "out")
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", data, "--output", out])
    assert line.startswith(f"raymix mix: --output {out}: cannot write there (")
    assert line.endswith("); choose a folder you can write to")


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No AWS credentials anywhere botocore looks, and no network at all."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def no_network(*args, **kwargs):
        raise AssertionError("the check touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


@pytest.mark.parametrize("where", ["--input", "--output"])
def test_s3_without_credentials(capsys, ray_starts, no_aws, data, where):
    uri = "s3://bucket/train"
    argv = ["mix", "--method", "augmix", "--input", data, "--output", "out"]
    argv[argv.index(where) + 1] = uri
    line = fails(capsys, ray_starts, argv)
    assert line == (f"raymix mix: {where} {uri}: no S3 credentials found; set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for MinIO or another S3-compatible store), or "
                    "RAYMIX_STORAGE_OPTIONS / --storage-options; see docs/io.md")


def test_s3_credentials_from_storage_options_pass_the_check(no_aws):
    from raymix.commands.checks import check_s3_credentials

    check_s3_credentials("s3://bucket/x", {"key": "k", "secret": "s"}, "--input")
    check_s3_credentials("s3://bucket/x", {"anon": True}, "--input")


def test_replicas_below_one(capsys, ray_starts, data, tmp_path):
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", data,
                                      "--output", str(tmp_path / "out"), "--replicas", "0"])
    assert line == "raymix mix: --replicas 0: give 1 or more (augmented images per input image)"


def test_unknown_method_option_and_preset(capsys, ray_starts, data, tmp_path):
    base = ["mix", "--method", "pixmix", "--input", data, "--output", str(tmp_path / "out")]
    line = fails(capsys, ray_starts, [*base, "--options", '{"bta": 4}'])
    assert line == ("raymix mix: --options: pixmix has no option 'bta'; did you mean 'beta'? its options: "
                    "all_ops, bank_seed, beta, chunk_size, fractal_size, k, preset, severity")
    line = fails(capsys, ray_starts, [*base, "--options", '{"preset": "tiny"}'])
    assert line == "raymix mix: --options: pixmix has no preset 'tiny'; its presets: imagenet, cifar"


def test_unknown_online_option(capsys, ray_starts, data):
    line = fails(capsys, ray_starts, ["train", "--input", data, "--online", "pixmix",
                                      "--online-options", '{"preset": "imagenet", "severity": 3, "kk": 1}'])
    assert line.startswith("raymix train: --online-options: pixmix has no option 'kk'; did you mean 'k'?")


def test_num_classes_different_from_the_class_list(capsys, ray_starts, data):
    line = fails(capsys, ray_starts, ["train", "--input", data, "--num-classes", "1000"])
    assert line == (f"raymix train: --num-classes 1000, but {data} lists 2 classes; pass --num-classes 2 "
                    "or leave it out to use the input's class list")


@pytest.fixture
def runs_recorded(monkeypatch):
    """Every job's run replaced by :func:`_record` (after the checks)."""
    for name, entry in registry.JOBS.items():
        monkeypatch.setitem(registry.JOBS, name, dataclasses.replace(entry, run=f"{__name__}:_record"))


def test_num_classes_comes_from_the_class_list(capsys, ray_starts, runs_recorded, data):
    ran.clear()
    assert main(["train", "--input", data]) == 0
    assert ran.pop().config.num_classes == 2
    assert capsys.readouterr().err == (f"raymix train: --num-classes 2: from the class list of {data} "
                                       "(give --num-classes to override)\n")
    assert main(["train", "--input", data, "--num-classes", "2"]) == 0
    assert ran.pop().config.num_classes == 2 and capsys.readouterr().err == ""


def test_a_failing_job_is_one_line_and_exit_1_unless_debug(capsys, ray_starts, monkeypatch, data, tmp_path):
    entry = dataclasses.replace(registry.JOBS["mix"], run=f"{__name__}:_fail")
    monkeypatch.setitem(registry.JOBS, "mix", entry)
    argv = ["mix", "--method", "augmix", "--input", data, "--output", str(tmp_path / "out")]
    line = fails(capsys, ray_starts, argv, code=1)
    assert line == "raymix mix: the editor ran out of GPU memory (--debug shows the traceback)"
    with pytest.raises(RuntimeError, match="out of GPU memory"):
        main([*argv, "--debug"])


def test_exit_1_when_every_row_was_quarantined(capsys, monkeypatch, tmp_path):
    from raymix.pipeline.specs import MixJob
    from raymix.pipeline.stages import JobResult

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runtime, "init_ray", lambda address: None)
    job = MixJob(method="augmix", input="in", output="out")
    summary = WriteSummary(output_uri="out", quarantined=3, reasons={"decode": 3})
    assert runtime.run_job(job, lambda job: JobResult(summary, rows_in=3, replicas=1, seconds=1.0)) == 1
    assert capsys.readouterr().err.splitlines()[-1] == ("wrote no images: all 3 input rows were quarantined "
                                                        "(decode: 3); see out/__quarantine__ and check --input")
    summary = WriteSummary(output_uri="out", written=2, quarantined=1, reasons={"decode": 1})
    assert runtime.run_job(job, lambda job: JobResult(summary, rows_in=3, replicas=1, seconds=1.0)) == 0


def test_bench_help_explains_a_false_target(capsys):
    for argv in (["bench", "--help"], ["bench", "cpu", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert "false when it did not. A false target is a measurement, not an error" in text
        assert "docs/performance.md" in text


def test_every_job_has_debug(capsys):
    for name in registry.JOBS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "--debug on an error, show the full traceback" in " ".join(capsys.readouterr().out.split())


def test_json_option_value_is_checked_before_the_job(capsys, ray_starts, data, tmp_path):
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", data, "--output",
                                      str(tmp_path / "out"), "--options", json.dumps({"severity": 3, "alpha": 1,
                                                                                      "depth": 2})])
    assert "augmix has no option" in line


def test_s3_input_without_images_says_what_it_holds(capsys, ray_starts, s3_bucket, tmp_path):
    from raymix.io.storage import filesystem

    fs, root = filesystem(f"{s3_bucket}/x")
    for name in ("a/1.txt", "a/2.txt", "b/3.csv"):
        fs.pipe_file(f"{root}/{name}", b"not an image")
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", f"{s3_bucket}/x",
                                      "--output", str(tmp_path / "out")])
    assert line.startswith(f"raymix mix: --input {s3_bucket}/x: 3 files, none an image (.txt, .csv); ")


def test_s3_input_missing(capsys, ray_starts, s3_bucket, tmp_path):
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", f"{s3_bucket}/nope",
                                      "--output", str(tmp_path / "out")])
    assert line == f"raymix mix: --input {s3_bucket}/nope: no such file or folder; check the path"


def test_s3_endpoint_that_cannot_be_reached(capsys, ray_starts, monkeypatch, data):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", "s3://bucket/x", "--output", "out",
                                      "--storage-options", '{"retries": 1}'])
    assert line.startswith("raymix mix: --input s3://bucket/x: cannot list it (")
    assert line.endswith("); check the URL, the credentials and AWS_ENDPOINT_URL (docs/io.md)")


@pytest.mark.parametrize("name", sorted(registry.JOBS))
def test_every_flag_of_a_job_says_what_it_does_and_its_default(name):
    import argparse

    from raymix.commands.jobs import add_arguments, parser_options

    parser = argparse.ArgumentParser(**parser_options(registry.JOBS[name]))
    add_arguments(parser, registry.JOBS[name])
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = action.help or ""
        assert len(text) > 12 and ("(default: " in text or "(required)" in text), (action.option_strings, text)


def test_unknown_miamix_option(capsys, ray_starts, data):
    line = fails(capsys, ray_starts, ["train", "--input", data, "--miamix", "--miamix-options", '{"alhpa": 1}'])
    assert line.startswith("raymix train: --miamix-options: miamix has no option 'alhpa'; did you mean 'alpha'? ")
    assert "num_classes" not in line


def test_missing_chain_input(capsys, ray_starts, data, tmp_path):
    line = fails(capsys, ray_starts, ["train", "--input", data, "--chain", "augmix",
                                      "--chain-input", str(tmp_path / "nope")])
    assert line == f"raymix train: --chain-input {tmp_path / 'nope'}: no such file or folder; check the path"


def test_an_error_from_a_ray_task_is_its_own_line():
    from raymix.commands.checks import first_line

    class TaskError(Exception):
        """Shaped like Ray's RayTaskError: a header line, the original error as ``cause``."""

        cause = KeyError("label")

    assert first_line(TaskError("ray::MethodStage.__call__() (pid=1, ip=127.0.0.1)\nTraceback ...")) == "'label'"
    assert first_line(RuntimeError("")) == "RuntimeError"


def test_class_folders_without_files(capsys, ray_starts, tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    line = fails(capsys, ray_starts, ["mix", "--method", "augmix", "--input", str(tmp_path / "in"),
                                      "--output", str(tmp_path / "out")])
    assert line == (f"raymix mix: --input {tmp_path / 'in'}: no files in its class folders; point it at a folder "
                    "of class folders of images, or at parquet or tar shards")


def test_a_job_that_quarantined_every_row_exits_1(ray_cluster, capsys, tmp_path):
    """End to end on Ray: images that do not decode pass the checks (they are named as images),
    every row is quarantined, nothing is written: exit status 1 and one line saying so."""
    for name in ("a/1.jpg", "a/2.jpg", "b/3.png"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"not a JPEG at all")
    out = str(tmp_path / "out")
    assert main(["mix", "--method", "augmix", "--input", str(tmp_path / "in"), "--output", out,
                 "--image-size", "32", "--actors", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("wrote no images"))
    assert line.startswith("wrote no images: all 3 input rows were quarantined (")
    assert line.endswith(f"see {out}/__quarantine__ and check --input")


def test_as_a_process_the_mistake_is_the_only_output(tmp_path):
    """``python -m raymix.cli``: exit status 2, one line on stderr, nothing on stdout, no Ray."""
    import subprocess
    import sys

    probe = ("import sys\nfrom raymix.cli import main\ncode = main(sys.argv[1:])\n"
             "ray = sys.modules.get('ray')\nprint('RAY', bool(ray and ray.is_initialized()))\nsys.exit(code)\n")
    argv = ["mix", "--method", "augmix", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == "RAY False\n"
    assert done.stderr == f"raymix mix: --input {tmp_path / 'nope'}: no such file or folder; check the path\n"


def test_a_mistake_leaves_no_output_folder(capsys, ray_starts, data, tmp_path):
    fails(capsys, ray_starts, ["mix", "--method", "pixmix", "--input", data, "--output", str(tmp_path / "out"),
                               "--options", '{"preset": "tiny"}'])
    fails(capsys, ray_starts, ["train", "--input", data, "--num-classes", "5", "--storage", str(tmp_path / "runs")])
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_num_classes_smaller_than_the_labels_of_parquet_without_a_class_list(capsys, ray_starts, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "shards").mkdir()
    table = pa.table({"image": [b"x", b"y"], "label": pa.array([3, 41], pa.int64())})
    pq.write_table(table, tmp_path / "shards" / "train-00000.parquet")
    line = fails(capsys, ray_starts, ["train", "--input", str(tmp_path / "shards"), "--num-classes", "10"])
    assert line == (f"raymix train: --num-classes 10, but {tmp_path / 'shards'} has label 41; "
                    "pass --num-classes 42 or more")
