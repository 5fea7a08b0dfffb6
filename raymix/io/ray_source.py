"""The Ray Data datasource behind :meth:`raymix.io.readers.ReadPlan.dataset`.

Kept apart from the readers so that planning and reading shards need no Ray import.
"""

from __future__ import annotations

import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from raymix.io.schema import INPUT_SCHEMA


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
                num_rows=shard.num_rows,
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
