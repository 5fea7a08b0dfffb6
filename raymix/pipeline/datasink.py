"""Write a Ray Dataset of output rows with :func:`raymix.io.writers.write_table`.

The file layout, naming, resumption and quarantine are plain Python in
:mod:`raymix.io.writers`; this module is the Ray Data wiring: each write task writes its
bundle with ``write_table`` and the driver sums the per-task summaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa
import ray
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink
from ray.data.datasource.datasink import WriteResult

from raymix.io.decode import JPEG_QUALITY
from raymix.io.writers import DEFAULT_ROWS_PER_FILE, OutputSpec, WriteSummary, output_spec, prepare_output, write_table

__all__ = ["ShardDatasink", "write_dataset"]


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


def write_dataset(
    ds: ray.data.Dataset,
    output_uri: str,
    *,
    format: str = "parquet",
    storage_options: dict | None = None,
    classes: Sequence[str] | None = None,
    descriptions: Sequence[str] | None = None,
    quality: int = JPEG_QUALITY,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    rows_in: int | None = None,
    replicas: int = 1,
    verbose: bool = True,
    extra_images: Sequence[str] = (),
) -> WriteSummary:
    """Write a Ray Dataset of output rows to ``output_uri`` (layout and naming:
    :mod:`raymix.io.writers`).

    Rows carry ``raymix.io.schema.OUTPUT_COLUMNS`` (missing provenance columns default to
    ``source_key = key``, ``method = ""``, ``replica = 0``, ``params = "{}"``, ``seed``
    null), ``image`` as encoded bytes or ``uint8`` HWC arrays (JPEG-encoded here at
    ``quality``), plus ``source``, ``stage`` and ``reason``. Rows with a reason, or with
    no image, go to the quarantine table. ``classes`` are stored as ``classes.json`` and
    as ``ClassLabel`` names in the parquet schema. Prints the summary (and, with
    ``rows_in``, whether the counts reconcile) unless ``verbose=False``. ``extra_images``
    names more image columns to keep (more ``Image`` columns in parquet, members
    ``{key}.{name}.jpg`` in tars), e.g. DiffuseMix's ``generated`` and ``hybrid``.
    """
    spec = output_spec(output_uri, format, storage_options, classes, quality, extra_images)
    prepare_output(spec, descriptions)
    sink = ShardDatasink(spec, rows_per_file)
    ds.write_datasink(sink)
    summary = sink.summary
    if verbose:
        print(summary.report(rows_in, replicas), flush=True)
    return summary
