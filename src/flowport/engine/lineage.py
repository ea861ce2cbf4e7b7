"""Record lineage: find the record as the origin read it.

Origins' batches get a hidden ``__fp_rid`` column (batch sequence in the
high 32 bits, row index in the low 32). While a batch is in flight the
engine keeps the origin's version of it, so a record that fails further
down can be sent to the error stage as the origin read it
(``ORIGINAL_RECORD``). The cache is bounded by the number of batches that
can be in flight (queue capacities plus one per stage), so memory stays
bounded; a record whose origin batch was already dropped (a stage that
holds records back, such as a whole-input SQL query) falls back to the
stage record and says so in its ``policy``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowport.plugins.contract import ROW_ID, visible_columns

__all__ = ["OriginalRecords", "with_row_ids"]


def with_row_ids(batch: pa.RecordBatch, seq: int) -> pa.RecordBatch:
    """``batch`` with the hidden lineage column appended."""
    ids = np.arange(batch.num_rows, dtype=np.int64) + (seq << 32)
    return batch.append_column(ROW_ID, pa.array(ids, pa.int64()))


class OriginalRecords:
    """A bounded cache of origin batches keyed by sequence number."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._batches: OrderedDict[int, pa.RecordBatch] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, seq: int, batch: pa.RecordBatch) -> None:
        """Remember the origin's version of batch ``seq``."""
        with self._lock:
            self._batches[seq] = batch
            while len(self._batches) > self._capacity:
                self._batches.popitem(last=False)

    def lookup(self, row_ids: pa.Array[Any]) -> pa.Table | None:
        """The original records for ``row_ids`` in that order, or None if any is gone."""
        ids = np.asarray(row_ids.to_numpy(zero_copy_only=False), dtype=np.int64)
        seqs = ids >> 32
        rows = ids & 0xFFFFFFFF
        pieces: list[pa.Table] = []
        order: list[np.ndarray] = []
        with self._lock:
            for seq in np.unique(seqs):
                batch = self._batches.get(int(seq))
                if batch is None:
                    return None
                mask = seqs == seq
                order.append(np.nonzero(mask)[0])
                pieces.append(visible_columns(batch).take(pa.array(rows[mask])))
        if len(pieces) == 1:
            return pieces[0]
        table = pa.concat_tables(pieces, promote_options="permissive")
        # Restore the order the failing stage reported the records in.
        positions = np.concatenate(order)
        return table.take(pc.sort_indices(pa.array(positions)))
