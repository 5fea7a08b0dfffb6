"""AGA's domain caption engine (Rahat et al., "Data Augmentation for Image Classification using
Generative AI", 2024, Sec. 4.2 and Fig. 4).

The engine samples one entry from each of three sets -- the instruction set (Ins, 3 entries in
the paper), the background or spatial set (Bgr, 18) and the temporal set (Temp, 13: times of
the day and seasons; Sec. 5, "Implementation") -- and combines them into:

- an **LLM prompt**: instruction + background + temporal, then the words to avoid and a request
  for the caption alone; an LLM (the paper: Llama-2-13B-GPTQ, supplementary A.2) turns it into
  a detailed background caption;
- a **template caption**: ``"A photo of {background} {temporal}."``, used when no LLM is
  configured and as the fallback when the LLM's caption is empty or mentions a word to avoid.

The **words to avoid** are the dataset's class names (and their superclasses): "those subject
might corrupt the background prompt" (Sec. 4.2). :func:`check_caption` matches them as whole
words, case-insensitive, with an optional plural ``s``/``es``. Set entries that contain a word
to avoid are never drawn, so a template caption always passes the check.

The sets' entries are raymix's (the paper gives only their sizes); they ship as
``raymix/methods/data/aga_{instructions,backgrounds,temporal}.txt`` and a user can replace any
of them (:func:`parse_set` reads the same format). Pure functions: no I/O beyond the package's
own data files (:func:`default_sets`); the job reads user files (:mod:`raymix.pipeline.aga`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import torch

from raymix.ops.rng import Draws

__all__ = [
    "SET_NAMES", "PAPER_SET_SIZES", "CaptionSets", "CaptionDraw", "CaptionEngine", "parse_set", "default_sets",
    "avoid_words", "check_caption", "clean_llm_output",
]

#: The three sets, in the order a prompt combines them.
SET_NAMES = ("instructions", "backgrounds", "temporal")
#: Their sizes in the paper (Sec. 5, "Implementation": "an instruction, spatial, and temporal
#: modality set size of 3, 18, and 13 respectively").
PAPER_SET_SIZES = {"instructions": 3, "backgrounds": 18, "temporal": 13}
#: A prompt lists every word to avoid when there are at most this many; above, only the row's
#: own class names and superclass (a 1000-class list does not fit an LLM's context; the check
#: still uses the whole list). The paper's ImageNet10 has 10 classes.
MAX_PROMPT_AVOID = 32
TEMPLATE = "A photo of {background} {temporal}."
PROMPT_TAIL = (" Describe only the place, the light and the weather; do not mention: {avoid}."
               " Answer with the caption only.")


def parse_set(text: str, name: str = "set") -> tuple[str, ...]:
    """A set file's entries: one per line, stripped; blank lines and ``#`` comments skipped."""
    entries = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not entries:
        raise ValueError(f"the {name} set has no entries (one per line; '#' starts a comment)")
    return entries


@dataclass(frozen=True)
class CaptionSets:
    """The three sets of the engine."""

    instructions: tuple[str, ...]
    backgrounds: tuple[str, ...]
    temporal: tuple[str, ...]

    def __post_init__(self):
        for name in SET_NAMES:
            if not getattr(self, name):
                raise ValueError(f"the {name} set is empty")

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SET_NAMES}


@lru_cache(maxsize=1)
def default_sets() -> CaptionSets:
    """raymix's sets, of the paper's sizes (3, 18, 13), from the package's data files."""
    data = resources.files("raymix.methods") / "data"
    return CaptionSets(*(parse_set((data / f"aga_{name}.txt").read_text(encoding="utf-8"), name)
                         for name in SET_NAMES))


def avoid_words(class_names: Iterable[str], descriptions: Iterable[str] = (), superclasses: Iterable[str] = ()
                ) -> tuple[str, ...]:
    """The words to avoid of a dataset: its class names, each comma-separated synonym of their
    descriptions (ImageNet's ``"tench, Tinca tinca"`` gives ``tench`` and ``Tinca tinca``) and
    the superclasses; WordNet ids (``n01440764``) are left out, as no caption holds one.
    Lower-case, unique, longest first."""
    words = set()
    for text in (*class_names, *descriptions, *superclasses):
        for part in str(text).split(","):
            word = " ".join(part.replace("_", " ").split()).lower()
            if word and not re.fullmatch(r"n\d{8}", word):
                words.add(word)
    return tuple(sorted(words, key=lambda w: (-len(w), w)))


@lru_cache(maxsize=64)
def _pattern(avoid: tuple[str, ...]) -> re.Pattern | None:
    if not avoid:
        return None
    alternatives = "|".join(r"\s+".join(re.escape(part) for part in w.split()) for w in avoid)
    return re.compile(rf"(?<![\w])(?:{alternatives})(?:s|es)?(?![\w])", re.IGNORECASE)


def mentioned(text: str, avoid: Sequence[str]) -> list[str]:
    """The words to avoid that ``text`` mentions (whole words, any case, optional plural)."""
    pattern = _pattern(tuple(avoid))
    return [] if pattern is None else sorted({m.group(0).lower() for m in pattern.finditer(text)})


def check_caption(text: str, avoid: Sequence[str]) -> bool:
    """Whether ``text`` is a usable caption: not empty and mentioning no word to avoid."""
    return bool(text.strip()) and not mentioned(text, avoid)


def clean_llm_output(text: str) -> str:
    """The caption in an LLM's answer: its first non-empty line, without a ``Caption:`` label
    or surrounding quotes."""
    for line in text.splitlines():
        line = line.strip()
        line = re.sub(r"^(?:caption|prompt|answer)\s*:\s*", "", line, flags=re.IGNORECASE).strip()
        line = line.strip("\"'“”` ").strip()
        if line:
            return line
    return ""


@dataclass(frozen=True)
class CaptionDraw:
    """One sample's combination: the three entries, the LLM prompt and the template caption."""

    instruction: str
    background: str
    temporal: str
    prompt: str
    template: str

    def describe(self) -> dict:
        return {"instruction": self.instruction, "background": self.background, "temporal": self.temporal}


class CaptionEngine:
    """Draw combinations and check captions for a dataset.

    Args:
        sets: the three sets (:func:`default_sets` when ``None``).
        avoid: the dataset's words to avoid (:func:`avoid_words`). Entries of the sets that
            mention one are never drawn; a set left with none raises ``ValueError``.
        max_prompt_avoid: a prompt lists every word to avoid up to this many, else only the
            row's own (:data:`MAX_PROMPT_AVOID`).
    """

    def __init__(self, sets: CaptionSets | None = None, avoid: Sequence[str] = (),
                 max_prompt_avoid: int = MAX_PROMPT_AVOID):
        self.sets = sets or default_sets()
        self.avoid = tuple(avoid)
        self.max_prompt_avoid = int(max_prompt_avoid)
        self.usable: dict[str, tuple[str, ...]] = {}
        for name in SET_NAMES:
            entries = getattr(self.sets, name)
            kept = tuple(e for e in entries if not mentioned(e, self.avoid))
            if not kept:
                raise ValueError(f"every entry of the {name} set mentions a word to avoid (a class name)")
            self.usable[name] = kept
        self.left_out = {name: sorted(set(getattr(self.sets, name)) - set(self.usable[name])) for name in SET_NAMES}

    def prompt_avoid(self, own: Sequence[str] = ()) -> tuple[str, ...]:
        """The words a prompt asks the LLM to avoid: all of them, or the row's ``own`` when there are too many."""
        if len(self.avoid) <= self.max_prompt_avoid:
            return self.avoid
        return avoid_words(own)

    def draw(self, generator: torch.Generator | Draws, own: Sequence[str] = ()) -> CaptionDraw:
        """One combination, drawn uniformly and independently from each set (Sec. 4.2).

        ``own``: the row's class name(s) and superclass, listed in the prompt when the whole
        list is too long for it."""
        draws = generator if isinstance(generator, Draws) else Draws(generator)
        ins, bgr, temp = (draws.choice(self.usable[name]) for name in SET_NAMES)
        words = self.prompt_avoid(own)
        prompt = f"{ins} {bgr} {temp}." + PROMPT_TAIL.format(avoid=", ".join(words) if words else "people, animals")
        return CaptionDraw(ins, bgr, temp, prompt, TEMPLATE.format(background=bgr, temporal=temp))

    def choose(self, template: str, llm_output: str | None) -> tuple[str, str, str]:
        """The caption of a sample from its draw's ``template`` caption and the LLM's answer:
        ``(caption, source, why)``.

        ``llm_output`` ``None`` (no LLM): the template caption, source ``"template"``. Else the
        cleaned LLM caption (source ``"llm"``) when it passes :func:`check_caption`; otherwise
        the template caption, source ``"template-fallback"`` and ``why`` (``"empty"`` or the
        words it mentioned)."""
        if llm_output is None:
            return template, "template", ""
        text = clean_llm_output(llm_output)
        if not text:
            return template, "template-fallback", "empty"
        bad = mentioned(text, self.avoid)
        if bad:
            return template, "template-fallback", "mentions " + ", ".join(bad)
        return text, "llm", ""
