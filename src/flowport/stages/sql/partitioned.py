"""The staging table of a partitioned load, and its one-transaction publish once every partition succeeded.

A partitioned run (``partitions`` in a flow's configuration) loads its
partitions in parallel tasks, each an ordinary ``append`` into one shared
staging table beside the target (``<table>__fp_parts_<run>``): a partition's
load is one transaction, so a partition that fails or whose worker dies adds
nothing, and running it again adds its rows once. When every partition has
succeeded, :meth:`PartitionedLoad.publish` checks that the staging table
holds exactly the rows the partitions reported, then makes it the target's
content in one transaction, as a single-task load would:

* ``replace``: the staging table (made ``LIKE`` the target, ``INCLUDING
  ALL``) takes the target's place (DROP + RENAME, its indexes renamed after
  the target), or, when views, grants or foreign keys depend on the target,
  ``TRUNCATE`` + ``INSERT ... SELECT`` in the same transaction;
* ``append``: ``INSERT ... SELECT`` into the target.

Until then readers of the target see it unchanged; a failure at any point
leaves it exactly as it was, and :meth:`discard` drops the staging table.
PostgreSQL only (its DDL is transactional).
"""

from __future__ import annotations

from flowport.connections.spec import ConnectionSpec
from flowport.errors import StageError
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql._identifiers import TableName, parse_table_name
from flowport.stages.sql.vendors import open_connection
from flowport.stages.sql.vendors.postgres.load import rename_dependents

__all__ = ["PartitionedLoad"]


class PartitionedLoad:
    """One partitioned load of ``table`` (mode ``replace`` or ``append``) through a shared staging table."""

    def __init__(self, spec: ConnectionSpec, table: str, mode: str, run_id: str, *, stage: str) -> None:
        self.stage = stage
        if spec.vendor != "postgresql":
            raise StageError(stage, f"a partitioned load needs PostgreSQL, not {spec.vendor}")
        if mode not in ("replace", "append"):
            raise StageError(stage, f"a partitioned load replaces or appends, it cannot {mode}")
        self.mode = mode
        self.conn: SqlConnection = open_connection(spec)
        try:
            self.target, self.exists = self.conn.locate(parse_table_name(table))
            self.staging: TableName = self.conn.work_table(self.target, "parts", run_id)
        except Exception:
            self.conn.close()
            raise

    @property
    def staging_name(self) -> str:
        """The staging table as a destination's ``table`` setting names it (``schema.table``)."""
        return f"{self.staging.schema}.{self.staging.name}" if self.staging.schema else self.staging.name

    def prepare(self) -> None:
        """Create the staging table shaped like the target (no target: the first partition creates it)."""
        conn = self.conn
        staging, target = conn.table_sql(self.staging), conn.table_sql(self.target)
        conn.begin()
        conn.execute(f"DROP TABLE IF EXISTS {staging}")  # left by an earlier try of this run
        if self.exists:
            conn.execute(f"CREATE TABLE {staging} (LIKE {target} INCLUDING ALL)")
        conn.commit()

    def staged_rows(self) -> int:
        """How many rows the partitions have committed to the staging table."""
        found = self.conn.query(f"SELECT count(*) FROM {self.conn.table_sql(self.staging)}")
        self.conn.rollback()
        return int(found[0][0])

    def publish(self, expected_rows: int) -> None:
        """Make the staged rows the target's (``replace``) or add them (``append``), in one transaction.

        Raises:
            StageError: the staging table does not hold ``expected_rows`` rows
            (the target is left as it was).
        """
        conn = self.conn
        staged, target = conn.table_sql(self.staging), conn.table_sql(self.target)
        conn.begin()
        try:
            # Nobody may add to the staging table while it is counted and published.
            conn.execute(f"LOCK TABLE {staged} IN ACCESS EXCLUSIVE MODE")
            found = int(conn.query(f"SELECT count(*) FROM {staged}")[0][0])
            if found != expected_rows:
                raise StageError(
                    self.stage,
                    f"the partitions reported {expected_rows} rows but the staging table holds {found}: "
                    "nothing was published",
                )
            exists = conn.locate(self.target)[1]
            if not exists:
                conn.execute(f"ALTER TABLE {staged} RENAME TO {conn.quote(self.target.name)}")
            elif self.mode == "append":
                self._insert(staged, target)
                conn.execute(f"DROP TABLE {staged}")
            elif conn.dependents(self.target).block_swap:
                conn.execute(f"TRUNCATE {target}")
                self._insert(staged, target)
                conn.execute(f"DROP TABLE {staged}")
            else:
                conn.execute(f"DROP TABLE {target}")
                conn.execute(f"ALTER TABLE {staged} RENAME TO {conn.quote(self.target.name)}")
                rename_dependents(conn, self.target, self.staging.name)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _insert(self, staged: str, target: str) -> None:
        columns = ", ".join(self.conn.quote(name) for name, _ in self.conn.columns(self.target))
        self.conn.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staged}")

    def discard(self) -> None:
        """Drop the staging table (a failed or canceled run); the target was never touched."""
        try:
            self.conn.rollback()
            self.conn.begin()
            self.conn.execute(f"DROP TABLE IF EXISTS {self.conn.table_sql(self.staging)}")
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
