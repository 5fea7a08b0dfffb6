"""Robustness evaluation of trained classifiers on Ray (the same job as `raymix eval`): clean,
ImageNet-C corruptions generated on the fly (or a released tree), OOD sets and FGSM/PGD.

    ray job submit --working-dir . -- python jobs/eval_robustness.py \
        --checkpoint pixmix=s3://bucket/runs/pixmix/checkpoint_000089/state.pt \
        --checkpoint baseline=torchvision:resnet50 --input s3://bucket/imagenet/val \
        --ood imagenet-r=s3://bucket/imagenet-r --output s3://bucket/eval/pixmix

Settings can also come from `--config job.yaml` (flags override it). See docs/evaluation.md.
"""

from __future__ import annotations

import sys

from raymix.commands.jobs import script_main


def main(argv: list[str] | None = None) -> int:
    return script_main("eval", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
