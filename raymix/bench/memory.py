"""Memory over time of the mix job streaming many small images, and its end-to-end rate.

``python -m raymix.bench memory --images 100000`` generates ``--images`` small JPEGs
(``--size`` pixels, parquet shards of 1,000 rows, in ``--workdir``), runs ``raymix mix``
over them on a private local Ray instance, and samples every ``--interval`` seconds:

- ``driver_rss_mb``: the resident memory of this process (the driver);
- ``ray_rss_mb`` / ``ray_pss_mb``: the resident and proportional set sizes summed over
  every process Ray started (GCS, raylet, workers, actors). RSS counts the shared object
  store once per process that maps it; PSS splits shared pages between them, so its sum
  is what the machine really holds;
- ``files``: output files committed so far (progress).

- ``cpu_s``: CPU seconds used so far by the driver and every Ray process.

Then one JSON object: the samples, the peaks, and ``flat``: whether the peak of the last
half of the run stays within ``--flat-tolerance`` of the peak of the first half (after the
first ``--warmup`` seconds), i.e. memory stops growing with the number of images.

It also times the same stage (decode, the method, encode) on one core in this process
(``torch.set_num_threads(1)``, ``--stage-images`` images; CPU time, so other load on the
machine inflates it less than wall time) and reports the end-to-end rate against
``cores x`` that single-core rate (``efficiency``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time

HELP = "memory over time (driver, all Ray processes) and end-to-end rate of the mix job on many small images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (the default output)")
    parser.add_argument("--images", type=int, default=100_000, help="images to generate and mix")
    parser.add_argument("--size", type=int, default=32, help="side of the generated images and of the output")
    parser.add_argument("--method", default="pixmix")
    parser.add_argument("--replicas", type=int, default=1, help="augmented images per input image (a longer run "
                                                                  "over the same input)")
    parser.add_argument("--fractals", default="generated:64")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workdir", default=None, help="where the input and output go (default: a temporary "
                                                         "folder, removed afterwards)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the flatness check")
    parser.add_argument("--flat-tolerance", type=float, default=0.10,
                        help="largest relative growth of the peak from the first to the last half")
    parser.add_argument("--stage-images", type=int, default=2048, help="images for the single-core stage rate")
    parser.add_argument("--cpus", type=int, default=None, help="logical CPUs for Ray (default: max(4, cores))")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples-file", default=None,
                        help="also append each sample to this file as a JSON line as it is taken (to follow a long run)")


def _mb(n: float) -> float:
    return round(n / 2**20, 1)


class Sampler(threading.Thread):
    """Samples the driver's memory and that of every process under it (Ray's) every ``interval`` s."""

    def __init__(self, interval: float, output: str, samples_file: str | None = None):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.interval, self.output, self.samples_file = interval, output, samples_file
        self.samples: list[dict] = []
        self.cpu_seconds: dict[int, float] = {}  # pid -> CPU time last seen (processes that ended keep theirs)
        before = self.me.cpu_times()
        self.driver_cpu_before = before.user + before.system  # generating and timing the input came first
        self.stop = threading.Event()
        self.start_time = time.perf_counter()

    def sample(self) -> dict:
        rss = pss = 0
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                self.cpu_seconds[proc.pid] = times.user + times.system
                if proc.pid == self.me.pid:
                    continue
                info = proc.memory_full_info()
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        try:
            files = sum(1 for n in os.listdir(self.output) if n.endswith(".parquet"))
        except FileNotFoundError:
            files = 0
        return {"t": round(time.perf_counter() - self.start_time, 1), "driver_rss_mb": _mb(self.me.memory_info().rss),
                "ray_rss_mb": _mb(rss), "ray_pss_mb": _mb(pss),
                "cpu_s": round(sum(self.cpu_seconds.values()) - self.driver_cpu_before, 1),
                "files": files}

    def run(self) -> None:
        self.start_time = time.perf_counter()
        while not self.stop.is_set():
            self.samples.append(self.sample())
            if self.samples_file:
                with open(self.samples_file, "a") as f:
                    f.write(json.dumps(self.samples[-1]) + "\n")
            self.stop.wait(self.interval)


def flatness(samples: list[dict], key: str, warmup: float, tolerance: float) -> dict:
    """Peak of ``key`` in the first and last half of the samples after ``warmup`` seconds."""
    kept = [s for s in samples if s["t"] >= warmup]
    if len(kept) < 4:
        return {"first_half_peak_mb": None, "last_half_peak_mb": None, "flat": None}
    half = len(kept) // 2
    first, last = max(s[key] for s in kept[:half]), max(s[key] for s in kept[half:])
    return {"first_half_peak_mb": first, "last_half_peak_mb": last, "flat": last <= first * (1 + tolerance)}


def stage_rate(data: str, args: argparse.Namespace) -> dict:
    """Images/s of decode + method + encode on one core, on the benchmark's own input."""
    import glob

    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from raymix.io.decode import decode_batch, encode_batch
    from raymix.pipeline.rows import MethodStage

    torch.set_num_threads(1)
    table = pq.read_table(sorted(glob.glob(os.path.join(data, "*.parquet")))[:8]).slice(0, args.stage_images)
    images = [v["bytes"] for v in table.column("image").to_pylist()]
    labels = table.column("label").to_numpy()
    stage = MethodStage(args.method, {"fractals": args.fractals}, seed=args.seed, replicas=args.replicas)
    n = len(images)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for i in range(0, n, args.batch_size):
        chunk = images[i:i + args.batch_size]
        batch = {"image": np.array(chunk + [None], dtype=object)[:-1], "label": labels[i:i + args.batch_size],
                 "key": np.array([f"k{j}" for j in range(i, i + len(chunk))], dtype=object)}
        encode_batch(stage(decode_batch(batch, size=args.size)))
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    n *= args.replicas  # output images
    return {"images": n, "images_per_s": round(n / wall, 1), "cpu_images_per_s": round(n / cpu, 1)}


def run(args: argparse.Namespace) -> int:
    import tempfile

    import ray

    from raymix.pipeline import mix, runtime
    from raymix.pipeline.specs import MixJob
    from raymix.tools.sample_data import write_sample

    workdir = args.workdir or tempfile.mkdtemp(prefix="raymix-bench-memory-")
    data, out = os.path.join(workdir, "data"), os.path.join(workdir, "out")
    cores = os.cpu_count() or 1
    start = time.perf_counter()
    if not os.path.exists(data):
        classes = 100
        write_sample(data, format="parquet", classes=classes, per_class=-(-args.images // classes),
                     size=(args.size, args.size), rows_per_shard=1000, seed=args.seed)
    generate_s = time.perf_counter() - start
    single = stage_rate(data, args)

    shutil.rmtree(out, ignore_errors=True)  # a run of its own, not a resume of the last one
    sampler = Sampler(args.interval, out, args.samples_file)
    started = not ray.is_initialized()
    runtime.init_ray(num_cpus=args.cpus or max(runtime.MIN_LOCAL_CPUS, cores))
    sampler.start()
    job = MixJob(input=data, output=out, method=args.method, fractals=args.fractals, image_size=args.size,
                 batch_size=args.batch_size, seed=args.seed, limit=args.images, replicas=args.replicas)
    result = mix.run(job)
    sampler.stop.set()
    sampler.join()
    sampler.samples.append(sampler.sample())
    if started:
        ray.shutdown()
    samples = sampler.samples
    rate = result.summary.written / result.seconds if result.seconds else 0.0
    report = {
        "bench": "memory",
        "images": args.images, "replicas": args.replicas, "size": args.size, "method": args.method, "cores": cores,
        "generate_s": round(generate_s, 1), "seconds": round(result.seconds, 1),
        "written": result.summary.written, "reconciled": result.reconciled,
        "images_per_s": round(rate, 1),
        "single_core_stage": single,
        # Against the stage's CPU-time rate: what one core does when nothing else competes for it.
        "efficiency": round(rate / (cores * single["cpu_images_per_s"]), 3) if single["cpu_images_per_s"] else None,
        # CPU seconds the driver and Ray used per image, against the stage's own: how much of
        # the CPU the job got went into the stage (the rest is Ray, reading, writing), which
        # other load on the machine does not change.
        "cpu_s": samples[-1]["cpu_s"],
        "cpu_efficiency": (round(result.summary.written / (samples[-1]["cpu_s"] * single["cpu_images_per_s"]), 3)
                           if samples[-1]["cpu_s"] and single["cpu_images_per_s"] else None),
        "driver_peak_rss_mb": max(s["driver_rss_mb"] for s in samples),
        "ray_peak_rss_mb": max(s["ray_rss_mb"] for s in samples),
        "ray_peak_pss_mb": max(s["ray_pss_mb"] for s in samples),
        "driver_flat": flatness(samples, "driver_rss_mb", args.warmup, args.flat_tolerance),
        "ray_flat": flatness(samples, "ray_pss_mb", args.warmup, args.flat_tolerance),
        "samples": samples,
    }
    print(json.dumps(report), flush=True)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
