"""Flowport services layer."""
