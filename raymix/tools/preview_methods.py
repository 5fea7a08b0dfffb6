"""What ``raymix preview`` shows: a few originals and what each method makes of them.

:func:`read_originals` reads the first images of a dataset without Ray (one read of the
listing, then only the files it shows), spread over as many classes as it can, and decodes
them the way the pipeline does (:func:`raymix.io.decode.decode_image`, then the
``center_crop`` resize). The ``*_samples`` functions run a method on them and return plain
data; :func:`method_section` turns that into rows of captioned tiles for
:func:`raymix.tools.preview.contact_sheet`, one section per kind of method (:mod:`raymix.registry`):
every ``"image"`` method through the same code, captioned by its own ``caption``; the
``"pair"`` method DiffuseMix with its stages; the ``"batch"`` method MiAMix with its label
weights.

Sample ``r`` of an original is drawn from ``sample_generator(seed, key, r, epoch=0)`` with the
method's salt, the generator :class:`raymix.pipeline.rows.MethodStage` uses for replica ``r``: a preview shows exactly the
images a job with the same seed writes for those keys (DiffuseMix: with the same editor,
settings and device).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest

import numpy as np
import torch

from raymix import registry, schema
from raymix.methods.captions import number
from raymix.tools.preview import Tile

__all__ = [
    "PREVIEW_METHODS",
    "PreviewError",
    "Original",
    "Section",
    "DiffuseMixSample",
    "MiAMixSample",
    "read_originals",
    "build_method",
    "image_samples",
    "diffusemix_samples",
    "miamix_samples",
    "AGASample",
    "AGAModels",
    "load_aga_models",
    "aga_samples",
    "load_editor",
    "method_section",
]

#: Methods in the order ``--method all`` shows them: every method raymix can run.
PREVIEW_METHODS = registry.method_names()
#: The editor that runs offline with random weights, and its settings for a quick preview.
TINY_EDITOR = "tiny"
TINY_RESOLUTION = 64
TINY_STEPS = 20


class PreviewError(ValueError):
    """Input a preview cannot be made from (no images, an editor that does not load)."""


# ---------------------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Original:
    """One input image, decoded and cropped to ``size x size`` (``uint8`` HWC)."""

    key: str
    label: int
    class_name: str
    description: str
    image: np.ndarray

    @property
    def title(self) -> str:
        """The class name and, when the class list has one, its description."""
        if self.description and self.description != self.class_name:
            return f"{self.class_name} ({self.description})"
        return self.class_name


def _round_robin(groups: Sequence[Sequence]) -> list:
    """The first item of every group, then the second of every group, ..."""
    return [item for layer in zip_longest(*groups) for item in layer if item is not None]


def read_originals(
    uri: str, n: int, *, size: int, layout: str = "auto", storage_options: dict | None = None, scan_rows: int = 256
) -> tuple[list[Original], list[tuple[str, str]]]:
    """The first ``n`` decodable images of a dataset, one class after another, and the
    ``(key, reason)`` of the images skipped because they do not decode.

    Folder trees: the listing gives the candidates, taken round-robin over the classes, and
    only the files needed are fetched. Parquet and WebDataset: the first ``scan_rows`` rows of
    the first shards are read (no Ray), then taken round-robin over their labels.
    """
    from raymix.io.decode import BadImage, decode_image, resize_image
    from raymix.io.readers import Shard, plan_read

    if n < 1:
        raise ValueError("need at least one original")
    plan = plan_read(uri, layout=layout, storage_options=storage_options)
    descriptions = dict(zip(plan.classes or [], plan.descriptions or []))

    def decoded(key, data, label, class_name):
        try:
            image = np.array(resize_image(decode_image(data, reduce_to=size), size, "center_crop"))  # writable
        except BadImage as err:
            return None, err.reason
        return Original(key, int(label), class_name, descriptions.get(class_name, ""), image), ""

    originals: list[Original] = []
    skipped: list[tuple[str, str]] = []
    if plan.layout == "folder":
        by_class: dict[int, list] = {}
        for shard in plan.shards:
            by_class.setdefault(shard.label, []).extend(
                (f, k, shard.label, shard.class_name, shard.source) for f, k in zip(shard.files, shard.keys))
        for path, key, label, class_name, source in _round_robin(list(by_class.values())):
            one = Shard(source, files=(path,), keys=(key,), label=label, class_name=class_name)
            for table in plan.read_shard(one):
                row = table.to_pylist()[0]
                original, reason = decoded(row[schema.KEY], row[schema.IMAGE], row[schema.LABEL],
                                           row[schema.CLASS_NAME])
                if original is None:
                    skipped.append((row[schema.KEY], reason))
                else:
                    originals.append(original)
            if len(originals) == n:
                break
        return originals, skipped

    rows: list[dict] = []
    for shard in plan.shards:
        for table in plan.read_shard(shard):
            rows.extend(table.slice(0, scan_rows - len(rows)).to_pylist())
            if len(rows) >= scan_rows:
                break
        if len(rows) >= scan_rows:
            break
    by_label: dict[int, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row[schema.LABEL], []).append(row)
    for row in _round_robin(list(by_label.values())):
        original, reason = decoded(row[schema.KEY], row[schema.IMAGE], row[schema.LABEL], row[schema.CLASS_NAME])
        if original is None:
            skipped.append((row[schema.KEY], reason))
            continue
        originals.append(original)
        if len(originals) == n:
            break
    return originals, skipped


# ---------------------------------------------------------------------------------------- methods


def _batch(originals: Sequence[Original], samples: int) -> torch.Tensor:
    """``uint8`` ``(len(originals) * samples, 3, H, W)``: each original repeated ``samples`` times."""
    stacked = torch.from_numpy(np.stack([o.image for o in originals])).permute(0, 3, 1, 2)
    return stacked.repeat_interleave(samples, dim=0).contiguous()


def _hwc(images: torch.Tensor) -> list[np.ndarray]:
    return list(images.permute(0, 2, 3, 1).contiguous().numpy())


def build_method(name: str, *, seed: int = 0, fractals=None):
    """The registered method ``name``; ``fractals`` only goes to methods that draw fractals."""
    return registry.create(name, seed=seed, **({"fractals": fractals} if registry.method(name).fractals else {}))


def image_samples(method, originals: Sequence[Original], samples: int) -> list[list[tuple[np.ndarray, object]]]:
    """An ``"image"`` method (see :func:`build_method`): per original, ``samples`` (image, params
    record) pairs, sample ``r`` drawn as the pipeline draws replica ``r``."""
    from raymix.ops.rng import sample_generator

    gens = [sample_generator(method.seed, o.key, r, 0, method.salt) for o in originals for r in range(samples)]
    batch = _batch(originals, samples)
    params = [method.make_params(g, tuple(batch.shape[-2:])) for g in gens]
    images = _hwc(method.apply(batch, params))
    return [list(zip(images[i * samples:(i + 1) * samples], params[i * samples:(i + 1) * samples], strict=True))
            for i in range(len(originals))]


@dataclass
class DiffuseMixSample:
    """The stages of one DiffuseMix sample (DiffuseMix Fig. 4): input ``I``, generated ``I_gen``,
    mask ``M`` (float ``HxW``, 1 where the original is kept), hybrid ``H``, fractal ``F`` and
    the final ``A = (1 - lam) H + lam F``. ``reason`` is set when the row was quarantined."""

    input: np.ndarray
    generated: np.ndarray
    mask: np.ndarray | None = None
    hybrid: np.ndarray | None = None
    fractal: np.ndarray | None = None
    final: np.ndarray | None = None
    prompt: str = ""
    params: dict = field(default_factory=dict)
    reason: str = ""


def load_editor(model: str, *, seed: int = 0, steps: int | None = None, resolution: int | None = None):
    """The InstructPix2Pix editing stage for a preview: ``model`` as ``InstructPix2PixEditor`` takes
    it (a Hugging Face id, a folder, an object-store URI, ``"tiny"``); ``tiny`` runs at 64 pixels
    and 20 steps unless told otherwise. Raises :class:`PreviewError` when the model does not load."""
    from raymix.pipeline.edit_stage import EditStage

    if model == TINY_EDITOR:
        steps = TINY_STEPS if steps is None else steps
        resolution = TINY_RESOLUTION if resolution is None else resolution
    try:
        return EditStage(model, seed=seed, steps=steps, resolution=resolution)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        raise PreviewError(
            f"cannot load the editor {model!r}: {type(err).__name__}: {err}\n"
            f"(use --editor tiny to preview offline with random weights)") from err


def diffusemix_samples(
    originals: Sequence[Original], samples: int, editor, *, seed: int = 0, fractals=None
) -> list[list[DiffuseMixSample]]:
    """Edit every original ``samples`` times with ``editor`` (an
    :class:`raymix.pipeline.edit_stage.EditStage`), mix with DiffuseMix through its pipeline
    stage (:class:`raymix.pipeline.rows.MethodStage`), and recover the mask and the fractal of
    each sample from the same per-sample draws."""
    from raymix.ops.masks import concat_mask
    from raymix.ops.rng import sample_generator
    from raymix.pipeline.rows import MethodStage

    keys = [o.key for o in originals for _ in range(samples)]
    batch = {
        schema.IMAGE: np.stack([o.image for o in originals for _ in range(samples)]),
        schema.KEY: np.array(keys, dtype=object),
        schema.SOURCE_KEY: np.array(keys, dtype=object),
        schema.REPLICA: np.array([r for _ in originals for r in range(samples)], dtype=np.int64),
        schema.LABEL: np.array([o.label for o in originals for _ in range(samples)], dtype=np.int64),
        schema.CLASS_NAME: np.array([o.class_name for o in originals for _ in range(samples)], dtype=object),
    }
    edited = editor(batch)
    stage = MethodStage("diffusemix", {"fractals": fractals}, seed=seed, keep_intermediates=True)
    mixed = stage(edited)
    method = stage.method

    out: list[list[DiffuseMixSample]] = []
    for i, original in enumerate(originals):
        row = []
        for r in range(samples):
            j = i * samples + r
            sample = DiffuseMixSample(original.image, np.asarray(mixed["generated"][j]),
                                      prompt=str(mixed["prompt"][j]), reason=str(mixed[schema.REASON][j]))
            if not sample.reason:
                params = json.loads(mixed[schema.PARAMS][j])
                h, w = original.image.shape[:2]
                drawn = method.make_params(sample_generator(seed, original.key, r, 0, method.salt), (h, w))
                fractal, ids = method.sample_fractals([drawn.fractal_seed], h, w, "cpu")
                if (drawn.mask, ids[0]) != (params["mask"], params["fractal"]):
                    raise RuntimeError("DiffuseMix's draws changed: the preview cannot show its mask and fractal")
                sample.mask = concat_mask(drawn.mask, h, w, method.seam)[0].numpy()
                sample.fractal = _hwc(fractal)[0]
                sample.hybrid = np.asarray(mixed["hybrid"][j])
                sample.final = np.asarray(mixed[schema.IMAGE][j])
                sample.params = params
            row.append(sample)
        out.append(row)
    return out


@dataclass
class MiAMixSample:
    """One mixed image of a MiAMix batch: the label weight ``lam`` of the sample itself and
    ``1 - lam`` of its ``partner`` (an index into the originals; itself for a self-mix), and
    its mask layers as ``(generator name, rotated/sheared, smoothing window)``."""

    image: np.ndarray
    lam: float
    partner: int
    self_mix: bool
    layers: list[tuple[str, bool, int]]


def miamix_samples(originals: Sequence[Original], samples: int, *, seed: int = 0) -> list[list[MiAMixSample]]:
    """MiAMix mixes a batch: the originals form one batch, mixed ``samples`` times with
    generators seeded from ``(seed, "miamix", draw)``; per original, one sample per draw."""
    from raymix.methods.miamix import MiAMix
    from raymix.ops.rng import sample_generator

    labels = sorted({o.label for o in originals})
    local = torch.tensor([labels.index(o.label) for o in originals])
    images = torch.from_numpy(np.stack([o.image for o in originals])).permute(0, 3, 1, 2).float() / 255
    method = MiAMix(num_classes=len(labels))
    out: list[list[MiAMixSample]] = [[] for _ in originals]
    for draw in range(samples):
        mixed, _, p = method.mix(images, local, generator=sample_generator(seed, "miamix", draw))
        pictures = _hwc((mixed * 255).round().clamp(0, 255).to(torch.uint8))
        for i in range(len(originals)):
            layers = [(method.methods[m], bool(a), int(w))
                      for m, a, w in zip(p.methods[i].tolist(), p.augmented[i].tolist(), p.windows[i].tolist())
                      if m >= 0]
            out[i].append(MiAMixSample(pictures[i], float(p.lam[i]), int(p.partner[i]), bool(p.self_mix[i]), layers))
    return out


@dataclass
class AGASample:
    """The stages of one AGA sample (AGA Fig. 2, 3 and 5): the input, the detector's box (``None``
    when it found none), the subject mask (bool ``HxW``), the background caption, the generated
    background and the composite; ``params`` is the row's provenance. ``reason`` is set when the
    row was quarantined."""

    input: np.ndarray
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None
    caption: str = ""
    background: np.ndarray | None = None
    final: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    reason: str = ""


@dataclass
class AGAModels:
    """AGA's model stages for a preview (:mod:`raymix.pipeline.aga_stages`); ``llm`` is ``None``
    for template captions."""

    subject: object
    background: object
    llm: object | None
    names: dict


def load_aga_models(detector: str, segmenter: str, background: str, llm: str | None, *, seed: int = 0,
                    steps: int | None = None, whole_image: bool = False, superclasses: str | None = None) -> AGAModels:
    """The subject, background and caption stages the AGA job runs, built in-process. ``llm``
    ``None`` or ``"none"``: template captions. ``whole_image``: keep the whole image as the subject
    where the job's default would quarantine it (no box, an empty or full mask). Raises
    :class:`PreviewError` when a model does not load."""
    from raymix.models.superclasses import load_superclasses
    from raymix.pipeline.aga_stages import BackgroundStage, CaptionLLMStage, SubjectStage

    policy = {"on_no_box": "whole-image", "on_bad_mask": "whole-image"} if whole_image else {}
    try:
        table = load_superclasses(superclasses)
        subject = SubjectStage(detector, segmenter, superclasses=table, seed=seed, **policy)
        back = BackgroundStage(background, seed=seed, **({"steps": steps} if steps else {}))
        caption = CaptionLLMStage(llm, seed=seed) if llm and llm != "none" else None
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        raise PreviewError(f"cannot load AGA's models: {type(err).__name__}: {err}\n"
                           "(use --detector tiny --segmenter tiny --background-model tiny --llm tiny to preview "
                           "offline with random weights)") from err
    names = {"detector": detector, "segmenter": segmenter, "background": background, "llm": llm or "none"}
    return AGAModels(subject, back, caption, names)


def aga_samples(originals: Sequence[Original], samples: int, models: AGAModels, *, seed: int = 0,
                options: dict | None = None) -> list[list[AGASample]]:
    """Run AGA's stages on the originals as the job does (subject once per original, then per
    replica: caption, background, composite through :class:`raymix.pipeline.rows.MethodStage`);
    the words to avoid are the originals' class names, descriptions and superclasses."""
    from raymix.methods.aga_captions import CaptionEngine, avoid_words
    from raymix.pipeline.aga_rows import choose_captions, draw_captions, subject_params
    from raymix.pipeline.aga_stages import BACKGROUND, CAPTION, SUBJECT_BOX, SUBJECT_MASK, SUPERCLASS
    from raymix.pipeline.rows import MethodStage, expand_replicas

    n = len(originals)
    batch = {
        schema.IMAGE: np.stack([o.image for o in originals]),
        schema.KEY: np.array([o.key for o in originals], dtype=object),
        schema.LABEL: np.array([o.label for o in originals], dtype=np.int64),
        schema.CLASS_NAME: np.array([o.class_name for o in originals], dtype=object),
        schema.SOURCE: np.array([""] * n, dtype=object),
        schema.STAGE: np.array([""] * n, dtype=object),
        schema.REASON: np.array([""] * n, dtype=object),
    }
    subjects = subject_params(models.subject(batch))
    engine = CaptionEngine(avoid=avoid_words([o.class_name for o in originals], [o.description for o in originals],
                                             [str(s) for s in subjects[SUPERCLASS]]))
    rows = expand_replicas(subjects, replicas=samples, method="aga")
    rows = draw_captions(rows, engine=engine, seed=seed, descriptions={o.class_name: o.description for o in originals})
    if models.llm is not None:
        rows = choose_captions(models.llm(rows), engine=engine)
    rows = models.background(rows)
    mixed = MethodStage("aga", options or {}, seed=seed)(rows)

    out: list[list[AGASample]] = [[] for _ in originals]
    by_key = {o.key: i for i, o in enumerate(originals)}
    for j in range(len(rows[schema.KEY])):
        i = by_key[str(rows[schema.SOURCE_KEY][j])]
        box = np.asarray(rows[SUBJECT_BOX][j], dtype=np.float64)
        sample = AGASample(originals[i].image, None if np.isnan(box).any() else tuple(float(v) for v in box),
                           np.asarray(rows[SUBJECT_MASK][j]), str(rows[CAPTION][j]),
                           reason=str(mixed[schema.REASON][j]))
        if not sample.reason:
            sample.background = np.asarray(rows[BACKGROUND][j])
            sample.final = np.asarray(mixed[schema.IMAGE][j])
            sample.params = json.loads(mixed[schema.PARAMS][j])
        out[i].append(sample)
    return out


# ---------------------------------------------------------------------------------------- captions


def _short_prompt(sample: DiffuseMixSample, editor) -> str:
    """The library entry the edit used (``sunset``), else the full prompt."""
    index = (sample.params.get("edit") or {}).get("prompt_index")
    library = getattr(getattr(editor, "model", None), "library", None)
    return library.prompts[index] if index is not None and library is not None else sample.prompt


# ---------------------------------------------------------------------------------------- sections


@dataclass
class Section:
    """A method's part of a sheet: a heading, rows of tiles, and the sheet-level note."""

    heading: str
    rows: list[list[Tile]]
    note: str = ""
    uses_fractals: bool = False


def _original_tile(o: Original) -> Tile:
    return Tile(o.image, f"original {o.key}\n{o.title}")


def method_section(
    name: str,
    originals: Sequence[Original],
    samples: int,
    *,
    seed: int = 0,
    fractals=None,
    editor=None,
    captions: bool = False,
) -> Section:
    """Run ``name`` on the originals and lay out its tiles: per original a row of the original
    and ``samples`` results (DiffuseMix: one row per sample with its six stages)."""
    entry = registry.method(name)
    if not entry.available:
        raise ValueError(f"{name} cannot run yet; expected one of {PREVIEW_METHODS}")
    if entry.kind == "image":
        method = build_method(name, seed=seed, fractals=fractals)
        results = image_samples(method, originals, samples)
        rows = [[_original_tile(o)] + [Tile(img, f"replica {r}" + (f"\n{method.caption(p)}" if captions else ""))
                                       for r, (img, p) in enumerate(row)]
                for o, row in zip(originals, results, strict=True)]
        return Section(entry.title, rows, uses_fractals=entry.fractals)
    if entry.kind == "batch":
        return _miamix_section(originals, samples, seed=seed, captions=captions, title=entry.title)
    if name == "aga":
        if not isinstance(editor, AGAModels):
            raise ValueError("aga needs its models (see load_aga_models)")
        return _aga_section(originals, samples, editor, seed=seed, captions=captions, title=entry.title)
    if editor is None:
        raise ValueError(f"{name} needs an editor (see load_editor)")
    return _diffusemix_section(originals, samples, editor, seed=seed, fractals=fractals, captions=captions,
                               title=entry.title)


def _miamix_section(originals, samples, *, seed, captions, title) -> Section:
    results = miamix_samples(originals, samples, seed=seed)
    rows = []
    for i, (o, row) in enumerate(zip(originals, results, strict=True)):
        tiles = [_original_tile(o)]
        for draw, s in enumerate(row):
            partner = originals[s.partner]
            if s.self_mix:  # with an augmented copy of itself (MiAMix Sec. 3.2.1)
                weights = f"self-mix {s.lam:.2f} + {1 - s.lam:.2f} augmented copy: 1.00 {o.class_name}"
            else:
                weights = f"{s.lam:.2f} {o.class_name} + {1 - s.lam:.2f} {partner.class_name}"
            text = f"batch {draw}: {weights}"
            if captions:
                layers = [n + ("+rot" if aug else "") + (f"+smooth{w}" if w else "") for n, aug, w in s.layers]
                text += f"\nmask: {' x '.join(layers)}"
                if not s.self_mix and s.partner != i:
                    text += f"\npartner {partner.key}"
            tiles.append(Tile(s.image, text))
        rows.append(tiles)
    note = ("MiAMix mixes a batch: the originals shown form one batch, mixed once per column; "
            "captions give the label weights of the mixed image.")
    return Section(title, rows, note)


def _diffusemix_section(originals, samples, editor, *, seed, fractals, captions, title) -> Section:
    results = diffusemix_samples(originals, samples, editor, seed=seed, fractals=fractals)
    rows = []
    for o, row in zip(originals, results, strict=True):
        for r, s in enumerate(row):
            if s.reason:
                rows.append([_original_tile(o), Tile(s.generated, f"generated (quarantined: {s.reason})")])
                continue
            lam = s.params.get("lambda", 0.2)
            if captions:
                texts = [f"input {o.key}\n{o.title}", f"generated r{r}\nprompt: {_short_prompt(s, editor)}",
                         f"mask: {s.params['mask']} half\nwhite keeps the original", "hybrid",
                         f"fractal\n{s.params['fractal']}", f"final\nlambda {number(lam)}"]
            else:
                texts = [f"input {o.key}", f"generated r{r}", "mask", "hybrid", "fractal", "final"]
            images = [s.input, s.generated, s.mask, s.hybrid, s.fractal, s.final]
            rows.append([Tile(img, text) for img, text in zip(images, texts, strict=True)])
    editor_model = getattr(editor, "model", None)
    model = getattr(editor_model, "model_name", "?")
    settings = getattr(editor_model, "settings", None)
    how = f"{settings.steps} steps at {settings.resolution} px" if settings is not None else ""
    note = f"Edits by {model} ({how}, {getattr(getattr(editor_model, 'device', None), 'type', '?')})."
    from raymix.models.random_pipelines import RANDOM_MODELS

    if model in RANDOM_MODELS:
        note = (f"The editor is {model!r}, an InstructPix2Pix with RANDOM weights ({how}): the 'generated' "
                "column is noise-like, a stand-in for a real edit. Run with the real model "
                "(--editor timbrooks/instruct-pix2pix, on a GPU) to see true DiffuseMix images.")
    return Section(title, rows, note, uses_fractals=True)


def _with_box(image: np.ndarray, box) -> np.ndarray:
    """The image with the detector's box drawn in red (2 px)."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image).convert("RGB")
    if box is not None:
        ImageDraw.Draw(picture).rectangle([round(v) for v in box], outline=(230, 30, 30), width=2)
    return np.asarray(picture)


def _aga_section(originals, samples, models: AGAModels, *, seed, captions, title) -> Section:
    results = aga_samples(originals, samples, models, seed=seed)
    rows = []
    for o, row in zip(originals, results, strict=True):
        for r, s in enumerate(row):
            if s.reason:
                rows.append([_original_tile(o), Tile(_with_box(s.input, s.box), f"quarantined: {s.reason}")])
                continue
            subject = s.params.get("subject", {})
            moves = f"{'flip, ' if s.params.get('flip') else ''}rot {number(s.params.get('angle', 0.0))}, " \
                    f"scale {number(s.params.get('scale', 1.0))}"
            if captions:
                texts = [f"input {o.key}\n{o.title}",
                         f"box: {subject.get('superclass', '')} {number(subject.get('score', 0.0))}\n"
                         f"{subject.get('status', '')}",
                         f"mask: {number(subject.get('mask_area', 0.0))} of the image",
                         f"background r{r}\n{s.caption}",
                         f"result\n{moves}\ncaption: {s.params.get('caption', {}).get('source', '')}"]
            else:
                texts = [f"input {o.key}", "box", "mask", f"background r{r}", "result"]
            images = [s.input, _with_box(s.input, s.box), s.mask.astype(np.float32), s.background, s.final]
            rows.append([Tile(img, text) for img, text in zip(images, texts, strict=True)])
    names = models.names
    from raymix.models.random_models import random_size

    randoms = [k for k, v in names.items() if k != "llm" and random_size(v.removesuffix("-sd15")) is not None]
    if names["llm"] != "none" and random_size(names["llm"]) is not None:
        randoms.append("llm")
    note = (f"Models: detector {names['detector']}, segmenter {names['segmenter']}, background "
            f"{names['background']}, LLM {names['llm']}" + (" (template captions)." if names["llm"] == "none" else "."))
    if randoms:
        note += (f" RANDOM weights ({', '.join(randoms)}): what they make (boxes, masks, backgrounds"
                 + (", LLM captions" if "llm" in randoms else "") + ") are stand-ins; run with the real models on a "
                 "GPU to see true AGA images.")
    return Section(title, rows, note)
