"""Flowport cli layer."""
