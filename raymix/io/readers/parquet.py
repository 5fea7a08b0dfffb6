"""Hugging Face ``datasets`` parquet shards: ``image`` struct ``{bytes, path}`` (or plain
binary) and ``label``.

Keys come from a ``key`` column when present, else the image ``path`` without extension,
else ``<shard stem>/<row number>``; a key that more than one row of the input would have
is ``{key}#{shard}/{row}`` instead (:func:`index_parquet` reads every footer's keys when
planning). Class names come from a ``class_name`` column, else the ``ClassLabel`` names in
the HF schema metadata, else the plan's class list (a ``classes.json`` beside the shards),
else the label as text; a label column of strings holds class names.

An image struct with a ``path`` and no ``bytes`` (what ``load_dataset("imagefolder")
.to_parquet()`` writes) is read from that path: relative to the shard's folder, or
absolute, on the plan's filesystem (a URL with a protocol on its own filesystem); a file
that is not there gives a row without bytes and reason ``missing``.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterable, Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raymix.io import storage
from raymix.io.readers.shard import (
    RETRYABLE, UNREADABLE, UNREADABLE_SUFFIX, RowBuffer, Shard, file_stem, read_reason, strip_ext, unique_key,
)
from raymix.schema import CLASS_NAME, IMAGE, KEY

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "cls")


def read_parquet_shard(plan, shard: Shard) -> Iterator[pa.Table]:
    """The rows of one parquet file, row group by row group, in batches of ``plan.block_rows``.

    Reads go through :class:`~raymix.io.storage.RetryingFile` (a blip costs a retry). A row
    group that cannot be decoded gives one ``unreadable`` row per row it declares and the
    next group is read; a storage error that outlasts the retries gives a ``retryable`` row
    for every row left; a file whose footer cannot be read gives one row for the whole file
    (the rows the plan counted, else one ``<source>#unreadable``)."""
    rows = RowBuffer(shard.source, plan.block_bytes, plan.block_rows, shard.name)
    held = shard.rows
    try:
        with storage.RetryingFile(plan.fs, shard.path, plan.retry_seconds) as f:
            pf = pq.ParquetFile(f)
            held = pf.metadata.num_rows
            schema = pf.schema_arrow
            cols = [c for c in wanted_columns(schema) if c in schema.names]
            batches = _row_group_batches(pf, cols, plan.block_rows, shard.source)
            yield from hf_rows(plan, shard, schema, batches, file_stem(shard.path), rows)
    except Exception as err:
        yield from rows.broken(err, held)
    yield from rows.flush()


class _Lost:
    """``n`` rows that could not be read, for ``reason`` (between record batches)."""

    def __init__(self, n: int, reason: str):
        self.num_rows, self.reason = n, reason


def _row_group_batches(pf: pq.ParquetFile, cols: list[str], batch_rows: int, source: str):
    """Record batches of each row group; a group that cannot be decoded is :class:`_Lost`;
    a transient error (after the file's own retries) ends the shard (raised)."""
    for i in range(pf.metadata.num_row_groups):
        try:
            table = pf.read_row_group(i, columns=cols)
        except Exception as err:
            if read_reason(err) == RETRYABLE:
                raise
            n = pf.metadata.row_group(i).num_rows
            log.warning("row group %d of %s (%d rows) is unreadable: %s", i, source, n, err)
            yield _Lost(n, UNREADABLE)
            continue
        yield from table.to_batches(max_chunksize=max(1, batch_rows))


def wanted_columns(schema: pa.Schema) -> list[str]:
    return [c for c in (image_column(schema), label_column(schema), KEY, CLASS_NAME) if c]


def hf_rows(plan, shard: Shard, schema: pa.Schema, batches: Iterable[pa.RecordBatch | _Lost], stem: str,
            rows: RowBuffer) -> Iterator[pa.Table]:
    """Rows of Hugging Face record batches (parquet or Arrow) into ``rows``."""
    image_col = image_column(schema)
    label_col = label_column(schema)
    names = hf_class_names(schema, label_col)
    folder = posixpath.dirname(shard.path)
    row = 0
    for batch in batches:
        n = batch.num_rows
        if isinstance(batch, _Lost):
            for i in range(n):
                yield from rows.lost(f"{shard.source}{UNREADABLE_SUFFIX}/{row + i}", batch.reason)
            row += n
            continue
        data = batch.to_pydict()
        images = data[image_col] if image_col else [None] * n
        labels = data[label_col] if label_col else [None] * n
        paths: list[str | None] = [None] * n
        for i in range(n):
            if isinstance(images[i], dict):
                images[i], paths[i] = images[i].get("bytes"), images[i].get("path")
        fetched = _fetch_paths(plan, folder, [p if images[i] is None else None for i, p in enumerate(paths)])
        for i in range(n):
            img, path, reason = images[i], paths[i], ""
            if img is None and path:
                img = fetched.get(i)
                if isinstance(img, BaseException):
                    img, reason = None, read_reason(img)
            key = row_key(data[KEY][i] if KEY in data else None, path, folder, stem, row + i)
            if key in shard.ambiguous:
                key = unique_key(key, shard.name, row + i)
            try:
                label, cname = _label_and_name(labels[i], names, plan)
            except (TypeError, ValueError) as err:
                log.warning("row %d of %s has a label that is no class (%r): %s", row + i, shard.source, labels[i], err)
                label, cname, img, reason = -1, "", None, UNREADABLE
            if CLASS_NAME in data and data[CLASS_NAME][i] is not None:
                cname = data[CLASS_NAME][i]
            yield from rows.add(key, img, label, cname, reason)
        row += n


def row_key(key: str | None, path: str | None, folder: str, stem: str, row: int) -> str:
    """A row's key before it is made unique: its ``key`` column, else its image path
    without extension (relative to the shard's folder when under it), else ``<stem>/<row>``."""
    if key:
        return key
    return _path_key(path, folder) if path else f"{stem}/{row}"


def _label_and_name(value, names: list[str] | None, plan) -> tuple[int, str]:
    """``(label, class_name)`` of a label cell: an integer indexes the class list; a string
    is a number, or a class name (looked up in the class list, -1 when not there)."""
    if value is None:
        return -1, plan.class_name(None)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            known = names if names is not None else plan.classes
            return (known.index(text) if known and text in known else -1), text
    label = int(value)
    if isinstance(value, float) and value != label:
        raise ValueError(f"{value} is not a whole number")
    if names is not None and 0 <= label < len(names):
        return label, names[label]
    return label, plan.class_name(label)


def _path_key(path: str, folder: str) -> str:
    """A key from an image path: relative to the shard's folder when under it."""
    if "://" not in path and folder and path.startswith(folder.rstrip("/") + "/"):
        path = path[len(folder.rstrip("/")) + 1:]
    return strip_ext(path.split("://", 1)[-1].lstrip("/"))


def _fetch_paths(plan, folder: str, paths: list[str | None]) -> dict[int, bytes | BaseException]:
    """The bytes of the images stored only by path (index -> bytes, or the error that
    stopped the fetch), each fetched on its own and retried through transient errors."""
    wanted = {i: p for i, p in enumerate(paths) if p}
    if not wanted:
        return {}
    local: dict[int, str] = {}
    out: dict[int, bytes | BaseException] = {}
    protocols = plan.fs.protocol if isinstance(plan.fs.protocol, (tuple, list)) else (plan.fs.protocol,)
    for i, p in wanted.items():
        if "://" in p and p.split("://", 1)[0] in protocols:  # the plan's filesystem, its options
            local[i] = plan.fs._strip_protocol(p)
        elif "://" in p:
            try:
                fs, q = fsspec.core.url_to_fs(p)
                out[i] = storage.retry(lambda: fs.cat_file(q), f"reading {p}", plan.retry_seconds)
            except Exception as err:
                log.warning("cannot read %s: %s", p, err)
                out[i] = err
        else:
            local[i] = p if p.startswith("/") else posixpath.join(folder, p)
    if local:
        got = storage.fetch_files(plan.fs, sorted(set(local.values())), plan.fetch_threads, plan.retry_seconds)
        for i, p in local.items():
            data = got[p]
            if isinstance(data, BaseException):
                log.warning("cannot read %s (an image stored by path): %s", p, data)
            out[i] = data
    return out


def index_parquet(fs, path: str, stem: str, retry_seconds: float) -> tuple[int | None, list[str] | None]:
    """What the footer of one parquet file declares, read when planning: its row count and
    the keys its rows will have before they are made unique (read from the ``key`` column
    or the image paths only, no image bytes). ``(None, None)`` for a file whose footer
    cannot be read (its rows are then counted as one ``unreadable`` row); a storage error
    that outlasts the retries is raised."""
    try:
        with storage.RetryingFile(fs, path, retry_seconds) as f:
            pf = pq.ParquetFile(f)
            n = pf.metadata.num_rows
            schema = pf.schema_arrow
            image_col = image_column(schema)
            folder = posixpath.dirname(path)
            if KEY in schema.names:
                stored = pf.read(columns=[KEY]).column(KEY).to_pylist()
                paths: list = [None] * n
                if image_col and pa.types.is_struct(schema.field(image_col).type) and any(not k for k in stored):
                    paths = pc.struct_field(pf.read(columns=[f"{image_col}.path"]).column(image_col), "path").to_pylist()
            elif image_col and pa.types.is_struct(schema.field(image_col).type) \
                    and schema.field(image_col).type.get_field_index("path") >= 0:
                stored = [None] * n
                paths = pc.struct_field(pf.read(columns=[f"{image_col}.path"]).column(image_col), "path").to_pylist()
            else:
                stored, paths = [None] * n, [None] * n
    except Exception as err:
        if read_reason(err) == RETRYABLE:
            raise
        log.warning("cannot read the footer of %s: %s", path, err)
        return None, None
    return n, [row_key(k, p, folder, stem, i) for i, (k, p) in enumerate(zip(stored, paths))]


def schema_class_names(fs, path: str, source: str = "") -> list[str] | None:
    """The ``ClassLabel`` names a parquet file's HF metadata declares, if any."""
    try:
        with storage.RetryingFile(fs, path) as f:
            schema = pq.ParquetFile(f).schema_arrow
        return hf_class_names(schema, label_column(schema))
    except Exception as err:
        log.warning("cannot read the schema of %s: %s", source or path, err)
        return None


def label_column(schema: pa.Schema) -> str | None:
    return next((c for c in LABEL_COLUMNS if c in schema.names), None)


def image_column(schema: pa.Schema) -> str | None:
    if IMAGE in schema.names:
        return IMAGE
    for f in schema:
        if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0:
            return f.name
    for f in schema:
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            return f.name
    return None


def hf_class_names(schema: pa.Schema, label_col: str | None) -> list[str] | None:
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
