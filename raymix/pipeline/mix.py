"""An "image" method (PixMix, IPMix, LayerMix, AugMix) over a whole dataset, written as augmented shards.

    read shards ─► decode + centre-crop (CPU tasks) ─► method x replicas (CPU actor
    pool of MethodStage; fractal bank built once per actor) ─► encode (CPU tasks) ─► write shards

The methods are online augmentations: training usually applies them per epoch in the
data stage (``raymix.train``). This job writes fixed augmented copies instead, e.g. to
inspect them, to share them, or to train elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ray

from raymix import registry
from raymix.pipeline import stages
from raymix.pipeline.rows import MethodStage

#: The registry's "image" methods (DiffuseMix, a "pair" method, needs an edit first: its own job).
MIX_METHODS = registry.method_names(kind="image")


@dataclass(kw_only=True)
class MixJob(stages.JobSpec):
    """Settings of one run; method defaults are the papers' (``docs/methods.md``)."""

    method: str
    size: int = 224
    fractals: str | None = None
    method_options: dict = field(default_factory=dict)
    actors: int | None = None
    batch_size: int = 32


def build(job: MixJob, job_input: stages.JobInput) -> ray.data.Dataset:
    if job.method not in MIX_METHODS:
        raise ValueError(f"method must be one of {MIX_METHODS}, got {job.method!r}")
    ds = stages.decode(job_input.dataset, job.size)
    pool = job.actors or max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    options = {"fractals": job.fractals} if registry.method(job.method).fractals else {}
    ds = ds.map_batches(
        MethodStage,
        fn_constructor_kwargs={"method": job.method, "options": {**options, **job.method_options},
                               "seed": job.seed, "replicas": job.replicas},
        batch_size=job.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool),
        num_cpus=1,
    )
    return stages.encode(ds)


def stream(job: MixJob) -> ray.data.Dataset:
    """The augmented rows as a lazy Dataset, e.g. to feed :func:`raymix.train.fit`
    without writing shards (the draws are the same every time it is iterated)."""
    return build(job, stages.read_input(job, resume=False))


def run(job: MixJob) -> stages.JobResult:
    """Run the job on the connected Ray cluster; prints progress and the counts."""
    job_input = stages.read_input(job)
    return stages.finish(build(job, job_input), job, job_input)
