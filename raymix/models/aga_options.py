"""The options of AGA's model stages: subject isolation, background generation, caption LLM.

Rahat et al., "AGA" (2024). One dataclass per model stage, each field a keyword of its model
wrapper (:meth:`kwargs`): :class:`~raymix.models.subjects.SubjectIsolator`,
:class:`~raymix.models.backgrounds.BackgroundGenerator`,
:class:`~raymix.models.caption_llm.CaptionLLM`. Their keys (the flags) are unique across
the three, so an AGA job nests all of them. Standard library only: ``--help`` imports no torch.

Defaults and where they come from:

==========================  =================================  ============================================
setting                     default                            source
==========================  =================================  ============================================
detector                    IDEA-Research/grounding-dino-tiny  paper Sec. 4.1 (GroundingDINO; variant
                                                               unstated: Swin-T, as Grounded-SAM pairs it)
detector prompt             the class's superclass             paper Sec. 4.1 ("bird", not "water ouzel")
box_threshold               0.35                               GroundingDINO README demo (BOX_TRESHOLD)
text_threshold              0.25                               GroundingDINO README demo (TEXT_TRESHOLD)
segmenter                   facebook/sam-vit-huge              paper Sec. 4.1 (SAM; variant unstated: ViT-H,
                                                               SAM's default and Grounded-SAM's)
on_several_boxes            largest                            paper silent (one subject per image, Fig. 3)
on_no_box / on_bad_mask     quarantine                         paper silent; a whole-image "subject" would
                                                               reproduce the original image
min/max_mask_area           0.01 / 0.95 of the image           paper silent
background_model            SDXL base 1.0                      paper Sec. 5.1 ("Stable Diffusion XL ...
                                                               with default hyperparameters")
background steps/guidance/  the pipeline's defaults: SDXL 50,  paper Sec. 5.1 ("default hyperparameters")
resolution                  5.0, 1024 (SD 1.5: 50, 7.5, 512)
llm                         TheBloke/Llama-2-13B-GPTQ          paper Sec. 5.1 and A.2 ("Llama-2-13B-GPTQ")
llm sampling                the model's generation_config      paper silent
llm_max_new_tokens          64                                 paper silent; a one-sentence caption
==========================  =================================  ============================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from raymix import registry
from raymix.settings import option

__all__ = [
    "SubjectOptions", "BackgroundOptions", "CaptionLLMOptions",
    "DEFAULT_DETECTOR", "DEFAULT_SEGMENTER", "DEFAULT_BACKGROUND_MODEL", "DEFAULT_LLM",
    "NO_BOX_ACTIONS", "SEVERAL_BOX_ACTIONS", "BAD_MASK_ACTIONS", "DTYPE_NAMES", "RANDOM_MODEL_NAMES",
]

DEFAULT_DETECTOR = registry.DEFAULT_MODELS["grounding_dino_t"]
DEFAULT_SEGMENTER = registry.DEFAULT_MODELS["sam_vit_h"]
DEFAULT_LLM = registry.DEFAULT_MODELS["llama2_13b_caption"]
DEFAULT_BACKGROUND_MODEL = registry.DEFAULT_MODELS["sdxl_background"]

NO_BOX_ACTIONS = ("quarantine", "whole-image")
SEVERAL_BOX_ACTIONS = ("largest", "highest-score")
BAD_MASK_ACTIONS = ("quarantine", "whole-image")
DTYPE_NAMES = ("auto", "bf16", "fp16", "fp32")
#: Random-weight builds (raymix.models.random_models): "tiny" runs offline on a CPU, "random-full" is
#: the published architecture for GPU timings. Text to image also has the SD 1.5 ones.
RANDOM_MODEL_NAMES = ("tiny", "random-full")

_MODEL_HELP = "a Hugging Face id, a local folder, an s3:// mirror, 'tiny' (random weights, offline, CPU) or " \
              "'random-full' (full size, random weights: timings)"


class _Kwargs:
    def kwargs(self) -> dict:
        """The keywords of the model wrapper (field names)."""
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class SubjectOptions(_Kwargs):
    """Options of :class:`~raymix.models.subjects.SubjectIsolator` (see the module table)."""

    detector: str = option(DEFAULT_DETECTOR, metavar="ID|PATH|URI", help="GroundingDINO weights: " + _MODEL_HELP)
    segmenter: str = option(DEFAULT_SEGMENTER, metavar="ID|PATH|URI",
                            help="SAM (or SAM 2) weights: " + _MODEL_HELP + "; 'tiny-sam2' for a tiny SAM 2")
    box_threshold: float = option(0.35, help="GroundingDINO box score threshold")
    text_threshold: float = option(0.25, help="GroundingDINO text (phrase) score threshold")
    on_no_box: str = option("quarantine", choices=NO_BOX_ACTIONS,
                            help="no box for the superclass: quarantine the image, or keep the whole image "
                                 "as the subject")
    on_several: str = option("largest", key="on_several_boxes", choices=SEVERAL_BOX_ACTIONS,
                             help="several boxes: segment the largest, or the highest-scoring")
    min_mask_area: float = option(0.01, help="a mask covering less of the image than this is empty")
    max_mask_area: float = option(0.95, help="a mask covering more of the image than this is full")
    on_bad_mask: str = option("quarantine", choices=BAD_MASK_ACTIONS,
                              help="an empty or full mask: quarantine the image, or keep the whole image")
    dtype: str = option("auto", key="subject_dtype", choices=DTYPE_NAMES,
                        help="detector and segmenter precision on a GPU (auto: bf16 where supported, "
                             "else fp16); fp32 on the CPU")

    def __post_init__(self):
        if not 0.0 <= self.min_mask_area < self.max_mask_area <= 1.0:
            raise ValueError("need 0 <= min_mask_area < max_mask_area <= 1")
        for name, value, choices in (("on_no_box", self.on_no_box, NO_BOX_ACTIONS),
                                     ("on_several_boxes", self.on_several, SEVERAL_BOX_ACTIONS),
                                     ("on_bad_mask", self.on_bad_mask, BAD_MASK_ACTIONS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(kw_only=True)
class BackgroundOptions(_Kwargs):
    """Options of :class:`~raymix.models.backgrounds.BackgroundGenerator`; ``None``: the pipeline's default."""

    model: str = option(DEFAULT_BACKGROUND_MODEL, key="background_model", metavar="ID|PATH|URI",
                        help="text-to-image weights (SDXL or SD 1.5 pipelines): " + _MODEL_HELP
                             + "; 'tiny-sd15' and 'random-full-sd15' for SD 1.5")
    steps: int | None = option(None, key="background_steps", default_text="the pipeline's: SDXL 50, SD 1.5 50",
                               help="denoising steps")
    guidance_scale: float | None = option(None, key="background_guidance",
                                          default_text="the pipeline's: SDXL 5.0, SD 1.5 7.5",
                                          help="classifier-free guidance scale")
    resolution: int | None = option(None, key="background_resolution",
                                    default_text="the model's: SDXL 1024, SD 1.5 512",
                                    help="generated side in pixels (a multiple of 8)")
    dtype: str = option("auto", key="background_dtype", choices=DTYPE_NAMES,
                        help="precision on a GPU (auto: bf16 where supported, else fp16); fp32 on the CPU")
    variant: str | None = option(None, key="background_variant", help="weight files variant to load, e.g. fp16")
    model_batch: int | None = option(None, key="background_model_batch", default_text="the whole batch",
                                     help="captions per pipeline call (bounds GPU memory)")


@dataclass(kw_only=True)
class CaptionLLMOptions(_Kwargs):
    """Options of :class:`~raymix.models.caption_llm.CaptionLLM`; ``None``: the model's generation_config."""

    model: str = option(DEFAULT_LLM, key="llm", metavar="ID|PATH|URI",
                        help="causal LM that writes background captions: " + _MODEL_HELP
                             + " (GPTQ weights need a GPTQ kernel package installed)")
    max_new_tokens: int = option(64, key="llm_max_new_tokens", help="longest caption in tokens")
    temperature: float | None = option(None, key="llm_temperature", default_text="the model's generation_config",
                                       help="sampling temperature")
    top_p: float | None = option(None, key="llm_top_p", default_text="the model's generation_config",
                                 help="nucleus sampling mass")
    dtype: str = option("auto", key="llm_dtype", choices=DTYPE_NAMES,
                        help="precision on a GPU (auto: bf16 where supported, else fp16); fp32 on the CPU")
