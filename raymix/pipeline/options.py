"""Command-line flags shared by the jobs in ``jobs/``."""

from __future__ import annotations

import argparse
import json
import logging
import os

from raymix.schema import DEFAULT_ROWS_PER_FILE


def add_common_arguments(parser: argparse.ArgumentParser, *, replicas: int = 1) -> None:
    """``--input --output --replicas --seed --limit --format --address --storage-options``."""
    io = parser.add_argument_group("data")
    io.add_argument("--input", required=True, help="dataset URI: class-folder tree, parquet shards or WebDataset tars "
                    "(local path, file://, s3://, ...)")
    io.add_argument("--output", required=True, help="where to write augmented shards (and _quarantine/)")
    io.add_argument("--format", choices=("parquet", "webdataset"), default="parquet", help="output format")
    io.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE,
                    help="rows per output file, at least (default %(default)s; fewer for large images)")
    io.add_argument("--replicas", type=int, default=replicas, help="augmented images per input image (default %(default)s)")
    io.add_argument("--seed", type=int, default=0, help="run seed: same seed, same bytes (default %(default)s)")
    io.add_argument("--limit", type=int, default=None, help="process at most N input images")
    io.add_argument("--storage-options", type=json.loads, default=None, metavar="JSON",
                    help="fsspec options for object storage, e.g. '{\"endpoint_url\": \"http://minio:9000\"}' "
                    "(default: from the AWS_* environment or RAYMIX_STORAGE_OPTIONS)")
    io.add_argument("--json", action="store_true", help="print the final counts as one JSON line too")
    ray_group = parser.add_argument_group("ray")
    ray_group.add_argument("--address", default=None,
                           help="Ray cluster address (default: RAY_ADDRESS, as set by `ray job submit`; "
                           "else a local Ray instance)")


#: JobSpec fields set by the flags of add_common_arguments.
COMMON_FIELDS = ("input", "output", "replicas", "seed", "limit", "format", "rows_per_file", "storage_options")


def common_fields(args: argparse.Namespace) -> dict:
    """The ``JobSpec`` settings given by :func:`add_common_arguments`' flags."""
    return {name: getattr(args, name) for name in COMMON_FIELDS}


def run_job(args: argparse.Namespace, run) -> int:
    """Log, connect to Ray (``--address`` / ``RAY_ADDRESS`` / local), run ``run()`` (a
    job returning a ``JobResult``) and exit 0 only when the counts reconcile."""
    from raymix.pipeline.runtime import init_ray

    logging.basicConfig(level=os.environ.get("RAYMIX_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    init_ray(args.address)
    result = run()
    if args.json:
        print(json.dumps(result.to_dict()))
    return 0 if result.reconciled else 1
