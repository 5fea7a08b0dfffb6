"""DiffuseMix over an ImageNet-style dataset on Ray.

    ray job submit --working-dir . -- python jobs/diffusemix_imagenet.py \
        --input s3://bucket/imagenet/train --output s3://bucket/imagenet-diffusemix --replicas 3

Runs the same way standalone (a local Ray instance). See docs/diffusemix.md.
"""

from __future__ import annotations

import argparse
import sys

from raymix.pipeline import diffusemix
from raymix.pipeline.options import add_common_arguments, common_fields, run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    edit = parser.add_argument_group("editing (InstructPix2Pix, GPU)")
    edit.add_argument("--editor", default=diffusemix.DEFAULT_MODEL,
                      help="HF model id, local folder, s3:// mirror, or 'tiny' (random weights, offline, CPU)")
    edit.add_argument("--preset", choices=("paper", "fast", "public-code"), default="paper")
    edit.add_argument("--prompts", default=None, help="prompt file (one per line, any URI) instead of the paper's nine")
    edit.add_argument("--steps", type=int, default=None, help="denoising steps (preset's by default)")
    edit.add_argument("--resolution", type=int, default=None, help="edit and output size (preset's: 256)")
    edit.add_argument("--dtype", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    edit.add_argument("--gpus-per-actor", type=float, default=1.0, help="GPUs per editing actor (fractions share a GPU)")
    edit.add_argument("--edit-batch-size", type=int, default=8, help="images per model call")
    edit.add_argument("--edit-actors", type=int, default=None, help="max editing actors (default: GPUs in the cluster / gpus-per-actor; unbounded while it has none yet)")
    mix = parser.add_argument_group("mixing (CPU)")
    mix.add_argument("--fractals", default=None, help="fractal folder URI or 'generated:N' (default: generated)")
    mix.add_argument("--lam", type=float, default=0.20, help="fractal blending factor (paper: 0.20)")
    mix.add_argument("--public-code-masks", action="store_true",
                     help="the authors' code: 2 masks with a 20-pixel seam instead of the paper's 4 binary masks")
    mix.add_argument("--mix-actors", type=int, default=2, help="max mixing actors")
    mix.add_argument("--keep-intermediates", action="store_true", help="also store the generated and hybrid images")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    job = diffusemix.DiffuseMixJob(
        **common_fields(args), editor=args.editor, preset=args.preset, prompts=args.prompts, steps=args.steps,
        resolution=args.resolution, dtype=args.dtype, gpus_per_actor=args.gpus_per_actor,
        edit_batch_size=args.edit_batch_size, edit_actors=args.edit_actors, fractals=args.fractals, lam=args.lam,
        public_code_masks=args.public_code_masks, mix_actors=args.mix_actors,
        keep_intermediates=args.keep_intermediates,
    )
    return run_job(args, lambda: diffusemix.run(job))


if __name__ == "__main__":
    sys.exit(main())
