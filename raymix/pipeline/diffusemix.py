"""DiffuseMix over a whole dataset: Ray Data streaming from storage to storage.

Islam et al., "DiffuseMix", CVPR 2024, Algorithm 1, for every image and each of ``m``
augmented copies (replicas)::

    read shards ─► decode + resize (CPU tasks) ─► replicate x m ─► edit: InstructPix2Pix
    (GPU actor pool) ─► mix: half mask + fractal blend (CPU actor pool) ─► encode (CPU
    tasks) ─► write shards + quarantine

Nothing is materialised: rows stream through the stages, so a job over ImageNet holds a
few batches per stage in memory. The prompt of each replica, its mask and fractal and all
noise come from generators seeded by ``(seed, source key, replica)``, so the output does
not depend on how many GPUs or actors run it.
"""

from __future__ import annotations

import ray

from raymix.models.editor import edit_settings
from raymix.pipeline import runtime, stages
from raymix.pipeline.edit_stage import EditStage
from raymix.pipeline.output_settings import claim_output
from raymix.pipeline.specs import DiffuseMixJob

__all__ = ["DiffuseMixJob", "edit_resources", "build", "stream", "run", "main"]

METHOD = "diffusemix"


def edit_resources(job: DiffuseMixJob) -> tuple[dict, int | None]:
    """Ray resources of one editing actor and the largest pool (``--edit-actors``, else
    the GPUs the cluster has now / ``gpus_per_actor``); the tiny editor runs on CPU where the
    cluster has no GPU (:func:`raymix.pipeline.stages.actor_resources`)."""
    return stages.actor_resources(job.gpus_per_actor, job.edit_actors, cpu_fallback=job.editor.model == "tiny",
                                  what="editing")


def build(job: DiffuseMixJob, job_input: stages.JobInput) -> ray.data.Dataset:
    """The stages after the read, as one lazy Dataset."""
    editor = job.editor
    resolution = edit_settings(editor.preset, resolution=editor.resolution).resolution
    ds = stages.decode(job_input.dataset, resolution)
    ds = stages.replicate(ds, job.replicas, METHOD)

    resources, pool = edit_resources(job)
    ds = ds.map_batches(
        EditStage,
        fn_constructor_kwargs={**editor.editor_kwargs(), "seed": job.seed, "storage_options": job.storage_options},
        batch_size=editor.model_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool),
        **resources,
    )
    masks = {"masks": ("left", "top"), "seam": 20} if job.public_code_masks else {}
    ds = stages.mix(ds, {"method": METHOD, "options": {"fractals": job.fractals, "lam": job.lam, **masks},
                         "seed": job.seed, "keep_intermediates": job.keep_intermediates}, actors=job.mix_actors)
    return stages.encode(ds)


def stream(job: DiffuseMixJob) -> ray.data.Dataset:
    """The augmented rows as a lazy Dataset (JPEG ``image``, ``label``, provenance), e.g. to
    feed :func:`raymix.train.fit` without writing shards. Ray re-executes it every time it
    is iterated, so each training epoch edits again: chain only small runs this way."""
    return build(job, stages.read_input(job, resume=False))


def run(job: DiffuseMixJob) -> stages.JobResult:
    """Run the job end to end on the connected Ray cluster; prints progress and the counts."""
    job = claim_output(job)
    job_input = stages.read_input(job)
    extra = ("generated", "hybrid") if job.keep_intermediates else ()
    return stages.finish(build(job, job_input), job, job_input, extra_images=extra)


def main(job: DiffuseMixJob) -> int:
    """``raymix diffusemix`` and ``jobs/diffusemix_imagenet.py``: run on Ray, exit status 0
    when the counts reconcile."""
    return runtime.run_job(job, run)
