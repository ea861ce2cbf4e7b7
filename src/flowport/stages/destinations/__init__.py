"""Destinations that are not files (Trash)."""
