"""Readers, writers, schema, storage URLs and sample data."""
