"""The one table of everything a user can name: methods, their default models, and jobs.

Standard library only, so the command line, the docs and the sizing tools can list what
exists without importing torch or Ray. Classes are named by import path and imported on
first use (:meth:`MethodEntry.load`).

Adding a method is one file in :mod:`raymix.methods` and one :func:`register_method` call
here (``docs/architecture.md``, "Add a method"); the jobs, training, preview, plan and bench
read this table and pick it up.

Kinds of method:

- ``"image"``: one image in, one augmented image out (PixMix, IPMix, LayerMix, AugMix).
  Runs in a CPU stage, written once (``raymix mix``) or per epoch in training's data stage.
- ``"pair"``: mixes an image with an edited version of it that a GPU model made first
  (DiffuseMix: InstructPix2Pix). Has its own job.
- ``"batch"``: mixes images of a batch with each other on the training device, inside the
  step (MiAMix). Not a data-stage method.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

__all__ = [
    "KINDS", "MethodEntry", "JobEntry", "METHODS", "JOBS", "DEFAULT_MODELS",
    "register_method", "register_job", "method", "methods", "method_names", "create", "job",
]

KINDS = ("image", "pair", "batch")
DEVICES = ("cpu", "gpu")


def _import(target: str):
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@dataclass(frozen=True)
class MethodEntry:
    """One method: what it is called, where its class lives, how it runs.

    Args:
        name: what users type (``--method``, ``--online``), and the ``method`` column of
            the rows it writes.
        target: ``"module:Class"``; ``None`` for a method raymix can size (``raymix plan``)
            but not run yet.
        kind: ``"image"``, ``"pair"`` or ``"batch"`` (module docstring).
        device: where its own work runs: ``"cpu"`` or ``"gpu"``; a pair method's model
            stage runs on ``gpu_models``.
        title: paper and venue, as the preview and the docs print them.
        presets: names of the method's hyperparameter sets, its ``preset=`` choices (the
            values, with their citations, live in the method's module as ``PRESETS``).
            DiffuseMix's ``paper``/``fast``/``public-code`` are its editor's presets
            (:class:`raymix.models.editor_options.EditorOptions`).
        fractals: whether it draws from a fractal bank.
        gpu_models: models a GPU stage runs per output (``raymix plan`` counts their FLOPs).
        gpu_defaults: resolution and steps as the paper runs its GPU stage.
        cpu_images_per_s_224: measured CPU rate of the method on one core at 224 px
            (``raymix bench cpu``, docs/performance.md); ``None`` where not measured.
    """

    name: str
    target: str | None
    kind: str
    device: str
    title: str
    presets: tuple[str, ...] = ()
    fractals: bool = False
    gpu_models: tuple[str, ...] = ()
    gpu_defaults: dict = field(default_factory=dict)
    cpu_images_per_s_224: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")

    @property
    def available(self) -> bool:
        """Whether raymix can run it (``False``: sizing only)."""
        return self.target is not None

    @property
    def online(self) -> bool:
        """Whether training can run it per epoch in the CPU data stage."""
        return self.available and self.kind == "image"

    def load(self) -> type:
        """The method's class (imported now)."""
        if self.target is None:
            raise ValueError(f"{self.name} is not implemented yet; `raymix plan --method {self.name}` sizes it")
        return _import(self.target)


@dataclass(frozen=True)
class JobEntry:
    """One job of the command line: ``raymix NAME`` and ``jobs/SCRIPT``.

    ``settings`` is the job's settings dataclass (its fields are the flags,
    :mod:`raymix.settings`), ``run`` the function that takes it and returns the exit
    status; both ``"module:name"``, imported on use. ``script`` is the job's thin entry
    point for ``ray job submit -- python jobs/...``.
    """

    name: str
    settings: str
    run: str
    help: str
    script: str = ""

    def load_settings(self) -> type:
        return _import(self.settings)

    def load_run(self):
        return _import(self.run)


METHODS: dict[str, MethodEntry] = {}
JOBS: dict[str, JobEntry] = {}

#: Default weights of each GPU model a method runs (``MethodEntry.gpu_models``): a Hugging Face
#: id; users may give a local folder or an s3:// mirror instead.
DEFAULT_MODELS = {
    "instructpix2pix": "timbrooks/instruct-pix2pix",
    # AGA (Rahat et al., Sec. 4-5.1): GroundingDINO (variant unstated; Swin-T as Grounded-SAM pairs it with
    # SAM ViT-H), SAM ViT-H, Llama-2-13B-GPTQ, Stable Diffusion XL base.
    "grounding_dino_t": "IDEA-Research/grounding-dino-tiny",
    "sam_vit_h": "facebook/sam-vit-huge",
    "llama2_13b_caption": "TheBloke/Llama-2-13B-GPTQ",
    "sdxl_background": "stabilityai/stable-diffusion-xl-base-1.0",
}


def register_method(entry: MethodEntry) -> MethodEntry:
    if entry.name in METHODS:
        raise ValueError(f"method {entry.name!r} is already registered")
    METHODS[entry.name] = entry
    return entry


def register_job(entry: JobEntry) -> JobEntry:
    if entry.name in JOBS:
        raise ValueError(f"job {entry.name!r} is already registered")
    JOBS[entry.name] = entry
    return entry


def method(name: str | MethodEntry) -> MethodEntry:
    """The entry of ``name``; a clear error listing the names otherwise.

    An entry is returned as it is: a stage built on a Ray worker from an entry (rather than a
    name) runs a method that was registered at run time in the driver only.
    """
    if isinstance(name, MethodEntry):
        return name
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}") from None


def methods(*, kind: str | None = None, device: str | None = None, available: bool | None = True,
            online: bool | None = None, fractals: bool | None = None) -> list[MethodEntry]:
    """The entries matching every filter given (``None``: any), in registration order."""
    out = []
    for entry in METHODS.values():
        if kind is not None and entry.kind != kind:
            continue
        if device is not None and entry.device != device:
            continue
        if available is not None and entry.available != available:
            continue
        if online is not None and entry.online != online:
            continue
        if fractals is not None and entry.fractals != fractals:
            continue
        out.append(entry)
    return out


def method_names(**filters) -> tuple[str, ...]:
    """Names of :func:`methods` ``(**filters)``: the choices of a flag."""
    return tuple(entry.name for entry in methods(**filters))


def create(name: str | MethodEntry, **kwargs):
    """Build a method by name, e.g. ``create("pixmix", seed=1, preset="cifar")``."""
    return method(name).load()(**kwargs)


def job(name: str) -> JobEntry:
    try:
        return JOBS[name]
    except KeyError:
        raise ValueError(f"unknown job {name!r}; expected one of {', '.join(JOBS)}") from None


# -- the methods ---------------------------------------------------------------------------
# Measured CPU rates: `raymix bench cpu`, one core at 224 px, 2026-11-24 (docs/performance.md).

register_method(MethodEntry(
    name="pixmix", target="raymix.methods.pixmix:PixMix", kind="image", device="cpu",
    title="PixMix (Hendrycks et al., CVPR 2022)", presets=("imagenet", "cifar"), fractals=True,
    cpu_images_per_s_224=1471.0,
))
register_method(MethodEntry(
    name="ipmix", target="raymix.methods.ipmix:IPMix", kind="image", device="cpu",
    title="IPMix (Huang et al., NeurIPS 2023)", presets=("imagenet", "cifar"), fractals=True,
    cpu_images_per_s_224=1051.0,
))
register_method(MethodEntry(
    name="layermix", target="raymix.methods.layermix:LayerMix", kind="image", device="cpu",
    title="LayerMix (Ahmad et al.)", fractals=True,
    cpu_images_per_s_224=1362.0,
))
register_method(MethodEntry(
    name="augmix", target="raymix.methods.augmix:AugMix", kind="image", device="cpu",
    title="AugMix (Hendrycks et al., ICLR 2020)", presets=("imagenet", "cifar"),
))
# DiffuseMix: 256x256 (authors' code), 100 steps (the diffusers default the code keeps).
register_method(MethodEntry(
    name="diffusemix", target="raymix.methods.diffusemix:DiffuseMix", kind="pair", device="cpu",
    title="DiffuseMix (Islam et al., CVPR 2024)", fractals=True,
    gpu_models=("instructpix2pix",), gpu_defaults={"resolution": 256, "steps": 100},
    cpu_images_per_s_224=4999.0,
))
register_method(MethodEntry(
    name="miamix", target="raymix.methods.miamix:MiAMix", kind="batch", device="gpu",
    title="MiAMix (Liang et al., Processes 2023)",
))
# AGA: SDXL "with default hyperparameters" (Sec. 5.1): 1024x1024, 50 steps. The "pair" is the
# image and its generated background; the compositing (CPU) pastes the subject on it, measured
# by `raymix bench cpu --methods aga` (2026-12-06, a subject of 20% of the image).
register_method(MethodEntry(
    name="aga", target="raymix.methods.aga:AGA", kind="pair", device="cpu",
    title="AGA (Rahat et al., 2024)",
    gpu_models=("grounding_dino_t", "sam_vit_h", "llama2_13b_caption", "sdxl_background"),
    gpu_defaults={"resolution": 1024, "steps": 50}, cpu_images_per_s_224=413.0,
))


# -- the jobs ------------------------------------------------------------------------------
# `raymix NAME` and `python jobs/SCRIPT`; flags generated from the settings (raymix.settings).

register_job(JobEntry(
    name="mix", settings="raymix.pipeline.specs:MixJob", run="raymix.pipeline.mix:main",
    help="an \"image\" method of the registry (--method) over a dataset, written as augmented shards (CPU)",
    script="jobs/mix_imagenet.py",
))
register_job(JobEntry(
    name="diffusemix", settings="raymix.pipeline.specs:DiffuseMixJob", run="raymix.pipeline.diffusemix:main",
    help="DiffuseMix over a dataset: InstructPix2Pix edits (GPU), fractal mixing (CPU), written as shards",
    script="jobs/diffusemix_imagenet.py",
))
register_job(JobEntry(
    name="aga", settings="raymix.pipeline.specs:AGAJob", run="raymix.pipeline.aga:main",
    help="AGA over a dataset: subject boxes and masks, captions, generated backgrounds (GPU), compositing (CPU)",
    script="jobs/aga_imagenet.py",
))
register_job(JobEntry(
    name="train", settings="raymix.train.job:TrainJob", run="raymix.train.job:main",
    help="train a classifier with Ray Train on original and augmented data, online methods, MiAMix",
    script="jobs/train_resnet50.py",
))
register_job(JobEntry(
    name="eval", settings="raymix.eval.job:EvalJob", run="raymix.eval.job:main",
    help="clean, corrupted (ImageNet-C), out-of-distribution and adversarial error and calibration of checkpoints",
    script="jobs/eval_robustness.py",
))
