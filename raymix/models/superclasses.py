"""Superclasses: what GroundingDINO is asked to find in an image of a class.

Rahat et al., "AGA" (2024), Sec. 4.1: GroundingDINO often misses the subject when prompted
with a fine-grained class name ("water ouzel") but finds it with the class's superclass
("bird"), so AGA prompts the detector with the superclass.

The package ships a table for all 1,000 ImageNet-1k synsets,
``raymix/models/data/imagenet_superclasses.tsv`` (``wnid<TAB>superclass``), built from
WordNet 3.0 by :mod:`raymix.tools.build_superclasses` (ImageNet's wnids are WordNet noun
offsets: each synset's nearest hypernym among a list of readable superclasses, else the
class's own first lemma). A user table replaces it: a TSV (``key<TAB>superclass``, ``#``
comments) or a JSON object, keyed by wnid or by class name, at any fsspec URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

__all__ = ["DEFAULT_TABLE", "load_superclasses", "parse_superclasses", "superclass_for"]

#: The packaged ImageNet-1k table (package data).
DEFAULT_TABLE = "data/imagenet_superclasses.tsv"


def parse_superclasses(text: str, *, where: str = "the superclass table") -> dict[str, str]:
    """A table's text (TSV or a JSON object) as ``{key: superclass}``; a clear error when malformed."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        table = json.loads(stripped)
        if not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in table.items()):
            raise ValueError(f"{where}: a JSON table maps class keys to non-empty superclass strings")
        return {k.strip(): v.strip() for k, v in table.items()}
    table = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{where}, line {number}: expected 'key<TAB>superclass', got {line!r}")
        table[parts[0].strip()] = parts[1].strip()
    return table


def load_superclasses(path: str | None = None, storage_options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The superclass table: the packaged ImageNet-1k one (``path=None``) or a user file (TSV or JSON,
    any fsspec URL), as ``{wnid or class name: superclass}``."""
    if path is None:
        text = resources.files("raymix.models").joinpath(DEFAULT_TABLE).read_text(encoding="utf-8")
        return parse_superclasses(text, where=DEFAULT_TABLE)
    from raymix.io.storage import filesystem, read_text

    fs, local = filesystem(path, dict(storage_options or {}))
    return parse_superclasses(read_text(fs, local), where=path)


def superclass_for(class_name: str, table: Mapping[str, str]) -> str:
    """The superclass of ``class_name`` (a wnid or a name) in ``table``.

    A class not in the table falls back to its own name as a lemma: underscores as spaces,
    the first of comma-separated synonyms ("water_ouzel, dipper" -> "water ouzel"), so the
    detector is prompted with the class itself.
    """
    key = str(class_name).strip()
    if key in table:
        return table[key]
    return key.split(",")[0].replace("_", " ").strip() or key
