"""WebDataset tars: ``{key}.jpg`` / ``.png`` / ... with ``{key}.cls`` (label as text) and
an optional ``{key}.json`` (``key``, ``class_name``, ``label``); member keys are
percent-decoded (see :mod:`raymix.io.wds`).

Tars are read header by header (:func:`raymix.io.wds.read_samples`): a header that fails
its checksum is not taken for the end of the archive (as Python's ``tarfile`` takes it);
the reader moves on to the next valid header and accounts for what it could not read:
a sample next to the damage that lost its image or label is a row keyed by its own key
with reason ``unreadable``; bytes no sample claims are a row ``<source>#unreadable@<offset>``;
a tar that stops before its end-of-archive marker (cut short) gives a row
``<source>#unreadable`` (what followed the cut is unknown). Reads go through
:class:`~raymix.io.storage.RetryingFile`, so a storage blip costs a retry; an error that
outlasts the retries gives one ``retryable`` row for the rest of the tar.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from raymix.io import storage, wds
from raymix.io.readers.shard import UNREADABLE, UNREADABLE_SUFFIX, RowBuffer, Shard


def read_tar_shard(plan, shard: Shard) -> Iterator[pa.Table]:
    """The samples of one tar, streamed."""
    rows = RowBuffer(shard.source, plan.block_bytes, plan.block_rows, shard.name)
    try:
        with storage.RetryingFile(plan.fs, shard.path, plan.retry_seconds, block_size=8 * 2**20) as f:
            for key, members, problem in wds.read_samples(f):
                if problem == wds.ENDS_EARLY:
                    yield from rows.lost(shard.source + UNREADABLE_SUFFIX, UNREADABLE)
                    continue
                if problem == wds.LOST:
                    yield from rows.lost(f"{shard.source}{UNREADABLE_SUFFIX}@{key}", UNREADABLE)
                    continue
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
                    cname = plan.class_name(label)
                real_key = meta.get("key") if isinstance(meta.get("key"), str) else key
                if problem == wds.DAMAGED:
                    yield from rows.lost(real_key, UNREADABLE)
                else:
                    yield from rows.add(real_key, image, -1 if label is None else label, cname)
    except Exception as err:
        yield from rows.broken(err)
    yield from rows.flush()
