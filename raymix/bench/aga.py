"""AGA's GPU stages on one device: images/s of each model stage, and which one bounds the pipeline.

Rahat et al., "AGA" (2024): per source image GroundingDINO + SAM isolate the subject once;
per augmented image (``--replicas`` of them per source) the LLM writes a caption and
Stable Diffusion XL draws a background. This benchmark times each stage's model wrapper, as
the job's stages call it (:mod:`raymix.pipeline.aga_stages`), on full-size random-weight
models by default (``random-full``: GroundingDINO Swin-T, SAM ViT-H, Llama-2-13B, SDXL
base; compute does not depend on weight values), from host arrays in to host arrays out,
over ``--iters`` batches after a warm-up batch.

Output, one JSON line per stage (``"kind": "stage"``: ``stage``, ``batch_size``,
``items_per_s``, ``seconds_per_output`` = the stage's seconds per augmented image, the
subject stage's divided by ``--replicas``), then a ``"kind": "result"`` line:
``bound_by`` (the stage with the most seconds per output) and ``bound_share`` (its share
of the total), ``images_per_s_one_gpu`` (all stages time-sharing one device: 1 / the sum)
and ``images_per_s_pipelined`` (each stage on devices of its own, the slowest one
setting the pace: 1 / the max). On a machine without a GPU,
``--detector tiny --segmenter tiny --llm tiny --background-model tiny`` runs the same code
as a smoke test.
"""

from __future__ import annotations

import argparse
import time

HELP = "AGA's model stages (detection+segmentation, caption LLM, SDXL backgrounds): images/s and the bound (JSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    parser.add_argument("--detector", default="random-full", help="GroundingDINO weights (default: random-full)")
    parser.add_argument("--segmenter", default="random-full", help="SAM weights (default: random-full)")
    parser.add_argument("--llm", default="random-full",
                        help="caption LLM weights, or 'none' to leave the LLM out (default: random-full)")
    parser.add_argument("--background-model", default="random-full",
                        help="text-to-image weights (default: random-full, SDXL)")
    parser.add_argument("--image-size", default="375,500", help="source image H,W (default: 375,500)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="augmented images per source image (the subject is isolated once per source)")
    parser.add_argument("--subject-batch", type=int, default=8, help="images per detector+segmenter call")
    parser.add_argument("--caption-batch", type=int, default=32, help="prompts per LLM call")
    parser.add_argument("--background-batch", type=int, default=4, help="captions per text-to-image call")
    parser.add_argument("--background-steps", type=int, help="denoising steps (default: the pipeline's, SDXL 50)")
    parser.add_argument("--background-resolution", type=int, help="generated side (default: the model's)")
    parser.add_argument("--llm-max-new-tokens", type=int, default=64, help="caption length in tokens (default: 64)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                        help="precision on a GPU (fp32 on the CPU)")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--iters", type=int, default=2, help="timed batches per stage (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="weights and noise seed (default: 0)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from raymix.bench.gpu import _emit
    from raymix.bench.mfu import device_name
    from raymix.models.backgrounds import BackgroundGenerator
    from raymix.models.caption_llm import CaptionLLM
    from raymix.models.subjects import SubjectIsolator

    height, width = (int(v) for v in args.image_size.split(","))
    device = args.device
    common = dict(suite="aga", device=device_name(torch.device(device) if device else _default_device()),
                  replicas=args.replicas, image_size=[height, width], dtype=args.dtype)
    rng = np.random.default_rng(args.seed)
    stages = {}

    isolator = SubjectIsolator(args.detector, args.segmenter, device=device, dtype=args.dtype, model_seed=args.seed)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.subject_batch)]
    prompts = ["bird"] * args.subject_batch
    stages["subject"] = _time(lambda: isolator(images, prompts), args.subject_batch, args.iters, isolator.device)
    stages["subject"].update(model=f"{args.detector} + {args.segmenter}", per_source_image=True)
    del isolator

    if args.llm != "none":
        # ignore_eos: every caption runs to max_new_tokens, the worst case and the same for random weights.
        llm = CaptionLLM(args.llm, device=device, dtype=args.dtype, model_seed=args.seed,
                         max_new_tokens=args.llm_max_new_tokens, ignore_eos=True)
        text = ("Write a one-sentence description of a background for a photograph: a quiet forest clearing "
                "in the early morning in autumn. Do not mention: bird, dog.")
        stages["caption"] = _time(lambda: llm([text] * args.caption_batch, list(range(args.caption_batch))),
                                  args.caption_batch, args.iters, llm.device)
        stages["caption"].update(model=args.llm, new_tokens=args.llm_max_new_tokens)
        del llm

    generator = BackgroundGenerator(args.background_model, device=device, dtype=args.dtype, model_seed=args.seed,
                                    steps=args.background_steps, resolution=args.background_resolution)
    captions = ["a quiet forest clearing in the early morning in autumn"] * args.background_batch

    def backgrounds():
        gens = [torch.Generator().manual_seed(i) for i in range(args.background_batch)]
        return generator(captions, gens, size=(height, width))

    stages["background"] = _time(backgrounds, args.background_batch, args.iters, generator.device)
    stages["background"].update(model=args.background_model, **{k: generator.settings[k] for k in
                                                                  ("pipeline", "resolution", "steps")})
    del generator

    for name, record in stages.items():
        per_output = 1.0 / record["items_per_s"] / (args.replicas if record.get("per_source_image") else 1)
        record["seconds_per_output"] = per_output
        _emit(dict(kind="stage", stage=name, **record, **common), args.json)
    seconds = {name: r["seconds_per_output"] for name, r in stages.items()}
    total, bound = sum(seconds.values()), max(seconds, key=seconds.get)
    _emit(dict(kind="result", bound_by=bound, bound_share=seconds[bound] / total,
               images_per_s_one_gpu=1.0 / total, images_per_s_pipelined=1.0 / seconds[bound],
               seconds_per_output=seconds, **common), args.json)
    return 0


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _time(call, batch_size: int, iters: int, device) -> dict:
    import torch

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    call()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        call()
    sync()
    seconds = (time.perf_counter() - start) / iters
    return dict(batch_size=batch_size, seconds_per_batch=seconds, items_per_s=batch_size / seconds)

