"""An "image" method (PixMix, IPMix, LayerMix, AugMix) over a whole dataset, written as augmented shards.

    read shards ─► decode + centre-crop (CPU tasks) ─► method x replicas (CPU actor
    pool of MethodStage; fractal bank built once per actor) ─► encode (CPU tasks) ─► write shards

The methods are online augmentations: training usually applies them per epoch in the
data stage (``raymix.train``). This job writes fixed augmented copies instead, e.g. to
inspect them, to share them, or to train elsewhere.
"""

from __future__ import annotations

import ray

from raymix import registry
from raymix.pipeline import runtime, stages
from raymix.pipeline.output_settings import claim_output
from raymix.pipeline.specs import MixJob

__all__ = ["MixJob", "build", "stream", "run", "main"]


def build(job: MixJob, job_input: stages.JobInput) -> ray.data.Dataset:
    entry = registry.method(job.method)
    if entry.kind != "image":
        raise ValueError(f"{job.method} is a {entry.kind} method; this job runs {registry.method_names(kind='image')}")
    ds = stages.decode(job_input.dataset, job.image_size)
    fractals = {"fractals": job.fractals} if entry.fractals else {}  # AugMix draws none
    pool = job.actors or max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    ds = stages.mix(ds, {"method": entry, "options": {**fractals, **job.method_options}, "seed": job.seed,
                         "replicas": job.replicas}, actors=pool, batch_size=job.batch_size)
    return stages.encode(ds)


def stream(job: MixJob) -> ray.data.Dataset:
    """The augmented rows as a lazy Dataset, e.g. to feed :func:`raymix.train.fit`
    without writing shards (the draws are the same every time it is iterated)."""
    return build(job, stages.read_input(job, resume=False))


def run(job: MixJob) -> stages.JobResult:
    """Run the job on the connected Ray cluster; prints progress and the counts."""
    job = claim_output(job)
    job_input = stages.read_input(job)
    return stages.finish(build(job, job_input), job, job_input)


def main(job: MixJob) -> int:
    """``raymix mix`` and ``jobs/mix_imagenet.py``: run on Ray, exit status 0 when the counts reconcile."""
    return runtime.run_job(job, run)
