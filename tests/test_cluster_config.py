"""cluster.yaml and the documented variants validate against the schema Ray ships."""

from __future__ import annotations

import json
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


def test_schema_rejects_a_broken_config(schema):
    """Guards the test itself: a typo in a key must fail validation."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["head"]["node_confg"] = config["available_node_types"]["head"].pop("node_config")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)
