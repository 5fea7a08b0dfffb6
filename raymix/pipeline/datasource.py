"""Read a :class:`~raymix.io.readers.ReadPlan` into a Ray Dataset.

The plan (listing, shards, class list) and the reading of one shard are plain Python in
:mod:`raymix.io.readers`; this module is the Ray Data wiring around them: one read task
per shard, each streaming bounded blocks.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pyarrow as pa
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from raymix.io.readers import ReadPlan, plan_read
from raymix.io.schema import INPUT_SCHEMA

__all__ = ["ShardDatasource", "read_dataset", "read_images"]


class ShardDatasource(Datasource):
    """One read task per shard of a ``ReadPlan``; each streams bounded blocks."""

    def __init__(self, plan, skip_ref=None, limit: int | None = None):
        super().__init__()
        self._plan, self._skip_ref, self._limit = plan, skip_ref, limit

    def get_name(self) -> str:
        return f"Images[{self._plan.layout}]"

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(s.size_bytes for s in self._plan.shards) or None

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        limit = per_task_row_limit if per_task_row_limit is not None else self._limit
        # Each task carries its own shard and the plan's settings, never the whole listing.
        settings = self._plan.without_shards()
        tasks = []
        for shard in self._plan.shards:
            meta = BlockMetadata(
                # skipped keys leave the task fewer rows than the shard holds
                num_rows=shard.num_rows if self._skip_ref is None else None,
                size_bytes=int(shard.size_bytes),
                input_files=[shard.source],
                exec_stats=None,
            )
            tasks.append(ReadTask(_ShardReader(settings, shard, self._skip_ref), meta, schema=INPUT_SCHEMA,
                                  per_task_row_limit=limit))
        return tasks


class _ShardReader:
    def __init__(self, plan, shard, skip_ref):
        self.plan, self.shard, self.skip_ref = plan, shard, skip_ref

    def __call__(self):
        skip = ray.get(self.skip_ref) if self.skip_ref is not None else None
        yield from self.plan.read_shard(self.shard, skip)


def read_dataset(
    plan: ReadPlan,
    *,
    limit: int | None = None,
    skip_keys: Collection[str] | None = None,
    **read_args,
) -> ray.data.Dataset:
    """A Ray Dataset over ``plan``: one read task per shard.

    ``skip_keys``: rows to leave out (e.g. keys already committed by a previous run;
    see :func:`raymix.io.writers.committed_keys`). Folder trees drop them before
    fetching; other layouts drop them as they stream. ``read_args`` go to
    :func:`ray.data.read_datasource` (``num_cpus``, ``memory``, ...).
    """
    skip_ref = None
    if skip_keys:
        if plan.layout == "folder":
            plan = plan.without_keys(skip_keys)
        else:
            skip_ref = ray.put(pa.array(sorted(skip_keys), pa.string()))
    if limit is not None:
        plan = plan.head(limit)
    ds = ray.data.read_datasource(ShardDatasource(plan, skip_ref, limit), **read_args)
    if limit is not None and plan.layout != "folder":
        ds = ds.limit(limit)
    return ds


def read_images(
    uri: str | Sequence[str],
    *,
    layout: str = "auto",
    limit: int | None = None,
    storage_options: dict | None = None,
    skip_keys: Collection[str] | None = None,
    read_args: dict | None = None,
    **options,
) -> ray.data.Dataset:
    """Read ImageNet-style data at ``uri`` into a Ray Dataset of ``INPUT_COLUMNS``.

    ``options`` go to :func:`raymix.io.readers.plan_read` (``classes``,
    ``files_per_shard``, ``extensions``, ``key_prefix``, ``list_threads``,
    ``fetch_threads``); ``skip_keys`` and ``read_args`` to :func:`read_dataset`. Use
    ``plan_read`` directly to see the class list.
    """
    plan = plan_read(uri, layout=layout, storage_options=storage_options, **options)
    return read_dataset(plan, limit=limit, skip_keys=skip_keys, **(read_args or {}))
