"""What every layout's reader shares: the unit of reading (:class:`Shard`), the buffer that
turns rows into bounded ``INPUT_SCHEMA`` tables, and the naming rules (hidden files, keys
without extensions, the rows that stand for what could not be read, keys made unique).

A row that could not be read keeps flowing without bytes and with ``stage="read"`` and a
reason (:func:`read_reason`): ``retryable`` when a storage error outlasted the retries (a
rerun reads it again), ``missing`` when the file is not there, ``unreadable`` when the
data itself cannot be read (a damaged tar, a parquet file cut short)."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from raymix.io import wds
from raymix.io.retry import is_transient
from raymix.io.schema import INPUT_SCHEMA
from raymix.schema import CLASS_NAME, IMAGE, KEY, LABEL, REASON, STAGE

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet",)
DEFAULT_BLOCK_BYTES = 64 * 2**20
DEFAULT_BLOCK_ROWS = 1024
UNREADABLE_SUFFIX = "#unreadable"
#: ``stage`` of a row the reader could not read.
READ_STAGE = "read"
#: Reasons the readers give (see the module docstring).
RETRYABLE, MISSING, UNREADABLE = "retryable", "missing", "unreadable"


def read_reason(err: BaseException) -> str:
    """``retryable``, ``missing`` or ``unreadable`` for an error met while reading."""
    if is_transient(err):
        return RETRYABLE
    if isinstance(err, FileNotFoundError):
        return MISSING
    return UNREADABLE


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
    #: Parquet: the rows the file's footer declares (read when planning), None when unknown.
    rows: int | None = None
    #: Parquet: a name unique among the plan's shards (path under the root, no suffix).
    name: str = ""
    #: Parquet: keys this shard shares with another row of the input; each such row is
    #: renamed ``{key}#{name}/{row}`` (:func:`unique_key`).
    ambiguous: frozenset[str] = frozenset()

    @property
    def num_rows(self) -> int | None:
        return len(self.files) if self.files else self.rows


def unique_key(key: str, shard_name: str, row: int) -> str:
    """The key of a row whose own key is shared with another row of the input: still
    readable, unique by construction (the shard's unique name and the row's position)."""
    return f"{key}#{shard_name}/{row}"


class RowBuffer:
    """Accumulates rows and yields ``INPUT_SCHEMA`` tables of bounded size."""

    def __init__(self, source: str, block_bytes: int, block_rows: int, shard_name: str = ""):
        self.source, self.block_bytes, self.block_rows = source, block_bytes, block_rows
        self.shard_name = shard_name or source
        self.cols: dict[str, list] = {k: [] for k in (KEY, IMAGE, LABEL, CLASS_NAME, STAGE, REASON)}
        self.nbytes = 0
        self.count = 0
        self.seen: set[str] = set()
        self.renamed = 0

    def add(self, key, image, label, class_name, reason: str = "") -> Iterator[pa.Table]:
        """One row; a key already given in this shard is made unique (:func:`unique_key`)."""
        if key in self.seen:
            key = unique_key(key, self.shard_name, self.count)
            self.renamed += 1
            if self.renamed == 1:
                log.warning("%s holds the same key more than once; later rows are renamed like %s",
                            self.source, key)
        self.seen.add(key)
        self.cols[KEY].append(key)
        self.cols[IMAGE].append(image)
        self.cols[LABEL].append(label)
        self.cols[CLASS_NAME].append(class_name)
        self.cols[STAGE].append(READ_STAGE if reason else "")
        self.cols[REASON].append(reason)
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
            pa.array(self.cols[STAGE], pa.string()),
            pa.array(self.cols[REASON], pa.string()),
        ]
        self.cols = {k: [] for k in self.cols}
        self.nbytes = 0
        yield pa.Table.from_arrays(arrays, schema=INPUT_SCHEMA)

    def lost(self, key: str, reason: str) -> Iterator[pa.Table]:
        """A row without bytes that stands for one sample that could not be read."""
        yield from self.add(key, None, -1, "", reason)

    def broken(self, err: BaseException, held: int | None = None) -> Iterator[pa.Table]:
        """The rows that stand for the rest of a shard that broke part way: one per row it
        still held when that is known (``held``, the rows the shard declares, e.g. its
        parquet footer: keys ``<source>#unreadable/<row>``), else one row keyed
        ``<source>#unreadable`` (how many samples it stood for is unknown). Their reason
        is :func:`read_reason` of ``err``."""
        reason = read_reason(err)
        log.warning("shard %s could not be read past row %d (%s): %s", self.source, self.count, reason, err)
        if held is None or held <= self.count:
            yield from self.lost(self.source + UNREADABLE_SUFFIX, reason)
            return
        for row in range(self.count, held):
            yield from self.lost(f"{self.source}{UNREADABLE_SUFFIX}/{row}", reason)


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
