"""Turn a stage's ErrorBatch into the error table the error stage stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from flowport.engine.lineage import OriginalRecords
from flowport.model.flow import ErrorRecordPolicy
from flowport.plugins.contract import ROW_ID, ErrorBatch, visible_columns

__all__ = ["ERROR_SCHEMA_FIELDS", "error_table"]

ERROR_SCHEMA_FIELDS = ("stage", "code", "message", "policy", "time", "record")


def _as_struct(table: pa.Table) -> pa.Array[Any]:
    table = table.combine_chunks()
    if table.num_columns == 0:
        return pa.array([{}] * table.num_rows, pa.struct([]))
    arrays = [col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col for col in table.columns]
    return pa.StructArray.from_arrays(arrays, names=table.column_names)


def error_table(
    stage: str,
    errors: ErrorBatch,
    policy: ErrorRecordPolicy,
    originals: OriginalRecords | None,
    *,
    from_origin: bool = False,
) -> pa.Table:
    """The error records of ``stage`` with their metadata, in the requested policy.

    ``ORIGINAL_RECORD`` uses the origin's version of each record when the
    lineage column is present and the origin batch is still held; otherwise
    the record as the stage saw it is used and ``policy`` says
    ``STAGE_RECORD``.
    """
    records: pa.Table | None = None
    used = "STAGE_RECORD"
    if policy == "ORIGINAL_RECORD":
        if from_origin:
            # Records an origin rejected are original records already.
            records = visible_columns(errors.records)
            used = "ORIGINAL_RECORD"
        elif ROW_ID in errors.records.column_names and originals is not None:
            records = originals.lookup(errors.records.column(ROW_ID).combine_chunks())
            if records is not None:
                used = "ORIGINAL_RECORD"
    if records is None:
        records = visible_columns(errors.records)
    n = errors.num_rows
    now = datetime.now(UTC)
    return pa.table(
        {
            "stage": pa.array([stage] * n, pa.string()),
            "code": errors.codes.cast(pa.string()),
            "message": errors.messages.cast(pa.string()),
            "policy": pa.array([used] * n, pa.string()),
            "time": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "record": _as_struct(records),
        }
    )
