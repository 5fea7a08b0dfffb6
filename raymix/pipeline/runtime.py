"""Connecting to Ray the same way under ``ray job submit`` and on a laptop."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# Actor pools and read tasks compete for CPU slots; with fewer than this many logical CPUs a
# pipeline with a CPU actor pool can starve its own read tasks and stall.
MIN_LOCAL_CPUS = 4


def init_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
             object_store_memory: int | None = None):
    """Connect to a cluster, or start a private local Ray instance.

    - ``address`` given, or ``RAY_ADDRESS`` set (as it is under ``ray job submit``): connect.
    - otherwise: start a new local instance (never attach to some other process's instance
      by accident), with at least :data:`MIN_LOCAL_CPUS` logical CPUs.

    Returns the ``ray`` module. Does nothing if Ray is already initialised.
    """
    import ray

    from raymix.pipeline import console

    if ray.is_initialized():
        return ray
    # quiet (a console.session without --verbose): worker output stays in Ray's session logs
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING} if console.quiet() else {}
    if quiet:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        console.divert_ray_logging()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to Ray at %s", address)
        ray.init(address=address, **{"log_to_driver": True, **quiet})
        console.divert_ray_logging()
        return ray
    cpus = num_cpus or max(MIN_LOCAL_CPUS, os.cpu_count() or 1)
    ray.init("local", num_cpus=cpus, num_gpus=num_gpus, object_store_memory=object_store_memory,
             include_dashboard=False, **quiet)
    console.divert_ray_logging()
    return ray


def run_job(job, run) -> int:
    """The command-line run of an augmentation job: log, connect to Ray (``job.address``,
    else ``RAY_ADDRESS``, else local), ``run(job)`` (a ``JobResult``), print the counts as
    JSON with ``job.json``; exit status 0 only when the counts reconcile, some image was
    written (not every row quarantined) and no row is left for a rerun (``retryable``). The
    output folder's settings record is checked first, before Ray starts
    (:mod:`raymix.pipeline.output_settings`). Quiet unless ``job.verbose``: Ray's output goes
    to a log folder (:mod:`raymix.pipeline.console`)."""
    from raymix.pipeline import console
    from raymix.pipeline.output_settings import claim_output

    job = claim_output(job)  # before Ray starts: a folder of other settings is refused at once
    with console.session(verbose=job.verbose, json_out=job.json, log_dir=console.log_dir_for(job.output)):
        init_ray(job.address)
        result = run(job)
        if job.json:
            console.emit(result.to_dict())
        empty = result.nothing_written()
        if empty:
            print(empty, file=sys.stderr, flush=True)
        unfinished = result.unfinished()
        if unfinished:
            print(unfinished, file=sys.stderr, flush=True)
    return 0 if result.reconciled and not empty and not unfinished else 1
