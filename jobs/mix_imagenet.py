"""PixMix, IPMix or LayerMix over an ImageNet-style dataset on Ray, written as shards.

    ray job submit --working-dir . -- python jobs/mix_imagenet.py --method layermix \
        --input s3://bucket/imagenet/train --output s3://bucket/imagenet-layermix --replicas 2

Runs the same way standalone (a local Ray instance). See docs/methods.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from raymix.pipeline import mix
from raymix.pipeline.options import add_common_arguments, common_fields, run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=mix.MIX_METHODS, required=True)
    add_common_arguments(parser)
    group = parser.add_argument_group("mixing (CPU)")
    group.add_argument("--size", type=int, default=224, help="output side: images are centre-cropped to it")
    group.add_argument("--fractals", default=None, help="fractal folder URI or 'generated:N' (default: generated)")
    group.add_argument("--options", type=json.loads, default={}, metavar="JSON",
                       help="method constructor options, e.g. '{\"preset\": \"cifar\"}' or '{\"magnitude\": 3}'")
    group.add_argument("--actors", type=int, default=None, help="max mixing actors (default: cluster CPUs - 1)")
    group.add_argument("--batch-size", type=int, default=32)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    job = mix.MixJob(
        **common_fields(args), method=args.method, size=args.size, fractals=args.fractals,
        method_options=args.options, actors=args.actors, batch_size=args.batch_size,
    )
    return run_job(args, lambda: mix.run(job))


if __name__ == "__main__":
    sys.exit(main())
