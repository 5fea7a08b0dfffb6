"""DiffuseMix's prompt library: filter-like edits that keep the image's structure.

Islam et al., "DiffuseMix", CVPR 2024, Sec. 4 ("Textual Prompt Selection"): nine
prompts, each put in the template ``"A transformed version of image into {prompt}"``.
(Sec. 5.6 speaks of "all ten prompts"; the paper lists nine, and so does the
authors' public code.) The authors' public code passes the bare words instead, with
"Autumn" capitalised and a different order; that list is :data:`PUBLIC_CODE_PROMPTS`
with the template ``"{prompt}"``.

Users may bring their own list: a text file with one prompt per line (blank lines and
lines starting with ``#`` are skipped), at any fsspec URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raymix.io.storage import filesystem

__all__ = [
    "BARE_TEMPLATE",
    "PAPER_PROMPTS",
    "PAPER_TEMPLATE",
    "PUBLIC_CODE_PROMPTS",
    "PromptLibrary",
    "read_prompt_file",
]

PAPER_TEMPLATE = "A transformed version of image into {prompt}"
PAPER_PROMPTS = (
    "autumn",
    "snowy",
    "sunset",
    "watercolor art",
    "rainbow",
    "aurora",
    "mosaic",
    "ukiyo-e",
    "a sketch with crayon",
)
BARE_TEMPLATE = "{prompt}"
PUBLIC_CODE_PROMPTS = (
    "Autumn",
    "snowy",
    "watercolor art",
    "sunset",
    "rainbow",
    "aurora",
    "mosaic",
    "ukiyo-e",
    "a sketch with crayon",
)


@dataclass(frozen=True)
class PromptLibrary:
    """A list of prompts and the template that turns one into the text the model reads."""

    prompts: tuple[str, ...] = PAPER_PROMPTS
    template: str = PAPER_TEMPLATE

    def __post_init__(self):
        object.__setattr__(self, "prompts", tuple(self.prompts))
        if not self.prompts or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise ValueError("the prompt library needs at least one non-empty prompt")
        if "{prompt}" not in self.template:
            raise ValueError(f"prompt template {self.template!r} has no {{prompt}} field")

    def __len__(self) -> int:
        return len(self.prompts)

    def text(self, index: int) -> str:
        """The full prompt for library entry ``index``."""
        return self.template.format(prompt=self.prompts[index])


def read_prompt_file(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Prompts from a text file, one per line, at a local path or any fsspec URL."""
    fs, path = filesystem(uri, dict(storage_options or {}))
    text = fs.cat_file(path).decode("utf-8")
    prompts = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )
    if not prompts:
        raise ValueError(f"prompt file {uri} has no prompts")
    return prompts
