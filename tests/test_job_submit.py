"""``ray job submit`` against a real two-node cluster started with ``ray start`` (token auth on).

The cluster's processes get no AWS settings: the S3 endpoint and credentials of the local
S3 server reach the job only through ``--runtime-env-json '{"env_vars": ...}'``, and the code
only through ``--working-dir``, as on a real cluster.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ray_cli_cluster import RayCliCluster

from raymix.cli import main as raymix_main
from raymix.io.storage import filesystem

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DIFFUSEMIX_JOB = "jobs/diffusemix_imagenet.py"
S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
          "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED")


@pytest.fixture(scope="module")
def cluster():
    cluster = RayCliCluster(worker_gpus=2)
    try:
        cluster.start()
        yield cluster
    finally:
        killed = cluster.stop()
        leftover = cluster.leftover_processes()
        cluster.cleanup()
    if killed:
        warnings.warn(f"killed by pid after their node stopped: {killed}", stacklevel=1)
    assert not leftover, f"processes left running: {leftover}"


def _s3_runtime_env(s3_server) -> dict:
    """What a user passes for an S3-compatible store that is not AWS (see docs/cluster.md)."""
    return {"env_vars": {k: os.environ[k] for k in S3_ENV}}


def test_job_server_refuses_requests_without_the_cluster_token(cluster):
    list_jobs = ("job", "list", f"--address={cluster.dashboard_url}")
    assert cluster.ray(*list_jobs).returncode == 0

    no_token = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    refused = cluster.ray(*list_jobs, env=no_token)
    assert refused.returncode != 0 and "Authentication required" in refused.stderr

    wrong_token = {**no_token, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    refused = cluster.ray(*list_jobs, env=wrong_token)
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr


def test_working_dir_and_env_vars_reach_every_node(cluster):
    probe = (
        "import os, ray, raymix\n"
        "ray.init()\n"
        "@ray.remote(num_gpus=1, resources={'gpu_node': 1})\n"
        "def on_gpu_node():\n"
        "    import raymix\n"
        "    return raymix.__file__, os.environ.get('RAYMIX_PROBE')\n"
        "print('driver', raymix.__file__)\n"
        "print('gpu_node', *ray.get(on_gpu_node.remote()))\n"
    )
    done = cluster.submit("python", "-c", probe, working_dir=REPO,
                          runtime_env_json={"env_vars": {"RAYMIX_PROBE": "reached"}})
    assert done.returncode == 0, done.stdout + done.stderr
    driver = re.search(r"^driver (\S+)$", done.stdout, re.M).group(1)
    gpu_file, value = re.search(r"^gpu_node (\S+) (\S+)$", done.stdout, re.M).groups()
    # The submitted copy wins over any raymix installed on the nodes.
    for path in (driver, gpu_file):
        assert "/runtime_resources/working_dir_files/" in path
    assert value == "reached"


def test_diffusemix_job_via_ray_job_submit(cluster, s3_bucket, s3_server):
    data, out = f"{s3_bucket}/imagenet-sample", f"{s3_bucket}/diffusemix"
    assert raymix_main(["sample", "--out", data, "--format", "parquet", "--classes", "2", "--per-class", "4",
                        "--size", "96x72", "--rows-per-shard", "4"]) == 0
    images, replicas, seed = 6, 2, 7
    submission = f"diffusemix-{uuid.uuid4().hex[:8]}"
    done = cluster.submit(
        "python", DIFFUSEMIX_JOB, "--input", data, "--output", out, "--limit", str(images),
        "--replicas", str(replicas), "--seed", str(seed), "--editor", "tiny", "--steps", "2", "--resolution", "64",
        "--json", working_dir=REPO, runtime_env_json=_s3_runtime_env(s3_server), submission_id=submission,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    status = cluster.ray("job", "status", f"--address={cluster.dashboard_url}", submission)
    assert status.returncode == 0 and "succeeded" in status.stdout.lower()
    logs = cluster.ray("job", "logs", f"--address={cluster.dashboard_url}", submission).stdout
    assert re.search(rf"^read\s+{images} rows", logs, re.M), logs[-3000:]
    assert re.search(rf"^written\s+{images * replicas} rows", logs, re.M), logs[-3000:]
    counts = json.loads([line for line in logs.splitlines() if line.startswith("{")][-1])
    assert (counts["rows_in"], counts["written"], counts["quarantined"]) == (images, images * replicas, 0)
    assert counts["reconciled"]

    fs, root = filesystem(out)
    files = sorted(p for p in fs.find(root) if p.endswith(".parquet") and "/_" not in p[len(root):])
    assert files
    rows = []
    for path in files:
        with fs.open(path, "rb") as f:
            rows += pq.read_table(f).to_pylist()
    assert len(rows) == images * replicas
    assert {r["method"] for r in rows} == {"diffusemix"}
    assert {r["seed"] for r in rows} == {seed}
    assert sorted(r["replica"] for r in rows) == sorted(list(range(replicas)) * images)
    assert len({r["source_key"] for r in rows}) == images
    assert all(r["key"] == f"{r['source_key']}/diffusemix/{r['replica']}" for r in rows)
    assert all("prompt" in json.loads(r["params"]) for r in rows)
    assert all(r["image"]["bytes"][:2] == b"\xff\xd8" for r in rows)
