"""PixMix, IPMix or LayerMix over an ImageNet-style dataset on Ray, written as shards (the
same job as `raymix mix`).

    ray job submit --working-dir . -- python jobs/mix_imagenet.py --method layermix \
        --input s3://bucket/imagenet/train --output s3://bucket/imagenet-layermix --replicas 2

Runs the same way standalone (a local Ray instance). Settings can also come from
`--config job.yaml` (flags override it). See docs/methods.md.
"""

from __future__ import annotations

import sys

from raymix.commands.jobs import script_main


def main(argv: list[str] | None = None) -> int:
    return script_main("mix", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
