"""Training configuration, the papers' recipes as presets, and input specifications."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from raymix import registry

__all__ = ["TrainConfig", "TrainInput", "PRESETS", "parse_input", "parse_ratio", "apply_preset"]


@dataclass
class TrainConfig:
    """Everything the training loop and its input pipeline need; JSON-serialisable.

    ``batch_size`` is the global batch (split evenly across workers), as the papers quote it.
    """

    # model
    arch: str = "resnet50"
    num_classes: int = 1000
    stem: str = "auto"  # "imagenet" | "cifar" | "auto" (cifar when image_size <= 64)
    dropout: float = 0.0  # WideResNet only
    weights: str | None = None  # initial weights: a local/s3 state-dict file, or "torchvision"
    # optimisation
    epochs: int = 90
    max_steps: int | None = None
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    step_size: int = 30
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    amp: str = "auto"  # "auto" (bf16 on CUDA, off on CPU) | "bf16" | "fp16" | "off"
    channels_last: bool = True
    # input pipeline
    image_size: int = 224
    decode_size: int | None = None  # default: image_size / 0.875 for random-resized crops
    crop: str = "random_resized"  # "random_resized" | "pad" | "none"
    flip: bool = True
    val_crop_ratio: float = 0.875
    epoch_size: int | None = None  # rows per epoch when inputs are weighted
    online: str | None = None  # augmix | pixmix | ipmix | layermix
    online_options: dict[str, Any] = field(default_factory=dict)
    data_actors: int = 1  # actor-pool size of the online method
    data_actor_cpus: float = 1.0
    data_batch_size: int = 32
    prefetch_batches: int = 4
    shuffle_buffer: int = 0  # rows in each worker's local shuffle buffer (0: off)
    # regularisers
    miamix: bool = False
    miamix_options: dict[str, Any] = field(default_factory=dict)
    jsd: bool = False
    jsd_weight: float = 12.0
    # bookkeeping
    seed: int = 0
    log_every: int = 50
    checkpoints_to_keep: int | None = 2

    def __post_init__(self) -> None:
        online = registry.method_names(online=True)
        if self.online is not None and self.online not in online:
            raise ValueError(f"unknown online method {self.online!r}; choose from {sorted(online)}")
        if self.jsd and self.online is None:
            raise ValueError("the JSD loss needs augmented views: set an online method")
        if self.jsd and self.miamix:
            raise ValueError("MiAMix and the JSD loss cannot be combined (JSD compares unmixed views)")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ValueError(f"schedule must be cosine, step or constant, not {self.schedule!r}")
        if self.crop not in ("random_resized", "pad", "none"):
            raise ValueError(f"crop must be random_resized, pad or none, not {self.crop!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off, not {self.amp!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be positive")

    @property
    def train_decode_size(self) -> int:
        if self.decode_size:
            return self.decode_size
        if self.crop == "random_resized":
            return round(self.image_size / 0.875)
        return self.image_size

    @property
    def val_decode_size(self) -> int:
        return round(self.image_size / self.val_crop_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# The papers' recipes. Each entry cites where its numbers come from.
PRESETS: dict[str, dict[str, Any]] = {
    # AGA (papers/aga.txt, Table 4): ResNet-{18,50,101,152} from scratch, PyTorch's reference
    # recipe: SGD lr 0.1, momentum 0.9, StepLR 30 / gamma 0.1, wd 1e-4, batch 32, 100 epochs.
    "aga-imagenet": dict(
        arch="resnet50", epochs=100, batch_size=32, lr=0.1, momentum=0.9, weight_decay=1e-4,
        schedule="step", step_size=30, gamma=0.1, image_size=224, crop="random_resized",
    ),
    # PixMix / LayerMix ImageNet (papers/layermix.cleaned.txt, section 4 ImageNet setup):
    # fine-tune a pre-trained ResNet-50 for 90 epochs, lr 0.01, cosine annealing, batch 256.
    # Weight decay is not given there; 1e-4 is the usual ImageNet value. Pass --weights.
    "layermix-imagenet": dict(
        arch="resnet50", epochs=90, batch_size=256, lr=0.01, momentum=0.9, weight_decay=1e-4,
        schedule="cosine", image_size=224, crop="random_resized", online="layermix",
    ),
    "pixmix-imagenet": dict(
        arch="resnet50", epochs=90, batch_size=256, lr=0.01, momentum=0.9, weight_decay=1e-4,
        schedule="cosine", image_size=224, crop="random_resized", online="pixmix",
    ),
    # IPMix ImageNet (papers/ipmix.md, section 4.2): ResNet-50, SGD lr 0.01, cosine, 180 epochs.
    "ipmix-imagenet": dict(
        arch="resnet50", epochs=180, batch_size=256, lr=0.01, momentum=0.9, weight_decay=1e-4,
        schedule="cosine", image_size=224, crop="random_resized", online="ipmix",
    ),
    # CIFAR recipe of PixMix/IPMix/LayerMix (papers/layermix.cleaned.txt, CIFAR setup and
    # Table VII): WRN-40-4, dropout 0.3, lr 0.1 cosine, wd 5e-4, 100 epochs for WRN. The text
    # gives no batch size; 128 is an assumption.
    "layermix-cifar": dict(
        arch="wrn40_4", dropout=0.3, epochs=100, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
        schedule="cosine", image_size=32, crop="pad", online="layermix",
    ),
    # MiAMix (papers/miamix.md, section 4.1): ResNet-18, 400 epochs, batch 100, SGD momentum
    # 0.9, wd 5e-4, lr 0.1 cosine; Tiny-ImageNet is 64x64.
    "miamix-tinyimagenet": dict(
        arch="resnet18", epochs=400, batch_size=100, lr=0.1, momentum=0.9, weight_decay=5e-4,
        schedule="cosine", image_size=64, crop="pad", miamix=True,
    ),
}


def apply_preset(name: str, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a preset with ``overrides`` on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **overrides})


@dataclass
class TrainInput:
    """One training input: a URI (or list of URIs) read by ``raymix.pipeline.datasource.read_images``,
    or a Ray Dataset with ``image`` (encoded bytes, HF image struct, or uint8 HWC arrays) and
    ``label`` columns.

    ``weight`` is the input's share of an epoch relative to the other weighted inputs
    (``None``: every row once per epoch). ``limit`` caps the rows read.
    """

    source: Any
    weight: float | None = None
    layout: str = "auto"
    limit: int | None = None
    storage_options: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        if isinstance(self.source, str):
            return self.source
        if isinstance(self.source, (list, tuple)):
            return ",".join(map(str, self.source))
        return type(self.source).__name__


def parse_input(spec: str) -> TrainInput:
    """``"URI"`` or ``"URI@WEIGHT"`` -> :class:`TrainInput`.

    The suffix is a weight only if it parses as a non-negative number, so URIs that
    contain ``@`` elsewhere still work.
    """
    uri, sep, tail = spec.rpartition("@")
    if sep:
        try:
            weight = float(tail)
        except ValueError:
            return TrainInput(spec)
        if weight < 0:
            raise ValueError(f"input weight must be non-negative: {spec!r}")
        return TrainInput(uri, weight=weight)
    return TrainInput(spec)


def parse_ratio(ratio: str, count: int) -> list[float]:
    """``"3:1"`` -> ``[3.0, 1.0]``; the number of parts must match the number of inputs."""
    parts = [float(p) for p in ratio.split(":")]
    if len(parts) != count:
        raise ValueError(f"--ratio {ratio!r} has {len(parts)} parts for {count} inputs")
    if any(p < 0 for p in parts) or sum(parts) <= 0:
        raise ValueError(f"--ratio {ratio!r} must be non-negative with a positive sum")
    return parts
