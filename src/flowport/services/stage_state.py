"""Per-stage state in the metadata store: what offsets and checkpoints of a flow's stages live in.

:class:`StoreStageState` is the :class:`~flowport.plugins.contract.StageStateStore`
every run Flowport starts hands its stages: bound to one flow (by its uuid,
so two flows with a stage ``Orders_01`` keep separate offsets), opening the
store only when a stage first asks (the store's modules are imported then
too: a run whose stages keep no state never pays for SQLAlchemy), one short
transaction per call, so a worker on any host sees what the last run saved.

Offsets of earlier Flowport versions lived in ``<data folder>/.flowport-state/
<stage>.json``: the first load of a stage that has no state in the store takes
that file's content into the store and renames the file ``.migrated``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid as _uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LEGACY_STATE_DIRECTORY", "StoreStageState"]

_log = logging.getLogger(__name__)

LEGACY_STATE_DIRECTORY = ".flowport-state"


class StoreStageState:
    """The stage state of one flow in the instance's metadata store (see the module's docstring)."""

    def __init__(
        self, flow_uuid: _uuid.UUID | str, *, url: str | None = None, legacy_dir: Path | None = None
    ) -> None:
        self._flow_uuid = flow_uuid if isinstance(flow_uuid, _uuid.UUID) else _uuid.UUID(str(flow_uuid))
        self._url = url
        self._legacy_dir = legacy_dir
        self._lock = threading.Lock()

    def load(self, stage: str, partition: str = "") -> dict[str, Any] | None:
        """The state ``stage`` saved last (taking over a legacy offset file the first time), or None."""
        from flowport.services.instance import transaction
        from flowport.store import stage_state as _repo

        with self._lock, transaction(self._url) as session:
            found = _repo.get(session, self._flow_uuid, stage, partition)
            if found is not None or partition or self._legacy_dir is None:
                return found
            legacy = self._legacy_file(stage)
            if not legacy.is_file():
                return None
            try:
                state = json.loads(legacy.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                _log.warning("Ignoring the unreadable offset file %s: %s", legacy, exc)
                return None
            if not isinstance(state, dict):
                return None
            _repo.put(session, self._flow_uuid, stage, state, run_id=str(state.get("run_id") or "") or None)
        legacy.rename(legacy.with_name(legacy.name + ".migrated"))
        _log.info("Offset of stage %s moved from %s into the metadata store", stage, legacy)
        return state

    def save(
        self, stage: str, state: Mapping[str, Any], partition: str = "", run_id: str | None = None
    ) -> None:
        """Replace the state of ``stage`` in one transaction."""
        from flowport.services.instance import transaction
        from flowport.store import stage_state as _repo

        with self._lock, transaction(self._url) as session:
            _repo.put(session, self._flow_uuid, stage, state, partition=partition, run_id=run_id)

    def _legacy_file(self, stage: str) -> Path:
        assert self._legacy_dir is not None
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", stage) or "stage"
        return self._legacy_dir / LEGACY_STATE_DIRECTORY / f"{safe}.json"

    def __repr__(self) -> str:
        return f"StoreStageState(flow {self._flow_uuid})"
