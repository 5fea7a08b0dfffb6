"""Plan and read ImageNet-style data from any fsspec URL, one shard at a time.

Three layouts, one row shape (``raymix.io.schema.INPUT_COLUMNS``: ``key``, ``image`` as
the stored bytes, ``label``, ``class_name``, ``source``):

``folder``
    ``ROOT/<class>/**/<file>`` (``train/n01440764/n01440764_10026.JPEG``). The tree is
    listed once on the driver (the class folders, then each class folder in a thread
    pool: every object is listed exactly once) and cut into *virtual shards* of
    ``files_per_shard`` files per class, named ``ROOT/<class>#00000``; each virtual shard
    is one read task that fetches its files concurrently. Keys are relative paths without
    extension (``n01440764/n01440764_10026``). Labels index a class list: ``classes=``
    (a list, or the URI of ``classes.json``, an ImageNet ``LOC_synset_mapping.txt``
    (``wnid description`` per line) or a plain one-name-per-line file), else such a file
    found in ``ROOT``, else the sorted folder names.
``parquet``
    Hugging Face ``datasets`` parquet shards: ``image`` struct ``{bytes, path}`` (or plain
    binary) and ``label``. Keys come from a ``key`` column when present, else the image
    ``path`` without extension, else ``<shard stem>/<row number>``; class names from a
    ``class_name`` column, else the ``ClassLabel`` names in the HF schema metadata, else
    a ``classes.json`` beside the shards, else the label as text.
``webdataset``
    Tars of ``{key}.jpg`` / ``.png`` / ... with ``{key}.cls`` (label as text) and an
    optional ``{key}.json`` (``key``, ``class_name``, ``label``); member keys are
    percent-decoded (see :mod:`raymix.io.wds`).

Parquet files and tars are read one file per read task, streaming in blocks (the Ray
Dataset over a plan: :func:`raymix.pipeline.datasource.read_dataset`). Files and
folders whose name starts with ``.`` or ``_`` are skipped (``_quarantine/``, temporary
files), as Ray's own readers do. Data that cannot be read never fails the job: a file
that cannot be fetched gives a row with no bytes (``image`` null), and a shard that breaks
part way gives the rows before the break plus one row keyed ``<source>#unreadable``; the
decode stage quarantines both with reason ``missing``.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raymix.io import storage, wds
from raymix.io.schema import INPUT_SCHEMA
from raymix.schema import CLASS_NAME, IMAGE, KEY, LABEL, SOURCE

__all__ = ["Shard", "ReadPlan", "plan_read", "parse_class_list", "LAYOUTS"]

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "folder", "parquet", "webdataset")
CLASS_FILES = ("classes.json", "LOC_synset_mapping.txt", "synsets.txt", "classes.txt")
PARQUET_SUFFIXES = (".parquet",)
DEFAULT_FILES_PER_SHARD = 1000
DEFAULT_BLOCK_BYTES = 64 * 2**20
DEFAULT_BLOCK_ROWS = 1024
UNREADABLE_SUFFIX = "#unreadable"


@dataclass(frozen=True)
class Shard:
    """One unit of reading: a parquet file, a tar, or a virtual shard of a folder tree."""

    source: str
    path: str = ""  # parquet / tar: the file on the plan's filesystem
    size_bytes: int = 0
    # Folder virtual shards: the files, their keys, and the shard's class.
    files: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    label: int = -1
    class_name: str = ""

    @property
    def num_rows(self) -> int | None:
        return len(self.files) if self.files else None


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
    block_bytes: int = DEFAULT_BLOCK_BYTES
    block_rows: int = DEFAULT_BLOCK_ROWS
    _class_index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def num_rows(self) -> int | None:
        """Rows the plan will read, when known without reading (folder trees)."""
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
                shards.append(Shard(s.source, s.path, s.size_bytes, files, ks, s.label, s.class_name))
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
            shards.append(Shard(s.source, s.path, s.size_bytes, s.files[:n], s.keys[:n], s.label, s.class_name))
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
        if self.layout == "folder":
            tables = self._read_folder_shard(shard)
        elif self.layout == "parquet":
            tables = self._read_parquet_shard(shard)
        else:
            tables = self._read_tar_shard(shard)
        for table in tables:
            if skip_keys is not None and len(skip_keys):
                table = table.filter(pc.invert(pc.is_in(table[KEY], value_set=skip_keys)))
            if table.num_rows:
                yield table

    def _class_name(self, label: int | None) -> str:
        if self.classes is not None and label is not None and 0 <= label < len(self.classes):
            return self.classes[label]
        return "" if label is None or label < 0 else str(label)

    def _read_folder_shard(self, shard: Shard) -> Iterator[pa.Table]:
        rows = _RowBuffer(shard.source, self.block_bytes, self.block_rows)
        chunk = max(1, self.fetch_threads * 4)
        for start in range(0, len(shard.files), chunk):
            paths = list(shard.files[start : start + chunk])
            try:
                got = self.fs.cat(paths, on_error="return")
            except Exception as err:  # the whole request failed: fetch one by one
                log.warning("batched fetch failed (%s); fetching files one by one", err)
                got = {}
                for p in paths:
                    try:
                        got[p] = self.fs.cat_file(p)
                    except Exception as one_err:
                        got[p] = one_err
            if not isinstance(got, dict):  # a single path comes back as bytes
                got = {paths[0]: got}
            for p, key in zip(paths, shard.keys[start : start + chunk]):
                data = _lookup(got, p, self.fs)
                if isinstance(data, BaseException):
                    log.warning("cannot read %s: %s", storage.uri_of(self.fs, p), data)
                    data = None
                yield from rows.add(key, data, shard.label, shard.class_name)
        yield from rows.flush()

    def _read_parquet_shard(self, shard: Shard) -> Iterator[pa.Table]:
        rows = _RowBuffer(shard.source, self.block_bytes, self.block_rows)
        stem = _file_stem(shard.path)
        try:
            with self.fs.open(shard.path, "rb") as f:
                pf = pq.ParquetFile(f)
                schema = pf.schema_arrow
                image_col = _image_column(schema)
                label_col = next((c for c in ("label", "labels", "cls") if c in schema.names), None)
                names = _hf_class_names(schema, label_col)
                cols = [c for c in (image_col, label_col, KEY, CLASS_NAME) if c and c in schema.names]
                row = 0
                for batch in pf.iter_batches(batch_size=self.block_rows, columns=cols):
                    data = batch.to_pydict()
                    n = batch.num_rows
                    images = data[image_col] if image_col else [None] * n
                    labels = data[label_col] if label_col else [None] * n
                    for i in range(n):
                        img = images[i]
                        path = None
                        if isinstance(img, dict):
                            img, path = img.get("bytes"), img.get("path")
                        key = data[KEY][i] if KEY in data else None
                        if not key:
                            key = _strip_ext(path) if path else f"{stem}/{row + i}"
                        label = labels[i]
                        if CLASS_NAME in data and data[CLASS_NAME][i] is not None:
                            cname = data[CLASS_NAME][i]
                        elif names is not None and label is not None and 0 <= label < len(names):
                            cname = names[label]
                        else:
                            cname = self._class_name(label)
                        yield from rows.add(key, img, -1 if label is None else int(label), cname)
                    row += n
        except Exception as err:
            yield from self._broken(shard, rows, err)
        yield from rows.flush()

    def _read_tar_shard(self, shard: Shard) -> Iterator[pa.Table]:
        rows = _RowBuffer(shard.source, self.block_bytes, self.block_rows)
        try:
            with self.fs.open(shard.path, "rb", block_size=8 * 2**20) as f:
                for key, members in wds.iter_samples(f):
                    meta = {}
                    if "json" in members:
                        try:
                            meta = json.loads(members["json"])
                        except ValueError:
                            meta = {}
                        meta = meta if isinstance(meta, dict) else {}
                    image = next((members[e] for e in wds.IMAGE_EXTENSIONS if e in members), None)
                    label = meta.get("label")
                    for ext in wds.LABEL_EXTENSIONS:
                        if ext in members:
                            try:
                                label = int(members[ext].decode().strip())
                            except ValueError:
                                pass
                            break
                    label = int(label) if isinstance(label, (int, float)) else None
                    cname = meta.get("class_name")
                    if not isinstance(cname, str):
                        cname = self._class_name(label)
                    real_key = meta.get("key") if isinstance(meta.get("key"), str) else key
                    yield from rows.add(real_key, image, -1 if label is None else label, cname)
        except Exception as err:
            yield from self._broken(shard, rows, err)
        yield from rows.flush()

    def _broken(self, shard: Shard, rows: _RowBuffer, err: Exception) -> Iterator[pa.Table]:
        log.warning("shard %s is unreadable after %d rows: %s", shard.source, rows.count, err)
        yield from rows.add(shard.source + UNREADABLE_SUFFIX, None, -1, "")


class _RowBuffer:
    """Accumulates rows and yields ``INPUT_SCHEMA`` tables of bounded size."""

    def __init__(self, source: str, block_bytes: int, block_rows: int):
        self.source, self.block_bytes, self.block_rows = source, block_bytes, block_rows
        self.cols: dict[str, list] = {k: [] for k in (KEY, IMAGE, LABEL, CLASS_NAME)}
        self.nbytes = 0
        self.count = 0

    def add(self, key, image, label, class_name) -> Iterator[pa.Table]:
        self.cols[KEY].append(key)
        self.cols[IMAGE].append(image)
        self.cols[LABEL].append(label)
        self.cols[CLASS_NAME].append(class_name)
        self.nbytes += len(image) if image else 0
        self.count += 1
        if self.nbytes >= self.block_bytes or len(self.cols[KEY]) >= self.block_rows:
            yield from self.flush()

    def flush(self) -> Iterator[pa.Table]:
        n = len(self.cols[KEY])
        if not n:
            return
        arrays = [
            pa.array(self.cols[KEY], pa.string()),
            pa.array(self.cols[IMAGE], pa.binary()),
            pa.array(self.cols[LABEL], pa.int64()),
            pa.array(self.cols[CLASS_NAME], pa.string()),
            pa.array([self.source] * n, pa.string()),
        ]
        self.cols = {k: [] for k in self.cols}
        self.nbytes = 0
        yield pa.Table.from_arrays(arrays, schema=INPUT_SCHEMA)


def _lookup(got: dict, path: str, fs):
    if path in got:
        return got[path]
    stripped = fs._strip_protocol(path)
    for k, v in got.items():
        if fs._strip_protocol(k) == stripped:
            return v
    return FileNotFoundError(path)


def _strip_ext(path: str) -> str:
    folder, base = posixpath.split(path)
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return posixpath.join(folder, stem) if folder else stem


def _file_stem(path: str) -> str:
    base = posixpath.basename(path)
    for suffix in PARQUET_SUFFIXES + wds.TAR_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _image_column(schema: pa.Schema) -> str | None:
    if IMAGE in schema.names:
        return IMAGE
    for f in schema:
        if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0:
            return f.name
    for f in schema:
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            return f.name
    return None


def _hf_class_names(schema: pa.Schema, label_col: str | None) -> list[str] | None:
    if not label_col or not schema.metadata or b"huggingface" not in schema.metadata:
        return None
    try:
        meta = json.loads(schema.metadata[b"huggingface"])
        feature = meta["info"]["features"][label_col]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names"):
        return [str(n) for n in feature["names"]]
    return None


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


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
) -> ReadPlan:
    """List ``uri`` once and decide the shards; no image bytes are read.

    ``uri``: a folder, a file, a glob, or a list of files (all on one filesystem).
    ``extensions``: for folder trees, file extensions to keep (default: every file that
    is not hidden, so non-images reach the decoder and are quarantined, never silently
    dropped). ``key_prefix`` is prepended to folder-tree keys (e.g. ``"train/"``).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    uris = [uri] if isinstance(uri, str) else list(uri)
    if not uris:
        raise ValueError("no input URI given")
    fs, first = storage.filesystem(uris[0], storage_options)
    common = dict(fs=fs, fetch_threads=fetch_threads)

    if len(uris) > 1 or any(ch in uris[0] for ch in "*?["):
        files: list[tuple[str, int]] = []
        for u in uris:
            _, p = storage.filesystem(u, storage_options)
            if any(ch in p for ch in "*?["):
                files.extend(sorted((q, d.get("size") or 0) for q, d in fs.glob(p, detail=True).items()))
            else:
                files.append((p, 0))
        if not files:
            raise ValueError(f"nothing matches {uris}")
        paths = [p for p, _ in files]
        root = posixpath.dirname(paths[0]) if len(paths) == 1 else posixpath.commonpath(paths)
        layout = _layout_of_files(paths) if layout == "auto" else layout
        return _file_plan(uris[0], layout, root, files, classes, common)

    info = fs.info(first)
    if info["type"] != "directory":
        layout = _layout_of_files([first]) if layout == "auto" else layout
        if layout == "folder":
            raise ValueError(f"{uris[0]} is a file; a folder layout needs the folder of class folders")
        return _file_plan(uris[0], layout, posixpath.dirname(first), [(first, info.get("size") or 0)], classes, common)

    entries = fs.ls(first, detail=True)
    top_files = {posixpath.basename(e["name"].rstrip("/")): e for e in entries if e["type"] != "directory"}
    if layout == "auto":
        names = [n for n in top_files if not _hidden(n)]
        if any(n.lower().endswith(PARQUET_SUFFIXES) for n in names):
            layout = "parquet"
        elif any(n.lower().endswith(wds.TAR_SUFFIXES) for n in names):
            layout = "webdataset"
    if layout in ("parquet", "webdataset"):
        suffixes = PARQUET_SUFFIXES if layout == "parquet" else wds.TAR_SUFFIXES
        found = fs.find(first, detail=True)
        files = sorted(
            (p, d.get("size") or 0)
            for p, d in found.items()
            if p.lower().endswith(suffixes) and not _hidden(p[len(first):])
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
    raise ValueError("cannot tell the layout of a mix of files; pass layout='parquet' or 'webdataset'")


def _load_class_file(fs, path: str, folders=()) -> tuple[list[str], list[str]]:
    return parse_class_list(storage.read_text(fs, path), posixpath.basename(path), folders)


def _file_plan(uri, layout, root, files, classes, common, top_files=None) -> ReadPlan:
    fs = common["fs"]
    shards = [Shard(storage.uri_of(fs, p), path=p, size_bytes=int(s)) for p, s in files]
    names = descriptions = None
    if isinstance(classes, str):
        cfs, cpath = storage.filesystem(classes)
        names, descriptions = _load_class_file(cfs, cpath)
    elif classes is not None:
        names, descriptions = list(classes), [""] * len(classes)
    else:
        listing = top_files if top_files is not None else {}
        if top_files is None:
            try:
                listing = {posixpath.basename(p): None for p in fs.ls(root, detail=False)}
            except OSError:
                listing = {}
        if "classes.json" in listing:
            names, descriptions = _load_class_file(fs, posixpath.join(root, "classes.json"))
        elif layout == "parquet" and shards:
            try:
                with fs.open(shards[0].path, "rb") as f:
                    schema = pq.ParquetFile(f).schema_arrow
                names = _hf_class_names(schema, next((c for c in ("label", "labels", "cls") if c in schema.names), None))
            except Exception as err:
                log.warning("cannot read the schema of %s: %s", shards[0].source, err)
    return ReadPlan(uri, layout, root=root, shards=shards, classes=names, descriptions=descriptions, **common)


def _folder_plan(
    uri, layout, root, entries, top_files, classes, files_per_shard, extensions, key_prefix, list_threads, common,
) -> ReadPlan:
    fs = common["fs"]
    folders = sorted(
        posixpath.basename(e["name"].rstrip("/"))
        for e in entries
        if e["type"] == "directory" and not _hidden(posixpath.basename(e["name"].rstrip("/")))
    )
    if not folders:
        raise ValueError(f"{uri} holds no class folders (and no parquet or tar files)")
    if isinstance(classes, str):
        cfs, cpath = storage.filesystem(classes)
        names, descriptions = _load_class_file(cfs, cpath, folders)
    elif classes is not None:
        names, descriptions = list(classes), [""] * len(classes)
    else:
        found = next((n for n in CLASS_FILES if n in top_files), None)
        if found:
            names, descriptions = _load_class_file(fs, posixpath.join(root, found), folders)
        else:
            names, descriptions = folders, [""] * len(folders)
    index = {n: i for i, n in enumerate(names)}
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise ValueError(
            f"class folders missing from the class list: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
        )

    def list_folder(folder: str) -> list[tuple[str, int]]:
        base = posixpath.join(root, folder)
        found = fs.find(base, detail=True)
        return sorted((p, d.get("size") or 0) for p, d in found.items() if not _hidden(p[len(base):]))

    with ThreadPoolExecutor(max_workers=max(1, list_threads)) as pool:
        listings = list(pool.map(list_folder, folders))

    exts = {e.lower().lstrip(".") for e in extensions} if extensions else None
    all_files = [p for listing in listings for p, _ in listing]
    if layout == "auto" and all_files:
        lower = [p.lower() for p in all_files]
        if all(p.endswith(PARQUET_SUFFIXES) for p in lower) or all(p.endswith(wds.TAR_SUFFIXES) for p in lower):
            sizes = [(p, s) for listing in listings for p, s in listing]
            return _file_plan(uri, _layout_of_files(all_files), root, sizes, classes, common, top_files=top_files)

    rel_stems = {}
    for p in all_files:
        stem = _strip_ext(p[len(root) + 1:])
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
                stem = _strip_ext(rel)
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
    return ReadPlan(
        uri, "folder", root=root, shards=shards, classes=list(names), descriptions=list(descriptions),
        _class_index=index, **common,
    )
