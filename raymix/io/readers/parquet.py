"""Hugging Face ``datasets`` parquet shards: ``image`` struct ``{bytes, path}`` (or plain
binary) and ``label``.

Keys come from a ``key`` column when present, else the image ``path`` without extension,
else ``<shard stem>/<row number>``; class names from a ``class_name`` column, else the
``ClassLabel`` names in the HF schema metadata, else the plan's class list (a
``classes.json`` beside the shards), else the label as text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from raymix.io.readers.shard import RowBuffer, Shard, file_stem, strip_ext
from raymix.schema import CLASS_NAME, IMAGE, KEY

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "cls")


def read_parquet_shard(plan, shard: Shard) -> Iterator[pa.Table]:
    """The rows of one parquet file, streamed in batches of ``plan.block_rows``."""
    rows = RowBuffer(shard.source, plan.block_bytes, plan.block_rows)
    stem = file_stem(shard.path)
    try:
        with plan.fs.open(shard.path, "rb") as f:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow
            image_col = image_column(schema)
            label_col = label_column(schema)
            names = hf_class_names(schema, label_col)
            cols = [c for c in (image_col, label_col, KEY, CLASS_NAME) if c and c in schema.names]
            row = 0
            for batch in pf.iter_batches(batch_size=plan.block_rows, columns=cols):
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
                        key = strip_ext(path) if path else f"{stem}/{row + i}"
                    label = labels[i]
                    if CLASS_NAME in data and data[CLASS_NAME][i] is not None:
                        cname = data[CLASS_NAME][i]
                    elif names is not None and label is not None and 0 <= label < len(names):
                        cname = names[label]
                    else:
                        cname = plan.class_name(label)
                    yield from rows.add(key, img, -1 if label is None else int(label), cname)
                row += n
    except Exception as err:
        yield from rows.broken(err)
    yield from rows.flush()


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
