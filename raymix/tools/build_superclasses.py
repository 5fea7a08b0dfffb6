"""Build AGA's ImageNet superclass table from WordNet 3.0.

Rahat et al., "AGA" (2024), Sec. 4.1 prompts GroundingDINO with a class's superclass
("bird" for "water ouzel"). ImageNet-1k's wnids are WordNet 3.0 noun offsets
(``n01601694`` is offset ``01601694`` in ``data.noun``), so a superclass is a hypernym:
this script walks each synset's hypernyms (``@`` and instance ``@i`` pointers) breadth-first
and takes the nearest one (the synset itself included: "tick" stays "tick") whose lemmas include
one of :data:`SUPERCLASSES` (readable names a detector knows: "bird", "dog", "snake", "car",
...), else one of the broad :data:`GENERIC_SUPERCLASSES` ("mammal", "container", ...). A synset
with neither (mostly objects whose own name a detector knows: "teapot", "banana") keeps its own
first lemma.

Inputs, all offline: WordNet's ``data.noun`` (Debian/Ubuntu: ``apt-get install wordnet-base``,
``/usr/share/wordnet/data.noun``) and the list of the 1,000 wnids (``--synsets``, one per
line; the ``timm`` package ships it as ``timm/data/_info/imagenet_synsets.txt``, and
``--synsets`` also reads it straight from a timm wheel). The output is the package table::

    python -m raymix.tools.build_superclasses --synsets timm-1.0.31-py3-none-any.whl \\
        --out raymix/models/data/imagenet_superclasses.tsv
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections import deque
from pathlib import Path

__all__ = ["SUPERCLASSES", "GENERIC_SUPERCLASSES", "OTHER_SENSES", "read_wordnet", "read_synsets", "superclass_table", "main"]

DEFAULT_WORDNET = "/usr/share/wordnet/data.noun"
TIMM_SYNSETS = "timm/data/_info/imagenet_synsets.txt"

#: Readable superclasses: the name written to the table, and the WordNet lemma (or lemmas) that
#: mark the hypernym; the nearest hypernym wins.
SUPERCLASSES = {
    # animals
    "dog": ("dog", "canine"), "wolf": "wolf", "fox": "fox", "cat": "cat", "bear": "bear", "monkey": "monkey",
    "ape": "ape", "lemur": "lemur", "bird": "bird", "fish": "fish", "shark": "shark", "ray": "ray",
    "snake": "snake", "lizard": "lizard", "turtle": "turtle", "frog": "frog", "salamander": "salamander",
    "crocodile": "crocodilian_reptile", "dinosaur": "dinosaur", "spider": "spider", "scorpion": "scorpion",
    "tick": "tick", "insect": "insect", "butterfly": "butterfly", "beetle": "beetle", "crab": "crab",
    "lobster": "lobster", "crayfish": "crayfish", "shrimp": "shrimp", "snail": "snail", "slug": "slug",
    "jellyfish": "jellyfish", "sea anemone": "sea_anemone", "coral": "coral", "starfish": "starfish",
    "sea urchin": "sea_urchin", "worm": "worm", "rodent": "rodent", "rabbit": ("rabbit", "leporid"), "pig": "swine",
    "cattle": ("bovine", "bison"), "sheep": ("sheep", "wild_sheep"), "goat": "goat", "antelope": "antelope", "deer": "deer",
    "horse": "equine", "camel": "camel", "elephant": "elephant", "whale": "whale", "seal": "seal",
    "weasel": "musteline_mammal", "otter": "otter", "skunk": "skunk", "badger": "badger",
    "armadillo": "armadillo", "sloth": "sloth", "anteater": "anteater", "bat": "bat",
    "hedgehog": "hedgehog", "marsupial": "marsupial",
    # plants and food
    "mushroom": "fungus", "flower": "flower", "fruit": "edible_fruit", "vegetable": "vegetable",
    # vehicles
    "car": "car", "truck": "truck", "bus": "bus", "train": "train", "boat": "boat", "ship": "ship",
    "airplane": "airplane", "aircraft": "aircraft", "bicycle": "bicycle", "motorcycle": "motorcycle",
    # things
    "musical instrument": "musical_instrument", "hat": "headdress", "shoe": "footwear", "bag": "bag",
    "bottle": "bottle", "cup": "cup", "box": "box", "furniture": "furniture", "weapon": "weapon",
    "building": "building", "bridge": "bridge", "computer": "computer", "clock": "clock", "lamp": "lamp",
    "ball": "ball", "toy": "toy",
}

#: Synsets whose lemmas are not read as superclass names: the sense is another one
#: ("toy dog, toy" is a dog, not a plaything; "spiny lobster" is also called "crayfish").
OTHER_SENSES = {"02085374", "01984695"}

#: Broad superclasses, used only for a synset with no hypernym in :data:`SUPERCLASSES` (WordNet
#: also files a greyhound under "racer" and so under "animal"; it is a dog first).
GENERIC_SUPERCLASSES = {
    "mammal": "mammal", "animal": "animal", "food": "food", "plant": "vascular_plant", "vehicle": "vehicle",
    "clothing": "clothing", "tool": "tool", "electronic device": "electronic_equipment", "container": "container",
}


def read_wordnet(path: str | Path) -> dict[str, tuple[list[str], list[str]]]:
    """``{offset: (lemmas, hypernym offsets)}`` of every noun synset in WordNet's ``data.noun``."""
    synsets = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            offset, words = fields[0], int(fields[3], 16)
            lemmas = [fields[4 + 2 * k] for k in range(words)]
            p = 4 + 2 * words
            pointers = int(fields[p])
            hypernyms = [fields[p + 2 + 4 * k] for k in range(pointers) if fields[p + 1 + 4 * k] in ("@", "@i")]
            synsets[offset] = (lemmas, hypernyms)
    return synsets


def read_synsets(path: str | Path) -> list[str]:
    """The wnids (``n01440764``) of a synset list, or of timm's list inside a timm wheel."""
    path = Path(path)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            text = wheel.read(TIMM_SYNSETS).decode()
    else:
        text = path.read_text()
    return [w.strip() for w in text.split() if w.strip()]


def _readable(lemma: str) -> str:
    return lemma.replace("_", " ").split("(")[0].strip().lower()


def superclass_table(wnids: list[str], wordnet: dict[str, tuple[list[str], list[str]]]) -> dict[str, str]:
    """``{wnid: superclass}``: the synset itself or its nearest hypernym named in :data:`SUPERCLASSES`,
    else in :data:`GENERIC_SUPERCLASSES`, else the synset's own first lemma."""
    table = {}
    for wnid in wnids:
        offset = wnid.lstrip("n")
        if offset not in wordnet:
            raise KeyError(f"{wnid} is not a WordNet 3.0 noun synset")
        found = _nearest(offset, wordnet, SUPERCLASSES) or _nearest(offset, wordnet, GENERIC_SUPERCLASSES)
        table[wnid] = found or _readable(wordnet[offset][0][0])
    return table


def _nearest(offset: str, wordnet, names: dict[str, str]) -> str | None:
    """The name of the nearest synset (itself first, then hypernyms breadth-first) with a lemma in ``names``."""
    by_lemma = {lemma.lower(): name for name, lemmas in names.items()
                for lemma in ((lemmas,) if isinstance(lemmas, str) else lemmas)}
    seen, queue = {offset}, deque([offset])
    while queue:
        current = queue.popleft()
        lemmas, hypernyms = wordnet[current]
        found = None if current in OTHER_SENSES else next(
            (by_lemma[lemma.lower()] for lemma in lemmas if lemma.lower() in by_lemma), None)
        if found:
            return found
        for h in hypernyms:
            if h not in seen:
                seen.add(h)
                queue.append(h)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raymix.tools.build_superclasses", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synsets", required=True, help="the wnid list (one per line) or a timm wheel")
    parser.add_argument("--wordnet", default=DEFAULT_WORDNET, help=f"WordNet 3.0 data.noun (default: {DEFAULT_WORDNET})")
    parser.add_argument("--out", default="-", help="output TSV (default: stdout)")
    args = parser.parse_args(argv)
    wnids = read_synsets(args.synsets)
    table = superclass_table(wnids, read_wordnet(args.wordnet))
    lines = ["# ImageNet-1k wnid -> superclass for AGA's detector prompt (WordNet 3.0 hypernyms;",
             "# built by `python -m raymix.tools.build_superclasses`, see raymix/models/superclasses.py)"]
    lines += [f"{wnid}\t{table[wnid]}" for wnid in wnids]
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
