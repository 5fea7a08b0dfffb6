"""Settings of the offline augmentation jobs: one dataclass per job, each setting written once.

The flags of ``raymix mix`` / ``raymix diffusemix`` (and ``jobs/*.py``), their config files
and ``--chain-options`` of training are all generated from these fields
(:mod:`raymix.settings`). Standard library only, so ``--help`` imports no torch or Ray; the
jobs themselves are :mod:`raymix.pipeline.mix` and :mod:`raymix.pipeline.diffusemix`.
"""

from __future__ import annotations

from dataclasses import dataclass

from raymix import registry
from raymix.models.editor_options import EditorOptions
from raymix.schema import DEFAULT_ROWS_PER_FILE, FORMATS
from raymix.settings import address_option, nested, option, storage_options_option, verbose_option

__all__ = ["JobSpec", "MixJob", "DiffuseMixJob"]


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
