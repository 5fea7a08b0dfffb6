"""A stand-in for ``raymix.fractals.FractalBank`` in tests: smooth random noise images with the
same ``sample`` and ``ids_for`` API (one image per generator, resized/cropped to the requested size, optional
random flips, grayscale banks give three equal channels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as nnf


class NoiseBank:
    def __init__(self, n: int = 8, size: int = 64, seed: int = 0, grayscale: bool = False):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand((n, 1 if grayscale else 3, 8, 8), generator=g)
        images = nnf.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        images = images.clamp(0, 1).mul(255).round().to(torch.uint8)
        self.images = images.expand(n, 3, size, size).contiguous() if grayscale else images
        self.ids = [f"noise-{seed}-{i}" for i in range(n)]
        self.grayscale = grayscale
        self.calls = 0

    @classmethod
    def generate(cls, n: int, size: int, seed: int, kinds=("noise",), grayscale: bool = False) -> "NoiseBank":
        return cls(n, size, seed, grayscale)

    def __len__(self) -> int:
        return len(self.ids)

    def ids_for(self, generators: Sequence[torch.Generator]) -> list[str]:
        return [self.ids[int(torch.randint(len(self.ids), (1,), generator=g))] for g in generators]

    def sample(self, generators: Sequence[torch.Generator], size: tuple[int, int], flip: bool = False,
               channels_last: bool = False):
        self.calls += 1
        h, w = size
        out, ids = [], []
        for g in generators:
            i = int(torch.randint(len(self.ids), (1,), generator=g))
            img = nnf.interpolate(self.images[i : i + 1].float(), size=(h, w), mode="bilinear", align_corners=False)
            img = img.round().clamp(0, 255).to(torch.uint8)[0]
            if flip:
                if bool(torch.rand((), generator=g) < 0.5):
                    img = img.flip(-1)
                if bool(torch.rand((), generator=g) < 0.5):
                    img = img.flip(-2)
            out.append(img)
            ids.append(self.ids[i])
        out = torch.stack(out)
        return (out.contiguous(memory_format=torch.channels_last) if channels_last else out), ids


class ConstantBank(NoiseBank):
    """Every fractal is one grey level: makes blended outputs predictable."""

    def __init__(self, value: int = 100, n: int = 3):
        super().__init__(n=n, size=8)
        self.images = torch.full((n, 3, 8, 8), value, dtype=torch.uint8)
        self.ids = [f"const-{value}-{i}" for i in range(n)]
