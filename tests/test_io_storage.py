import json
import os
import subprocess
import sys
import textwrap

import pytest

from raymix.io import storage
from raymix.io.readers import plan_read

ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "RAYMIX_STORAGE_OPTIONS")


@pytest.fixture
def clean_env(monkeypatch):
    for k in ENV_KEYS:
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_s3_options_come_from_the_aws_environment(clean_env):
    clean_env.setenv("AWS_ENDPOINT_URL", "http://generic:9000")
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert storage.storage_options_for("s3://b/k") == {
        "endpoint_url": "http://generic:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    clean_env.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000")
    clean_env.setenv("AWS_REGION", "auto")
    opts = storage.storage_options_for("s3://b/k")
    assert opts["endpoint_url"] == "http://minio:9000" and opts["client_kwargs"] == {"region_name": "auto"}
    assert storage.storage_options_for("/local/path") == {}


def test_options_json_and_arguments_override_the_environment(clean_env):
    clean_env.setenv("AWS_ENDPOINT_URL", "http://env:9000")
    clean_env.setenv("AWS_REGION", "us-east-1")
    clean_env.setenv("RAYMIX_STORAGE_OPTIONS", json.dumps({"endpoint_url": "http://json:9000", "anon": True}))
    opts = storage.storage_options_for("s3://b/k", {"client_kwargs": {"verify": False}})
    assert opts == {
        "endpoint_url": "http://json:9000",
        "anon": True,
        "client_kwargs": {"region_name": "us-east-1", "verify": False},
    }
    # Keyed by protocol: only the matching block applies.
    clean_env.setenv("RAYMIX_STORAGE_OPTIONS", json.dumps({"s3": {"key": "k"}, "memory": {"x": 1}}))
    assert storage.storage_options_for("s3://b/k")["key"] == "k"
    assert storage.storage_options_for("memory://x") == {"x": 1}
    clean_env.setenv("RAYMIX_STORAGE_OPTIONS", "[1]")
    with pytest.raises(ValueError, match="JSON object"):
        storage.storage_options_for("s3://b/k")


def test_filesystem_paths(tmp_path, clean_env):
    fs, path = storage.filesystem(f"file://{tmp_path}/x")
    assert storage.is_local(fs) and path == f"{tmp_path}/x"
    fs, path = storage.filesystem("relative/dir")
    assert path == os.path.abspath("relative/dir")
    fs, path = storage.filesystem("memory://bucket/prefix/")
    assert path.endswith("bucket/prefix") and storage.uri_of(fs, path).startswith("memory://")


def test_s3_filesystem_reaches_the_local_server(s3_bucket):
    fs, path = storage.filesystem(f"{s3_bucket}/dir/a.txt")
    storage.atomic_write(fs, path, b"hello")
    assert storage.read_text(fs, path) == "hello"
    assert fs.endpoint_url.startswith("http://127.0.0.1:")


def test_a_write_killed_before_commit_leaves_no_visible_file(tmp_path):
    """The process dies between writing the bytes and publishing them: readers see no
    file at all under the final name, and the hidden temporary is ignored."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from raymix.io import storage
        fs, root = storage.filesystem({str(tmp_path)!r})
        storage.atomic_write(fs, root + "/data/first.parquet", b"complete")
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        storage.atomic_write(fs, root + "/data/second.parquet", b"x" * 1_000_000)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -9
    visible = sorted(n for n in os.listdir(tmp_path / "data") if not n.startswith("."))
    hidden = [n for n in os.listdir(tmp_path / "data") if n.startswith(".")]
    assert visible == ["first.parquet"] and (tmp_path / "data" / "first.parquet").read_bytes() == b"complete"
    assert len(hidden) == 1 and hidden[0].startswith(".second.parquet.tmp-")
    plan = plan_read(str(tmp_path / "data"), layout="parquet")
    assert [s.path.rsplit("/", 1)[1] for s in plan.shards] == ["first.parquet"]
