"""AGA over a whole dataset: four models and a compositor streaming on Ray Data.

Rahat et al., "Data Augmentation for Image Classification using Generative AI" (AGA, 2024),
Fig. 2, for every image and each of ``m`` augmented copies (replicas)::

    read shards ─► decode + centre-crop (CPU tasks) ─► subject: GroundingDINO box + SAM mask
    (GPU actor pool, once per image) ─► replicate x m ─► draw caption combination (CPU tasks)
    ─► caption LLM (GPU actor pool | ray.data.llm vLLM | ray.data.llm HTTP | none) ─► check
    the caption (CPU tasks) ─► background: Stable Diffusion XL (GPU actor pool) ─► composite:
    affine subject pasted on the background (CPU actor pool) ─► encode (CPU tasks) ─► write
    shards + quarantine

Each model stage is its own actor pool with its own GPU fraction and size (``--subject-gpus``,
``--llm-gpus``, ``--background-gpus``, ``--*-actors``), so the models can share one GPU or
each have their own. Ray Data streams: each pool takes a bounded number of batches at a time
and its queue is bounded by the object-store budget of the streaming executor, so the slowest
pool (SDXL, by far) sets the pace and the others wait instead of piling up rows (docs/aga.md,
"Job"). All draws and noise come from generators seeded by ``(seed, source key, replica)``: the
output does not depend on the cluster's size.

An image whose subject cannot be isolated (no box, an empty or full mask, as
``--on-no-box`` / ``--on-bad-mask`` say) is quarantined with ``stage="segment"``; a rerun
into the same output writes only what is missing.
"""

from __future__ import annotations

import logging

import ray

from raymix.methods.aga_captions import CaptionEngine, avoid_words
from raymix.pipeline import runtime, stages
from raymix.pipeline.aga_rows import choose_captions, draw_captions, read_caption_sets, subject_params
from raymix.pipeline.aga_stages import BackgroundStage, CaptionLLMStage, SubjectStage
from raymix.pipeline.output_settings import claim_output
from raymix.pipeline.specs import NO_LLM, AGAJob

__all__ = ["AGAJob", "caption_engine", "build", "stream", "run", "main"]

log = logging.getLogger(__name__)

METHOD = "aga"


def _tiny(*models: str) -> bool:
    """Tiny random-weight builds (``tiny``, ``tiny-sd15``, ...): they run on a CPU when the cluster has no GPU."""
    return all(model.startswith("tiny") for model in models)


def _superclass_table(job: AGAJob) -> dict[str, str]:
    from raymix.models.superclasses import load_superclasses

    return dict(load_superclasses(job.superclasses, job.storage_options))


def caption_engine(job: AGAJob, plan, table: dict[str, str]) -> CaptionEngine:
    """The caption engine of a run: the job's sets, and the words to avoid of its dataset (the
    class names, their descriptions' synonyms and their superclasses)."""
    from raymix.models.superclasses import superclass_for

    classes = list(plan.classes or [])
    supers = [superclass_for(c, table) for c in classes]
    sets = read_caption_sets(job.instructions, job.backgrounds, job.temporal, storage_options=job.storage_options)
    return CaptionEngine(sets, avoid_words(classes, plan.descriptions or [], supers))


def _pool(ds, stage, kwargs: dict, *, batch_size: int, gpus: float, actors: int | None, models: tuple[str, ...],
          what: str):
    # Each model actor reserves half a CPU slot (on a GPU node beside its GPU share; on a CPU-only
    # machine, for a tiny model), so that with the compositing actor the three pools leave slots
    # for the read, decode and encode tasks (4 slots locally).
    resources, pool = stages.actor_resources(gpus, actors, cpu_fallback=_tiny(*models), what=what, cpus=0.5)
    return ds.map_batches(stage, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="numpy",
                          compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool), **resources)


def _llm_stage(ds, job: AGAJob):
    """The caption LLM over the rows' ``caption_prompt`` -> ``caption_raw``."""
    if job.llm_engine == "transformers":
        return _pool(ds, CaptionLLMStage, {**job.llm.kwargs(), "seed": job.seed,
                                           "storage_options": job.storage_options},
                     batch_size=job.llm_batch_size, gpus=job.llm_gpus, actors=job.llm_actors, models=(job.llm.model,),
                     what="caption LLM")
    from raymix.pipeline.aga_llm import ray_llm_processor

    return ray_llm_processor(job)(ds)


def build(job: AGAJob, job_input: stages.JobInput) -> ray.data.Dataset:
    """The stages after the read, as one lazy Dataset."""
    plan = job_input.plan
    table = _superclass_table(job)
    engine = caption_engine(job, plan, table)
    descriptions = dict(zip(plan.classes or [], plan.descriptions or []))

    ds = stages.decode(job_input.dataset, job.image_size)
    ds = _pool(ds, SubjectStage, {**job.subject.kwargs(), "superclasses": table, "seed": job.seed,
                                  "storage_options": job.storage_options},
               batch_size=job.subject_batch_size, gpus=job.subject_gpus, actors=job.subject_actors,
               models=(job.subject.detector, job.subject.segmenter), what="subject isolation")
    ds = ds.map_batches(subject_params, batch_format="numpy", batch_size=stages.CPU_BATCH)
    ds = stages.replicate(ds, job.replicas, METHOD)
    ds = ds.map_batches(draw_captions, fn_kwargs={"engine": engine, "seed": job.seed, "descriptions": descriptions},
                        batch_format="numpy", batch_size=stages.CPU_BATCH)
    if job.llm.model != NO_LLM:
        ds = _llm_stage(ds, job)
        ds = ds.map_batches(choose_captions, fn_kwargs={"engine": engine}, batch_format="numpy",
                            batch_size=stages.CPU_BATCH)
    ds = _pool(ds, BackgroundStage, {**job.background.kwargs(), "seed": job.seed,
                                     "storage_options": job.storage_options},
               batch_size=job.background_batch_size, gpus=job.background_gpus, actors=job.background_actors,
               models=(job.background.model,), what="background generation")
    ds = stages.mix(ds, {"method": METHOD, "options": job.composite_options(), "seed": job.seed},
                    actors=job.composite_actors)
    return stages.encode(ds)


def stream(job: AGAJob) -> ray.data.Dataset:
    """The augmented rows as a lazy Dataset (JPEG ``image``, ``label``, provenance), e.g. to feed
    :func:`raymix.train.fit` without writing shards. Ray re-executes it every time it is iterated:
    chain only small runs this way."""
    return build(job, stages.read_input(job, resume=False))


def run(job: AGAJob) -> stages.JobResult:
    """Run the job end to end on the connected Ray cluster; prints progress and the counts."""
    job = claim_output(job)
    job_input = stages.read_input(job)
    return stages.finish(build(job, job_input), job, job_input)


def main(job: AGAJob) -> int:
    """``raymix aga`` and ``jobs/aga_imagenet.py``: run on Ray, exit status 0 when the counts reconcile."""
    return runtime.run_job(job, run)

