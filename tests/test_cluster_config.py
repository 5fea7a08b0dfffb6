"""cluster.yaml and the documented variants validate against the schema Ray ships."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "cluster.yaml", *sorted((ROOT / "docs" / "cluster").glob("*.yaml"))]


@pytest.fixture(scope="module")
def schema():
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_matches_ray_schema(path, schema):
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, schema)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_node_types_are_consistent(path):
    config = yaml.safe_load(path.read_text())
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert config["provider"]["type"] == "aws"
    gpu = [t for t in types.values() if "gpu_node" in t["resources"]]
    cpu = [t for t in types.values() if "cpu_node" in t["resources"]]
    assert gpu and cpu, "a GPU worker type and a CPU worker type are both needed"
    # Ray's token authentication: every node starts with the same mode.
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_a100_variant_differs_only_in_the_gpu_instance():
    main = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    a100 = yaml.safe_load((ROOT / "docs" / "cluster" / "a100.yaml").read_text())
    assert a100["available_node_types"]["gpu_worker"]["node_config"].pop("InstanceType") == "p4d.24xlarge"
    del main["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"]
    assert a100 == main


@pytest.mark.parametrize("path", [p for p in CONFIGS if "docker" not in p.name], ids=lambda p: str(p.relative_to(ROOT)))
def test_setup_installs_a_python_raymix_supports(path):
    import re
    import tomllib

    from packaging.specifiers import SpecifierSet

    config = yaml.safe_load(path.read_text())
    wanted = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    versions = re.findall(r"--python (\d+\.\d+)", " ".join(config["setup_commands"]))
    assert versions and all(v in wanted for v in versions)


def test_schema_rejects_a_broken_config(schema):
    """Guards the test itself: a typo in a key must fail validation."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["head"]["node_confg"] = config["available_node_types"]["head"].pop("node_config")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


# -- runtime environments for `ray job submit` ------------------------------------------------

RUNTIME_ENVS = sorted((ROOT / "jobs").glob("runtime_env*.yaml"))
JOBS = sorted((ROOT / "jobs").glob("*.py"))


@pytest.mark.parametrize("path", RUNTIME_ENVS, ids=lambda p: p.name)
def test_runtime_env_is_valid_for_ray(path):
    from ray.runtime_env import RuntimeEnv

    config = yaml.safe_load(path.read_text())
    # RuntimeEnv accepts unknown top-level keys as plugin names: check the names ourselves.
    assert set(config) <= {"working_dir", "excludes", "env_vars", "pip"}
    RuntimeEnv(**config)
    assert config["working_dir"] == "."
    assert all(isinstance(v, str) for v in config["env_vars"].values())


@pytest.mark.parametrize("path", RUNTIME_ENVS, ids=lambda p: p.name)
def test_runtime_env_excludes_keep_local_state_off_the_cluster(path, tmp_path):
    """Package a repository-like tree with Ray's own packaging code, ignoring .gitignore."""
    from ray._private.runtime_env.packaging import create_package

    kept = ["raymix/__init__.py", "raymix/train/data.py", "jobs/diffusemix_imagenet.py", "docs/cluster.md"]
    dropped = [".venv/lib/site.py", "venv/bin/python", ".git/HEAD", "data/imagenet/x.jpg", "out/shard.parquet",
               "raymix/__pycache__/x.pyc", "raymix.egg-info/PKG-INFO", ".pytest_cache/v"]
    for rel in kept + dropped:
        (tmp_path / "repo" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "repo" / rel).write_text("x")
    excludes = yaml.safe_load(path.read_text())["excludes"]
    create_package(str(tmp_path / "repo"), tmp_path / "pkg.zip", include_gitignore=False, excludes=excludes)
    import zipfile

    names = {n for n in zipfile.ZipFile(tmp_path / "pkg.zip").namelist() if not n.endswith("/")}
    assert names == set(kept)


def test_pip_runtime_env_installs_the_project_dependencies_less_ray():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    config = yaml.safe_load((ROOT / "jobs" / "runtime_env_pip.yaml").read_text())
    assert sorted(config["pip"]["packages"]) == sorted(d for d in deps if not d.startswith("ray"))


@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.name)
def test_every_job_runs_as_ray_job_submit_starts_it_and_is_documented(job):
    """Under --working-dir the job starts in the uploaded copy with that copy on PYTHONPATH."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, f"jobs/{job.name}", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--input" in done.stdout and ("--output" in done.stdout or "--storage" in done.stdout)
    assert f"jobs/{job.name}" in (ROOT / "docs" / "cluster.md").read_text()
