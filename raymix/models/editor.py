"""InstructPix2Pix editing: the generation step of DiffuseMix, a whole batch per call.

Islam et al., "DiffuseMix", CVPR 2024, Sec. 3.2 ("Generation") and Algorithm 1,
lines 4-5: each training image ``I_i`` is edited by a pre-trained InstructPix2Pix
model (Brooks et al., CVPR 2023) with a prompt ``p_j`` drawn at random from a
library of filter-like prompts, giving the generated image ``Î_ij``.

Settings, their defaults (preset ``"paper"``), and where each default comes from:

=====================  =========================  ==============================================
setting                default                    source
=====================  =========================  ==============================================
prompt library         nine filter-like prompts   paper, Sec. 4 "Textual Prompt Selection"
template               "A transformed version     paper, Sec. 4
                       of image into {prompt}"
prompt choice          random per image/replica   paper, Algorithm 1 line 4
model                  timbrooks/instruct-pix2pix paper, Sec. 4 "Implementation Details" (InstructPix2Pix [2])
resolution             256                        paper silent; authors' public code (256x256 in and out)
steps                  100                        paper silent; public code keeps the diffusers default
guidance_scale         4                          paper silent; public code
image_guidance_scale   1.5                        paper silent; diffusers default kept by the public code
scheduler              Euler-ancestral            paper silent; public code
blank outputs          retry twice, then          paper silent; public code drops near-white outputs
                       quarantine                 (see :mod:`raymix.ops.blank`)
=====================  =========================  ==============================================

Presets (:data:`PRESETS`): ``"paper"`` (the table), ``"fast"`` (20 steps, everything
else as ``"paper"``; about 5x less GPU time per image), ``"public-code"`` (the authors'
bare-word prompts with no template, every prompt in turn over the replicas, the
near-white filter only, no retry). Any setting can be overridden by keyword.

The safety checker is off: DiffuseMix edits training images with fixed, filter-like
prompts, the authors' code disables it too, and the checker's own model would be
another download and another GPU pass per image.

How a batch is edited (:meth:`InstructPix2PixEditor.edit`) follows
``StableDiffusionInstructPix2PixPipeline.__call__`` step by step, with the components
of the loaded pipeline, so it reads like the pipeline: encode the prompts, encode the
images, draw the noise, run the Euler-ancestral loop with the three guidance branches
(text+image, image only, neither) in one UNet call, decode. It differs in three ways,
all for throughput at scale: every row's noise (initial latents and the noise of every
ancestral step) is drawn up front from that row's own generator, in the same order the
pipeline draws it, so no random draw or host sync happens inside the loop; the
scheduler's step is written out on precomputed per-step coefficients; latents stay in
float32 between steps while the networks run in fp16/bf16. On CPU in fp32 it gives
the pipeline's own images (a test checks this).

This module is the model only: images, prompts and generators in, images out, no Ray and
no rows. The Ray Data stage that edits rows (each row's prompt and noise, retries of blank
outputs, quarantine, memory back-off) is :class:`raymix.pipeline.edit_stage.EditStage`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from raymix.models.editor_options import DEFAULT_MODEL
from raymix.models.prompts import BARE_TEMPLATE, PUBLIC_CODE_PROMPTS, PromptLibrary, read_prompt_file
from raymix.models.random_pipelines import RANDOM_MODELS, build_random_pipeline
from raymix.models.weights import resolve_model
from raymix.ops.blank import BLANK_KINDS, PUBLIC_CODE_BLANK, BlankThresholds, blank_kinds

__all__ = [
    "DEFAULT_MODEL",
    "EditSettings",
    "InstructPix2PixEditor",
    "PRESETS",
    "edit_settings",
    "load_pipeline",
]

log = logging.getLogger(__name__)


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class EditSettings:
    """What the edit computes (not how fast); defaults are preset ``"paper"``, see the module docstring."""

    resolution: int = 256
    steps: int = 100
    guidance_scale: float = 4.0
    image_guidance_scale: float = 1.5
    library: PromptLibrary = field(default_factory=PromptLibrary)
    prompt_choice: str = "random"  # "random" (paper) or "cycle" (public code: every prompt in turn)
    max_retries: int = 2
    blank: BlankThresholds = field(default_factory=BlankThresholds)

    def __post_init__(self):
        if self.resolution <= 0 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {self.resolution}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.prompt_choice not in ("random", "cycle"):
            raise ValueError(f"prompt_choice must be 'random' or 'cycle', got {self.prompt_choice!r}")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.guidance_scale <= 1.0 or self.image_guidance_scale < 1.0:
            # The pipeline silently drops classifier-free guidance below these; DiffuseMix never does.
            raise ValueError("guidance_scale must be > 1 and image_guidance_scale >= 1")


PRESETS: dict[str, EditSettings] = {
    "paper": EditSettings(),
    "fast": EditSettings(steps=20),
    "public-code": EditSettings(
        library=PromptLibrary(PUBLIC_CODE_PROMPTS, BARE_TEMPLATE),
        prompt_choice="cycle",
        max_retries=0,
        blank=PUBLIC_CODE_BLANK,
    ),
}


def edit_settings(
    preset: str = "paper",
    *,
    prompts: Sequence[str] | None = None,
    prompt_file: str | None = None,
    template: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **overrides,
) -> EditSettings:
    """A preset with overrides. ``prompt_file`` (one prompt per line, any fsspec URL) wins over ``prompts``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    base = PRESETS[preset]
    if prompt_file is not None:
        prompts = read_prompt_file(prompt_file, storage_options)
    if prompts is not None or template is not None:
        overrides["library"] = PromptLibrary(
            tuple(prompts) if prompts is not None else base.library.prompts,
            template if template is not None else base.library.template,
        )
    if isinstance(overrides.get("blank"), Mapping):
        overrides["blank"] = BlankThresholds(**overrides["blank"])
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when torch sees a GPU, else the CPU (Ray's fake GPUs set CUDA_VISIBLE_DEVICES only)."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"``: bf16 on a GPU that has it, else fp16; fp32 on the CPU whatever is asked."""
    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    if device.type == "cpu":
        return torch.float32
    if dtype == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return DTYPES[dtype]


def load_pipeline(
    model: str = DEFAULT_MODEL,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    cache_dir: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    variant: str | None = None,
):
    """A ``StableDiffusionInstructPix2PixPipeline`` with the Euler-ancestral scheduler, on ``device``.

    ``model`` is ``"tiny"`` or ``"random-sd15"`` (random weights from ``seed``, see
    :mod:`raymix.models.random_pipelines`), or anything :func:`resolve_model` takes:
    a Hugging Face id, a local folder, an object-store mirror. Real weights load
    from safetensors only, without remote code and without the safety checker.
    """
    if model in RANDOM_MODELS:
        return build_random_pipeline(RANDOM_MODELS[model], seed=seed, device=device, dtype=dtype)
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    path = resolve_model(model, cache_dir=cache_dir, storage_options=storage_options, variant=variant)
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        path,
        dtype=dtype,
        use_safetensors=True,
        variant=variant,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


class InstructPix2PixEditor:
    """InstructPix2Pix on a batch: uint8 images, one prompt and one generator per image in,
    edited uint8 images out (:meth:`edit` at the model resolution, :meth:`edit_images` at
    any size, with each output's blank kind).

    A row's edit depends only on its image, prompt and generator (the noise is drawn from
    it up front), not on which other rows share its batch. Matrix kernels are chosen by
    shape (and on the CPU split their sums by thread count), so without ``model_batch`` a
    row can differ by one grey level between batch sizes; ``model_batch`` runs every model
    call at one fixed size.

    Arguments. ``model``: a Hugging Face id, a local folder, an ``s3://`` mirror,
    ``"tiny"`` or ``"random-sd15"`` (see :func:`load_pipeline`). ``preset`` and the
    setting keywords: see :class:`EditSettings` and :func:`edit_settings` (the prompt
    and retry settings are :class:`~raymix.pipeline.edit_stage.EditStage`'s to apply).
    ``model_seed``: the random weights of ``"tiny"`` and ``"random-sd15"``. Throughput
    keywords (they do not change what is computed beyond floating-point rounding): ``device`` (default: CUDA if torch sees one, else the
    CPU), ``dtype`` (``"auto"``, ``"bf16"``, ``"fp16"``, ``"fp32"``; fp32 on the CPU),
    ``channels_last`` (``None``: on CUDA only), ``fuse_qkv`` (one projection for q, k,
    v), ``compile`` (a ``torch.compile`` mode for the UNet, e.g.
    ``"max-autotune-no-cudagraphs"``, or ``"max-autotune"`` which adds CUDA graphs;
    ``"auto"``: ``"default"`` on CUDA, none on the CPU; ``"none"`` or ``None``: off),
    ``compile_vae``, ``model_batch``
    (split and pad every model call to this many rows: one compiled graph, and row
    results independent of batch grouping on the GPU too), ``vae_batch`` (decode in
    chunks to bound memory). ``pipeline``: wrap an already built pipeline instead of
    loading ``model`` (benchmarks, tests). :class:`raymix.models.editor_options.EditorOptions`
    holds the user-facing options as one dataclass (its ``editor_kwargs()`` are keywords here).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        preset: str = "paper",
        prompts: Sequence[str] | None = None,
        prompt_file: str | None = None,
        template: str | None = None,
        prompt_choice: str | None = None,
        resolution: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        max_retries: int | None = None,
        blank: BlankThresholds | Mapping[str, Any] | None = None,
        device: str | None = None,
        dtype: str = "auto",
        channels_last: bool | None = False,
        fuse_qkv: bool = False,
        compile: str | None = None,
        compile_vae: bool = False,
        model_batch: int | None = None,
        vae_batch: int | None = None,
        cache_dir: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        variant: str | None = None,
        model_seed: int = 0,
        pipeline=None,
    ):
        self.settings = edit_settings(
            preset,
            prompts=prompts,
            prompt_file=prompt_file,
            template=template,
            storage_options=storage_options,
            prompt_choice=prompt_choice,
            resolution=resolution,
            steps=steps,
            guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale,
            max_retries=max_retries,
            blank=blank,
        )
        self.library = self.settings.library
        self.model_name = model
        if pipeline is None:
            self.device = choose_device(device)
            self.dtype = choose_dtype(dtype, self.device)
            if self.device.type == "cpu" and not torch.cuda.is_available():
                log.warning("CUDA is not available: editing on the CPU in float32")
            pipeline = load_pipeline(
                model,
                device=self.device,
                dtype=self.dtype,
                seed=model_seed,
                cache_dir=cache_dir,
                storage_options=storage_options,
                variant=variant,
            )
        else:
            self.device, self.dtype = pipeline.unet.device, pipeline.unet.dtype
        for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder):
            module.eval().requires_grad_(False)
        self.pipeline = pipeline
        self.tokenizer = pipeline.tokenizer
        self.text_encoder = pipeline.text_encoder
        self.vae = pipeline.vae
        self.unet = pipeline.unet
        self.latent_scale = pipeline.vae_scale_factor
        if self.settings.resolution % self.latent_scale:
            raise ValueError(f"resolution must be a multiple of {self.latent_scale} for this VAE")
        self.model_batch = model_batch
        self.vae_batch = vae_batch
        self._prompt_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._set_schedule(pipeline.scheduler)
        # "Auto" speed options resolve on the device the editor runs on (EditorOptions' defaults).
        if channels_last is None:
            channels_last = self.device.type == "cuda"
        if compile == "auto":
            compile = "default" if self.device.type == "cuda" else None
        self.channels_last, self.compile_mode = channels_last, None if compile == "none" else compile
        self._set_speed_options(self.channels_last, fuse_qkv, self.compile_mode, compile_vae)

    # ------------------------------------------------------------------ setup

    def _set_schedule(self, scheduler) -> None:
        """Per-step timesteps and Euler-ancestral coefficients, as EulerAncestralDiscreteScheduler computes them."""
        from diffusers import EulerAncestralDiscreteScheduler

        scheduler = EulerAncestralDiscreteScheduler.from_config(scheduler.config)
        scheduler.set_timesteps(self.settings.steps)
        sigmas = scheduler.sigmas.float()  # float32, like the scheduler's own arithmetic
        self._timesteps = scheduler.timesteps.to(self.device)
        self._init_noise_sigma = float(scheduler.init_noise_sigma)
        self._steps = []
        for i in range(self.settings.steps):
            sigma_from, sigma_to = sigmas[i], sigmas[i + 1]
            sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
            sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
            self._steps.append(
                dict(
                    input_scale=float(1 / ((sigma_from**2 + 1) ** 0.5)),
                    sigma=float(sigma_from),
                    dt=float(sigma_down - sigma_from),
                    sigma_up=float(sigma_up),
                )
            )

    def _set_speed_options(self, channels_last: bool, fuse_qkv: bool, compile: str | None, compile_vae: bool):
        from diffusers.models.attention_processor import AttnProcessor2_0

        for module in (self.unet, self.vae):
            if fuse_qkv:
                module.fuse_qkv_projections()  # FusedAttnProcessor2_0: still PyTorch SDPA
            else:
                module.set_attn_processor(AttnProcessor2_0())  # PyTorch scaled_dot_product_attention
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        self._unet = self.unet
        self._vae_decode = self.vae.decode
        self._cudagraphs = bool(compile) and "no-cudagraphs" not in compile and compile != "default"
        if compile:
            self._unet = torch.compile(self.unet, mode=compile, fullgraph=True, dynamic=False)
            if compile_vae:
                self._vae_decode = torch.compile(self.vae.decode, mode=compile, dynamic=False)

    @contextlib.contextmanager
    def eager(self):
        """Run without ``torch.compile`` inside the block (FLOP counting sees every op this way)."""
        saved = self._unet, self._vae_decode, self._cudagraphs
        self._unet, self._vae_decode, self._cudagraphs = self.unet, self.vae.decode, False
        try:
            yield self
        finally:
            self._unet, self._vae_decode, self._cudagraphs = saved

    # ------------------------------------------------------------------ the edit

    @torch.inference_mode()
    def edit(
        self, images: torch.Tensor, prompts: Sequence[str], generators: Sequence[torch.Generator]
    ) -> torch.Tensor:
        """Edit a batch: uint8 ``(N, 3, R, R)`` images at the model resolution -> uint8 ``(N, 3, R, R)``.

        ``prompts`` are full prompt strings, ``generators`` one CPU generator per row
        (consumed: the row's initial latents, then one draw per step).
        """
        n = len(images)
        if not (n == len(prompts) == len(generators)):
            raise ValueError("images, prompts and generators must have the same length")
        if self.model_batch and n != self.model_batch:
            return self._edit_in_fixed_batches(images, prompts, generators)
        text = self.encode_prompts(prompts)
        image_latents = self.encode_images(images)
        noise = self.draw_noise(generators, image_latents.shape[1:])
        image_latents = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])

        latents = noise[0] * self._init_noise_sigma
        for i in range(self.settings.steps):
            latents = self.denoise_step(i, latents, image_latents, text, noise[i + 1])
        return self.decode_latents(latents)

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings for the three guidance branches: ``[prompts, "", ""]``, shape ``(3N, 77, D)``.

        Each distinct prompt is encoded alone and cached, so a row's embedding does
        not depend on its batch.
        """
        text = torch.stack([self._embed(p) for p in prompts])
        empty = self._embed("").expand_as(text)
        return torch.cat([text, empty, empty])

    @torch.inference_mode()
    def _embed(self, prompt: str) -> torch.Tensor:
        if prompt in self._prompt_cache:
            self._prompt_cache.move_to_end(prompt)
            return self._prompt_cache[prompt]
        ids = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        embedding = self.text_encoder(ids)[0][0]
        self._prompt_cache[prompt] = embedding
        if len(self._prompt_cache) > 256:
            self._prompt_cache.popitem(last=False)
        return embedding

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """The VAE latents (distribution mode, unscaled, as InstructPix2Pix was trained) of uint8 images."""
        pixels = images.to(self.device, self.dtype) / 127.5 - 1.0
        pixels = pixels.contiguous(memory_format=self.memory_format)
        return self.vae.encode(pixels).latent_dist.mode()

    def draw_noise(self, generators: Sequence[torch.Generator], shape) -> torch.Tensor:
        """``(steps + 1, N, C, h, w)`` float32 noise: initial latents, then one draw per ancestral step.

        Each row draws from its own generator in the pipeline's order and shapes,
        on the CPU (so the numbers do not depend on the device), then moves once.
        """
        draws = self.settings.steps + 1
        rows = [torch.cat([torch.randn((1, *shape), generator=g) for _ in range(draws)]) for g in generators]
        return torch.stack(rows, dim=1).to(self.device, non_blocking=True)

    def denoise_step(
        self, i: int, latents: torch.Tensor, image_latents: torch.Tensor, text: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """One Euler-ancestral step with the three guidance branches in a single UNet call."""
        c = self._steps[i]
        model_input = torch.cat([latents] * 3) * c["input_scale"]
        model_input = torch.cat([model_input.to(self.dtype), image_latents], dim=1)
        model_input = model_input.contiguous(memory_format=self.memory_format)
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        eps = self._unet(model_input, self._timesteps[i], encoder_hidden_states=text, return_dict=False)[0]
        eps_text, eps_image, eps_uncond = eps.float().chunk(3)
        eps = (
            eps_uncond
            + self.settings.guidance_scale * (eps_text - eps_image)
            + self.settings.image_guidance_scale * (eps_image - eps_uncond)
        )
        # EulerAncestralDiscreteScheduler.step, epsilon prediction:
        predicted_original = latents - c["sigma"] * eps
        derivative = (latents - predicted_original) / c["sigma"]
        return latents + derivative * c["dt"] + noise * c["sigma_up"]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """uint8 images from latents, in chunks of ``vae_batch`` rows."""
        chunk = self.vae_batch or len(latents)
        out = []
        for part in latents.split(chunk):
            part = (part / self.vae.config.scaling_factor).to(self.dtype)
            decoded = self._vae_decode(part.contiguous(memory_format=self.memory_format), return_dict=False)[0]
            out.append(((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8))
        return torch.cat(out)

    def _edit_in_fixed_batches(self, images, prompts, generators) -> torch.Tensor:
        size, n = self.model_batch, len(images)
        padded_n = math.ceil(n / size) * size
        pad = padded_n - n
        images = torch.cat([images, images[-1:].expand(pad, *images.shape[1:])]) if pad else images
        prompts = list(prompts) + [prompts[-1]] * pad
        # Padding rows get their own throwaway generators: the real rows' streams stay untouched.
        generators = list(generators) + [torch.Generator().manual_seed(0) for _ in range(pad)]
        out = [
            self.edit(images[s : s + size], prompts[s : s + size], generators[s : s + size])
            for s in range(0, padded_n, size)
        ]
        return torch.cat(out)[:n]

    # ------------------------------------------------------------------ images of any size

    def edit_images(
        self, images: Sequence[np.ndarray], prompts: Sequence[str], generators: Sequence[torch.Generator]
    ) -> tuple[list[np.ndarray], list[str]]:
        """Edit uint8 HWC images of any size: resize to the model resolution, edit, check, resize back.

        Returns the edited images (each the size of its input) and, per row, the
        blank kind found (``""`` when the image is fine).
        """
        r = self.settings.resolution
        sizes = [img.shape[:2] for img in images]
        if len(set(sizes)) == 1:  # one transfer for the whole batch (np.stack also copies read-only views)
            pixels = _resize(torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2), (r, r))
        else:
            pixels = torch.stack([_resize(_to_chw(img, self.device), (r, r)) for img in images])
        edited = self.edit(pixels, prompts, generators)
        kinds = blank_kinds(edited, self.settings.blank).tolist()
        if len(set(sizes)) == 1:  # one transfer for the whole batch
            host = list(_resize(edited, sizes[0]).permute(0, 2, 3, 1).cpu().numpy())
        else:
            host = [_resize(e, s).permute(1, 2, 0).cpu().numpy() for e, s in zip(edited, sizes)]
        return host, [BLANK_KINDS[k] for k in kinds]


# ---------------------------------------------------------------------- helpers


def _to_chw(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)  # a copy: batches may be read-only


def _resize(images: torch.Tensor, size) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 ``(C, H, W)`` or ``(N, C, H, W)``; a no-op at the same size."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return TF.resize(images, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
