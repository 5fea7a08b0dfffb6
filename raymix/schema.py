"""Row columns shared by every stage: names only (standard library; Arrow types are in
:mod:`raymix.io.schema`).

A row in flight (what the readers yield)::

    key         str    stable and unique per source image, e.g. "train/n01440764/n01440764_10026"
    image       bytes  the encoded file as stored (JPEG, PNG, ...)
    label       int64  class index
    class_name  str    e.g. "n01440764" or "tench"
    source      str    URI of the shard or file the row came from
    stage       str    "read" when the reader could not read the row (image null), else ""
    reason      str    why: "retryable", "missing" or "unreadable" (raymix.io.readers), else ""

An augmented output row (HF ``datasets`` parquet layout plus provenance)::

    image       struct<bytes: binary, path: string>   JPEG
    label       int64
    class_name  str
    key         str    "{source_key}/{method}/{replica}"
    source_key  str
    method      str
    replica     int32
    params      str    JSON: prompt, mask, fractal id, lambda, ops, ...
    seed        int64  the run seed

A quarantine record::

    key, source, stage, reason   str
    source_key                   str    the input row it came from
    replica                      int32  -1 when the whole input row failed (e.g. at decode),
                                        else the one replica that failed (e.g. a blank edit)
"""

from __future__ import annotations

KEY = "key"
IMAGE = "image"
LABEL = "label"
CLASS_NAME = "class_name"
SOURCE = "source"
SOURCE_KEY = "source_key"
METHOD = "method"
REPLICA = "replica"
PARAMS = "params"
SEED = "seed"
STAGE = "stage"
REASON = "reason"

INPUT_COLUMNS = (KEY, IMAGE, LABEL, CLASS_NAME, SOURCE, STAGE, REASON)
OUTPUT_COLUMNS = (IMAGE, LABEL, CLASS_NAME, KEY, SOURCE_KEY, METHOD, REPLICA, PARAMS, SEED)
QUARANTINE_COLUMNS = (KEY, SOURCE, STAGE, REASON, SOURCE_KEY, REPLICA)

#: Output shard formats.
FORMATS = ("parquet", "webdataset")

#: Input layouts the readers know (``raymix.io.readers``); ``auto`` detects one.
LAYOUTS = ("auto", "folder", "parquet", "webdataset", "arrow")

#: ``replica`` of a quarantine record that stands for the whole input row.
WHOLE_ROW = -1

#: Rows per output file, at least (a write task's bundle; fewer for the last of a shard).
DEFAULT_ROWS_PER_FILE = 1000


def output_key(source_key: str, method: str, replica: int) -> str:
    """The key of an augmented row: ``{source_key}/{method}/{replica}``."""
    return f"{source_key}/{method}/{replica}"
