"""Write augmented rows as parquet shards (Hugging Face ``datasets`` layout) or WebDataset
tars, with a quarantine table beside them.

Output layout (``OUT`` is the output URI)::

    OUT/{stem}-{digest}.parquet        rows of one input shard   (or .tar for WebDataset)
    OUT/__quarantine__/{stem}-{digest}.parquet   {key, source, stage, reason, source_key, replica}
    OUT/classes.json                   {"names": [...], "descriptions": [...]} when given

``stem`` comes from the row's ``source`` (the input shard: ``train-00003-of-00294`` for
``.../train-00003-of-00294.parquet``, ``n01440764-00000`` for the folder virtual shard
``.../n01440764#00000``, ``train-data-00000-of-00001`` for the ``save_to_disk`` file
``.../train/data-00000-of-00001.arrow``); ``digest`` is 16 hex digits of a hash of the sorted keys in the
file. Names never contain a run id, so:

* a write task retried by Ray rewrites the same name with the same rows (idempotent);
* a rerun first reads the keys already committed for each input shard and writes only the
  missing rows (no duplicates; ``WriteSummary.already_written`` counts the rest), and
  :func:`committed_keys` lets the read side skip that work before it is done;
* a file appears only when complete (:func:`raymix.io.storage.atomic_write`: a single
  upload on object stores, temp name + rename on disks), so a killed run leaves no
  partial file, only whole files that the rerun keeps.

Rows reach a write task in bundles of at least ``rows_per_file`` rows (Ray bundles its
input), and each task writes one file per input shard present in its bundle: an input
shard usually becomes one or a few files.

The quarantine folder's name starts with ``__`` so that both Ray's readers (which skip
``_`` and ``.`` names) and ``datasets.load_dataset(OUT)`` (which skips ``__`` folders and
``.`` names) read only the outputs. Outputs written before it was renamed keep their
``_quarantine/`` (:data:`LEGACY_QUARANTINE_DIRS`): reruns and :func:`committed_keys` /
:func:`completed_sources` read both.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raymix.io import storage, wds
from raymix.io.retry import DEFAULT_POLICY, RetryPolicy
from raymix.io.decode import JPEG_QUALITY, encode_jpeg
from raymix.io.schema import HF_IMAGE_TYPE, OUTPUT_SCHEMA, QUARANTINE_SCHEMA
from raymix.schema import (
    CLASS_NAME, DEFAULT_ROWS_PER_FILE, FORMATS, IMAGE, KEY, LABEL, METHOD, PARAMS, REASON, REPLICA, SEED, SOURCE,
    SOURCE_KEY, STAGE, WHOLE_ROW,
)

__all__ = [
    "FORMATS",
    "QUARANTINE_DIR",
    "WriteSummary",
    "OutputSpec",
    "output_spec",
    "prepare_output",
    "write_table",
    "committed_keys",
    "completed_sources",
    "forget_retryable",
    "RETRYABLE",
    "shard_stem",
    "image_path",
    "remove_temporaries",
    "hf_features_metadata",
]

log = logging.getLogger(__name__)

QUARANTINE_DIR = "__quarantine__"
#: Where earlier versions kept the quarantine (still read on reruns and by the resume helpers).
LEGACY_QUARANTINE_DIRS = ("_quarantine",)
CLASSES_FILE = "classes.json"
#: The quarantine reason of a row the reader could not read because of a storage error
#: that outlasted its retries (``raymix.io.readers``): not finished work, a rerun reads it again.
RETRYABLE = "retryable"
_EXT = {"parquet": "parquet", "webdataset": "tar"}
_DIGEST_RE = r"-[0-9a-f]{16}\."


def shard_stem(source: str) -> str:
    """A file-name stem for an input shard URI (see the module docstring)."""
    parts = source.rstrip("/").rsplit("/", 2)
    base = parts[-1]
    base, _, fragment = base.partition("#")
    lower = base.lower()
    if lower.endswith(".arrow") and lower.startswith("data-") and len(parts) > 1:  # save_to_disk: data-00000-of-00001.arrow per split folder
        base = f"{parts[-2].rsplit(':', 1)[-1]}-{base}"
    for suffix in (".parquet", ".arrow", *wds.TAR_SUFFIXES):
        if lower.endswith(suffix):
            base = base[: -len(suffix)]
            break
    stem = f"{base}-{fragment}" if fragment else base
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip("._") or "unsourced"
    return stem


def image_path(key: str) -> str:
    """The relative path stored for a row's image (``image.path``): the key's ``/``-separated
    parts, each cleaned like a file-name stem (characters outside ``A-Za-z0-9._-`` become
    ``_``, leading dots go), empty parts, ``.`` and ``..`` dropped; never absolute, never
    climbing out of a folder. The ``key`` column keeps the key as it was."""
    parts = [re.sub(r"[^A-Za-z0-9._-]+", "_", part).lstrip(".") for part in (key or "").split("/")]
    return "/".join(p for p in parts if p) or "unnamed"


def _digest(keys: Iterable[str]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(keys, key=lambda k: k or ""):
        h.update((k or "").encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def hf_features_metadata(classes: Sequence[str] | None = None, extra_images: Sequence[str] = ()) -> dict[bytes, bytes]:
    """The ``huggingface`` schema metadata that makes ``datasets`` load ``image`` (and the
    ``extra_images`` columns) as ``Image`` features and ``label`` as a ``ClassLabel`` (when
    the names are known)."""
    value = {"_type": "Value"}
    features = {
        IMAGE: {"_type": "Image"},
        LABEL: {"_type": "ClassLabel", "names": list(classes)} if classes else {**value, "dtype": "int64"},
        CLASS_NAME: {**value, "dtype": "string"},
        KEY: {**value, "dtype": "string"},
        SOURCE_KEY: {**value, "dtype": "string"},
        METHOD: {**value, "dtype": "string"},
        REPLICA: {**value, "dtype": "int32"},
        PARAMS: {**value, "dtype": "string"},
        SEED: {**value, "dtype": "int64"},
        **{name: {"_type": "Image"} for name in extra_images},
    }
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


@dataclass
class WriteSummary:
    """Counts and files of one write; ``str()`` gives the printed report."""

    output_uri: str = ""
    format: str = "parquet"
    written: int = 0
    quarantined: int = 0
    already_written: int = 0
    already_quarantined: int = 0
    files: list[str] = field(default_factory=list)
    quarantine_files: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    #: Of the quarantined rows, those that stand for one replica (the others, a whole input row).
    quarantined_replicas: int = 0
    already_quarantined_replicas: int = 0

    @property
    def rows_seen(self) -> int:
        """Rows that reached the writer, this run."""
        return self.written + self.quarantined + self.already_written + self.already_quarantined

    def merge(self, other: WriteSummary) -> WriteSummary:
        self.written += other.written
        self.quarantined += other.quarantined
        self.already_written += other.already_written
        self.already_quarantined += other.already_quarantined
        self.files += other.files
        self.quarantine_files += other.quarantine_files
        self.reasons = dict(Counter(self.reasons) + Counter(other.reasons))
        self.quarantined_replicas += other.quarantined_replicas
        self.already_quarantined_replicas += other.already_quarantined_replicas
        return self

    def reconcile(self, rows_in: int | None = None, replicas: int = 1) -> bool:
        """Whether every input row is accounted for: each of its ``replicas`` outputs is
        written, or quarantined on its own, or the whole row is quarantined::

            rows_in * replicas == written + replica-level quarantined
                                  + whole-row quarantined * replicas

        (``already_*`` counts included). Without ``rows_in`` the check is against the
        rows the writer saw."""
        good = self.written + self.already_written
        bad = self.quarantined + self.already_quarantined
        if rows_in is None:
            return good + bad == self.rows_seen
        replica_bad = self.quarantined_replicas + self.already_quarantined_replicas
        return good + replica_bad == (rows_in - (bad - replica_bad)) * replicas

    def report(self, rows_in: int | None = None, replicas: int = 1) -> str:
        lines = [
            f"output       {self.output_uri} ({self.format})",
            f"written      {self.written} rows in {len(self.files)} files"
            + (f" (+{self.already_written} already written)" if self.already_written else ""),
            f"quarantined  {self.quarantined} rows"
            + (f" (+{self.already_quarantined} already quarantined)" if self.already_quarantined else "")
            + (f" in {posixpath.join(self.output_uri, QUARANTINE_DIR)}" if self.quarantine_files else ""),
        ]
        for reason, n in sorted(self.reasons.items()):
            lines.append(f"  {reason:<18} {n}")
        if rows_in is not None:
            ok = self.reconcile(rows_in, replicas)
            per = f" x {replicas} replicas" if replicas != 1 else ""
            lines.append(f"rows in      {rows_in}{per}: {'reconciled' if ok else 'MISMATCH'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class OutputSpec:
    """Where and how to write; picklable, shipped to every write task."""

    fs: fsspec.AbstractFileSystem
    root: str
    uri: str
    format: str = "parquet"
    quality: int = JPEG_QUALITY
    classes: list[str] | None = None
    row_group_size: int = 128
    #: More image columns to keep (e.g. DiffuseMix's ``generated`` and ``hybrid``).
    extra_images: tuple[str, ...] = ()
    #: How storage calls that fail transiently (network, timeouts, 5xx, throttling) are retried.
    retry: RetryPolicy = DEFAULT_POLICY

    @property
    def ext(self) -> str:
        return _EXT[self.format]

    @property
    def quarantine_root(self) -> str:
        return posixpath.join(self.root, QUARANTINE_DIR)

    @property
    def quarantine_roots(self) -> list[str]:
        """The quarantine folder, then the ones earlier versions wrote (read, never written)."""
        return [self.quarantine_root] + [posixpath.join(self.root, d) for d in LEGACY_QUARANTINE_DIRS]


def output_spec(output_uri: str, format: str = "parquet", storage_options: dict | None = None,
                classes: Sequence[str] | None = None, quality: int = JPEG_QUALITY, extra_images: Sequence[str] = ()
                ) -> OutputSpec:
    """Where and how to write ``output_uri`` (checks ``format``)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    fs, root = storage.filesystem(output_uri, storage_options)
    return OutputSpec(fs, root, storage.uri_of(fs, root), format, quality, list(classes) if classes else None,
                      extra_images=tuple(extra_images))


def prepare_output(spec: OutputSpec, descriptions: Sequence[str] | None = None) -> None:
    """Create the output folder, remove the temporary files a killed run left
    (:func:`remove_temporaries`) and write ``classes.json`` (once, on the driver)."""
    spec.retry.call(spec.fs.makedirs, spec.root, exist_ok=True, what=f"create {spec.uri}")
    remove_temporaries(spec)
    if spec.classes:
        doc = {"names": spec.classes}
        if descriptions:
            doc["descriptions"] = list(descriptions)
        spec.retry.call(storage.atomic_write, spec.fs, posixpath.join(spec.root, CLASSES_FILE),
                        json.dumps(doc, indent=1).encode(), what=f"write {CLASSES_FILE}")


def _remove(fs, path: str) -> None:
    """Delete ``path``; already gone is fine (a retried delete whose first try succeeded)."""
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


#: The hidden names :func:`raymix.io.storage.atomic_write` writes before its rename.
_TEMPORARY_RE = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")


def remove_temporaries(spec: OutputSpec, folders: Sequence[str] = (".raymix",)) -> list[str]:
    """Delete the hidden temporary files (``.NAME.tmp-UUID``) that a writer killed between
    its write and its rename leaves in the output folder, the quarantine folders and
    ``folders`` under the root; returns their paths. Run at the start of a job, when no
    writer of this output is running (one output folder, one job at a time)."""
    removed = []
    for folder in [spec.root, *spec.quarantine_roots, *(posixpath.join(spec.root, f) for f in folders)]:
        try:
            spec.fs.invalidate_cache(folder)
            paths = spec.retry.call(spec.fs.ls, folder, detail=False, what=f"list {folder}")
        except FileNotFoundError:
            continue
        for path in paths:
            if _TEMPORARY_RE.match(posixpath.basename(path)):
                spec.retry.call(_remove, spec.fs, path, what=f"remove {path}")
                removed.append(path)
    if removed:
        log.info("removed %d temporary files left by an interrupted run", len(removed))
    return removed


# -- turning incoming rows into output / quarantine tables --


def _column(table: pa.Table, name: str, default, type_: pa.DataType) -> pa.Array:
    if name in table.column_names:
        col = table.column(name)
        return col.cast(type_) if col.type != type_ else col
    return pa.array([default] * table.num_rows, type_)


def _tensor_rows(col: pa.ChunkedArray) -> list[np.ndarray]:
    """One array per row of a tensor column. Decoded images arrive as tensor extension
    columns (Arrow's ``fixed_shape_tensor``, or the tensor types a Ray worker registers);
    both convert themselves, so this needs no Ray import."""
    rows: list = []
    for chunk in col.chunks:
        if hasattr(chunk, "to_numpy_ndarray"):  # fixed shape: one (N, H, W, C) array
            rows.extend(chunk.to_numpy_ndarray())
        else:  # variable shape: an object array of (H, W, C) arrays
            rows.extend(chunk.to_numpy(zero_copy_only=False))
    return rows


def _image_bytes(table: pa.Table, bad: np.ndarray, quality: int, column: str = IMAGE) -> tuple[list, np.ndarray]:
    """An image column as a list of bytes (JPEG-encoding arrays), and an updated
    bad-row mask with encode failures."""
    col = table.column(column)
    kind = col.type
    if pa.types.is_struct(kind):
        col = pc.struct_field(col, "bytes")
        kind = col.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return col.to_pylist(), np.zeros(len(bad), bool)
    arrays = _tensor_rows(col)
    out, failed = [], np.zeros(len(bad), bool)
    for i, arr in enumerate(arrays):
        if bad[i]:
            out.append(b"")
            continue
        try:
            out.append(encode_jpeg(np.asarray(arr), quality))
        except (ValueError, TypeError, OSError) as err:
            log.info("quarantining row %d at encode: %s", i, err)
            out.append(b"")
            failed[i] = True
    return out, failed


def _split(table: pa.Table, spec: OutputSpec) -> tuple[pa.Table, pa.Table]:
    """(output rows in ``OUTPUT_SCHEMA`` + ``source``, quarantine rows)."""
    n = table.num_rows
    reason = _column(table, REASON, "", pa.string()).to_numpy(zero_copy_only=False).astype(object)
    stage = _column(table, STAGE, "", pa.string()).to_numpy(zero_copy_only=False).astype(object)
    bad = np.array([bool(r) for r in reason], dtype=bool) if n else np.zeros(0, bool)
    images, failed = _image_bytes(table, bad, spec.quality)
    extras = {}
    for name in spec.extra_images:
        extras[name], extra_failed = _image_bytes(table, bad | failed, spec.quality, name)
        failed |= extra_failed
    empty = np.array([not b for b in images], dtype=bool) if n else np.zeros(0, bool)
    keys = _column(table, KEY, None, pa.string())
    no_key = keys.is_null().to_numpy(zero_copy_only=False) if n else np.zeros(0, bool)
    for i in np.flatnonzero((failed | empty | no_key) & ~bad):
        stage[i] = "encode" if failed[i] else "write"
        reason[i] = "encode-failed" if failed[i] else ("no-key" if no_key[i] else "no-image")
    bad = bad | failed | empty | no_key

    sources = _column(table, SOURCE, "", pa.string())
    source_keys = _column(table, SOURCE_KEY, None, pa.string()) if SOURCE_KEY in table.column_names else keys
    mask = pa.array(bad)
    quarantine = pa.Table.from_arrays(
        [keys.filter(mask), sources.filter(mask), pa.array(stage[bad], pa.string()), pa.array(reason[bad], pa.string()),
         source_keys.filter(mask), _column(table, REPLICA, WHOLE_ROW, pa.int32()).filter(mask)],
        schema=QUARANTINE_SCHEMA,
    )
    good = pa.array(~bad)
    good_keys = keys.filter(good)
    columns = {
        IMAGE: _hf_images(good_keys.to_pylist(), np.array(images, dtype=object)[~bad]),
        LABEL: _column(table, LABEL, -1, pa.int64()).filter(good),
        CLASS_NAME: _column(table, CLASS_NAME, "", pa.string()).filter(good),
        KEY: good_keys,
        SOURCE_KEY: source_keys.filter(good),
        METHOD: _column(table, METHOD, "", pa.string()).filter(good),
        REPLICA: _column(table, REPLICA, 0, pa.int32()).filter(good),
        PARAMS: _column(table, PARAMS, "{}", pa.string()).filter(good),
        SEED: _column(table, SEED, None, pa.int64()).filter(good),
    }
    fields = [f.with_nullable(True) if f.name == KEY else f for f in OUTPUT_SCHEMA]
    out = pa.Table.from_arrays([columns[f.name] for f in fields], schema=pa.schema(fields))
    for name, data in extras.items():
        out = out.append_column(name, _hf_images(good_keys.to_pylist(), np.array(data, dtype=object)[~bad], name))
    out = out.append_column(SOURCE, sources.filter(good))
    return out, quarantine


def _hf_images(keys: list[str], images: Sequence[bytes], suffix: str = "") -> pa.StructArray:
    """HF ``Image`` structs ``{bytes, path}``; the path is :func:`image_path` of the key (plus
    ``suffix``) with the image's extension."""
    suffix = f".{suffix}" if suffix else ""
    paths = [f"{image_path(k)}{suffix}.{_image_ext(b)}" for k, b in zip(keys, images)]
    return pa.StructArray.from_arrays([pa.array(list(images), pa.binary()), pa.array(paths, pa.string())],
                                      fields=list(HF_IMAGE_TYPE))


def _image_ext(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "img"


# -- serialising one file --


def _parquet_bytes(table: pa.Table, spec: OutputSpec) -> bytes:
    extra = [pa.field(name, HF_IMAGE_TYPE) for name in spec.extra_images]
    schema = pa.schema([*OUTPUT_SCHEMA, *extra]).with_metadata(hf_features_metadata(spec.classes, spec.extra_images))
    buf = io.BytesIO()
    pq.write_table(table.select(schema.names).cast(schema), buf, row_group_size=spec.row_group_size)
    return buf.getvalue()


def _tar_bytes(table: pa.Table, extra_images: Sequence[str] = ()) -> bytes:
    rows = table.select([*OUTPUT_SCHEMA.names, *extra_images]).to_pylist()

    def samples():
        for r in rows:
            image = r[IMAGE]["bytes"]
            try:
                params = json.loads(r[PARAMS]) if r[PARAMS] else {}
            except ValueError:
                params = r[PARAMS]
            meta = {k: r[k] for k in (KEY, SOURCE_KEY, METHOD, REPLICA, SEED, LABEL, CLASS_NAME)}
            meta[PARAMS] = params
            members = {
                _image_ext(image): image,
                "cls": str(r[LABEL]).encode(),
                "json": json.dumps(meta, sort_keys=True).encode(),
            }
            for name in extra_images:
                data = r[name]["bytes"]
                members[f"{name}.{_image_ext(data)}"] = data
            yield r[KEY], members

    return wds.build_tar(samples())


def _quarantine_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


# -- existing parts (rerun) --


class _Existing:
    """The committed parts of one folder (and the older folders it replaces), listed once
    per write task (no listing cache)."""

    def __init__(self, fs, folder: str, ext: str, also: Sequence[str] = (), retry: RetryPolicy = DEFAULT_POLICY):
        self.fs, self.folder, self.ext, self.retry = fs, folder, ext, retry
        self.paths = []
        for where in [folder, *also]:
            try:
                fs.invalidate_cache(where)
                names = [posixpath.basename(p) for p in retry.call(fs.ls, where, detail=False, what=f"list {where}")]
            except FileNotFoundError:
                names = []
            self.paths += [posixpath.join(where, n) for n in names if n.endswith("." + ext) and not n.startswith((".", "_"))]
        self.names = [posixpath.basename(p) for p in self.paths]

    def keys_for(self, stem: str) -> set[str]:
        pattern = re.compile(re.escape(stem) + _DIGEST_RE + re.escape(self.ext) + "$")
        keys: set[str] = set()
        for path in self.paths:
            if pattern.match(posixpath.basename(path)):
                keys |= self.retry.call(_part_keys, self.fs, path, self.ext, what=f"read {path}")
        return keys


def _read_parquet(fs, path: str, columns: list[str] | None, fallback: str | None = None) -> pa.Table:
    """``columns`` of one parquet file (all with ``None``), those it lacks left out; the first
    one, when the file lacks it, is replaced by ``fallback`` (older files)."""
    with fs.open(path, "rb") as f:
        if columns is None:
            return pq.read_table(f)
        names = pq.read_schema(f).names
        if fallback is not None and columns[0] not in names:
            columns = [fallback, *columns[1:]]
        f.seek(0)
        return pq.read_table(f, columns=[c for c in columns if c in names])


def _part_keys(fs, path: str, ext: str) -> set[str]:
    if ext == "parquet":
        with fs.open(path, "rb") as f:
            return set(pq.read_table(f, columns=[KEY]).column(KEY).to_pylist())
    keys = set()
    with fs.open(path, "rb") as f:
        import tarfile

        with tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar:
                keys.add(wds.split_member(info.name)[0])
    return keys


def _write_groups(spec: OutputSpec, table: pa.Table, folder: str, ext: str, serialise, also: Sequence[str] = ()
                  ) -> tuple[list[pa.Table], list[pa.Table], list[str]]:
    """Write ``table`` as one file per source into ``folder``; returns (the rows written,
    the rows found already committed there or in the ``also`` folders, files)."""
    if table.num_rows == 0:
        return [], [], []
    existing = _Existing(spec.fs, folder, ext, also, spec.retry)
    written, already = [], []
    files = []
    sources = table.column(SOURCE)
    for source in pc.unique(sources).to_pylist():
        group = table.filter(pc.equal(sources, source))
        stem = shard_stem(source or "")
        done = existing.keys_for(stem)
        if done:
            keep = pc.invert(pc.is_in(group.column(KEY), value_set=pa.array(sorted(done), pa.string())))
            already.append(group.filter(pc.invert(keep)))
            group = group.filter(keep)
        if group.num_rows == 0:
            continue
        # Rows in key order: the same rows make the same bytes, whatever order they came in.
        group = group.take(pc.sort_indices(group, sort_keys=[(KEY, "ascending")]))
        name = f"{stem}-{_digest(group.column(KEY).to_pylist())}.{ext}"
        path = posixpath.join(folder, name)
        spec.retry.call(storage.atomic_write, spec.fs, path, serialise(group), what=f"write {path}")
        written.append(group)
        files.append(storage.uri_of(spec.fs, path))
    return written, already, files


def _rows(tables: list[pa.Table]) -> int:
    return sum(t.num_rows for t in tables)


def _replica_rows(tables: list[pa.Table]) -> int:
    """Quarantine rows that stand for one replica, not a whole input row."""
    return sum(pc.sum(pc.greater(t.column(REPLICA), WHOLE_ROW).cast(pa.int64())).as_py() or 0 for t in tables)


def write_table(table: pa.Table, spec: OutputSpec) -> WriteSummary:
    """Write one bundle of rows (what one Ray write task does; callable without Ray)."""
    out, quarantine = _split(table, spec)
    if spec.format == "parquet":
        serialise = lambda t: _parquet_bytes(t, spec)  # noqa: E731
    else:
        serialise = lambda t: _tar_bytes(t, spec.extra_images)  # noqa: E731
    written, already, files = _write_groups(spec, out, spec.root, spec.ext, serialise)
    qwritten, qalready, qfiles = _write_groups(
        spec, quarantine, spec.quarantine_root, "parquet", _quarantine_bytes, spec.quarantine_roots[1:]
    )
    reasons = dict(Counter(r for t in qwritten for r in t.column(REASON).to_pylist()))
    if qwritten:
        log.warning("quarantined %d rows: %s", _rows(qwritten), reasons)
    return WriteSummary(
        spec.uri, spec.format, _rows(written), _rows(qwritten), _rows(already), _rows(qalready), files, qfiles,
        reasons, _replica_rows(qwritten), _replica_rows(qalready),
    )


def committed_keys(
    output_uri: str,
    *,
    format: str = "parquet",
    column: str = KEY,
    quarantine: bool = True,
    storage_options: dict | None = None,
) -> set[str]:
    """Keys (or another string column, e.g. ``source_key``; parquet only) already
    committed under ``output_uri``, including quarantined keys when ``quarantine`` (but
    not those quarantined as ``retryable``: a rerun reads them again). Pass
    them to ``read_images(skip_keys=...)`` so a rerun does not redo finished work."""
    spec = output_spec(output_uri, format, storage_options)
    fs = spec.fs
    found: set[str] = set()
    folders = [(spec.root, spec.ext)] + ([(q, "parquet") for q in spec.quarantine_roots] if quarantine else [])
    for folder, ext in folders:
        for path in _Existing(fs, folder, ext, retry=spec.retry).paths:
            if not re.search(_DIGEST_RE + re.escape(ext) + "$", posixpath.basename(path)):
                continue
            if ext == "parquet":
                table = spec.retry.call(_read_parquet, fs, path, [column, REASON], KEY, what=f"read {path}")
                if REASON in table.column_names:  # a quarantine table: retryable rows are not done
                    table = table.filter(pc.not_equal(table.column(REASON), RETRYABLE))
                found.update(table.column(0).to_pylist())
            elif column == KEY:
                found |= spec.retry.call(_part_keys, fs, path, ext, what=f"read {path}")
            else:
                raise ValueError("committed_keys reads only the key column of WebDataset tars")
    found.discard(None)
    return found


def completed_sources(
    output_uri: str, replicas: int, *, format: str = "parquet", storage_options: dict | None = None
) -> set[str]:
    """Source keys whose work under ``output_uri`` is finished: all ``replicas`` outputs
    committed (written or quarantined one by one), or the whole input row quarantined.

    Pass them to ``read_images(skip_keys=...)`` on a rerun of a job that writes several
    replicas per input: a source with only some replicas committed is read again, and
    the writer skips the replicas it already has. Rows quarantined as ``retryable`` (a
    storage error outlasted the reader's retries) are not finished.
    """
    spec = output_spec(output_uri, format, storage_options)
    fs = spec.fs
    done: Counter[str] = Counter()
    whole: set[str] = set()
    for name in _Existing(fs, spec.root, spec.ext, retry=spec.retry).names:
        if not re.search(_DIGEST_RE + re.escape(spec.ext) + "$", name):
            continue
        path = posixpath.join(spec.root, name)
        if spec.ext == "parquet":
            table = spec.retry.call(_read_parquet, fs, path, [SOURCE_KEY], what=f"read {path}")
            done.update(table.column(SOURCE_KEY).to_pylist())
        else:
            keys = spec.retry.call(_part_keys, fs, path, spec.ext, what=f"read {path}")
            done.update(key.rsplit("/", 2)[0] for key in keys)
    for path in _Existing(fs, spec.quarantine_root, "parquet", spec.quarantine_roots[1:], spec.retry).paths:
        table = spec.retry.call(_read_parquet, fs, path, [SOURCE_KEY, REPLICA, REASON], what=f"read {path}")
        table = table.filter(pc.not_equal(table.column(REASON), RETRYABLE))  # not finished: read again
        for source_key, replica in zip(table.column(SOURCE_KEY).to_pylist(), table.column(REPLICA).to_pylist()):
            if replica is None or replica == WHOLE_ROW:
                whole.add(source_key)
            else:
                done[source_key] += 1
    return whole | {key for key, count in done.items() if count >= replicas}


def forget_retryable(output_uri: str, *, storage_options: dict | None = None) -> int:
    """Drop the ``retryable`` quarantine records under ``output_uri`` (what a rerun does
    before it reads again: the rows they stand for are read again, and those that fail
    again get fresh records); returns how many were dropped.

    Each quarantine file holding such records is removed, then what else it held is
    written again under a new name: a run killed in between leaves those other records
    missing, never doubled, and the rows they stood for are then not finished, so the
    next rerun reads them again."""
    spec = output_spec(output_uri, "parquet", storage_options)
    fs = spec.fs
    dropped = 0
    for path in _Existing(fs, spec.quarantine_root, "parquet", spec.quarantine_roots[1:], spec.retry).paths:
        name = posixpath.basename(path)
        match = re.search(_DIGEST_RE + "parquet$", name)
        if not match:
            continue
        table = spec.retry.call(_read_parquet, fs, path, None, what=f"read {path}")
        retryable = pc.equal(table.column(REASON), RETRYABLE)
        n = pc.sum(retryable.cast(pa.int64())).as_py() or 0
        if not n:
            continue
        kept = table.filter(pc.invert(retryable))
        spec.retry.call(_remove, fs, path, what=f"remove {path}")
        if kept.num_rows:
            stem = name[: match.start()]
            new = posixpath.join(spec.quarantine_root, f"{stem}-{_digest(kept.column(KEY).to_pylist())}.parquet")
            spec.retry.call(storage.atomic_write, fs, new, _quarantine_bytes(kept), what=f"write {new}")
        dropped += n
    if dropped:
        log.info("dropped %d retryable quarantine records in %s: they are read again", dropped, spec.uri)
    return dropped
