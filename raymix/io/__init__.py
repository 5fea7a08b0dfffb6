"""Readers, writers, schema, storage URLs and image decoding.

- :mod:`raymix.io.storage`: fsspec filesystems for local paths and object stores, atomic writes,
  reads that retry through transient errors (:mod:`raymix.io.retry` tells those apart)
- :mod:`raymix.io.readers`: ``plan_read`` and per-shard reading for folder, parquet, WebDataset
- :mod:`raymix.io.decode`: bytes to RGB arrays (or a quarantine reason) and back to JPEG
- :mod:`raymix.io.writers`: ``write_table`` to parquet / WebDataset with a quarantine table

No Ray here: the Ray Datasets over these (``read_dataset``, ``write_dataset``) live in
:mod:`raymix.pipeline.datasource` and :mod:`raymix.pipeline.datasink`.
"""
