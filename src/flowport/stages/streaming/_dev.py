"""What the development origins share: the pause between batches, and a reset that starts over."""

from __future__ import annotations

import time
from typing import Any

from flowport.errors import StageError
from flowport.plugins.contract import Origin

__all__ = ["DevOrigin"]


class DevOrigin(Origin[Any]):
    """A streaming origin that makes its own data: its state counts the batches committed."""

    streaming = True
    _state: dict[str, Any]

    def _pause(self) -> None:
        """Wait ``batch_wait`` since the last batch (not before the first, nor in preview)."""
        wait = float(self.config.batch_wait)
        if self.context.preview or not self._state.get("batches") or not wait:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not self.context.cancelled:
            time.sleep(min(0.05, wait))

    def reset(self, position: str) -> None:
        """Forget the batches sent: the flow starts over (``earliest``); ``latest`` does the same here."""
        if position not in ("earliest", "latest"):
            raise StageError(
                self.context.stage_name, f"{self.label} resets to earliest or latest, not {position!r}"
            )
        self._state = {}
        self.context.save_state({})
