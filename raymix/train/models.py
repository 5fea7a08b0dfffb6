"""Classifier architectures for training: torchvision ResNets and a CIFAR-style WideResNet."""

from __future__ import annotations

import re

import torch
import torchvision
from torch import nn

__all__ = ["ARCHS", "build_model", "WideResNet", "load_weights"]

_TORCHVISION = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2")
ARCHS = (*_TORCHVISION, "wrn40_4", "wrn28_10", "wrnD_K (any depth/width)")


def build_model(
    arch: str, num_classes: int, *, stem: str = "imagenet", dropout: float = 0.0, weights: str | None = None
) -> nn.Module:
    """A classifier with freshly initialised weights, or ``weights`` loaded on top.

    ``arch``: a torchvision ResNet name, or ``wrn{depth}_{width}`` for a CIFAR-style
    WideResNet (Zagoruyko and Komodakis 2016; ``wrn40_4`` is the PixMix/IPMix/LayerMix CIFAR
    model). ``stem="cifar"`` swaps a ResNet's 7x7/2 convolution and max-pool for a 3x3/1
    convolution, the usual choice for 32-64 pixel images.
    """
    match = re.fullmatch(r"wrn(\d+)_(\d+)", arch)
    if match:
        model: nn.Module = WideResNet(int(match[1]), int(match[2]), num_classes, dropout=dropout)
    elif arch in _TORCHVISION:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if stem == "cifar":
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        elif stem != "imagenet":
            raise ValueError(f"stem must be 'imagenet' or 'cifar', not {stem!r}")
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHS}")
    if weights:
        load_weights(model, weights, arch)
    return model


def load_weights(model: nn.Module, source: str, arch: str) -> None:
    """Load a state dict from ``source``: ``"torchvision"`` (the library's ImageNet weights,
    downloaded once), or a local / fsspec path (``s3://...``) to ``.safetensors`` or a
    ``torch.save`` file. A classifier head whose shape differs is left as initialised.
    """
    if source == "torchvision":
        state = torchvision.models.get_model_weights(arch).DEFAULT.get_state_dict(progress=False)
    else:
        import fsspec

        with fsspec.open(source, "rb") as f:
            data = f.read()
        if source.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            import io

            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            state = state.get("model", state)
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = set(own) - set(compatible)
    if len(compatible) == 0 or any(not k.startswith(("fc.", "classifier.", "linear.")) for k in missing):
        raise ValueError(f"weights in {source} do not fit {arch}: missing {sorted(missing)[:5]}...")
    model.load_state_dict(compatible, strict=False)


class _WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(self.dropout(torch.relu(self.bn2(o))))
        return o + skip


class WideResNet(nn.Module):
    """Pre-activation WideResNet-``depth``-``width`` for 32x32-style inputs."""

    def __init__(self, depth: int, width: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, channels[0], 3, 1, 1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = [_WideBlock(channels[i] if j == 0 else channels[i + 1], channels[i + 1], stride if j == 0 else 1, dropout) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels[3])
        self.fc = nn.Linear(channels[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.conv1(x))
        x = torch.relu(self.bn(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
