"""Readers, writers, schema, storage URLs and sample data.

- :mod:`raymix.io.storage`: fsspec filesystems for local paths and object stores, atomic writes
- :mod:`raymix.io.readers`: ``plan_read`` / ``read_images`` for folder, parquet, WebDataset
- :mod:`raymix.io.decode`: bytes to RGB arrays (or a quarantine reason) and back to JPEG
- :mod:`raymix.io.writers`: ``write_shards`` to parquet / WebDataset with a quarantine table
- :mod:`raymix.io.sample`: generated ImageNet-like data (``raymix sample``)

Importing these modules does not import Ray; only building a Dataset or writing one does.
"""
