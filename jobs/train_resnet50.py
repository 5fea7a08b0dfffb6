"""Train ResNet-50 (or another classifier) on original and augmented shards with Ray Train.

    python jobs/train_resnet50.py --input s3://bucket/imagenet/train --input s3://bucket/diffusemix \
        --val s3://bucket/imagenet/val --online layermix --miamix --workers 8 --gpu \
        --storage s3://bucket/runs --name r50-layermix

Under ``ray job submit --working-dir . -- python jobs/train_resnet50.py ...`` it runs on the
cluster (``RAY_ADDRESS``); otherwise it starts a local Ray instance. Rerun with the same
``--storage`` and ``--name`` to resume from the latest checkpoint. Prints the final metrics
as one JSON line.
"""

import argparse
import json

from raymix.train.cli import add_arguments, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args()), default=str), flush=True)


if __name__ == "__main__":
    main()
