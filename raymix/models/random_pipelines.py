"""InstructPix2Pix pipelines with random weights, built in-process (nothing is downloaded).

Two sizes of the same diffusers/transformers classes the real model uses:

``tiny``
    A few hundred thousand parameters; edits a batch of 64x64 images on a CPU in
    seconds. Tests and the offline quickstart run the real editing code path with it.
``sd15``
    The Stable Diffusion 1.5 architecture with the 8-channel UNet input of
    InstructPix2Pix (Brooks et al., CVPR 2023, Sec. 3.2), about 1.07 billion
    parameters. Compute does not depend on weight values, so this gives honest GPU
    timings without the real weights.

The CLIP tokenizer's vocabulary is generated here: every byte of the byte-level
alphabet, alone and as the end of a word (``"a</w>"``), plus the two special tokens.
With no merges it tokenizes text character by character, which is all a random text
encoder needs. Prompts longer than 75 characters are truncated like any CLIP prompt
longer than 75 tokens.
"""

from __future__ import annotations

import torch

__all__ = ["RANDOM_MODELS", "build_random_pipeline", "byte_level_clip_tokenizer"]

# UNet, VAE and text-encoder configurations. The sd15 values are the published
# Stable Diffusion 1.5 / InstructPix2Pix configs, written out so nothing is fetched.
# InstructPix2Pix's UNet reads 8 channels: the noisy latents and the input image's latents.
_UNET = dict(in_channels=8, out_channels=4)
_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
)
_CONFIGS = {
    "tiny": {
        "unet": dict(
            **_UNET,
            sample_size=8,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            norm_num_groups=8,
            cross_attention_dim=32,
            attention_head_dim=8,
        ),
        "vae": dict(**_VAE, block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=64),
        "text_encoder": dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
        ),
    },
    "sd15": {
        "unet": dict(
            **_UNET,
            sample_size=64,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            norm_num_groups=32,
            cross_attention_dim=768,
            attention_head_dim=8,
        ),
        "vae": dict(
            **_VAE, block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512
        ),
        "text_encoder": dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            projection_dim=768,
            hidden_act="quick_gelu",
        ),
    },
}

# The InstructPix2Pix scheduler configuration (Stable Diffusion's training schedule).
_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    prediction_type="epsilon",
)

RANDOM_MODELS = {"tiny": "tiny", "random-sd15": "sd15"}


def byte_level_clip_tokenizer():
    """A ``CLIPTokenizer`` over the byte-level alphabet, generated locally (no merges)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [c + "</w>" for c in alphabet]
    return CLIPTokenizer(vocab={tok: i for i, tok in enumerate(tokens)}, merges=[], model_max_length=77)


def build_random_pipeline(size: str = "tiny", *, seed: int = 0, device="cpu", dtype=torch.float32):
    """A ``StableDiffusionInstructPix2PixPipeline`` with random weights.

    ``size`` is ``"tiny"`` or ``"sd15"`` (see the module docstring). Weights are a
    function of ``seed`` only; the global RNG state is left as it was. The safety
    checker is absent, as in the editor's real-weight path.
    """
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    if size not in _CONFIGS:
        raise ValueError(f"unknown random pipeline size {size!r}; choose from {sorted(_CONFIGS)}")
    config = _CONFIGS[size]
    tokenizer = byte_level_clip_tokenizer()
    device = torch.device(device)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**config["unet"])
        vae = AutoencoderKL(**config["vae"])
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                **config["text_encoder"],
            )
        )
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=EulerAncestralDiscreteScheduler(**_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    return pipe
