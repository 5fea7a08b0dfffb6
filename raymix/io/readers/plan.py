"""The read plan: list the data at ``uri`` once, decide its layout, shards and class list
(:func:`plan_read`), then read any shard with :meth:`ReadPlan.read_shard` (the package
docstring describes the layouts).
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from raymix.io import storage, wds
from raymix.io.readers import folder
from raymix.io.readers.arrow import ARROW_SUFFIXES, HF_DISK_FILES, arrow_class_names, read_arrow_shard
from raymix.io.readers.classes import given_classes, load_class_file
from raymix.io.readers.parquet import index_parquet, read_parquet_shard, schema_class_names
from raymix.io.readers.shard import (
    DEFAULT_BLOCK_BYTES, DEFAULT_BLOCK_ROWS, PARQUET_SUFFIXES, Shard, file_stem, hidden, unique_key,
)
from raymix.io.readers.webdataset import read_tar_shard
from raymix.schema import KEY, LAYOUTS

__all__ = ["ReadPlan", "plan_read"]

log = logging.getLogger(__name__)

DEFAULT_FILES_PER_SHARD = 1000
_SHARD_READERS = {
    "folder": folder.read_folder_shard, "parquet": read_parquet_shard, "webdataset": read_tar_shard,
    "arrow": read_arrow_shard,
}
_FILE_SUFFIXES = {"parquet": PARQUET_SUFFIXES, "webdataset": wds.TAR_SUFFIXES, "arrow": ARROW_SUFFIXES}


@dataclass
class ReadPlan:
    """What a read will do: the layout, the shards, and the class list.

    ``classes`` (label -> class name) is what the folder reader labelled with, or what
    the shards declare; pass it to :func:`raymix.pipeline.datasink.write_dataset` to store it as
    ``classes.json`` beside the outputs.
    """

    uri: str
    layout: str
    fs: fsspec.AbstractFileSystem
    root: str
    shards: list[Shard]
    classes: list[str] | None = None
    descriptions: list[str] | None = None
    fetch_threads: int = 16
    list_threads: int = 16
    block_bytes: int = DEFAULT_BLOCK_BYTES
    block_rows: int = DEFAULT_BLOCK_ROWS
    #: How long one read retries a transient storage error (:func:`raymix.io.storage.retry`).
    retry_seconds: float = storage.DEFAULT_RETRY_SECONDS
    _class_index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def num_rows(self) -> int | None:
        """Rows the plan will read, when known without reading: folder trees (the listing)
        and parquet shards (their footers, read when planning)."""
        counts = [s.num_rows for s in self.shards]
        return None if any(c is None for c in counts) else sum(counts)

    def without_keys(self, keys: Collection[str]) -> ReadPlan:
        """The plan minus the given keys, for folder trees where keys are known before
        reading (no bytes are fetched for them). Other layouts filter while reading."""
        if self.layout != "folder" or not keys:
            return self
        keys = keys if isinstance(keys, (set, frozenset)) else set(keys)
        shards = []
        for s in self.shards:
            kept = [(f, k) for f, k in zip(s.files, s.keys) if k not in keys]
            if kept:
                files, ks = zip(*kept)
                labels = tuple(lb for (f, k), lb in zip(zip(s.files, s.keys), s.labels) if k not in keys)
                shards.append(dataclasses.replace(s, files=files, keys=ks, labels=labels))
        return self._replace_shards(shards)

    def head(self, limit: int) -> ReadPlan:
        """The first ``limit`` rows of a folder plan (listing order); other layouts
        are limited while reading."""
        if self.layout != "folder":
            return self
        shards, left = [], limit
        for s in self.shards:
            if left <= 0:
                break
            n = min(left, len(s.files))
            shards.append(dataclasses.replace(s, files=s.files[:n], keys=s.keys[:n], labels=s.labels[:n]))
            left -= n
        return self._replace_shards(shards)

    def without_shards(self) -> ReadPlan:
        """The plan's settings without its listing (what one read task needs)."""
        return self._replace_shards([])

    def _replace_shards(self, shards: list[Shard]) -> ReadPlan:
        return ReadPlan(**{**self.__dict__, "shards": shards})

    # -- reading one shard (plain Python: runs inside Ray read tasks, or directly) --

    def read_shard(self, shard: Shard, skip_keys: pa.Array | None = None) -> Iterator[pa.Table]:
        """Yield the rows of one shard as ``INPUT_SCHEMA`` tables of bounded size."""
        for table in _SHARD_READERS[self.layout](self, shard):
            if skip_keys is not None and len(skip_keys):
                table = table.filter(pc.invert(pc.is_in(table[KEY], value_set=skip_keys)))
            if table.num_rows:
                yield table

    def class_name(self, label: int | None) -> str:
        """The name of ``label`` in the plan's class list (the label as text otherwise)."""
        if self.classes is not None and label is not None and 0 <= label < len(self.classes):
            return self.classes[label]
        return "" if label is None or label < 0 else str(label)


def plan_read(
    uri: str | Sequence[str],
    *,
    layout: str = "auto",
    storage_options: dict | None = None,
    classes: str | Sequence[str] | None = None,
    files_per_shard: int = DEFAULT_FILES_PER_SHARD,
    extensions: Collection[str] | None = None,
    key_prefix: str = "",
    list_threads: int = 16,
    fetch_threads: int = 16,
    retry_seconds: float = storage.DEFAULT_RETRY_SECONDS,
) -> ReadPlan:
    """List ``uri`` once and decide the shards; no image bytes are read.

    ``uri``: a folder (class folders, a flat folder of images, parquet or tar shards, a
    Hugging Face ``save_to_disk`` folder), a file (a ``.parquet``, ``.tar`` or ``.arrow``
    shard, or one image), a glob, or a list of files (all on one filesystem).
    ``extensions``: for folder trees, file extensions to keep (default: every file that
    is not hidden, so non-images reach the decoder and are quarantined, never silently
    dropped). ``key_prefix`` is prepended to folder-tree keys (e.g. ``"train/"``).
    ``retry_seconds``: how long each listing and read retries a transient storage error.

    Parquet footers are read here (``list_threads`` at a time): the rows each shard holds,
    and the keys its rows will have, so that keys shared by two rows of the input are
    made unique (:func:`~raymix.io.readers.shard.unique_key`) wherever they are.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    uris = [uri] if isinstance(uri, str) else list(uri)
    if not uris:
        raise ValueError("no input URI given")
    fs, first = storage.filesystem(uris[0], storage_options)
    common = dict(fs=fs, fetch_threads=fetch_threads, retry_seconds=retry_seconds, list_threads=list_threads)

    def again(fn, what):
        return storage.retry(fn, what, retry_seconds)

    def is_glob(path: str) -> bool:  # a name that merely holds glob characters is no glob
        return any(ch in path for ch in "*?[") and not again(lambda: fs.exists(path), f"looking up {path}")

    if len(uris) > 1 or is_glob(first):
        files: list[tuple[str, int]] = []
        for u in uris:
            _, p = storage.filesystem(u, storage_options)
            if is_glob(p):
                found = again(lambda p=p: fs.glob(p, detail=True), f"listing {p}")
                files.extend(sorted((q, d.get("size") or 0) for q, d in found.items()))
            else:
                files.append((p, 0))
        if not files:
            raise ValueError(f"nothing matches {uris}")
        paths = [p for p, _ in files]
        root = posixpath.dirname(paths[0]) if len(paths) == 1 else posixpath.commonpath(paths)
        layout = _layout_of_files(paths) if layout == "auto" else layout
        if layout == "folder":
            return _flat_plan(uris[0], root, files, classes, files_per_shard, key_prefix, common)
        return _file_plan(uris[0], layout, root, files, classes, common)

    info = again(lambda: fs.info(first), f"looking up {first}")
    if info["type"] != "directory":
        layout = _layout_of_files([first]) if layout == "auto" else layout
        if layout == "folder":  # one image file
            return _flat_plan(uris[0], posixpath.dirname(first), [(first, info.get("size") or 0)], classes,
                              files_per_shard, key_prefix, common)
        return _file_plan(uris[0], layout, posixpath.dirname(first), [(first, info.get("size") or 0)], classes, common)

    entries = again(lambda: fs.ls(first, detail=True), f"listing {first}")
    top_files = {posixpath.basename(e["name"].rstrip("/")): e for e in entries if e["type"] != "directory"}
    if layout == "auto":
        names = [n for n in top_files if not hidden(n)]
        if any(n in HF_DISK_FILES for n in names) or any(n.lower().endswith(ARROW_SUFFIXES) for n in names):
            layout = "arrow"  # a Hugging Face save_to_disk folder
        elif any(n.lower().endswith(PARQUET_SUFFIXES) for n in names):
            layout = "parquet"
        elif any(n.lower().endswith(wds.TAR_SUFFIXES) for n in names):
            layout = "webdataset"
    if layout in ("auto", "folder") and not any(
        e["type"] == "directory" and not hidden(posixpath.basename(e["name"].rstrip("/"))) for e in entries
    ) and any(folder.is_image_name(n) and not hidden(n) for n in top_files):
        layout = "flat"  # images without class folders (ImageNet's val/)
    if layout == "flat":
        exts = {e.lower().lstrip(".") for e in extensions} if extensions else None
        files = sorted((e["name"], e.get("size") or 0) for n, e in top_files.items() if not hidden(n) and (
            folder.is_image_name(n) if exts is None else posixpath.splitext(n)[1].lower().lstrip(".") in exts))
        return _flat_plan(uris[0], first, files, classes, files_per_shard, key_prefix, common)
    if layout in _FILE_SUFFIXES:
        suffixes = _FILE_SUFFIXES[layout]
        found = again(lambda: fs.find(first, detail=True), f"listing {first}")
        files = sorted(
            (p, d.get("size") or 0)
            for p, d in found.items()
            if p.lower().endswith(suffixes) and not hidden(p[len(first):])
            and not (layout == "arrow" and posixpath.basename(p).startswith("cache-"))
        )
        if not files:
            raise ValueError(f"no {'/'.join(suffixes)} files under {uris[0]}")
        return _file_plan(uris[0], layout, first, files, classes, common, top_files=top_files)
    return _folder_plan(
        uris[0], layout, first, entries, top_files, classes, files_per_shard, extensions, key_prefix,
        list_threads, common,
    )


def _layout_of_files(paths: list[str]) -> str:
    lower = [p.lower() for p in paths]
    if lower and all(p.endswith(PARQUET_SUFFIXES) for p in lower):
        return "parquet"
    if lower and all(p.endswith(wds.TAR_SUFFIXES) for p in lower):
        return "webdataset"
    if lower and all(p.endswith(ARROW_SUFFIXES) for p in lower):
        return "arrow"
    if lower and all(folder.is_image_name(p) for p in lower):
        return "folder"
    if len(lower) == 1:
        raise ValueError(f"cannot tell the layout of {paths[0]}: not a .parquet, .tar, .arrow or image file")
    raise ValueError("cannot tell the layout of a mix of files; pass layout='parquet', 'webdataset' or 'arrow'")


def _file_plan(uri, layout, root, files, classes, common, top_files=None) -> ReadPlan:
    fs = common["fs"]
    shards = [Shard(storage.uri_of(fs, p), path=p, size_bytes=int(s), name=_shard_name(root, p)) for p, s in files]
    if layout == "parquet":
        shards = _indexed(fs, shards, common["list_threads"], common["retry_seconds"])
    names = descriptions = None
    if classes is not None:
        names, descriptions = given_classes(classes)
    else:
        listing = top_files if top_files is not None else {}
        if top_files is None:
            try:
                listing = {posixpath.basename(p): None for p in fs.ls(root, detail=False)}
            except OSError:
                listing = {}
        if "classes.json" in listing:
            names, descriptions = load_class_file(fs, posixpath.join(root, "classes.json"))
        elif layout == "parquet" and shards:
            names = schema_class_names(fs, shards[0].path, shards[0].source)
        elif layout == "arrow" and shards:
            names = arrow_class_names(fs, shards[0].path, shards[0].source)
    return ReadPlan(uri, layout, root=root, shards=shards, classes=names, descriptions=descriptions, **common)


def _shard_name(root: str, path: str) -> str:
    """A shard's name unique in its plan: its path under the root without the suffix."""
    root = root.rstrip("/")
    rel = path[len(root) + 1:] if root and path.startswith(root + "/") else path.lstrip("/")
    return posixpath.join(posixpath.dirname(rel), file_stem(rel))


def _indexed(fs, shards: list[Shard], threads: int, retry_seconds: float) -> list[Shard]:
    """Parquet shards with the rows their footers declare and the keys they share with
    other rows of the input (read from key or image-path columns only)."""
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(shards)))) as pool:
        index = list(pool.map(lambda s: index_parquet(fs, s.path, file_stem(s.path), retry_seconds), shards))
    counts = Counter(k for _, keys in index for k in keys or ())
    shared = {k for k, n in counts.items() if n > 1}
    if shared:
        example = min(shared)
        where, row = next((s.name, keys.index(example)) for s, (_, keys) in zip(shards, index) if example in (keys or ()))
        log.warning(
            "duplicate keys: %d keys are shared by more than one row of the input (e.g. %r, as when the same file "
            "name is in two classes); each such row is keyed {key}#{shard}/{row} instead, e.g. %r",
            len(shared), example, unique_key(example, where, row))
    out = []
    for shard, (rows, keys) in zip(shards, index):
        ambiguous = frozenset(k for k in keys or () if k in shared)
        out.append(dataclasses.replace(shard, rows=rows, ambiguous=ambiguous))
    return out


def _flat_plan(uri, root, files, classes, files_per_shard, key_prefix, common) -> ReadPlan:
    shards, names, descriptions = folder.flat_shards(common["fs"], root, files, classes, files_per_shard, key_prefix)
    index = {n: i for i, n in enumerate(names)} if names else {}
    return ReadPlan(uri, "folder", root=root, shards=shards, classes=names, descriptions=descriptions,
                    _class_index=index, **common)


def _folder_plan(
    uri, layout, root, entries, top_files, classes, files_per_shard, extensions, key_prefix, list_threads, common,
) -> ReadPlan:
    fs = common["fs"]
    folders = folder.class_folders(uri, entries)
    names, descriptions, index = folder.class_list(fs, root, folders, top_files, classes)
    listings = folder.list_tree(fs, root, folders, list_threads, common["retry_seconds"])
    all_files = [p for listing in listings for p, _ in listing]
    if layout == "auto" and all_files:  # class folders of parquet files or tars
        lower = [p.lower() for p in all_files]
        if all(p.endswith(PARQUET_SUFFIXES) for p in lower) or all(p.endswith(wds.TAR_SUFFIXES) for p in lower):
            sizes = [(p, s) for listing in listings for p, s in listing]
            return _file_plan(uri, _layout_of_files(all_files), root, sizes, classes, common, top_files=top_files)
    shards = folder.cut_shards(fs, root, folders, listings, index, files_per_shard, extensions, key_prefix)
    return ReadPlan(
        uri, "folder", root=root, shards=shards, classes=list(names), descriptions=list(descriptions),
        _class_index=index, **common,
    )
