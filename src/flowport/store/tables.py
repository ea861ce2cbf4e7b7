"""Declarative models of the metadata database.

Column types are chosen to be portable across SQLite, PostgreSQL and
MySQL/MariaDB; every schema change goes through an Alembic revision in
``migrations/versions`` (the models are not used to create tables).
"""

from __future__ import annotations

import uuid as _uuid
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    true,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

__all__ = [
    "BACKFILL_STATUSES",
    "DELIVERY_STATUSES",
    "FLOW_TYPES",
    "IMPORT_RULE_KINDS",
    "JOB_STATUSES",
    "JOB_TRIGGERS",
    "LOCK_POLICIES",
    "REPROCESS_POLICIES",
    "ROLES",
    "TASK_RUN_STATUSES",
    "ApiToken",
    "Backfill",
    "Base",
    "Connection",
    "Deployment",
    "FlowRecord",
    "ImportRuleRecord",
    "Instance",
    "Job",
    "JobEvent",
    "JobGroup",
    "JobTrigger",
    "Lease",
    "OutboxCursor",
    "ParameterSet",
    "PipelineRecord",
    "Project",
    "Release",
    "ScheduleRecord",
    "StageStateRecord",
    "TaskLock",
    "TaskRun",
    "UTCDateTime",
    "User",
    "WebhookDelivery",
    "WebhookRecord",
    "WorkerRecord",
    "utcnow",
]

# Deterministic constraint names, so that later migrations can address them
# on every database (SQLite included, through batch mode).
# column_0_N_name joins every column's name, so a two-column unique constraint
# gets its own name; for one column it is the same as column_0_name (0001).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


# MySQL's DATETIME drops fractions of a second unless asked for them.
_TIMESTAMP = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# MySQL's TEXT holds 64 KiB only: job logs and errors can be longer.
_LONG_TEXT = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# MySQL's BLOB holds 64 KiB only: a release keeps its whole package ZIP.
_LONG_BLOB = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

ROLES = ("admin", "editor", "viewer")
FLOW_TYPES = ("batch", "streaming")
#: Who or what started a run.
JobTrigger = Literal["manual", "api", "schedule", "backfill", "pipeline"]
JOB_TRIGGERS: tuple[JobTrigger, ...] = ("manual", "api", "schedule", "backfill", "pipeline")
JOB_STATUSES = ("Created", "Pending", "InProgress", "Complete", "Failed", "Canceled")
BACKFILL_STATUSES = ("Running", "Complete", "Canceled")
REPROCESS_POLICIES = ("none", "failed", "all")
TASK_RUN_STATUSES = ("Created", "InProgress", "Complete", "Failed", "Canceled", "Skipped")
LOCK_POLICIES = ("wait", "skip")
IMPORT_RULE_KINDS = ("object", "value")

# Every table with an integer surrogate key says ``sqlite_autoincrement``:
# without AUTOINCREMENT SQLite hands out max(id) + 1, so a deleted row's id
# would go to the next row created and a stale client would act on that
# row. PostgreSQL's SERIAL sequences and MariaDB's AUTO_INCREMENT never
# hand an id out twice. Only ``instance`` (a single row with id 1) has none.


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always aware and in UTC in Python, whatever the database keeps.

    SQLite and MySQL have no time zones: they store naive UTC and this type
    puts ``tzinfo=UTC`` back when reading.
    """

    impl = _TIMESTAMP
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware datetimes only, converted to UTC (naive UTC for databases without zones)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """An aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class JSONDocument(TypeDecorator[Any]):
    """JSON; ``JSONB`` on PostgreSQL.

    A decorator rather than ``JSON().with_variant(postgresql.JSONB())``: that
    imports SQLAlchemy's PostgreSQL dialect package (its asyncpg, psycopg and
    pg8000 modules, 80 ms) in every process that touches the store, SQLite
    included; here it is imported by an engine that talks to PostgreSQL.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``JSONB`` on PostgreSQL, the generic JSON elsewhere."""
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


_JSON = JSONDocument()


class Base(DeclarativeBase):
    """Base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Instance(Base):
    """This Flowport instance: one row, written by ``flowport init``.

    Packages record the exporting instance's ``uuid`` so an import can tell
    where a package came from.
    """

    __tablename__ = "instance"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, default=1)
    uuid: Mapped[_uuid.UUID] = mapped_column(Uuid(), unique=True, default=_uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Connection(Base):
    """A stored connection. ``secret`` is the Fernet token of the JSON secrets, never plaintext."""

    __tablename__ = "connections"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[_uuid.UUID] = mapped_column(Uuid(), unique=True, default=_uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    vendor: Mapped[str] = mapped_column(String(32))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(_JSON, default=dict)
    ssl: Mapped[bool] = mapped_column(Boolean, default=False)
    credential_type: Mapped[str] = mapped_column(String(64), default="basic")
    username: Mapped[str | None] = mapped_column(String(255))
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    is_global: Mapped[bool] = mapped_column(Boolean, default=False)
    # The seed's flags: whether users of the connection share its credentials, and
    # whether column types read through it are taken as they come (no inference).
    credentials_shared: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    disable_type_inference: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        # Never the secret blob: a repr ends up in logs and tracebacks.
        return f"Connection(id={self.id!r}, uuid={self.uuid!r}, name={self.name!r}, vendor={self.vendor!r})"


class User(Base):
    """A person or program that signs in. ``password_hash`` is an argon2 hash, never the password."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __repr__(self) -> str:
        # Never the hash: a repr ends up in logs and tracebacks.
        return f"User(id={self.id!r}, name={self.name!r}, role={self.role!r})"


class ApiToken(Base):
    """An API token of a user. Only the SHA-256 of the token is kept; ``prefix`` is for display."""

    __tablename__ = "api_tokens"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return (
            f"ApiToken(id={self.id!r}, user_id={self.user_id!r}, name={self.name!r}, prefix={self.prefix!r})"
        )


class Project(Base):
    """A namespace owning flows and parameter sets; ``default`` always exists."""

    __tablename__ = "projects"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)


class FlowRecord(Base):
    """A stored flow: its full ``flowport.flow/1`` document plus the columns lists filter on.

    ``name``, ``description``, ``type`` and ``uuid`` repeat the document's
    values (kept equal by the services) so that lists need not parse documents.
    """

    __tablename__ = "flows"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        UniqueConstraint("project_id", "uuid"),
        CheckConstraint(_one_of("type", FLOW_TYPES), name="type"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[_uuid.UUID] = mapped_column(Uuid())
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(16), default="batch")
    document: Mapped[dict[str, Any]] = mapped_column(_JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"FlowRecord(id={self.id!r}, project_id={self.project_id!r}, name={self.name!r})"


class ParameterSet(Base):
    """Named parameter values of a project; flows use them as ``${set__parameter}``."""

    __tablename__ = "parameter_sets"
    __table_args__ = (UniqueConstraint("project_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    parameters: Mapped[dict[str, str]] = mapped_column(_JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)


class JobGroup(Base):
    """One request to run something (a flow now, a deployment later) and its overall outcome.

    ``cancel_requested_at`` is the flag a worker polls to stop a running job.
    The flow may be deleted afterwards: the history stays, ``flow_id`` becomes NULL.
    """

    __tablename__ = "job_groups"
    __table_args__ = (
        CheckConstraint(_one_of("status", JOB_STATUSES), name="status"),
        CheckConstraint(_one_of("triggered_by", JOB_TRIGGERS), name="triggered_by"),
        # One run per schedule, logical date and attempt, whatever restarts or redeliveries happen
        # (a backfill that reprocesses a date makes the next attempt).
        UniqueConstraint("schedule_id", "logical_date", "attempt"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flow_id: Mapped[int | None] = mapped_column(ForeignKey("flows.id", ondelete="SET NULL"), index=True)
    deployment_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL"), index=True
    )
    #: What started it: manual (a user), api (a token), schedule, backfill, pipeline.
    # ("trigger" is a reserved word in MariaDB.)
    triggered_by: Mapped[str] = mapped_column(String(16), default="manual", server_default="manual")
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), index=True
    )
    #: Airflow's logical date: the start of the data interval the run is for.
    logical_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data_interval_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data_interval_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Written by the worker while it runs the job; a stale one means the worker is gone (lease).
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[str] = mapped_column(String(16), index=True, default="Created")
    parameters: Mapped[dict[str, Any]] = mapped_column(_JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(_JSON)
    error: Mapped[str | None] = mapped_column(_LONG_TEXT)
    session_id: Mapped[_uuid.UUID] = mapped_column(Uuid(), unique=True, default=_uuid.uuid4)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    creator_id: Mapped[int | None] = mapped_column(Integer)
    #: Set when the job group is a run of an orchestration pipeline (its tasks are ``task_runs``).
    pipeline_id: Mapped[int | None] = mapped_column(
        ForeignKey("pipelines.id", ondelete="SET NULL"), index=True
    )
    #: The pipeline run that started this job (a flow or deployment task), if any.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("job_groups.id", ondelete="SET NULL"), index=True
    )
    #: Which try of the job this is: a retry after its worker was lost starts the next one.
    tries: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: Where the current try runs: the worker's name, its host and the process running the job.
    worker: Mapped[str | None] = mapped_column(String(255))
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"JobGroup(id={self.id!r}, flow_id={self.flow_id!r}, status={self.status!r})"


class Job(Base):
    """One execution of a flow inside a job group: status, per-stage metrics, log lines."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", JOB_STATUSES), name="status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_group_id: Mapped[int] = mapped_column(ForeignKey("job_groups.id", ondelete="CASCADE"), index=True)
    flow_id: Mapped[int | None] = mapped_column(ForeignKey("flows.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="Created")
    # One {"stage": name, "inputRecords": ...} per stage, in the flow's order
    # (a list: PostgreSQL's JSONB would not keep the order of an object's keys).
    metrics: Mapped[list[dict[str, Any]]] = mapped_column(_JSON, default=list)
    run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(_LONG_TEXT)
    log: Mapped[str] = mapped_column(_LONG_TEXT, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, job_group_id={self.job_group_id!r}, status={self.status!r})"


class Deployment(Base):
    """A named container of releases and import rules that runs its active release.

    ``project_id`` is the deployment's own project (named ``deployment:<id>``),
    created with it: every release's flows are stored there, and parameter
    sets created there apply to every release.
    """

    __tablename__ = "deployments"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"Deployment(id={self.id!r}, name={self.name!r}, project_id={self.project_id!r})"


class Release(Base):
    """One package imported into a deployment; immutable except ``active``.

    ``flows`` lists the stored flows the import created, in the package's
    order, as ``{"id", "uuid", "name"}`` with the package's uuid and name;
    the first is the primary flow (``primary_flow_id``, NULL once that flow
    is deleted). ``package`` is the uploaded ZIP, byte for byte, for audit
    and re-import; ``report`` is what the import answered.
    """

    __tablename__ = "releases"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    package_uuid: Mapped[_uuid.UUID] = mapped_column(Uuid())
    package_sha256: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    primary_flow_id: Mapped[int | None] = mapped_column(ForeignKey("flows.id", ondelete="SET NULL"))
    flows: Mapped[list[dict[str, Any]]] = mapped_column(_JSON, default=list)
    report: Mapped[dict[str, Any]] = mapped_column(_JSON, default=dict)
    package: Mapped[bytes] = mapped_column(_LONG_BLOB)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        # Never the package bytes: a repr ends up in logs and tracebacks.
        return f"Release(id={self.id!r}, deployment_id={self.deployment_id!r}, active={self.active!r})"


class ImportRuleRecord(Base):
    """One import rule of a deployment: its kind, its place in the order, and the rule as JSON."""

    __tablename__ = "import_rules"
    __table_args__ = (
        UniqueConstraint("deployment_id", "kind", "position"),
        CheckConstraint(_one_of("kind", IMPORT_RULE_KINDS), name="kind"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)
    rule: Mapped[dict[str, Any]] = mapped_column(_JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)


class StageStateRecord(Base):
    """What one stage of a flow keeps between runs (an offset, a checkpoint), keyed by flow uuid and stage.

    The flow's uuid, not its id: the state of a stage follows the flow's
    identity across renames, and two flows with a stage of the same name
    never share it. ``partition`` separates the state of the partitions of
    one stage (empty for a stage that is not partitioned).
    """

    __tablename__ = "stage_state"

    flow_uuid: Mapped[_uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    stage_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[str] = mapped_column(String(255), primary_key=True, default="")
    state: Mapped[dict[str, Any]] = mapped_column(_JSON, default=dict)
    run_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobEvent(Base):
    """The outbox of job status changes: one row per transition, written in the same transaction.

    Webhooks, the UI's live view and the scheduler read it (in id order);
    nothing changes a job's status without writing one.
    """

    __tablename__ = "job_events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_group_id: Mapped[int] = mapped_column(ForeignKey("job_groups.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ScheduleRecord(Base):
    """A schedule: a cron or preset in a timezone that runs a flow, a deployment or a pipeline.

    ``next_logical_date`` is the scheduler's cursor (the start of the next
    interval to run, None once ``end_date`` or ``@once`` is done) and
    ``next_run_at`` the wall-clock time that interval ends and its run may
    start; the tick reads only schedules whose ``next_run_at`` has passed.
    """

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint(
            "flow_id IS NOT NULL OR deployment_id IS NOT NULL OR pipeline_id IS NOT NULL", name="target"
        ),
        CheckConstraint(_one_of("lock_policy", LOCK_POLICIES), name="lock_policy"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    flow_id: Mapped[int | None] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"), index=True)
    deployment_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    #: An orchestration pipeline (no foreign key until pipelines are stored).
    pipeline_id: Mapped[int | None] = mapped_column(Integer, index=True)
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    catchup: Mapped[bool] = mapped_column(Boolean, default=False)
    max_active_runs: Mapped[int] = mapped_column(Integer, default=1)
    #: A pipeline run whose task locks are held: wait (try again next tick) or skip the logical date.
    lock_policy: Mapped[str] = mapped_column(String(8), default="wait", server_default="wait")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    parameters: Mapped[dict[str, Any]] = mapped_column(_JSON, default=dict)
    next_logical_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    #: Why the last due run could not start (an invalid flow, a missing release); None when it did.
    last_error: Mapped[str | None] = mapped_column(_LONG_TEXT)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)


class Backfill(Base):
    """Runs of a schedule for past logical dates, created in order under their own ``max_active_runs``."""

    __tablename__ = "backfills"
    __table_args__ = (
        CheckConstraint(_one_of("status", BACKFILL_STATUSES), name="status"),
        CheckConstraint(_one_of("reprocess", REPROCESS_POLICIES), name="reprocess"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    start_date: Mapped[datetime] = mapped_column(UTCDateTime())
    end_date: Mapped[datetime] = mapped_column(UTCDateTime())
    reprocess: Mapped[str] = mapped_column(String(8), default="none")
    max_active_runs: Mapped[int] = mapped_column(Integer, default=1)
    #: The next logical date to consider; None once every date is created.
    next_logical_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="Running", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)


class Lease(Base):
    """A named lease in the metadata store (the active scheduler): held by one holder until it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WorkerRecord(Base):
    """A ``flowport worker`` (a Celery worker) that serves the instance: its queues and heartbeat.

    Written by the worker itself when it starts, every few seconds while it
    runs, and when it stops; what it is running now is the job groups whose
    ``worker`` is its name.
    """

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(_JSON, default=list)
    concurrency: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


DELIVERY_STATUSES = ("pending", "delivered", "failed")


class WebhookRecord(Base):
    """A webhook subscription: where to POST which events, signed with its secret.

    ``secret`` is the Fernet token of the signing secret (the instance's key,
    as for connection credentials), never plaintext; ``events`` lists event
    names (``job.failed``) or patterns (``pipeline.*``).
    """

    __tablename__ = "webhooks"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(_JSON, default=list)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        # Never the secret: a repr ends up in logs and tracebacks.
        return f"WebhookRecord(id={self.id!r}, name={self.name!r}, enabled={self.enabled!r})"


class WebhookDelivery(Base):
    """One event for one webhook: the payload as sent, its status, attempts and the last answer.

    ``event_id`` is the ``job_events`` row it comes from (None for a test
    ping); one delivery per webhook and event, whatever restarts happen.
    ``attempt_log`` keeps one ``{"at", "statusCode", "error"}`` per attempt.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_one_of("status", DELIVERY_STATUSES), name="status"),
        UniqueConstraint("webhook_id", "event_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    #: The job event it reports (no foreign key: the delivery log outlives deleted job groups).
    event_id: Mapped[int | None] = mapped_column(Integer)
    event_name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(_JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(_LONG_TEXT)
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(_JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxCursor(Base):
    """How far one reader of the ``job_events`` outbox got: the last event id it processed."""

    __tablename__ = "outbox_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PipelineRecord(Base):
    """A stored orchestration pipeline: its ``flowport.pipeline/1`` document and the columns lists use."""

    __tablename__ = "pipelines"
    __table_args__ = (UniqueConstraint("project_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[dict[str, Any]] = mapped_column(_JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)


class TaskRun(Base):
    """One task of one pipeline run: its status, tries, the job it started and the tail of its output."""

    __tablename__ = "task_runs"
    __table_args__ = (
        CheckConstraint(_one_of("status", TASK_RUN_STATUSES), name="status"),
        UniqueConstraint("job_group_id", "task"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_group_id: Mapped[int] = mapped_column(ForeignKey("job_groups.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="Created")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The job group a flow or deployment task started (no foreign key: either may be deleted apart).
    child_group_id: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(_LONG_TEXT)
    log: Mapped[str] = mapped_column(_LONG_TEXT, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TaskLock(Base):
    """A held task lock (the seed's ``TaskLock``): one row per lock name, so at most one holder.

    The holder is a pipeline run (a job group); its lock rows go when it
    reaches a final status (in the same transaction) or when it is deleted.
    """

    __tablename__ = "task_locks"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_group_id: Mapped[int] = mapped_column(ForeignKey("job_groups.id", ondelete="CASCADE"), index=True)
    pipeline_id: Mapped[int | None] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoreChange(Base):
    """How often the rows behind a topic changed: a counter the database's own triggers move.

    Migration 0012 creates a trigger on each table of a topic (``flows``:
    ``flows`` and ``projects``) that adds one to the topic's ``generation``
    in the transaction of every insert, update and delete, whoever writes
    (any process, any interface, a migration). A reader that saw the same
    generation before may answer from what it read then.
    """

    __tablename__ = "store_changes"

    topic: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
