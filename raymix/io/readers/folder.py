"""Class-folder trees: ``ROOT/<class>/**/<file>`` (``train/n01440764/n01440764_10026.JPEG``).

The tree is listed once on the driver (the class folders, then each class folder in a
thread pool: every object is listed exactly once) and cut into *virtual shards* of
``files_per_shard`` files per class, named ``ROOT/<class>#00000``; each virtual shard is
one read task that fetches its files concurrently. Keys are relative paths without
extension (``n01440764/n01440764_10026``; with the extension where two files share a
stem). Labels index the class list.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from raymix.io import storage, wds
from raymix.io.readers.classes import CLASS_FILES, given_classes, load_class_file
from raymix.io.readers.shard import RowBuffer, Shard, hidden, read_reason, strip_ext

log = logging.getLogger(__name__)


def class_folders(uri: str, entries: list[dict]) -> list[str]:
    """The class folders among the entries of the root (sorted; hidden ones skipped)."""
    folders = sorted(
        posixpath.basename(e["name"].rstrip("/"))
        for e in entries
        if e["type"] == "directory" and not hidden(posixpath.basename(e["name"].rstrip("/")))
    )
    if not folders:
        raise ValueError(f"{uri} holds no class folders (and no parquet or tar files)")
    return folders


def class_list(fs, root: str, folders: list[str], top_files: Collection[str], classes
               ) -> tuple[list[str], list[str], dict[str, int]]:
    """Names, descriptions and the folder -> label index: ``classes`` when given, else a
    class-list file at the root (:data:`CLASS_FILES`), else the sorted folder names."""
    if classes is not None:
        names, descriptions = given_classes(classes, folders)
    else:
        found = next((n for n in CLASS_FILES if n in top_files), None)
        if found:
            names, descriptions = load_class_file(fs, posixpath.join(root, found), folders)
        else:
            names, descriptions = folders, [""] * len(folders)
    index = {n: i for i, n in enumerate(names)}
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise ValueError(
            f"class folders missing from the class list: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
        )
    return names, descriptions, index


def list_tree(fs, root: str, folders: list[str], list_threads: int,
              retry_seconds: float = storage.DEFAULT_RETRY_SECONDS) -> list[list[tuple[str, int]]]:
    """``(path, size)`` of every file under each class folder, sorted; one thread per folder
    (each listing retried through transient errors)."""

    def list_folder(folder: str) -> list[tuple[str, int]]:
        base = posixpath.join(root, folder)
        found = storage.retry(lambda: fs.find(base, detail=True), f"listing {base}", retry_seconds)
        return sorted((p, d.get("size") or 0) for p, d in found.items() if not hidden(p[len(base):]))

    with ThreadPoolExecutor(max_workers=max(1, list_threads)) as pool:
        return list(pool.map(list_folder, folders))


def cut_shards(fs, root: str, folders: list[str], listings: list[list[tuple[str, int]]], index: dict[str, int],
               files_per_shard: int, extensions: Collection[str] | None, key_prefix: str) -> list[Shard]:
    """Virtual shards of ``files_per_shard`` files per class folder, with their keys."""
    exts = {e.lower().lstrip(".") for e in extensions} if extensions else None
    rel_stems: dict[str, int] = {}
    for listing in listings:
        for p, _ in listing:
            stem = strip_ext(p[len(root) + 1:])
            rel_stems[stem] = rel_stems.get(stem, 0) + 1

    root_uri = storage.uri_of(fs, root)
    shards = []
    for folder, listing in zip(folders, listings):
        if exts is not None:
            listing = [(p, s) for p, s in listing if posixpath.splitext(p)[1].lower().lstrip(".") in exts]
        for chunk_no, start in enumerate(range(0, len(listing), max(1, files_per_shard))):
            chunk = listing[start : start + files_per_shard]
            keys = []
            for p, _ in chunk:
                rel = p[len(root) + 1:]
                stem = strip_ext(rel)
                keys.append(key_prefix + (stem if rel_stems[stem] == 1 else rel))
            shards.append(
                Shard(
                    source=f"{root_uri}/{folder}#{chunk_no:05d}",
                    size_bytes=sum(int(s) for _, s in chunk),
                    files=tuple(p for p, _ in chunk),
                    keys=tuple(keys),
                    label=index[folder],
                    class_name=folder,
                )
            )
    return shards


#: ImageNet's validation labels in the Kaggle layout (``ImageId,PredictionString``).
VAL_SOLUTION_FILES = ("LOC_val_solution.csv",)
#: How many folders up from a flat folder the label CSV and class list are looked for
#: (``val/`` itself, its parent, ... : Kaggle keeps them 3 levels above ``ILSVRC/Data/CLS-LOC/val``).
LOOK_UP_LEVELS = 3


def is_image_name(name: str) -> bool:
    return posixpath.splitext(name)[1].lower().lstrip(".") in wds.IMAGE_EXTENSIONS


def find_beside(fs, root: str, names: Collection[str], levels: int = LOOK_UP_LEVELS) -> str | None:
    """The first of ``names`` in ``root`` or up to ``levels`` folders above it."""
    folder = root.rstrip("/")
    for _ in range(levels + 1):
        for n in names:
            path = posixpath.join(folder, n)
            try:
                if fs.isfile(path):
                    return path
            except OSError:
                pass
        parent = posixpath.dirname(folder)
        if not parent or parent == folder:
            break
        folder = parent
    return None


def parse_val_solution(text: str) -> dict[str, str]:
    """``ImageId -> synset`` from ``LOC_val_solution.csv`` (the first token of
    ``PredictionString``, ``n01751748 65 62 500 371 ...``)."""
    import csv
    import io

    out = {}
    for rec in csv.DictReader(io.StringIO(text)):
        image_id, pred = rec.get("ImageId"), rec.get("PredictionString") or ""
        if image_id and pred.split():
            out[image_id.strip()] = pred.split()[0]
    if not out:
        raise ValueError("the label CSV has no ImageId,PredictionString rows")
    return out


def flat_shards(fs, root: str, files: list[tuple[str, int]], classes, files_per_shard: int, key_prefix: str,
                labelled: bool = True) -> tuple[list[Shard], list[str] | None, list[str] | None]:
    """Virtual shards over a flat list of image files (a flat folder such as ImageNet's
    ``val/``, a single image, a glob of images), labelled by a ``LOC_val_solution.csv``
    found beside the folder or above it (see :data:`LOOK_UP_LEVELS`), else unlabelled."""
    solution = find_beside(fs, root, VAL_SOLUTION_FILES) if labelled else None
    by_id = parse_val_solution(storage.read_text(fs, solution)) if solution else {}
    names = descriptions = None
    if classes is not None:
        names, descriptions = given_classes(classes)
    else:
        class_file = find_beside(fs, root, CLASS_FILES) if by_id else None
        if class_file:
            names, descriptions = load_class_file(fs, class_file)
        elif by_id:
            names = sorted(set(by_id.values()))
            descriptions = [""] * len(names)
    index = {n: i for i, n in enumerate(names or [])}
    if by_id:
        unknown = sorted(set(by_id.values()) - set(index))
        if unknown:
            raise ValueError(f"synsets in {solution} missing from the class list: {unknown[:5]}")
    root_uri = storage.uri_of(fs, root)
    shards = []
    step = max(1, files_per_shard)
    for chunk_no, start in enumerate(range(0, len(files), step)):
        chunk = files[start : start + step]
        rels = [p[len(root.rstrip("/")) + 1:] if p.startswith(root.rstrip("/") + "/") else posixpath.basename(p)
                for p, _ in chunk]
        keys = tuple(key_prefix + strip_ext(r) for r in rels)
        labels = tuple(index.get(by_id.get(strip_ext(posixpath.basename(r)), ""), -1) for r in rels) if by_id else ()
        shards.append(Shard(
            source=f"{root_uri}#{chunk_no:05d}", size_bytes=sum(int(s) for _, s in chunk),
            files=tuple(p for p, _ in chunk), keys=keys, labels=labels,
        ))
    return shards, names, descriptions


def read_folder_shard(plan, shard: Shard) -> Iterator[pa.Table]:
    """The rows of one virtual shard. Each file is fetched on its own (no glob expansion)
    and retried through transient errors; one that still cannot be read gives a row
    without bytes and with its reason (:func:`~raymix.io.readers.shard.read_reason`)."""
    rows = RowBuffer(shard.source, plan.block_bytes, plan.block_rows)
    fs = plan.fs
    chunk = max(1, plan.fetch_threads * 4)
    for start in range(0, len(shard.files), chunk):
        paths = list(shard.files[start : start + chunk])
        got = storage.fetch_files(fs, paths, plan.fetch_threads, plan.retry_seconds)
        for j, (p, key) in enumerate(zip(paths, shard.keys[start : start + chunk])):
            data, reason = got[p], ""
            if isinstance(data, BaseException):
                reason = read_reason(data)
                log.warning("cannot read %s (%s): %s", storage.uri_of(fs, p), reason, data)
                data = None
            label = shard.labels[start + j] if shard.labels else shard.label
            cname = plan.class_name(label) if shard.labels else shard.class_name
            yield from rows.add(key, data, label, cname, reason)
    yield from rows.flush()
