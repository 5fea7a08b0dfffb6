"""Shared fixtures: one local Ray instance and one local S3 server per test session.

Ray starts only when a test asks for ``ray_cluster``; pure-python tests never pay for it.
Four logical CPUs on a 2-core machine keep actor pools from starving read tasks, and two
fake GPUs let tests check GPU scheduling (``torch.cuda.is_available()`` stays False, so
models fall back to the CPU device).

``s3_server`` runs moto's S3 server on a free port of 127.0.0.1 and points the standard
AWS variables at it (endpoint, region, dummy credentials, no config files). ``ray_cluster``
depends on it so those variables are set before Ray starts and every Ray worker inherits
them; tests reach the server through s3fs exactly as users reach a real store.
"""

from __future__ import annotations

import itertools
import os

import pytest
from fault_proxy import fault_proxy  # noqa: F401  (fixture: a failing proxy in front of s3_server)

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_S3_UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "RAYMIX_STORAGE_OPTIONS")


@pytest.fixture(autouse=True)
def logging_outlives_capture():
    """Log handlers created during a test (a job run in-process configures the root logger;
    Ray configures its own on first import) write to that test's captured stream, which
    pytest has closed by now: point them at the process's real stderr instead, so records
    logged by later tests do not fail with "I/O operation on closed file"."""
    import logging
    import sys

    yield
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging._StderrHandler):
                continue  # (the last-resort handler's stream is always the current sys.stderr)
            if getattr(handler.stream, "closed", False):
                handler.stream = sys.__stderr__  # setStream would flush the closed one


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1; yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in (*_S3_ENV, *_S3_UNSET, "AWS_ENDPOINT_URL")}
    os.environ.update(_S3_ENV, AWS_ENDPOINT_URL=endpoint)
    for k in _S3_UNSET:
        os.environ.pop(k, None)
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_bucket_ids = itertools.count()


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the local S3 server; yields ``s3://NAME``."""
    from raymix.io.storage import filesystem

    name = f"raymix-{os.getpid()}-{next(_bucket_ids)}"
    fs, _ = filesystem(f"s3://{name}")
    # Plain CreateBucket: s3fs's mkdir sends a LocationConstraint, which us-east-1 rejects.
    fs.call_s3("create_bucket", Bucket=name)
    fs.invalidate_cache()
    yield f"s3://{name}"


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    import ray

    # Ray workers import the test helpers (e.g. toy_method) the way pytest's driver does.
    tests = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)

    ray.init(
        "local",
        num_cpus=4,
        num_gpus=2,
        include_dashboard=False,
        object_store_memory=512 * 2**20,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
