"""Train ResNet-50 (or another classifier) on original and augmented shards with Ray Train
(the same job as `raymix train`).

    python jobs/train_resnet50.py --input s3://bucket/imagenet/train --input s3://bucket/diffusemix \
        --val s3://bucket/imagenet/val --online layermix --miamix --workers 8 --gpu \
        --storage s3://bucket/runs --name r50-layermix

Under ``ray job submit --working-dir . -- python jobs/train_resnet50.py ...`` it runs on the
cluster (``RAY_ADDRESS``); otherwise it starts a local Ray instance. Rerun with the same
``--storage`` and ``--name`` to resume from the latest checkpoint. Prints the final metrics
as one JSON line. Settings can also come from ``--config run.yaml`` (flags override it).
"""

from __future__ import annotations

import sys

from raymix.commands.jobs import script_main


def main(argv: list[str] | None = None) -> int:
    return script_main("train", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
