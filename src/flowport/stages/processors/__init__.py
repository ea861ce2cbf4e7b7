"""Processors: field mapping, filtering, derived fields, SQL and deduplication."""
