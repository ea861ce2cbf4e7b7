"""Flowport plugins layer."""
