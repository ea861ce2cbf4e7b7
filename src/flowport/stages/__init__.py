"""Flowport stages layer."""
