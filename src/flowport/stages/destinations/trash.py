"""Trash destination: discards every record."""

from __future__ import annotations

import pyarrow as pa

from flowport.plugins.contract import Destination, StageConfig, StageOutput

__all__ = ["Trash", "TrashConfig"]


class TrashConfig(StageConfig):
    """Trash has no settings."""


class Trash(Destination[TrashConfig]):
    """Accepts records and throws them away (for testing flows and measuring throughput)."""

    name = "trash"
    label = "Trash"
    description = "Discards every record it receives."
    config_model = TrashConfig

    def write(self, batch: pa.RecordBatch) -> StageOutput | None:
        """Ignore the batch."""
        return None

    def commit(self) -> None:
        """Nothing to make visible."""

    def abort(self) -> None:
        """Nothing to throw away."""
