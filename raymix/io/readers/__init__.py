"""Read ImageNet-style data from any fsspec URL: :func:`plan_read` lists it once and
decides the layout, the shards and the class list (:mod:`.plan`); each layout's reader
(:mod:`.folder`, :mod:`.parquet`, :mod:`.webdataset`) streams one shard as bounded tables.

Four layouts, one row shape (``raymix.io.schema.INPUT_COLUMNS``: ``key``, ``image`` as
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
    found in ``ROOT``, else the sorted folder names (:mod:`.classes`).
``parquet``
    Hugging Face ``datasets`` parquet shards: ``image`` struct ``{bytes, path}`` (or plain
    binary) and ``label``. Keys come from a ``key`` column when present, else the image
    ``path`` without extension, else ``<shard stem>/<row number>`` (made unique where two
    rows would share one); class names from a
    ``class_name`` column, else the ``ClassLabel`` names in the HF schema metadata, else
    a ``classes.json`` beside the shards, else the label as text.
``arrow``
    Hugging Face ``save_to_disk`` folders (``data-*.arrow`` beside ``state.json``; a
    ``DatasetDict`` has one per split), read like parquet (:mod:`.arrow`).
``webdataset``
    Tars of ``{key}.jpg`` / ``.png`` / ... with ``{key}.cls`` (label as text) and an
    optional ``{key}.json`` (``key``, ``class_name``, ``label``); member keys are
    percent-decoded (see :mod:`raymix.io.wds`); read past damaged headers.

A folder of images without class folders (ImageNet's flat ``val/``) is a folder plan
whose labels come from a ``LOC_val_solution.csv`` found in or above it (:func:`.folder.flat_shards`);
a single image file is a one-row folder plan.

Parquet files, Arrow files and tars are read one file per read task, streaming in blocks (the Ray
Dataset over a plan: :func:`raymix.pipeline.datasource.read_dataset`). Files and
folders whose name starts with ``.`` or ``_`` are skipped (``__quarantine__/``, temporary
files), as Ray's own readers do.

Data that cannot be read never fails the job and never vanishes: every sample is counted
from the input's own metadata (the listing, the parquet footers read when planning, the
tar headers), transient storage errors are retried (:func:`raymix.io.storage.retry`), and
what still cannot be read gives rows without bytes, ``stage="read"`` and a reason:
``retryable`` (a rerun reads it again), ``missing`` or ``unreadable``
(:mod:`.shard`; ``docs/reliability.md``). Keys are unique: parquet keys that more than one
row of the input would have become ``{key}#{shard}/{row}`` (:func:`.shard.unique_key`).
"""

from raymix.io.readers.classes import CLASS_FILES, parse_class_list
from raymix.io.readers.plan import DEFAULT_FILES_PER_SHARD, ReadPlan, plan_read
from raymix.io.readers.shard import MISSING, RETRYABLE, UNREADABLE, UNREADABLE_SUFFIX, Shard
from raymix.schema import LAYOUTS

__all__ = [
    "CLASS_FILES", "DEFAULT_FILES_PER_SHARD", "LAYOUTS", "MISSING", "RETRYABLE", "UNREADABLE", "UNREADABLE_SUFFIX",
    "ReadPlan", "Shard", "parse_class_list", "plan_read",
]
