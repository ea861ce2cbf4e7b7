"""Tests of the built-in stage plugins."""
