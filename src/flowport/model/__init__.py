"""Flowport model layer."""
