"""Loading the models to evaluate: ``raymix train`` checkpoints or torchvision weights."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch

from raymix.io import storage
from raymix.train.loop import CHECKPOINT_FILE, IMAGENET_MEAN, IMAGENET_STD
from raymix.train.models import build_model

__all__ = ["ModelSpec", "resolve", "load_state", "build", "IMAGENET_MEAN", "IMAGENET_STD"]


@dataclass
class ModelSpec:
    """What is needed to rebuild one model on a worker: a name, the source, its architecture."""

    name: str
    uri: str
    arch: str
    num_classes: int
    stem: str
    image_size: int = 224
    val_crop_ratio: float = 0.875


def _checkpoint_path(uri: str, storage_options: dict | None) -> str:
    """``uri`` itself, its ``state.pt``, or, for the run folder of `raymix train`, the
    ``state.pt`` of its latest checkpoint (``checkpoint_<timestamp>`` folders sort by time)."""
    fs, path = storage.filesystem(uri, storage_options)
    if not fs.isdir(path):
        return uri
    if fs.exists(storage.join(path, CHECKPOINT_FILE)):
        return storage.join(uri, CHECKPOINT_FILE)
    folders = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=True) if e["type"] == "directory"]
    runs = sorted(name for name in folders if name.startswith("checkpoint_"))
    if not runs:
        raise ValueError(f"{uri}: no {CHECKPOINT_FILE} and no checkpoint_* folder; give a checkpoint of `raymix train`")
    return storage.join(uri, runs[-1], CHECKPOINT_FILE)


def load_state(uri: str, storage_options: dict | None = None) -> dict[str, Any]:
    """The checkpoint dict at ``uri`` (``state.pt`` or its folder), read with
    ``weights_only=True``: tensors and plain containers only, no code runs."""
    path = _checkpoint_path(uri, storage_options)
    fs, p = storage.filesystem(path, storage_options)
    with fs.open(p, "rb") as f:
        data = f.read()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a checkpoint that loads with weights_only=True: {err}") from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} has no 'model' state dict; expected the state.pt of `raymix train`")
    return state


def _stem(config: dict) -> str:
    stem = config.get("stem", "auto")
    if stem == "auto":
        return "cifar" if int(config.get("image_size", 224)) <= 64 else "imagenet"
    return stem


def resolve(name: str, uri: str, storage_options: dict | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of ``uri``: ``torchvision:ARCH``, or a train checkpoint (its
    ``config`` gives the architecture, classes, stem and validation crop)."""
    if uri.startswith("torchvision:"):
        arch = uri.split(":", 1)[1]
        return ModelSpec(name=name, uri=uri, arch=arch, num_classes=1000, stem="imagenet")
    config = load_state(uri, storage_options).get("config") or {}
    if "arch" not in config or "num_classes" not in config:
        raise ValueError(f"{uri}: the checkpoint's config names no arch/num_classes")
    return ModelSpec(name=name, uri=uri, arch=config["arch"], num_classes=int(config["num_classes"]),
                     stem=_stem(config), image_size=int(config.get("image_size", 224)),
                     val_crop_ratio=float(config.get("val_crop_ratio", 0.875)))


def build(spec: ModelSpec, storage_options: dict | None = None) -> torch.nn.Module:
    """The model of ``spec`` with its weights, in eval mode."""
    if spec.uri.startswith("torchvision:"):
        model = build_model(spec.arch, spec.num_classes, stem=spec.stem, weights="torchvision")
    else:
        model = build_model(spec.arch, spec.num_classes, stem=spec.stem)
        model.load_state_dict(load_state(spec.uri, storage_options)["model"])
    return model.eval()
