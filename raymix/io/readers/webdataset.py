"""WebDataset tars: ``{key}.jpg`` / ``.png`` / ... with ``{key}.cls`` (label as text) and
an optional ``{key}.json`` (``key``, ``class_name``, ``label``); member keys are
percent-decoded (see :mod:`raymix.io.wds`)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from raymix.io import wds
from raymix.io.readers.shard import RowBuffer, Shard


def read_tar_shard(plan, shard: Shard) -> Iterator[pa.Table]:
    """The samples of one tar, streamed."""
    rows = RowBuffer(shard.source, plan.block_bytes, plan.block_rows)
    try:
        with plan.fs.open(shard.path, "rb", block_size=8 * 2**20) as f:
            for key, members in wds.iter_samples(f):
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
                yield from rows.add(real_key, image, -1 if label is None else label, cname)
    except Exception as err:
        yield from rows.broken(err)
    yield from rows.flush()
