"""Repository of per-stage state: read and write one stage's state inside the caller's transaction."""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowport.store.tables import StageStateRecord, utcnow

__all__ = ["get", "put"]


def get(session: Session, flow_uuid: _uuid.UUID, stage: str, partition: str = "") -> dict[str, Any] | None:
    """The state a stage of a flow saved last, or None."""
    row = session.scalar(
        select(StageStateRecord).where(
            StageStateRecord.flow_uuid == flow_uuid,
            StageStateRecord.stage_name == stage,
            StageStateRecord.partition == partition,
        )
    )
    return dict(row.state) if row is not None else None


def put(
    session: Session,
    flow_uuid: _uuid.UUID,
    stage: str,
    state: Mapping[str, Any],
    *,
    partition: str = "",
    run_id: str | None = None,
) -> None:
    """Replace the state of a stage of a flow (created on first save)."""
    row = session.get(StageStateRecord, (flow_uuid, stage, partition))
    if row is None:
        row = StageStateRecord(flow_uuid=flow_uuid, stage_name=stage, partition=partition)
        session.add(row)
    row.state = dict(state)
    row.run_id = run_id
    row.updated_at = utcnow()
    session.flush()
