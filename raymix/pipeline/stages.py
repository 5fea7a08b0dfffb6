"""Pieces every offline augmentation job shares: read, decode, replicate, write, report.

A job is ``read_input -> decode -> [its own stages] -> encode -> finish``; each piece is
a plain function of a Ray Dataset or a numpy batch, so a job module reads as a list of
stages.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import ray

from raymix import schema
from raymix.io.decode import JPEG_QUALITY, decode_batch, encode_batch
from raymix.io.readers import ReadPlan, plan_read
from raymix.io.retry import DEFAULT_POLICY
from raymix.io.writers import QUARANTINE_DIR, RETRYABLE, WriteSummary, completed_sources, forget_retryable
from raymix.pipeline.datasink import write_dataset
from raymix.pipeline.console import Progress
from raymix.pipeline.datasource import read_dataset
from raymix.pipeline.rows import MethodStage, expand_replicas
from raymix.pipeline.specs import JobSpec

log = logging.getLogger(__name__)

#: Rows per batch for the cheap CPU stages (decode, replicate, encode).
CPU_BATCH = 32


@ray.remote(num_cpus=0)
class RowCounter:
    """Counts the distinct rows that leave the read stage, so a job can reconcile its
    output against what it read for layouts whose size is unknown before reading
    (parquet, tars).

    A row is ``(source, key)``, kept as an 8-byte hash. Ray runs a batch again when the
    actor or task holding it dies (the counting stage is fused into the next one, e.g.
    the mixing actors); the batch's rows are then seen twice but counted once. Memory:
    8 bytes per row (10 MB for ImageNet's 1.28 M), merged as they come.
    """

    _MERGE_EVERY = 1 << 20

    def __init__(self) -> None:
        self.seen = np.zeros(0, np.uint64)
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0

    def add(self, hashes: np.ndarray) -> None:
        self.pending.append(np.asarray(hashes, np.uint64))
        self.pending_rows += len(hashes)
        if self.pending_rows >= self._MERGE_EVERY:
            self._merge()

    def _merge(self) -> None:
        if self.pending:
            self.seen = np.unique(np.concatenate([self.seen, *self.pending]))
            self.pending, self.pending_rows = [], 0

    def total(self) -> int:
        self._merge()
        return int(len(self.seen))


def row_hashes(batch: dict) -> np.ndarray:
    """An 8-byte hash of ``(source, key)`` per row of a read batch."""
    keys = batch[schema.KEY]
    sources = batch.get(schema.SOURCE)
    if sources is None:
        sources = [""] * len(keys)
    out = np.empty(len(keys), np.uint64)
    for i, (source, key) in enumerate(zip(sources, keys)):
        digest = hashlib.blake2b(f"{source}\0{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little")
    return out


def count_rows(batch: dict, *, counter) -> dict:
    ray.get(counter.add.remote(row_hashes(batch)))  # waited on: counted before the batch moves on
    return batch


@dataclass
class JobInput:
    """The Dataset of rows to process, and what is known about it."""

    dataset: ray.data.Dataset
    plan: ReadPlan
    counter: object
    skipped: int = 0  # sources already finished by an earlier run
    started: float = field(default_factory=time.perf_counter)

    def rows_in(self) -> int:
        return int(ray.get(self.counter.total.remote()))


def read_input(job: JobSpec, *, resume: bool = True) -> JobInput:
    """Plan the read of ``job.input`` and open it as a Dataset. With ``resume``, leave out
    the sources a previous run already finished under ``job.output`` (so a rerun resumes;
    rows a storage error kept from being read, quarantined as ``retryable``, are not
    finished: their records are dropped and they are read again); without, every row is
    read (the rows stream on instead of being written)."""
    plan = plan_read(job.input, storage_options=job.storage_options)
    done = set()
    if resume:
        retried = forget_retryable(job.output, storage_options=job.storage_options)
        if retried:
            print(f"retrying: {retried} input rows that storage errors kept from being read", flush=True)
        done = completed_sources(job.output, job.replicas, format=job.format, storage_options=job.storage_options)
    if done:
        print(f"resuming: {len(done)} input rows already finished in {job.output}", flush=True)
    counter = RowCounter.remote()
    ds = read_dataset(plan, limit=job.limit, skip_keys=done or None)
    ds = ds.map_batches(count_rows, fn_kwargs={"counter": counter}, batch_format="numpy", batch_size=None)
    return JobInput(ds, plan, counter, skipped=len(done))


def actor_resources(gpus_per_actor: float, max_actors: int | None, *, cpu_fallback: bool, what: str,
                    cpus: float = 1.0) -> tuple[dict, int | None]:
    """Ray resources of one model actor and the largest pool (``max_actors``, else the GPUs the
    cluster has now / ``gpus_per_actor``).

    With no GPU in the cluster, a model that can run on a CPU (``cpu_fallback``: the tiny
    random-weight builds) gets ``cpus`` per actor: what a laptop needs. A GPU actor reserves
    ``cpus`` too (Ray Data's default would be one). A real model on a cluster
    with no GPU node *yet* (autoscaling from zero) gets an unbounded pool that grows as GPU
    nodes join, unless ``max_actors`` caps it.
    """
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if gpus_per_actor > 0 and (cluster_gpus > 0 or not cpu_fallback):
        gpu = {"num_gpus": gpus_per_actor, "num_cpus": cpus}
        if cluster_gpus == 0:
            log.warning("no GPU in the cluster yet; %s actors wait for GPU nodes to join", what)
            return gpu, max_actors
        return gpu, max_actors or max(1, int(cluster_gpus // gpus_per_actor))
    log.info("%s on CPU", what)
    return {"num_cpus": cpus}, max_actors or 1


def decode(ds: ray.data.Dataset, size: int) -> ray.data.Dataset:
    """Encoded bytes -> ``uint8 (N, size, size, 3)``; bad rows carry a reason (CPU tasks)."""
    return ds.map_batches(decode_batch, fn_kwargs={"size": size}, batch_format="numpy", batch_size=CPU_BATCH)


def replicate(ds: ray.data.Dataset, replicas: int, method: str) -> ray.data.Dataset:
    """:func:`raymix.pipeline.rows.expand_replicas` as CPU tasks (before a pair method's model stage)."""
    return ds.map_batches(expand_replicas, fn_kwargs={"replicas": replicas, "method": method},
                          batch_format="numpy", batch_size=CPU_BATCH)


def mix(ds: ray.data.Dataset, stage_kwargs: dict, *, actors: int, batch_size: int = CPU_BATCH) -> ray.data.Dataset:
    """:class:`raymix.pipeline.rows.MethodStage` (``stage_kwargs``: its constructor's) as a CPU actor
    pool of at most ``actors`` (one CPU each)."""
    return ds.map_batches(MethodStage, fn_constructor_kwargs=stage_kwargs, batch_size=batch_size,
                          batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)),
                          num_cpus=1)


def encode(ds: ray.data.Dataset, quality: int = JPEG_QUALITY) -> ray.data.Dataset:
    """``uint8`` images -> JPEG bytes before the write (CPU tasks; smaller objects in flight)."""
    return ds.map_batches(encode_batch, fn_kwargs={"quality": quality}, batch_format="numpy", batch_size=CPU_BATCH)


@dataclass
class JobResult:
    """What a job did: the write summary, the rows it read, and how long it took."""

    summary: WriteSummary
    rows_in: int
    replicas: int
    seconds: float
    skipped: int = 0

    @property
    def reconciled(self) -> bool:
        return self.summary.reconcile(self.rows_in, self.replicas)

    @property
    def retryable(self) -> int:
        """Rows a storage error kept from being read (quarantined as ``retryable``): the
        job is not finished until a rerun has read them."""
        return int(self.summary.reasons.get(RETRYABLE, 0))

    def unfinished(self) -> str | None:
        """Why a rerun is needed (rows left ``retryable``); ``None`` when none is."""
        if not self.retryable:
            return None
        return (f"not finished: {self.retryable} input rows could not be read because of storage errors that "
                f"outlasted the retries (quarantined as {RETRYABLE}); run the same command again to read them")

    def nothing_written(self) -> str | None:
        """Why the job wrote no image although it read rows (every row quarantined); ``None``
        when it wrote some, or when an earlier run already did."""
        s = self.summary
        if s.written or s.already_written or not s.quarantined or set(s.reasons) == {RETRYABLE}:
            return None  # (all retryable: unfinished() says what to do)
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(s.reasons.items()))
        return (f"wrote no images: all {self.rows_in} input rows were quarantined ({reasons}); "
                f"see {posixpath.join(s.output_uri, QUARANTINE_DIR)} and check --input")

    def report(self) -> str:
        s = self.summary
        rate = s.written / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"read         {self.rows_in} rows" + (f" ({self.skipped} finished earlier, skipped)" if self.skipped else ""),
            s.report(self.rows_in, self.replicas),
            f"throughput   {rate:.2f} images/s written ({self.seconds:.1f} s)",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**self.summary.to_dict(), "rows_in": self.rows_in, "replicas": self.replicas,
                "seconds": self.seconds, "skipped": self.skipped, "reconciled": self.reconciled}


#: The run record beside a job's output: a hidden folder, so neither ``datasets.load_dataset(OUT)``
#: (which skips ``.`` and ``__`` folders) nor the parquet/WebDataset readers take it for data.
RUN_RECORD = ".raymix/summary.json"


def run_record(job: JobSpec, result: JobResult) -> dict:
    """The run record of a finished job: its settings (without ``storage_options``, which
    may hold credentials), the counts, quarantine reasons, timings and versions."""
    import dataclasses
    import datetime
    import platform

    import raymix

    settings = {k: v for k, v in dataclasses.asdict(job).items() if k != "storage_options"}
    return {
        "job": type(job).__name__,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "counts": {
            "rows_in": result.rows_in, "replicas": result.replicas, "skipped": result.skipped,
            "written": result.summary.written, "quarantined": result.summary.quarantined,
            "already_written": result.summary.already_written,
            "already_quarantined": result.summary.already_quarantined,
            "files": len(result.summary.files), "reconciled": result.reconciled,
        },
        "quarantine_reasons": dict(sorted(result.summary.reasons.items())),
        "timings": {"seconds": result.seconds,
                    "images_per_s": result.summary.written / result.seconds if result.seconds > 0 else 0.0},
        "versions": {"raymix": raymix.__version__, "ray": ray.__version__, "python": platform.python_version()},
    }


def write_run_record(job: JobSpec, result: JobResult) -> str:
    """Write :func:`run_record` to ``OUT/.raymix/summary.json``; returns its URI."""
    import json

    from raymix.io.storage import atomic_write, filesystem, join

    fs, root = filesystem(job.output, job.storage_options)
    path = join(root, RUN_RECORD)
    DEFAULT_POLICY.call(atomic_write, fs, path, json.dumps(run_record(job, result), indent=2, default=str).encode(),
                        what=f"write {RUN_RECORD}")
    return join(job.output, RUN_RECORD)


def finish(ds: ray.data.Dataset, job: JobSpec, job_input: JobInput, *, extra_images: Sequence[str] = ()
           ) -> JobResult:
    """Write the rows to ``job.output``, then count what was read and report (printed)."""
    if not job.output:
        raise ValueError("the job has no output URI")
    if job.replicas < 1:
        raise ValueError("replicas must be >= 1")
    plan = job_input.plan
    total = plan.num_rows
    if total is not None:
        total = max(0, min(total, job.limit if job.limit is not None else total) - job_input.skipped)
    with Progress(job_input.rows_in, total):
        summary = write_dataset(ds, job.output, format=job.format, storage_options=job.storage_options,
                               classes=plan.classes, descriptions=plan.descriptions, replicas=job.replicas,
                               rows_per_file=job.rows_per_file, verbose=False, extra_images=extra_images)
    result = JobResult(summary, job_input.rows_in(), job.replicas, time.perf_counter() - job_input.started,
                       job_input.skipped)
    print(result.report(), flush=True)
    where = write_run_record(job, result)
    print(f"run record   {where}", flush=True)
    if not result.reconciled:
        log.error("counts do not reconcile: some rows were neither written nor quarantined")
    return result
