"""The InstructPix2Pix editor's options: which model, which edit, and how fast.

One dataclass for everything a user can choose about the editor. The DiffuseMix job holds
one (``raymix diffusemix --steps 20 --compile default ...``, ``jobs/diffusemix_imagenet.py``)
and ``raymix bench gpu`` builds its editor from one, so the job runs what the benchmark
measures. Each field is a keyword of :class:`raymix.models.editor.InstructPix2PixEditor`
(:meth:`EditorOptions.editor_kwargs`). Standard library only: ``--help`` imports no torch.

The speed options' defaults are what the benchmark turns on: fused q/k/v projections, and on
CUDA channels_last and ``torch.compile`` of the UNet (``"auto"``; one compile per actor,
about a minute). They change how fast an edit runs, not what it computes beyond
floating-point rounding (``docs/diffusemix.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from raymix import registry
from raymix.settings import option

__all__ = ["EditorOptions", "DEFAULT_MODEL", "PRESET_NAMES", "DTYPE_NAMES", "COMPILE_MODES"]

DEFAULT_MODEL = registry.DEFAULT_MODELS["instructpix2pix"]
PRESET_NAMES = ("paper", "fast", "public-code")  # raymix.models.editor.PRESETS
DTYPE_NAMES = ("auto", "bf16", "fp16", "fp32")
COMPILE_MODES = ("auto", "none", "default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")


@dataclass(kw_only=True)
class EditorOptions:
    """Options of :class:`~raymix.models.editor.InstructPix2PixEditor`; ``None``: the preset's value."""

    # what is computed
    model: str = option(DEFAULT_MODEL, key="editor", metavar="ID|PATH|URI",
                        help="InstructPix2Pix weights: a Hugging Face id, a local folder, an s3:// mirror "
                             "(raymix models mirror), 'tiny' (random weights, offline, CPU) or 'random-sd15' "
                             "(full size, random weights: timings)")
    preset: str = option("paper", choices=PRESET_NAMES,
                         help="edit settings: paper (100 steps), fast (20 steps), public-code (the authors' code)")
    prompt_file: str | None = option(None, key="prompts", metavar="URI", default_text="the preset's prompts",
                                     help="prompt file, one prompt per line (any URI)")
    steps: int | None = option(None, default_text="the preset's: paper 100, fast 20", help="denoising steps")
    resolution: int | None = option(None, default_text="the preset's: 256",
                                    help="edit and output side in pixels, a multiple of 8")
    guidance_scale: float | None = option(None, default_text="the preset's: 4", help="text guidance scale (> 1)")
    image_guidance_scale: float | None = option(None, default_text="the preset's: 1.5",
                                                help="image guidance scale (>= 1)")
    variant: str | None = option(None, help="weight files variant to load, e.g. fp16")
    # how fast
    dtype: str = option("auto", choices=DTYPE_NAMES,
                        help="network precision on a GPU: auto is bf16 where supported, else fp16; "
                             "always fp32 on the CPU")
    model_batch: int = option(8, key="edit_batch_size",
                                     help="images per model call; every call runs at this size (the last is "
                                          "padded), so rows do not depend on how they were batched")
    vae_batch: int | None = option(None, default_text="the whole batch",
                                   help="decode latents in chunks of this many images (bounds memory at 512)")
    # The speed options are off by default, as the editor's own defaults: turn them on once
    # `raymix bench gpu` (which measures with fused q/k/v, channels_last and compile on CUDA)
    # has shown them faster on your GPU (docs/performance.md).
    channels_last: bool | None = option(False, default_text="off; unset: on CUDA only",
                                        help="channels_last memory format (oneDNN on the CPU is slower with it)")
    fuse_qkv: bool = option(False, help="one fused projection for attention q, k, v")
    compile: str = option("none", choices=COMPILE_MODES,
                          help="torch.compile mode for the UNet: auto is 'default' on CUDA, none on the CPU; "
                               "max-autotune adds CUDA graphs")
    compile_vae: bool = option(False, help="torch.compile the VAE decoder too (with --compile)")

    def editor_kwargs(self) -> dict:
        """Keyword arguments of ``InstructPix2PixEditor`` (add ``seed`` and ``storage_options``)."""
        return dataclasses.asdict(self)
