"""AGA's four models with random weights, built in-process (nothing is downloaded).

Rahat et al., "AGA", Sec. 4 and 5.1: GroundingDINO gives the subject's box, SAM its
mask, Llama-2-13B writes a background caption and Stable Diffusion XL draws the
background. Each builder here makes the same transformers/diffusers classes the real
weights load into, in two sizes:

``tiny``
    A few hundred thousand parameters or fewer; a whole batch runs on a CPU in well
    under a second. Tests, the offline quickstart and ``raymix bench aga`` on a
    machine without a GPU run the real code path with them.
``full`` (model name ``"random-full"``)
    The published architectures (GroundingDINO Swin-T, SAM ViT-H, Llama-2-13B, SDXL
    base, SD 1.5): honest GPU timings without the real weights, since compute does not
    depend on weight values.

Tokenizers are generated here too: a lower-casing WordPiece over single letters and
digits for GroundingDINO's BERT (every word splits into characters), the byte-level
CLIP tokenizer of :mod:`raymix.models.random_pipelines` for Stable Diffusion, and a
byte-level BPE without merges for the causal LM (one token per byte). They encode any
text, which is all random networks need.

Weights are a function of ``seed`` only; the global RNG state is left as it was.
"""

from __future__ import annotations

import string

import torch

from raymix.models.random_pipelines import _CONFIGS as _SD_CONFIGS
from raymix.models.random_pipelines import _SCHEDULER, byte_level_clip_tokenizer

__all__ = [
    "RANDOM_SIZES",
    "random_size",
    "build_random_detector",
    "build_random_segmenter",
    "build_random_causal_lm",
    "build_random_text_to_image",
    "wordpiece_tokenizer",
    "byte_level_bpe_tokenizer",
]

#: Model names that mean "random weights" and the size each builds.
RANDOM_SIZES = {"tiny": "tiny", "random-full": "full"}


def random_size(model: str) -> str | None:
    """``"tiny"``/``"full"`` for a random-weight model name, ``None`` for real weights."""
    return RANDOM_SIZES.get(model)


def _fork(seed: int, device):
    device = torch.device(device)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=fork_devices), device


# ---------------------------------------------------------------------- tokenizers


def wordpiece_tokenizer():
    """A ``BertTokenizer`` whose vocabulary is letters, digits and punctuation (alone and as ``##`` pieces)."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits) + list(string.punctuation)
    tokens = specials + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)


def byte_level_bpe_tokenizer():
    """A fast tokenizer with one token per byte (byte-level BPE, no merges) and ``<s>``, ``</s>``, ``<unk>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>",
        padding_side="left",
    )


# ---------------------------------------------------------------------- GroundingDINO

# Swin-T backbone + BERT-base text encoder: the published GroundingDINO-T configuration
# (IDEA-Research/grounding-dino-tiny config.json), written out so nothing is fetched.
_DETECTOR = {
    "tiny": dict(
        backbone=dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4, image_size=64),
        text=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=64),
        model=dict(d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                   encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, max_text_len=32,
                   encoder_n_points=2, decoder_n_points=2,
                   # the backbone's three levels only: an extra stride-64 level of a 64-pixel image is 1x1,
                   # which GroupNorm refuses for a batch of one
                   num_feature_levels=3),
        image_size={"shortest_edge": 64, "longest_edge": 96},
    ),
    "full": dict(
        backbone=dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, image_size=224),
        text=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  max_position_embeddings=512),
        model=dict(d_model=256, encoder_layers=6, decoder_layers=6, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                   encoder_attention_heads=8, decoder_attention_heads=8, num_queries=900, max_text_len=256,
                   encoder_n_points=4, decoder_n_points=4),
        image_size={"shortest_edge": 800, "longest_edge": 1333},
    ),
}


def build_random_detector(size: str = "tiny", *, seed: int = 0, device="cpu"):
    """``(GroundingDinoForObjectDetection, GroundingDinoProcessor)`` with random weights."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    spec = _DETECTOR[_check(size)]
    # The vocabulary's size does not change the compute (an embedding lookup): the same tokenizer for both sizes.
    tokenizer = wordpiece_tokenizer()
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(**spec["backbone"], out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(tokenizer), **spec["text"]),
        **spec["model"],
    )
    fork, device = _fork(seed, device)
    with fork, device:
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size=dict(spec["image_size"])), tokenizer=tokenizer
    )
    return model.eval(), processor


# ---------------------------------------------------------------------- SAM

# SAM ViT-H (facebook/sam-vit-huge config.json).
_SEGMENTER = {
    "tiny": dict(
        vision=dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                    patch_size=8, window_size=4, global_attn_indexes=[1], mlp_dim=64, num_pos_feats=8),
        prompt=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
        decoder=dict(hidden_size=16, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16),
        side=64,
    ),
    "full": dict(
        vision=dict(hidden_size=1280, output_channels=256, num_hidden_layers=32, num_attention_heads=16,
                    image_size=1024, patch_size=16, window_size=14, global_attn_indexes=[7, 15, 23, 31],
                    num_pos_feats=128),
        prompt=dict(hidden_size=256, image_size=1024, patch_size=16, mask_input_channels=16),
        decoder=dict(hidden_size=256, mlp_dim=2048, num_attention_heads=8, iou_head_hidden_dim=256),
        side=1024,
    ),
}


# A SAM 2 (Hiera backbone) of the same tiny size, for the SAM 2 code path.
_SAM2_TINY = dict(
    vision_config=dict(
        backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=16, image_size=[64, 64],
                             window_positional_embedding_background_size=[2, 2], blocks_per_stage=[1, 1, 2, 1],
                             embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 1, 1],
                             window_size_per_stage=[2, 2, 2, 2], global_attention_blocks=[3]),
        backbone_channel_list=[128, 64, 32, 16], backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
        fpn_hidden_size=32),
    prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=4),
    mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
)


def build_random_segmenter(size: str = "tiny", *, seed: int = 0, device="cpu", family: str = "sam"):
    """``(SamModel, SamProcessor)`` with random weights; ``family="sam2"``: ``(Sam2Model, Sam2Processor)``
    (tiny only)."""
    if family == "sam2":
        return _random_sam2(size, seed, device)
    if family != "sam":
        raise ValueError(f"family must be 'sam' or 'sam2', got {family!r}")
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    spec = _SEGMENTER[_check(size)]
    config = SamConfig(vision_config=spec["vision"], prompt_encoder_config=spec["prompt"],
                       mask_decoder_config=spec["decoder"])
    fork, device = _fork(seed, device)
    with fork, device:
        torch.manual_seed(seed)
        model = SamModel(config)
    side, low = spec["side"], spec["side"] // 4
    processor = SamProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": side}, pad_size={"height": side, "width": side},
        mask_size={"longest_edge": low}, mask_pad_size={"height": low, "width": low},
    ))
    return model.eval(), processor


def _random_sam2(size: str, seed: int, device):
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    if size != "tiny":
        raise ValueError("a random SAM 2 is built in the tiny size only")
    fork, device = _fork(seed, device)
    with fork, device:
        torch.manual_seed(seed)
        model = Sam2Model(Sam2Config(**_SAM2_TINY))
    processor = Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": 64, "width": 64},
                                                                 mask_size={"height": 16, "width": 16}))
    return model.eval(), processor


# ---------------------------------------------------------------------- causal LM

# Llama-2-13B (meta-llama/Llama-2-13b-hf config.json).
_LLM = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=512),
    "full": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                 num_key_value_heads=40, max_position_embeddings=4096, vocab_size=32000),
}


def build_random_causal_lm(size: str = "tiny", *, seed: int = 0, device="cpu", dtype=torch.float32):
    """``(LlamaForCausalLM, tokenizer)`` with random weights; the tokenizer is byte-level (no chat template)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = dict(_LLM[_check(size)])
    tokenizer = byte_level_bpe_tokenizer()
    spec.setdefault("vocab_size", len(tokenizer))
    spec["vocab_size"] = max(spec["vocab_size"], len(tokenizer))
    config = LlamaConfig(**spec, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    fork, device = _fork(seed, device)
    with fork, device:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(dtype)
    # Sampling as Llama-2's published generation_config.json (meta-llama/Llama-2-13b-hf).
    model.generation_config.update(do_sample=True, temperature=0.6, top_p=0.9)
    return model.eval(), tokenizer


# ---------------------------------------------------------------------- text to image

# SDXL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0: unet, vae, text_encoder(_2) configs).
_SDXL = {
    "tiny": dict(
        unet=dict(sample_size=8, block_out_channels=(32, 64), layers_per_block=1,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                  attention_head_dim=(2, 4), transformer_layers_per_block=(1, 1), addition_time_embed_dim=8,
                  norm_num_groups=8),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        text_2=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    projection_dim=32),
        vae=_SD_CONFIGS["tiny"]["vae"],
    ),
    "full": dict(
        unet=dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                  attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
                  addition_time_embed_dim=256, norm_num_groups=32),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  hidden_act="quick_gelu", projection_dim=768),
        text_2=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                    hidden_act="gelu", projection_dim=1280),
        vae=dict(_SD_CONFIGS["sd15"]["vae"], sample_size=1024),
    ),
}

#: SDXL's scheduler (EulerDiscreteScheduler, the pipeline's default) and its VAE scaling.
_SDXL_SCHEDULER = dict(_SCHEDULER, timestep_spacing="leading", interpolation_type="linear")
_SDXL_VAE_SCALING = 0.13025


def build_random_text_to_image(family: str = "sdxl", size: str = "tiny", *, seed: int = 0, device="cpu",
                               dtype=torch.float32):
    """A ``StableDiffusionXLPipeline`` (``family="sdxl"``) or ``StableDiffusionPipeline`` (``"sd15"``)
    with random weights, without safety checker or watermark."""
    _check(size)
    if family == "sdxl":
        pipe = _random_sdxl(size, seed, device)
    elif family == "sd15":
        pipe = _random_sd15(size, seed, device)
    else:
        raise ValueError(f"family must be 'sdxl' or 'sd15', got {family!r}")
    pipe.set_progress_bar_config(disable=True)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    return pipe


def _random_sdxl(size: str, seed: int, device):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    spec = _SDXL[size]
    tokenizer = byte_level_clip_tokenizer()
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, max_position_embeddings=77)
    cross = spec["text"]["hidden_size"] + spec["text_2"]["hidden_size"]
    pooled = spec["text_2"]["projection_dim"]
    fork, device = _fork(seed, device)
    with fork, device:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            in_channels=4, out_channels=4, cross_attention_dim=cross, use_linear_projection=True,
            addition_embed_type="text_time",
            projection_class_embeddings_input_dim=pooled + 6 * spec["unet"]["addition_time_embed_dim"],
            **spec["unet"],
        )
        vae = AutoencoderKL(**spec["vae"], scaling_factor=_SDXL_VAE_SCALING, force_upcast=True)
        text_encoder = CLIPTextModel(CLIPTextConfig(**ids, **spec["text"]))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**ids, **spec["text_2"]))
    return StableDiffusionXLPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), text_encoder_2=text_encoder_2.eval(),
        tokenizer=tokenizer, tokenizer_2=byte_level_clip_tokenizer(), unet=unet.eval(),
        scheduler=EulerDiscreteScheduler(**_SDXL_SCHEDULER), add_watermarker=False,
    )


def _random_sd15(size: str, seed: int, device):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    config = _SD_CONFIGS["tiny" if size == "tiny" else "sd15"]
    tokenizer = byte_level_clip_tokenizer()
    fork, device = _fork(seed, device)
    with fork, device:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**{**config["unet"], "in_channels": 4})  # text to image: latents only
        vae = AutoencoderKL(**config["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **config["text_encoder"],
        ))
    return StableDiffusionPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=PNDMScheduler(**_SCHEDULER, skip_prk_steps=True), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def _check(size: str) -> str:
    if size not in ("tiny", "full"):
        raise ValueError(f"unknown random model size {size!r}; choose 'tiny' or 'full'")
    return size
