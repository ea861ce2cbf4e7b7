"""Connections: access to external systems, their drivers and their secrets."""
