"""dlt's fastest documented path for a CSV file into PostgreSQL (run in dlt's own virtual environment).

Arrow tables from pyarrow's CSV reader (typed, no Python row objects) as the
resource, ``loader_file_format="csv"`` (PostgreSQL COPY), ``replace``.

    python dlt_load.py CSV_PATH DATABASE TABLE
"""

from __future__ import annotations

import json
import sys
import time

import dlt
import pyarrow as pa
import pyarrow.csv as pcsv

TYPES = {
    "order_id": pa.int32(),
    "customer": pa.string(),
    "country": pa.string(),
    "total": pa.decimal128(10, 2),
    "ordered_at": pa.timestamp("us"),
}


def main() -> None:
    path, database, table = sys.argv[1:4]
    started = time.perf_counter()

    @dlt.resource(name=table, write_disposition="replace")
    def orders():  # type: ignore[no-untyped-def]
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=64 << 20),
            convert_options=pcsv.ConvertOptions(column_types=TYPES),
        )
        for batch in reader:
            yield pa.Table.from_batches([batch])

    pipeline = dlt.pipeline(
        pipeline_name="flowport_bench",
        destination=dlt.destinations.postgres(f"postgresql://postgres:unused@127.0.0.1:5432/{database}"),
        dataset_name="public",
    )
    info = pipeline.run(orders(), loader_file_format="csv")
    info.raise_on_failed_jobs()
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
