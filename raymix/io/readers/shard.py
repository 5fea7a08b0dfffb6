"""What every layout's reader shares: the unit of reading (:class:`Shard`), the buffer that
turns rows into bounded ``INPUT_SCHEMA`` tables, and the naming rules (hidden files, keys
without extensions, the row that stands for a broken shard)."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from raymix.io import wds
from raymix.io.schema import INPUT_SCHEMA
from raymix.schema import CLASS_NAME, IMAGE, KEY, LABEL

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet",)
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
    #: Per-file labels (a flat folder labelled by a CSV), else every file has ``label``.
    labels: tuple[int, ...] = ()

    @property
    def num_rows(self) -> int | None:
        return len(self.files) if self.files else None


class RowBuffer:
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

    def broken(self, err: Exception) -> Iterator[pa.Table]:
        """The row that stands for the rest of a shard that broke part way (the decode
        stage quarantines it with reason ``missing``)."""
        log.warning("shard %s is unreadable after %d rows: %s", self.source, self.count, err)
        yield from self.add(self.source + UNREADABLE_SUFFIX, None, -1, "")


def strip_ext(path: str) -> str:
    folder, base = posixpath.split(path)
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return posixpath.join(folder, stem) if folder else stem


def file_stem(path: str) -> str:
    base = posixpath.basename(path)
    for suffix in PARQUET_SUFFIXES + wds.TAR_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def hidden(relative: str) -> bool:
    """Whether a path (relative to the data's root) is skipped: a part starts with ``.``
    or ``_`` (``__quarantine__/``, temporary files), as Ray's own readers do."""
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)
