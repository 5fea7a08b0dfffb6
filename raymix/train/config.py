"""Training configuration, the papers' training recipes, and input specifications."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from raymix import registry
from raymix.settings import option

__all__ = ["TrainConfig", "TrainInput", "RECIPES", "parse_input", "parse_ratio", "apply_recipe"]

AMP_MODES = ("auto", "bf16", "fp16", "off")
CROPS = ("random_resized", "pad", "none")
SCHEDULES = ("cosine", "step", "constant")


@dataclass
class TrainConfig:
    """Everything the training loop and its input pipeline need; JSON-serialisable.

    ``batch_size`` is the global batch (split evenly across workers), as the papers quote it.
    Every field is a flag of ``raymix train`` (:mod:`raymix.settings`).
    """

    # model
    arch: str = option("resnet50", help="model architecture: a torchvision ResNet (resnet18, resnet50, "
                                            "wide_resnet50_2, ...) or wrnDEPTH_WIDTH (wrn40_4)")
    num_classes: int = option(1000, default_text="the input's class list; 1000 where it has none",
                              help="classes of the classifier head")
    stem: str = option("auto", choices=("auto", "imagenet", "cifar"),
                       help="network stem: auto is cifar when image_size <= 64")
    dropout: float = option(0.0, help="dropout (WideResNet only)")
    weights: str | None = option(None, help="initial weights: a state-dict file (local or s3://) or 'torchvision'")
    # optimisation
    epochs: int = option(90, help="training epochs")
    max_steps: int | None = option(None, help="stop after this many optimiser steps in total")
    batch_size: int = option(256, help="global batch size, split across workers")
    lr: float = option(0.1, help="peak learning rate (SGD)")
    momentum: float = option(0.9, help="SGD momentum")
    nesterov: bool = option(False, help="Nesterov momentum")
    weight_decay: float = option(1e-4, help="weight decay")
    schedule: str = option("cosine", choices=SCHEDULES, help="learning-rate schedule")
    step_size: int = option(30, help="epochs between decays of the step schedule")
    gamma: float = option(0.1, help="decay factor of the step schedule")
    warmup_epochs: int = option(0, help="linear warm-up epochs")
    label_smoothing: float = option(0.0, help="label smoothing of the cross-entropy")
    amp: str = option("auto", choices=AMP_MODES, help="mixed precision: auto is bf16 on CUDA, off on the CPU")
    channels_last: bool = option(True, help="channels_last memory format on CUDA")
    # input pipeline
    image_size: int = option(224, help="training and validation crop side in pixels")
    decode_size: int | None = option(None, default_text="image_size / 0.875 for random-resized crops",
                                     help="side images are decoded to before the crop (the shorter side, "
                                          "aspect kept, for random-resized crops)")
    crop: str = option("random_resized", choices=CROPS,
                       help="training crop: random-resized (ImageNet), pad (CIFAR-style) or none")
    flip: bool = option(True, help="random horizontal flips")
    val_crop_ratio: float = option(0.875, help="validation centre crop: image_size / decode side")
    epoch_size: int | None = option(None, default_text="all rows of all inputs",
                                    help="rows per epoch when inputs are weighted")
    online: str | None = option(None, choices=lambda: registry.method_names(online=True), help="online CPU augmentation method")
    online_options: dict = option({}, help='arguments of the online method\'s constructor (docs/methods.md), e.g. '
                                            '\'{"magnitude": 8}\' (LayerMix) or \'{"preset": "cifar"}\' (PixMix, IPMix)')
    data_actors: int = option(1, help="actors running the online method (CPU cores for augmentation)")
    data_actor_cpus: float = option(1.0, help="CPUs per online-method actor")
    data_batch_size: int = option(32, help="rows per batch of the online method")
    prefetch_batches: int = option(4, help="batches each worker prefetches")
    shuffle_buffer: int = option(0, help="rows in each worker's local shuffle buffer (0: off)")
    # regularisers
    miamix: bool = option(False, help="MiAMix on the device inside each step")
    miamix_options: dict = option({}, help='MiAMix options, e.g. \'{"alpha": 1.0}\'')
    jsd: bool = option(False, help="JSD consistency loss over clean + two augmented views (needs --online)")
    jsd_weight: float = option(12.0, help="weight of the JSD loss")
    # bookkeeping
    seed: int = option(0, help="run seed")
    log_every: int = option(50, help="log every N steps")
    checkpoints_to_keep: int | None = option(2, help="checkpoints kept (none: all)")

    def __post_init__(self) -> None:
        online = registry.method_names(online=True)
        if self.online is not None and self.online not in online:
            raise ValueError(f"unknown online method {self.online!r}; choose from {sorted(online)}")
        if self.jsd and self.online is None:
            raise ValueError("the JSD loss needs augmented views: set an online method")
        if self.jsd and self.miamix:
            raise ValueError("MiAMix and the JSD loss cannot be combined (JSD compares unmixed views)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be cosine, step or constant, not {self.schedule!r}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be random_resized, pad or none, not {self.crop!r}")
        if self.amp not in AMP_MODES:
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
    def train_resize(self) -> str:
        """How the training decode resizes (``raymix.io.decode.resize_image`` modes): random-resized
        crops need the whole image, so only its shorter side goes to :attr:`train_decode_size`
        (the aspect is kept; the papers' scripts crop from the full image); the other crops take
        the central square."""
        return "shorter_side" if self.crop == "random_resized" else "center_crop"

    @property
    def val_decode_size(self) -> int:
        return round(self.image_size / self.val_crop_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# The papers' recipes. Each entry cites where its numbers come from.
RECIPES: dict[str, dict[str, Any]] = {
    # AGA (papers/aga.txt, Table 4): ResNet-{18,50,101,152} from scratch, PyTorch's reference
    # recipe: SGD lr 0.1, momentum 0.9, StepLR 30 / gamma 0.1, wd 1e-4, batch 32, 100 epochs.
    "aga-imagenet": dict(
        arch="resnet50", epochs=100, batch_size=32, lr=0.1, momentum=0.9, weight_decay=1e-4,
        schedule="step", step_size=30, gamma=0.1, image_size=224, crop="random_resized",
    ),
    # ImageNet recipes of PixMix, LayerMix and IPMix. The papers give the epochs, lr and
    # schedule (LayerMix sec. 4 ImageNet setup, following PixMix: fine-tune a pre-trained
    # ResNet-50, pass --weights; IPMix sec. 4.2); weight decay, Nesterov momentum, batch and
    # loss are the values of the authors' imagenet.py scripts (../shared/REFERENCE_NOTES.md,
    # "Training scripts"): wd 5e-4 (their help strings say 1e-4, the code sets 5e-4), Nesterov.
    # PixMix: batch 256, lr 0.01 (the script scales it by batch / 256), cosine, 90 epochs.
    "pixmix-imagenet": dict(
        arch="resnet50", epochs=90, batch_size=256, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="cosine", image_size=224, crop="random_resized", online="pixmix",
    ),
    # LayerMix: batch 128, lr 0.01, cosine, 90 epochs, plain cross-entropy in the main tables.
    "layermix-imagenet": dict(
        arch="resnet50", epochs=90, batch_size=128, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="cosine", image_size=224, crop="random_resized", online="layermix",
    ),
    # IPMix: batch 128, lr 0.01, cosine, 180 epochs, and the JSD loss (on in the script unless
    # --no-jsd; the authors confirm the paper's results used it).
    "ipmix-imagenet": dict(
        arch="resnet50", epochs=180, batch_size=128, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="cosine", image_size=224, crop="random_resized", online="ipmix", jsd=True,
    ),
    # AugMix (Hendrycks et al., ICLR 2020) on ImageNet: 180 epochs, the run behind the released
    # ResNet-50 (the authors in google-research/augmix issue #3: "We chose 180 epochs"); the rest
    # from the authors' imagenet.py: ResNet-50, batch 256, lr 0.1 (scaled by batch / 256) divided
    # by 10 at 1/3 and 2/3 of the epochs, wd 1e-4, momentum 0.9 without Nesterov, operation
    # severity 1 (AugMix preset "imagenet"), the JSD loss on (off only with --no-jsd).
    "augmix-imagenet": dict(
        arch="resnet50", epochs=180, batch_size=256, lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
        schedule="step", step_size=60, gamma=0.1, image_size=224, crop="random_resized", online="augmix",
        online_options={"preset": "imagenet"}, jsd=True,
    ),
    # AugMix on CIFAR, the authors' cifar.py: WRN-40-2, 100 epochs, batch 128, lr 0.1 cosine,
    # wd 5e-4, Nesterov momentum 0.9, crop 32 with 4 px padding and flips, severity 3 (preset
    # "cifar"), the JSD loss on.
    "augmix-cifar": dict(
        arch="wrn40_2", epochs=100, batch_size=128, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="cosine", image_size=32, crop="pad", online="augmix", online_options={"preset": "cifar"}, jsd=True,
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


def apply_recipe(name: str, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a paper's recipe with ``overrides`` on top."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    return TrainConfig(**{**RECIPES[name], **overrides})


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
