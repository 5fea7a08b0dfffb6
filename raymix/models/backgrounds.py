"""Background generation: a diffusers text-to-image pipeline, many captions per call.

Rahat et al., "AGA" (2024), Sec. 4.3 and 5.1: each background caption is drawn by
Stable Diffusion XL "from Hugging-Face, with default hyperparameters": the pipeline's own
defaults, which :class:`BackgroundGenerator` keeps unless told otherwise (SDXL base 1.0:
50 steps of its Euler scheduler, guidance scale 5.0, 1024x1024; Stable Diffusion 1.5, the
option: 50 PNDM steps, guidance 7.5, 512x512).

Weights come from a Hugging Face id, a local folder or an object-store mirror
(:func:`raymix.models.weights.resolve_model`, safetensors only), or are random
(:mod:`raymix.models.random_models`): ``"tiny"``/``"random-full"`` (SDXL) and
``"tiny-sd15"``/``"random-full-sd15"`` (SD 1.5). The safety checker and the invisible
watermark are off: backgrounds are training data, written by fixed caption templates.

A row's background depends only on its caption and its generator: the initial latents
are drawn from that generator on the CPU in float32 before the pipeline runs (the
schedulers used draw nothing afterwards), so a row does not depend on its batch
neighbours, on the device or on the precision beyond floating-point rounding.

Models only: captions and generators in, uint8 images out; no Ray and no rows
(:class:`raymix.pipeline.aga_stages.BackgroundStage` is the Ray Data stage).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from raymix.models.aga_options import DEFAULT_BACKGROUND_MODEL, BackgroundOptions
from raymix.models.editor import _resize, choose_device, choose_dtype
from raymix.models.random_models import build_random_text_to_image
from raymix.models.weights import resolve_model

__all__ = ["BackgroundGenerator", "RANDOM_TEXT_TO_IMAGE", "load_text_to_image"]

log = logging.getLogger(__name__)

#: Random-weight model names: (pipeline family, size).
RANDOM_TEXT_TO_IMAGE = {
    "tiny": ("sdxl", "tiny"),
    "random-full": ("sdxl", "full"),
    "tiny-sd15": ("sd15", "tiny"),
    "random-full-sd15": ("sd15", "full"),
}


def load_text_to_image(model: str = DEFAULT_BACKGROUND_MODEL, *, device="cpu", dtype=torch.float32, seed: int = 0,
                       cache_dir: str | None = None, storage_options: Mapping[str, Any] | None = None,
                       variant: str | None = None):
    """A diffusers text-to-image pipeline (SDXL or SD 1.5, from ``model_index.json``) on ``device``."""
    if model in RANDOM_TEXT_TO_IMAGE:
        family, size = RANDOM_TEXT_TO_IMAGE[model]
        return build_random_text_to_image(family, size, seed=seed, device=device, dtype=dtype)
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    path = resolve_model(model, cache_dir=cache_dir, storage_options=storage_options, variant=variant)
    components = DiffusionPipeline.load_config(path)  # model_index.json
    no_checker = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = AutoPipelineForText2Image.from_pretrained(
        path, dtype=dtype, use_safetensors=True, variant=variant,
        **(no_checker if "safety_checker" in components else {}),
    )
    if getattr(pipe, "watermark", None) is not None:
        pipe.watermark = None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


class BackgroundGenerator:
    """Text to image on a batch: captions and one CPU generator per caption in, uint8 HWC images out.

    Keywords: the fields of :class:`~raymix.models.aga_options.BackgroundOptions` (``model``,
    ``steps``, ``guidance_scale``, ``resolution``, ``dtype``, ``variant``, ``model_batch``),
    plus ``device`` (default: CUDA if torch sees one, else the CPU), ``model_seed`` (the
    random weights), ``cache_dir``, ``storage_options``; ``pipeline``: a pipeline already
    built (benchmarks, tests). :attr:`settings` holds the values used (the pipeline's
    defaults where an option is ``None``).
    """

    def __init__(
        self,
        model: str = DEFAULT_BACKGROUND_MODEL,
        *,
        device: str | None = None,
        model_seed: int = 0,
        cache_dir: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        pipeline=None,
        **options,
    ):
        self.options = BackgroundOptions(model=model, **options)
        if pipeline is None:
            self.device = choose_device(device)
            self.dtype = choose_dtype(self.options.dtype, self.device)
            if self.device.type == "cpu" and not torch.cuda.is_available():
                log.warning("CUDA is not available: generating backgrounds on the CPU in float32")
            pipeline = load_text_to_image(model, device=self.device, dtype=self.dtype, seed=model_seed,
                                          cache_dir=cache_dir, storage_options=storage_options,
                                          variant=self.options.variant)
        else:
            self.device, self.dtype = pipeline.unet.device, pipeline.unet.dtype
        self.pipeline = pipeline
        self.model_name = model
        default_side = pipeline.unet.config.sample_size * pipeline.vae_scale_factor
        side = self.options.resolution or default_side
        if side <= 0 or side % pipeline.vae_scale_factor:
            raise ValueError(f"resolution must be a positive multiple of {pipeline.vae_scale_factor}, got {side}")
        defaults = _call_defaults(pipeline)
        self.settings = {
            "model": model,
            "pipeline": type(pipeline).__name__,
            "resolution": side,
            "steps": self.options.steps or defaults["num_inference_steps"],
            "guidance_scale": self.options.guidance_scale if self.options.guidance_scale is not None
            else defaults["guidance_scale"],
            "scheduler": type(pipeline.scheduler).__name__,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def __call__(self, captions: Sequence[str], generators: Sequence[torch.Generator],
                 size: tuple[int, int] | Sequence[tuple[int, int] | None] | None = None) -> list[np.ndarray]:
        """One background per caption, uint8 ``(H, W, 3)``: at the model resolution, or resized
        (antialiased bilinear) to ``size`` = ``(H, W)``, or to one size per caption (a list).
        Each generator is consumed by its row's initial latents."""
        if len(captions) != len(generators):
            raise ValueError("captions and generators must have the same length")
        sizes = _per_row_sizes(size, len(captions))
        chunk = self.options.model_batch or len(captions) or 1
        out: list[np.ndarray] = []
        for s in range(0, len(captions), chunk):
            images = self._generate(list(captions[s:s + chunk]), list(generators[s:s + chunk]))
            part = sizes[s:s + chunk]
            if len(set(part)) == 1:  # one resize and one transfer for the whole chunk
                images = images if part[0] is None else _resize(images, part[0])
                out.extend(images.permute(0, 2, 3, 1).cpu().numpy())
            else:
                out.extend((im if z is None else _resize(im, z)).permute(1, 2, 0).cpu().numpy()
                           for im, z in zip(images, part))
        return out

    def draw_latents(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Initial latents, float32 on the CPU from each row's generator, then moved to the device."""
        side = self.settings["resolution"] // self.pipeline.vae_scale_factor
        shape = (1, self.pipeline.unet.config.in_channels, side, side)
        latents = torch.cat([torch.randn(shape, generator=g) for g in generators])
        return latents.to(self.device, self.dtype)

    @torch.inference_mode()
    def _generate(self, captions: list[str], generators: list[torch.Generator]) -> torch.Tensor:
        if not captions:
            return torch.empty((0, 3, self.settings["resolution"], self.settings["resolution"]), dtype=torch.uint8)
        side = self.settings["resolution"]
        images = self.pipeline(
            prompt=captions, latents=self.draw_latents(generators), height=side, width=side,
            num_inference_steps=self.settings["steps"], guidance_scale=self.settings["guidance_scale"],
            output_type="pt",
        ).images
        return (images.float().clamp(0, 1) * 255).round().to(torch.uint8)


def _per_row_sizes(size, n: int) -> list[tuple[int, int] | None]:
    if size is None:
        return [None] * n
    if len(size) == 2 and all(isinstance(v, (int, np.integer)) for v in size):
        return [(int(size[0]), int(size[1]))] * n
    if len(size) != n:
        raise ValueError("give one size, or one size per caption")
    return [None if z is None else (int(z[0]), int(z[1])) for z in size]


def _call_defaults(pipeline) -> dict:
    """The ``__call__`` defaults of the pipeline's class (the "default hyperparameters")."""
    import inspect

    params = inspect.signature(type(pipeline).__call__).parameters
    return {name: params[name].default for name in ("num_inference_steps", "guidance_scale")}
