"""Settings of the offline augmentation jobs: one dataclass per job, each setting written once.

The flags of ``raymix mix`` / ``raymix diffusemix`` (and ``jobs/*.py``), their config files
and ``--chain-options`` of training are all generated from these fields
(:mod:`raymix.settings`). Standard library only, so ``--help`` imports no torch or Ray; the
jobs themselves are :mod:`raymix.pipeline.mix` and :mod:`raymix.pipeline.diffusemix`.
"""

from __future__ import annotations

from dataclasses import dataclass

from raymix import registry
from raymix.models.aga_options import BackgroundOptions, CaptionLLMOptions, SubjectOptions
from raymix.models.editor_options import EditorOptions
from raymix.schema import DEFAULT_ROWS_PER_FILE, FORMATS
from raymix.settings import address_option, nested, option, storage_options_option, verbose_option

__all__ = ["JobSpec", "MixJob", "DiffuseMixJob", "AGAJob", "LLM_ENGINES", "NO_LLM"]

#: How AGA's captions are written: a transformers causal LM in a Ray actor pool, Ray's vLLM
#: batch stage (GPU clusters with vLLM installed), or an OpenAI-compatible HTTP endpoint.
LLM_ENGINES = ("transformers", "vllm", "http")
#: ``--llm none``: no LLM, template captions only.
NO_LLM = "none"


@dataclass(kw_only=True)
class JobSpec:
    """Settings every offline augmentation job has: what to read, what to write, where to run."""

    input: str = option(metavar="URI", help="dataset: class-folder tree, parquet shards or WebDataset tars "
                                            "(local path, file://, s3://, ...)")
    output: str = option("", required=True, metavar="URI",
                         help="where to write augmented shards (and __quarantine__/); not needed to stream() the rows")
    format: str = option("parquet", choices=FORMATS, help="output format")
    rows_per_file: int = option(DEFAULT_ROWS_PER_FILE, help="rows per output file, at least (fewer for large images)")
    replicas: int = option(1, help="augmented images per input image")
    seed: int = option(0, help="run seed: same seed, same bytes")
    limit: int | None = option(None, default_text="all", help="process at most N input images")
    write_beside: bool = option(False, help="if --output holds rows made with other settings (method, seed, "
                                            "options...), write to OUTPUT-DIGEST beside it instead of refusing")
    storage_options: dict | None = storage_options_option()
    address: str | None = address_option()
    json: bool = option(False, help="print the final counts as one JSON object on stdout (all else on stderr)")
    verbose: bool = verbose_option()


@dataclass(kw_only=True)
class MixJob(JobSpec):
    """An ``"image"`` method of the registry (PixMix, IPMix, LayerMix, AugMix) over a dataset;
    method defaults are the papers' (``docs/methods.md``)."""

    method: str = option(choices=lambda: registry.method_names(kind="image"), help="the method")
    image_size: int = option(224, help="output side: images are centre-cropped to it")
    fractals: str | None = option(None, metavar="SPEC", default_text="generated",
                                  help="fractal folder URI or 'generated:N'")
    method_options: dict = option({}, key="options", help='arguments of the method\'s constructor (docs/methods.md), '
                                                          'e.g. \'{"preset": "cifar"}\' or \'{"magnitude": 3}\' '
                                                          '(LayerMix)')
    actors: int | None = option(None, default_text="cluster CPUs - 1", help="max mixing actors")
    batch_size: int = option(32, help="images per mixing batch")


@dataclass(kw_only=True)
class DiffuseMixJob(JobSpec):
    """Settings of one DiffuseMix run. Defaults follow the paper (editor preset ``"paper"``,
    see :mod:`raymix.models.editor`; mixing defaults in :class:`raymix.methods.diffusemix.DiffuseMix`:
    the four half masks and lambda = 0.20). ``replicas`` is Algorithm 1's ``m``."""

    # editing (GPU)
    editor: EditorOptions = nested(EditorOptions, "editing (InstructPix2Pix, GPU)")
    gpus_per_actor: float = option(1.0, help="GPUs per editing actor (fractions share a GPU)")
    edit_actors: int | None = option(None, default_text="GPUs in the cluster / gpus-per-actor; unbounded while "
                                                         "it has none yet", help="max editing actors")
    # mixing (CPU)
    fractals: str | None = option(None, metavar="SPEC", default_text="generated",
                                  help="fractal folder URI or 'generated:N'")
    lam: float = option(0.20, help="fractal blending factor (paper: 0.20)")
    public_code_masks: bool = option(False, help="the authors' code: 2 masks with a 20-pixel seam instead of the "
                                                 "paper's 4 binary masks")
    mix_actors: int = option(2, help="max mixing actors")
    keep_intermediates: bool = option(False, help="also store the generated and hybrid images")


@dataclass(kw_only=True)
class AGAJob(JobSpec):
    """Settings of one AGA run (Rahat et al. 2024). Model defaults are the paper's
    (:mod:`raymix.models.aga_options`); the caption sets and the compositing ranges are
    raymix's where the paper gives none (``docs/aga.md``, ``docs/methods.md``). ``replicas``
    is the number of augmented images per input (the paper goes up to 10x, Fig. 6).

    Each model stage is an actor pool with its own GPU fraction and size, so the four models
    can share one GPU (fractions summing to at most 1) or each have their own; a pool's size
    defaults to the cluster's GPUs / its fraction."""

    image_size: int = option(1024, help="output side: images are centre-cropped to it; 1024 is SDXL's "
                                        "default, so backgrounds are not resized")
    # subject isolation (GPU)
    subject: SubjectOptions = nested(SubjectOptions, "subject isolation (GroundingDINO + SAM, GPU)")
    superclasses: str | None = option(None, metavar="URI", default_text="the packaged ImageNet-1k table",
                                      help="class -> superclass table (TSV or JSON) for the detector's prompt")
    subject_gpus: float = option(0.25, help="GPUs per subject actor (fractions share a GPU)")
    subject_actors: int | None = option(None, default_text="GPUs / subject-gpus", help="max subject actors")
    subject_batch_size: int = option(8, help="images per detector/segmenter call")
    # captions (CPU) and the LLM (GPU)
    instructions: str | None = option(None, metavar="URI", default_text="raymix's 3",
                                      help="instruction set file, one entry per line")
    backgrounds: str | None = option(None, metavar="URI", default_text="raymix's 18",
                                     help="background (spatial) set file, one entry per line")
    temporal: str | None = option(None, metavar="URI", default_text="raymix's 13",
                                  help="temporal set file (times of day, seasons), one entry per line")
    llm: CaptionLLMOptions = nested(CaptionLLMOptions, "caption LLM ('--llm none': template captions only)")
    llm_engine: str = option("transformers", choices=LLM_ENGINES,
                             help="transformers (an actor pool), vllm (ray.data.llm, GPU clusters with vLLM) or "
                                  "http (ray.data.llm, an OpenAI-compatible endpoint at --llm-url)")
    llm_url: str | None = option(None, metavar="URL", help="chat completions URL for --llm-engine http, e.g. "
                                                            "http://host:8000/v1/chat/completions")
    llm_gpus: float = option(0.25, help="GPUs per LLM actor")
    llm_actors: int | None = option(None, default_text="GPUs / llm-gpus", help="max LLM actors")
    llm_batch_size: int = option(16, help="prompts per LLM call")
    # backgrounds (GPU)
    background: BackgroundOptions = nested(BackgroundOptions, "backgrounds (Stable Diffusion XL, GPU)")
    background_gpus: float = option(0.5, help="GPUs per background actor")
    background_actors: int | None = option(None, default_text="GPUs / background-gpus",
                                           help="max background actors")
    background_batch_size: int = option(4, help="captions per background batch")
    # compositing (CPU)
    flip_p: float = option(0.5, help="probability of flipping the subject left-right (raymix's choice)")
    max_angle: float = option(15.0, help="subject rotation uniform in +-this many degrees (raymix's choice)")
    scale_min: float = option(0.8, help="smallest subject scale (raymix's choice)")
    scale_max: float = option(1.2, help="largest subject scale (raymix's choice)")
    max_shift: float = option(0.0, help="subject shift, uniform in +-this fraction of the side (0: stays put)")
    feather: float = option(0.0, help="soft paste: Gaussian sigma in pixels inside the mask's edge (0: hard)")
    composite_actors: int = option(2, help="max compositing actors (CPU)")

    def composite_options(self) -> dict:
        """Keyword arguments of :class:`raymix.methods.aga.AGA`."""
        return {"flip_p": self.flip_p, "max_angle": self.max_angle, "scale": (self.scale_min, self.scale_max),
                "max_shift": self.max_shift, "feather": self.feather}
