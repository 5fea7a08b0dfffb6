"""Hugging Face ``save_to_disk`` folders: Arrow IPC stream files (``data-00000-of-00001.arrow``)
with ``state.json`` and ``dataset_info.json`` beside them (a ``DatasetDict`` keeps one such
folder per split, under a ``dataset_dict.json``).

Rows are read as the parquet reader reads them (:mod:`.parquet`: the ``Image`` struct,
a ``path``-only struct read from its path, the ``ClassLabel`` names in the Arrow schema's
HF metadata). Keys: a ``key`` column, else the image path, else
``<file path under the root, without .arrow>/<row number>`` (``train/data-00000-of-00001/7``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pyarrow as pa

from raymix.io import storage
from raymix.io.readers.parquet import hf_class_names, hf_rows, label_column
from raymix.io.readers.shard import RowBuffer, Shard

log = logging.getLogger(__name__)

ARROW_SUFFIXES = (".arrow",)
#: Files that mark a ``save_to_disk`` folder.
HF_DISK_FILES = ("state.json", "dataset_info.json", "dataset_dict.json")


def _open_batches(f):
    """Record batches of an Arrow file: the IPC stream format ``datasets`` writes, or the
    IPC file format."""
    try:
        reader = pa.ipc.open_stream(f)
        return reader.schema, iter(reader)
    except pa.ArrowInvalid:
        f.seek(0)
        reader = pa.ipc.open_file(f)
        return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))


def read_arrow_shard(plan, shard: Shard) -> Iterator[pa.Table]:
    """The rows of one Arrow file, in batches of at most ``plan.block_rows``."""
    rows = RowBuffer(shard.source, plan.block_bytes, plan.block_rows, shard.name)
    rel = shard.path[len(plan.root.rstrip("/")) + 1:] if shard.path.startswith(plan.root.rstrip("/") + "/") else shard.path
    stem = rel.rsplit("/", 1)[-1] if rel.startswith("/") else rel
    stem = stem[: -len(".arrow")] if stem.lower().endswith(".arrow") else stem
    try:
        with storage.RetryingFile(plan.fs, shard.path, plan.retry_seconds) as f:
            schema, batches = _open_batches(f)
            sliced = (b.slice(s, plan.block_rows) for b in batches for s in range(0, b.num_rows, plan.block_rows))
            yield from hf_rows(plan, shard, schema, sliced, stem, rows)
    except Exception as err:
        yield from rows.broken(err)
    yield from rows.flush()


def arrow_class_names(fs, path: str, source: str = "") -> list[str] | None:
    """The ``ClassLabel`` names an Arrow file's HF metadata declares, if any."""
    try:
        with fs.open(path, "rb") as f:
            schema, _ = _open_batches(f)
        return hf_class_names(schema, label_column(schema))
    except Exception as err:
        log.warning("cannot read the schema of %s: %s", source or path, err)
        return None
