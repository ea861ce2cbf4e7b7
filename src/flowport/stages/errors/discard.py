"""Discard error stage: drops error records."""

from __future__ import annotations

import pyarrow as pa

from flowport.plugins.contract import ErrorSink, StageConfig

__all__ = ["Discard", "DiscardConfig"]


class DiscardConfig(StageConfig):
    """Discard has no settings."""


class Discard(ErrorSink[DiscardConfig]):
    """The default error stage: error records are counted by the engine and dropped."""

    name = "discard"
    label = "Discard"
    description = "Drops error records (they still count in the run's metrics)."
    config_model = DiscardConfig

    def write(self, errors: pa.Table) -> None:
        """Ignore the error records."""
