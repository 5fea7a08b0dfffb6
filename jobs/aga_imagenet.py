"""AGA over an ImageNet-style dataset on Ray (the same job as `raymix aga`).

    ray job submit --working-dir . -- python jobs/aga_imagenet.py \
        --input s3://bucket/imagenet/train --output s3://bucket/imagenet-aga --replicas 3

Runs the same way standalone (a local Ray instance). Settings can also come from
`--config job.yaml` (flags override it). See docs/aga.md.
"""

from __future__ import annotations

import sys

from raymix.commands.jobs import script_main


def main(argv: list[str] | None = None) -> int:
    return script_main("aga", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
