"""The `raymix` command line: jobs from the registry, flags from their settings dataclasses."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from raymix import registry
from raymix.cli import SUBCOMMANDS, build_parser, main
from raymix.models.editor_options import EditorOptions
from raymix.settings import settings_of

ROOT = Path(__file__).resolve().parents[1]
captured = []


def _capture(job) -> int:
    """Stands in for a job's run: keeps the settings it was given."""
    captured.append(job)
    return 0


@pytest.fixture
def run_job(monkeypatch):
    """``raymix NAME ARGV...`` with every job's run replaced by :func:`_capture` and its checks
    (made-up paths) skipped; returns its settings."""
    from raymix.commands import checks

    for name, entry in registry.JOBS.items():
        monkeypatch.setitem(registry.JOBS, name, dataclasses.replace(entry, run=f"{__name__}:_capture"))
    monkeypatch.setattr(checks, "validate", lambda job, given: [])

    def run(*argv: str):
        captured.clear()
        assert main(list(argv)) == 0
        return captured.pop()

    return run


def flat_help(*argv: str) -> str:
    out = subprocess.run([sys.executable, "-m", "raymix.cli", *argv, "--help"], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return " ".join(out.stdout.split())


def test_every_subcommand_and_job_is_listed():
    help_text = build_parser().format_help()
    assert registry.JOBS.keys() == {"mix", "diffusemix", "aga", "train", "eval"}
    for name in (*registry.JOBS, *SUBCOMMANDS):
        assert name in help_text
    for entry in registry.JOBS.values():
        assert entry.help in " ".join(help_text.split())
        assert (ROOT / entry.script).is_file()


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "raymix.cli", "--help"], capture_output=True, text=True, check=True)
    assert "raymix" in out.stdout


@pytest.mark.parametrize("argv", [[], *([name] for name in registry.JOBS), ["bench", "gpu"]], ids=str)
def test_help_imports_no_torch_or_ray(argv):
    probe = ("import sys\nfrom raymix.cli import main\ntry:\n    main(sys.argv[1:] + ['--help'])\n"
             "except SystemExit:\n    pass\nheavy = sorted(m for m in ('torch', 'ray', 'diffusers', 'pyarrow') "
             "if m in sys.modules)\nprint('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_every_job_flag_has_help_and_shows_its_default():
    for entry in registry.JOBS.values():
        text = flat_help(entry.name)
        for setting in settings_of(entry.load_settings()).values():
            assert setting.help and setting.flag in text
        assert "--config FILE" in text
    train = flat_help("train")
    for flag, default in [("--epochs N", "90"), ("--lr X", "0.1"), ("--batch-size N", "256"),
                          ("--image-size N", "224"), ("--workers N", "1")]:
        assert flag in train and shown_default(train, flag) == default
    assert shown_default(train, "--crop {random_resized,pad,none}") == "random_resized"
    assert shown_default(flat_help("diffusemix"), "--steps N") == "the preset's: paper 100, fast 20"


def shown_default(help_text: str, flag: str) -> str:
    """The default a flag's help shows: ``--flag METAVAR help text (default: X)``."""
    after = help_text.split(f" {flag} ", 2)[-1]  # the second mention: the usage line has the first
    return after.split("(default: ", 1)[1].split(")", 1)[0]


def test_readme_flags_reach_the_diffusemix_settings(run_job):
    job = run_job("diffusemix", "--input", "data/sample", "--output", "out", "--editor", "tiny", "--steps", "2",
                  "--resolution", "64", "--replicas", "2")
    assert (job.input, job.output, job.replicas) == ("data/sample", "out", 2)
    assert (job.editor.model, job.editor.steps, job.editor.resolution) == ("tiny", 2, 64)


def test_nested_editor_options_by_file_and_flags_override_it(run_job, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("input: s3://bucket/train\noutput: s3://bucket/out\nsteps: 20\ncompile: max-autotune\n"
                      "vae_batch: 8\nreplicas: 3\n")
    job = run_job("diffusemix", "--config", str(config), "--steps", "10", "--no-fuse-qkv")
    assert (job.editor.steps, job.editor.compile, job.editor.vae_batch, job.editor.fuse_qkv) == (10, "max-autotune", 8,
                                                                                                 False)
    assert (job.input, job.replicas) == ("s3://bucket/train", 3)
    config.with_suffix(".json").write_text(json.dumps({"method": "ipmix", "input": "a", "output": "b",
                                                       "options": {"preset": "cifar"}}))
    job = run_job("mix", "--config", str(config.with_suffix(".json")), "--image-size", "64")
    assert (job.method, job.method_options, job.image_size) == ("ipmix", {"preset": "cifar"}, 64)


def test_unknown_flags_and_keys_error_clearly(run_job, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["diffusemix", "--input", "a", "--output", "b", "--stepz", "3"])
    assert err.value.code == 2
    assert "raymix diffusemix: error: unrecognized arguments: --stepz (did you mean --steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no abbreviations: a typo is not silently another flag
        main(["diffusemix", "--input", "a", "--output", "b", "--step", "3"])
    assert "unrecognized arguments: --step " in capsys.readouterr().err
    (tmp_path / "job.yaml").write_text("input: a\noutput: b\neditor: {steps: 3}\n")
    with pytest.raises(SystemExit):
        main(["diffusemix", "--config", str(tmp_path / "job.yaml")])
    assert "editor must be a string" in capsys.readouterr().err
    (tmp_path / "job.yaml").write_text("input: a\noutput: b\nguidance: 3\n")
    with pytest.raises(SystemExit):
        main(["diffusemix", "--config", str(tmp_path / "job.yaml")])
    assert "unknown setting 'guidance' in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["mix", "--input", "a"])
    assert "missing required settings: --output, --method" in capsys.readouterr().err


def test_method_choices_come_from_the_registry():
    from raymix.pipeline.specs import MixJob
    from raymix.train.job import TrainJob, chain_methods

    assert settings_of(MixJob)["method"].choices == ("pixmix", "ipmix", "layermix", "augmix")
    assert settings_of(TrainJob)["online"].choices == ("pixmix", "ipmix", "layermix", "augmix")
    assert set(chain_methods()) == {"diffusemix", "aga", "pixmix", "ipmix", "layermix", "augmix"}
    assert settings_of(TrainJob)["chain"].choices == chain_methods()


def test_train_recipe_sits_under_flags_and_file(run_job, tmp_path):
    job = run_job("train", "--input", "a@2", "--input", "b", "--recipe", "layermix-cifar", "--epochs", "3",
                  "--miamix", "--gpu")
    assert (job.config.arch, job.config.crop, job.config.epochs, job.config.miamix, job.gpu) == ("wrn40_4", "pad", 3,
                                                                                                 True, True)
    (tmp_path / "run.yaml").write_text("input: [a, b]\nratio: '1:1'\nrecipe: miamix-tinyimagenet\nlr: 0.05\n")
    job = run_job("train", "--config", str(tmp_path / "run.yaml"), "--batch-size", "8")
    assert (job.input, job.config.lr, job.config.batch_size, job.config.epochs) == (["a", "b"], 0.05, 8, 400)


def test_chain_options_use_the_chained_jobs_flag_names():
    from raymix.pipeline.specs import DiffuseMixJob
    from raymix.settings import build

    job = build(DiffuseMixJob, {"input": "a", "editor": "tiny", "steps": 1, "resolution": 32, "edit_batch_size": 4})
    assert job.editor == EditorOptions(model="tiny", steps=1, resolution=32, model_batch=4)


def test_the_diffusemix_job_takes_every_editor_option_bench_gpu_uses():
    """bench gpu's editor flags are EditorOptions' (less what it sweeps itself); the job has all of them."""
    import argparse

    from raymix.bench import gpu
    from raymix.models.editor import InstructPix2PixEditor
    from raymix.pipeline.specs import DiffuseMixJob

    parser = argparse.ArgumentParser()
    gpu.add_arguments(parser)
    bench_editor = {s.path for s in parser.get_default("_editor_flags").settings.values()}
    job_editor = {s.path[1:] for s in settings_of(DiffuseMixJob).values() if s.path[0] == "editor"}
    assert bench_editor == job_editor - {(name,) for name in ("resolution", "model_batch", "prompt_file")}
    assert {("compile",), ("fuse_qkv",), ("channels_last",), ("vae_batch",), ("compile_vae",), ("dtype",),
            ("steps",)} <= bench_editor
    # ... and every option is a keyword of the editor, so the job passes them all through.
    editor_keywords = set(inspect.signature(InstructPix2PixEditor).parameters)
    assert {f.name for f in dataclasses.fields(EditorOptions)} <= editor_keywords


def test_job_scripts_are_the_same_command(tmp_path):
    out = subprocess.run([sys.executable, "jobs/diffusemix_imagenet.py", "--input", "a", "--output", "b",
                          "--bogus"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "python jobs/diffusemix_imagenet.py: error: unrecognized" in out.stderr
    assert flat_help("diffusemix").split("--config FILE", 1)[1].split("editing (")[1] in " ".join(
        subprocess.run([sys.executable, "jobs/diffusemix_imagenet.py", "--help"], capture_output=True, text=True,
                       cwd=ROOT, check=True).stdout.split())


def test_version_prints_the_package_version():
    import raymix

    out = subprocess.run([sys.executable, "-m", "raymix.cli", "--version"], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == f"raymix {raymix.__version__}"
