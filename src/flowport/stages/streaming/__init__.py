"""Streaming origins: they read without end, one micro-batch per run, and acknowledge after the commit."""
