"""Hugging Face ``datasets`` parquet shards: ``image`` struct ``{bytes, path}`` (or plain
binary) and ``label``.

Keys come from a ``key`` column when present, else the image ``path`` without extension,
else ``<shard stem>/<row number>``; class names from a ``class_name`` column, else the
``ClassLabel`` names in the HF schema metadata, else the plan's class list (a
``classes.json`` beside the shards), else the label as text.

An image struct with a ``path`` and no ``bytes`` (what ``load_dataset("imagefolder")
.to_parquet()`` writes) is read from that path: relative to the shard's folder, or
absolute, on the plan's filesystem (a URL with a protocol on its own filesystem); a file
that is not there gives a row without bytes, quarantined as ``missing`` at decode.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterable, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from raymix.io.readers.shard import RowBuffer, Shard, file_stem, strip_ext
from raymix.schema import CLASS_NAME, IMAGE, KEY

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "cls")


def read_parquet_shard(plan, shard: Shard) -> Iterator[pa.Table]:
    """The rows of one parquet file, streamed in batches of ``plan.block_rows``."""
    rows = RowBuffer(shard.source, plan.block_bytes, plan.block_rows)
    try:
        with plan.fs.open(shard.path, "rb") as f:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow
            cols = [c for c in wanted_columns(schema) if c in schema.names]
            batches = pf.iter_batches(batch_size=plan.block_rows, columns=cols)
            yield from hf_rows(plan, shard, schema, batches, file_stem(shard.path), rows)
    except Exception as err:
        yield from rows.broken(err)
    yield from rows.flush()


def wanted_columns(schema: pa.Schema) -> list[str]:
    return [c for c in (image_column(schema), label_column(schema), KEY, CLASS_NAME) if c]


def hf_rows(plan, shard: Shard, schema: pa.Schema, batches: Iterable[pa.RecordBatch], stem: str,
            rows: RowBuffer) -> Iterator[pa.Table]:
    """Rows of Hugging Face record batches (parquet or Arrow) into ``rows``."""
    image_col = image_column(schema)
    label_col = label_column(schema)
    names = hf_class_names(schema, label_col)
    folder = posixpath.dirname(shard.path)
    row = 0
    for batch in batches:
        data = batch.to_pydict()
        n = batch.num_rows
        images = data[image_col] if image_col else [None] * n
        labels = data[label_col] if label_col else [None] * n
        paths: list[str | None] = [None] * n
        for i in range(n):
            if isinstance(images[i], dict):
                images[i], paths[i] = images[i].get("bytes"), images[i].get("path")
        fetched = _fetch_paths(plan, folder, [p if images[i] is None else None for i, p in enumerate(paths)])
        for i in range(n):
            img, path = images[i], paths[i]
            if img is None and path:
                img = fetched.get(i)
            key = data[KEY][i] if KEY in data else None
            if not key:
                key = _path_key(path, folder) if path else f"{stem}/{row + i}"
            label = labels[i]
            if CLASS_NAME in data and data[CLASS_NAME][i] is not None:
                cname = data[CLASS_NAME][i]
            elif names is not None and label is not None and 0 <= label < len(names):
                cname = names[label]
            else:
                cname = plan.class_name(label)
            yield from rows.add(key, img, -1 if label is None else int(label), cname)
        row += n


def _path_key(path: str, folder: str) -> str:
    """A key from an image path: relative to the shard's folder when under it."""
    if "://" not in path and folder and path.startswith(folder.rstrip("/") + "/"):
        path = path[len(folder.rstrip("/")) + 1:]
    return strip_ext(path.split("://", 1)[-1].lstrip("/"))


def _fetch_paths(plan, folder: str, paths: list[str | None]) -> dict[int, bytes | None]:
    """The bytes of the images stored only by path (index -> bytes, None when missing)."""
    wanted = {i: p for i, p in enumerate(paths) if p}
    if not wanted:
        return {}
    local: dict[int, str] = {}
    out: dict[int, bytes | None] = {}
    protocols = plan.fs.protocol if isinstance(plan.fs.protocol, (tuple, list)) else (plan.fs.protocol,)
    for i, p in wanted.items():
        if "://" in p and p.split("://", 1)[0] in protocols:  # the plan's filesystem, its options
            local[i] = plan.fs._strip_protocol(p)
        elif "://" in p:
            try:
                fs, q = fsspec.core.url_to_fs(p)
                out[i] = fs.cat_file(q)
            except Exception as err:
                log.warning("cannot read %s: %s", p, err)
                out[i] = None
        else:
            local[i] = p if p.startswith("/") else posixpath.join(folder, p)
    if local:
        targets = sorted(set(local.values()))
        try:
            got = plan.fs.cat(targets, on_error="return")
        except Exception as err:
            got = {t: err for t in targets}
        if not isinstance(got, dict):
            got = {targets[0]: got}
        for i, p in local.items():
            data = got.get(p, FileNotFoundError(p))
            if isinstance(data, BaseException):
                log.warning("cannot read %s (an image stored by path): %s", p, data)
                data = None
            out[i] = data
    return out


def schema_class_names(fs, path: str, source: str = "") -> list[str] | None:
    """The ``ClassLabel`` names a parquet file's HF metadata declares, if any."""
    try:
        with fs.open(path, "rb") as f:
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
