"""A training driver the resume test runs as a separate process and kills.

    python tests/train_driver.py STORAGE NAME EPOCHS

Trains on a small in-memory dataset (the same rows every time) and prints the final
metrics as JSON. Connects to RAY_ADDRESS.
"""

import json
import sys

import numpy as np
import ray

from raymix.train import TrainConfig, fit


def sample_rows(n: int = 24, size: int = 36, bad: tuple[int, ...] = (5,)) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "key": f"img{i:03d}",
            "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "label": i % 3,
            "reason": "decode: truncated file" if i in bad else "",
        }
        for i in range(n)
    ]


def resume_config(epochs: int) -> TrainConfig:
    return TrainConfig(
        arch="resnet18", num_classes=3, image_size=32, batch_size=8, epochs=epochs, lr=0.01,
        miamix=True, data_batch_size=8, log_every=0, checkpoints_to_keep=None,
    )


def main() -> None:
    storage, name, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ray.init()
    result = fit([ray.data.from_items(sample_rows())], config=resume_config(epochs), workers=2, storage=storage, name=name)
    print(json.dumps(result.metrics), flush=True)


if __name__ == "__main__":
    main()
