"""``python -m raymix.bench fractals --json``: fractal generation and sampling speed.

Lines (one JSON object each):

* ``{"bench": "generate", "kind": ..., "size": S, "images": n, "seconds": t, "ms_per_image": ...}``
  for each generator alone, cache off;
* ``{"bench": "bank_cold", ...}``: the default bank built from nothing (what the first worker on a
  machine pays), and ``{"bench": "bank_warm", ...}``: the same bank read back from the disk cache
  (what every other worker pays; pages are read lazily); ``bank_gray_from_colour``: the grayscale
  bank made from the cached colour one, then read back warm;
* ``{"bench": "sample", "grayscale": ..., "flip": ..., "images_per_s": ...}``: ``FractalBank.sample``
  for batches of 224x224 crops.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

HELP = "fractal generation time (IFS, orbit traps, default bank cold and warm) and sampling speed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines (the only output format)")
    parser.add_argument("--images", type=int, default=64, help="images per generator timing (default 64)")
    parser.add_argument("--size", type=int, default=None, help="side of generated images (default: bank default)")
    parser.add_argument(
        "--bank", type=int, default=None, help="bank size for the cold and warm timings (default: bank default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core, as an actor)")
    parser.add_argument("--batch", type=int, default=64, help="batch size for the sample() timing")


def _emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from raymix.fractals import bank as fractal_bank
    from raymix.fractals import DEFAULT_BANK_SIZE, DEFAULT_RESOLUTION, FractalBank

    torch.set_num_threads(args.threads)
    size = args.size or DEFAULT_RESOLUTION
    n_bank = args.bank or DEFAULT_BANK_SIZE
    common = {"threads": args.threads, "size": size}

    for kind in ("ifs", "orbit"):
        start = time.perf_counter()
        FractalBank.generate(args.images, size, seed=12345, kinds=(kind,), cache=False)
        t = time.perf_counter() - start
        _emit(bench="generate", kind=kind, images=args.images, seconds=round(t, 3),
              ms_per_image=round(1000 * t / args.images, 2), **common)

    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("RAYMIX_CACHE_DIR")
        os.environ["RAYMIX_CACHE_DIR"] = tmp
        try:
            start = time.perf_counter()
            bank = FractalBank.generate(n_bank, size, seed=0)
            cold = time.perf_counter() - start
            _emit(bench="bank_cold", images=n_bank, seconds=round(cold, 3),
                  megabytes=round(bank.images.numel() / 2**20, 1), **common)
            fractal_bank._banks.clear()  # forget the process copy: read the disk cache as another worker would
            start = time.perf_counter()
            bank = FractalBank.generate(n_bank, size, seed=0)
            warm = time.perf_counter() - start
            _emit(bench="bank_warm", images=n_bank, seconds=round(warm, 4), **common)
            start = time.perf_counter()
            FractalBank.generate(n_bank, size, seed=0, grayscale=True)  # converts the cached colour file
            _emit(bench="bank_gray_from_colour", images=n_bank, seconds=round(time.perf_counter() - start, 4),
                  **common)
            fractal_bank._banks.clear()
            start = time.perf_counter()
            FractalBank.generate(n_bank, size, seed=0, grayscale=True)
            _emit(bench="bank_warm", grayscale=True, images=n_bank,
                  seconds=round(time.perf_counter() - start, 4), **common)

            gens = [torch.Generator().manual_seed(i) for i in range(args.batch)]
            for grayscale, flip in ((False, False), (True, True)):
                b = FractalBank.generate(n_bank, size, seed=0, grayscale=grayscale)
                b.sample(gens, (224, 224), flip=flip)
                reps, start = 20, time.perf_counter()
                for _ in range(reps):
                    b.sample(gens, (224, 224), flip=flip)
                t = time.perf_counter() - start
                _emit(bench="sample", grayscale=grayscale, flip=flip, batch=args.batch, crop=224,
                      images_per_s=round(reps * args.batch / t, 1), **common)
        finally:
            if old is None:
                os.environ.pop("RAYMIX_CACHE_DIR", None)
            else:
                os.environ["RAYMIX_CACHE_DIR"] = old
            fractal_bank._banks.clear()
    return 0
