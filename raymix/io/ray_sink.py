"""The Ray Data datasink behind :func:`raymix.io.writers.write_shards`.

Kept apart from the writers so that writing a table needs no Ray import.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink
from ray.data.datasource.datasink import WriteResult

from raymix.io.writers import OutputSpec, WriteSummary, write_table


class ShardDatasink(Datasink[WriteSummary]):
    """Each write task writes its bundle with :func:`write_table`; the driver sums the
    per-task summaries into ``self.summary``."""

    def __init__(self, spec: OutputSpec, rows_per_file: int):
        self.spec = spec
        self.rows_per_file = rows_per_file
        self.summary = WriteSummary(spec.uri, spec.format)

    def get_name(self) -> str:
        return f"Shards[{self.spec.format}]"

    @property
    def min_rows_per_write(self) -> int | None:
        return self.rows_per_file

    def write(self, blocks: Iterable[Block], ctx) -> WriteSummary:
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return WriteSummary(self.spec.uri, self.spec.format)
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        return write_table(table, self.spec)

    def on_write_complete(self, write_result: WriteResult[WriteSummary]) -> None:
        summary = WriteSummary(self.spec.uri, self.spec.format)
        for part in write_result.write_returns:
            summary.merge(part)
        summary.files.sort()
        summary.quarantine_files.sort()
        self.summary = summary
