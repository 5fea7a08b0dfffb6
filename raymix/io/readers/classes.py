"""Class lists: ``classes.json``, ImageNet's ``LOC_synset_mapping.txt`` and plain
one-name-per-line files."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Collection

from raymix.io import storage

#: Class-list files looked for at the root of a folder tree, in this order.
CLASS_FILES = ("classes.json", "LOC_synset_mapping.txt", "synsets.txt", "classes.txt")


def parse_class_list(text: str, filename: str = "", folders: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """Class names (and descriptions) from a class-list file's text.

    ``*.json``: a list of names, or ``{"names": [...], "descriptions": [...]}``. Text: one
    class per line; a line that is a folder name (or when no folders are given, a line
    without spaces) is the name, otherwise the first word is the name and the rest the
    description (ImageNet's ``LOC_synset_mapping.txt``: ``n01440764 tench, Tinca tinca``).
    """
    if filename.endswith(".json"):
        data = json.loads(text)
        if isinstance(data, dict):
            names = [str(n) for n in data["names"]]
            descriptions = [str(d) for d in data.get("descriptions", [""] * len(names))]
        else:
            names, descriptions = [str(n) for n in data], [""] * len(data)
        return names, descriptions
    names, descriptions = [], []
    folder_set = set(folders)
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line in folder_set or " " not in line and "\t" not in line:
            names.append(line)
            descriptions.append("")
        else:
            name, _, rest = line.replace("\t", " ").partition(" ")
            names.append(name)
            descriptions.append(rest.strip())
    if len(set(names)) != len(names):
        raise ValueError(f"class list {filename or ''} names a class twice")
    return names, descriptions


def load_class_file(fs, path: str, folders: Collection[str] = ()) -> tuple[list[str], list[str]]:
    return parse_class_list(storage.read_text(fs, path), posixpath.basename(path), folders)


def given_classes(classes: str | Collection[str], folders: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """The ``classes=`` argument of ``plan_read``: a list of names, or a class-list URI."""
    if isinstance(classes, str):
        fs, path = storage.filesystem(classes)
        return load_class_file(fs, path, folders)
    return list(classes), [""] * len(classes)
