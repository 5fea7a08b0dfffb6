"""InstructPix2Pix editing on one GPU: images/s, MFU, and speedup over a per-image loop.

For each resolution (default 256 and 512, 20 steps, the random-weight SD1.5
InstructPix2Pix: compute does not depend on weight values):

1. the baseline: the diffusers pipeline called once per image, as the DiffuseMix
   authors' code does (PIL image in, PIL image out, same dtype, steps and guidance);
2. the batched editor (:class:`raymix.models.editor.InstructPix2PixEditor`) with the
   throughput options (bf16, channels_last, fused q/k/v, ``torch.compile`` of the
   UNet): the flags and defaults of :class:`raymix.models.editor_options.EditorOptions`,
   the DiffuseMix job's own, so the job runs what is measured here; timed over
   ``--iters`` batches after one warm-up batch (which compiles),
   from uint8 images in host memory to uint8 images back in host memory;
3. FLOPs of one batched call counted with ``FlopCounterMode`` (eagerly: compiled
   code hides its ops from the counter; the FLOPs are the same), divided by the
   time per batch and the device's dense bf16/fp16 peak (:mod:`raymix.bench.mfu`).

One JSON line per resolution: ``resolution``, ``batch_size``, ``images_per_s``,
``mfu``, ``speedup``, ``device`` and the details. ``--sweep`` first prints a line per
batch size (``"kind": "sweep"``) and reports the best. On a machine without a GPU,
``--model tiny --resolution 64 --steps 2`` runs the same code as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import time

HELP = "InstructPix2Pix editing: images/s, MFU and speedup over a per-image loop (JSON lines)"

DEFAULT_BATCH = {256: 64, 512: 16}
SWEEP = {256: (16, 32, 64, 128), 512: (4, 8, 16, 32)}


def _batch_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from raymix.models.editor_options import EditorOptions
    from raymix.settings import add_flags

    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    parser.add_argument("--resolution", type=int, nargs="+", default=[256, 512],
                        help="edit sides to measure (default: 256 512)")
    parser.add_argument("--batch-size", type=int, help="images per batched call (default: 64 at 256, 16 at 512)")
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="default",
        help="try several batch sizes (comma-separated; default 16,32,64,128 at 256 and 4,8,16,32 at 512)",
    )
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--iters", type=int, default=3, help="timed batches per batch size (default: 3)")
    parser.add_argument("--baseline-images", type=int, default=4,
                        help="timed images in the per-image loop (default: 4)")
    parser.add_argument("--peak-tflops", type=float, help="device peak dense TFLOP/s (default: from the table)")
    parser.add_argument("--seed", type=int, default=0, help="weights and noise seed (default: 0)")
    # The editor's own options, as `raymix diffusemix` takes them: the job runs what is measured here.
    flags = add_flags(parser, EditorOptions, exclude=EXCLUDED, defaults=BENCH_DEFAULTS,
                      names={"editor": "model"}, title="editor (the options of raymix diffusemix)")
    parser.set_defaults(_editor_flags=flags)


#: Where the benchmark's defaults differ from the job's: full-size random weights, 20 steps,
#: and every speed option on (channels_last and torch.compile on CUDA only).
BENCH_DEFAULTS = {"editor": "random-sd15", "preset": "fast", "fuse_qkv": True, "channels_last": None,
                  "compile": "auto"}

#: Editor options the benchmark sets itself: several resolutions and batch sizes per run,
#: no prompt file (the preset's prompts).
EXCLUDED = ("resolution", "edit_batch_size", "prompts")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from raymix.bench.mfu import count_flops, device_name, peak_tflops
    from raymix.models.editor import InstructPix2PixEditor, choose_device, choose_dtype, edit_settings, load_pipeline

    options = args._editor_flags.build(args)
    device = choose_device(args.device)
    dtype = choose_dtype(options.dtype, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = device_name(device)
    peak = args.peak_tflops or peak_tflops(name)

    pipe = load_pipeline(options.model, device=device, dtype=dtype, seed=args.seed, variant=options.variant)
    settings = edit_settings(options.preset, steps=options.steps, guidance_scale=options.guidance_scale,
                             image_guidance_scale=options.image_guidance_scale)
    # The loop first: the editor changes the pipeline's modules in place (memory format, fused q/k/v).
    baselines = {r: _per_image_loop(pipe, r, settings, args) for r in args.resolution}
    # Each timed call is one whole batch of the size being measured: no fixed model batch.
    kwargs = {**dataclasses.asdict(options), "model_batch": None}
    editor = InstructPix2PixEditor(pipeline=pipe, **kwargs)
    common = dict(
        model=options.model,
        preset=options.preset,
        steps=settings.steps,
        dtype=str(dtype).removeprefix("torch."),
        device=name,
        peak_tflops=peak,
        compile=editor.compile_mode,
        compile_vae=options.compile_vae,
        channels_last=editor.channels_last,
        fuse_qkv=options.fuse_qkv,
        vae_batch=options.vae_batch,
    )

    for resolution in args.resolution:
        if args.sweep:
            sizes = SWEEP.get(resolution, (4, 8, 16)) if args.sweep == "default" else _batch_sizes(args.sweep)
        else:
            sizes = (args.batch_size or DEFAULT_BATCH.get(resolution, 4),)
        results = []
        for batch_size in sizes:
            try:
                result = _batched(editor, resolution, batch_size, args, count_flops)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                result = dict(batch_size=batch_size, error="out of memory")
            result.update(resolution=resolution, **common)
            if "images_per_s" in result:
                result["mfu"] = _mfu(result, peak)
                result["baseline_images_per_s"] = baselines[resolution]
                result["speedup"] = result["images_per_s"] / baselines[resolution]
                results.append(result)
            if args.sweep:
                _emit(dict(suite="gpu", kind="sweep", **result), args.json)
        if results:
            best = max(results, key=lambda r: r["images_per_s"])
            _emit(dict(suite="gpu", kind="result", **best), args.json)
    return 0


def _images(resolution: int, n: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (n, resolution, resolution, 3), dtype=np.uint8)


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _per_image_loop(pipe, resolution: int, settings, args) -> float:
    """Images/s of one pipeline call per image (PIL in, PIL out, noise from the global RNG on the
    device), as the authors' code runs it."""
    from PIL import Image

    from raymix.models.prompts import PAPER_PROMPTS

    images = [Image.fromarray(a) for a in _images(resolution, args.baseline_images + 1, args.seed)]
    device = pipe.unet.device

    def one(i: int):
        pipe(
            PAPER_PROMPTS[i % len(PAPER_PROMPTS)],
            image=images[i],
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            image_guidance_scale=settings.image_guidance_scale,
        )

    one(0)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for i in range(1, args.baseline_images + 1):
        one(i)
    _sync(device)
    return args.baseline_images / (time.perf_counter() - start)


def _batched(editor, resolution: int, batch_size: int, args, count_flops) -> dict:
    """Time the batched edit from host uint8 to host uint8; count its FLOPs once, eagerly."""
    import torch

    host = torch.from_numpy(_images(resolution, batch_size, args.seed + 1)).permute(0, 3, 1, 2)
    prompts = [editor.library.text(i % len(editor.library)) for i in range(batch_size)]

    def call():
        gens = [torch.Generator().manual_seed(i) for i in range(batch_size)]
        return editor.edit(host.to(editor.device), prompts, gens).cpu()

    call()  # warm-up (and compilation)
    with editor.eager():
        flops = count_flops(call)
    _sync(editor.device)
    start = time.perf_counter()
    for _ in range(args.iters):
        call()
    _sync(editor.device)
    seconds = (time.perf_counter() - start) / args.iters
    return dict(
        batch_size=batch_size,
        images_per_s=batch_size / seconds,
        seconds_per_batch=seconds,
        tflop_per_image=flops / batch_size / 1e12,
        achieved_tflops=flops / seconds / 1e12,
    )


def _mfu(result: dict, peak: float | None) -> float | None:
    return result["achieved_tflops"] / peak if peak else None


def _emit(record: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record), flush=True)
        return
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
    print(" ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
