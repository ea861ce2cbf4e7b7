"""Per-stage run metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["StageMetrics"]


@dataclass
class StageMetrics:
    """Counts and time for one stage in one run.

    Each stage's metrics are written only by the thread that runs the
    stage, so no lock is needed; readers may see a slightly stale value.
    """

    input_records: int = 0
    output_records: int = 0
    error_records: int = 0
    input_batches: int = 0
    output_batches: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Metrics as plain data (seconds rounded to milliseconds)."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data
