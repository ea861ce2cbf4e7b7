"""Orchestration pipelines: their documents, task runs, task locks; job groups know their pipeline.

``pipelines`` hold a ``flowport.pipeline/1`` document per project and name. A
pipeline run is a job group with ``pipeline_id`` set (so it shares the state
machine, the ``job_events`` outbox, heartbeat leases and one run per
schedule and logical date); ``task_runs`` keep one row per task of a run, and
``parent_id`` links a flow's job group to the pipeline run that started it.
``task_locks`` has one row per held lock name, so at most one run holds it.
Schedules get a ``lock_policy`` (wait or skip) for pipeline runs whose
locks are held.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    """Create pipelines, task_runs and task_locks; link job groups; add schedules.lock_policy."""
    op.create_table(
        "pipelines",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("document", _JSON, nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.Column("updater_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_pipelines_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipelines")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_pipelines_project_id_name")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_pipelines_project_id"), "pipelines", ["project_id"])
    with op.batch_alter_table(
        "job_groups", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(sa.Column("pipeline_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_job_groups_pipeline_id_pipelines"),
            "pipelines",
            ["pipeline_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            batch.f("fk_job_groups_parent_id_job_groups"),
            "job_groups",
            ["parent_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(batch.f("ix_job_groups_pipeline_id"), ["pipeline_id"])
        batch.create_index(batch.f("ix_job_groups_parent_id"), ["parent_id"])
    op.create_table(
        "task_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_group_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("child_group_id", sa.Integer(), nullable=True),
        sa.Column("message", _LONG_TEXT, nullable=True),
        sa.Column("log", _LONG_TEXT, nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("started_at", _TIMESTAMP, nullable=True),
        sa.Column("finished_at", _TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('Created', 'InProgress', 'Complete', 'Failed', 'Canceled', 'Skipped')",
            name=op.f("ck_task_runs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["job_group_id"],
            ["job_groups.id"],
            name=op.f("fk_task_runs_job_group_id_job_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
        sa.UniqueConstraint("job_group_id", "task", name=op.f("uq_task_runs_job_group_id_task")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_task_runs_job_group_id"), "task_runs", ["job_group_id"])
    op.create_table(
        "task_locks",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("job_group_id", sa.Integer(), nullable=False),
        sa.Column("pipeline_id", sa.Integer(), nullable=True),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("acquired_at", _TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_group_id"],
            ["job_groups.id"],
            name=op.f("fk_task_locks_job_group_id_job_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_task_locks")),
    )
    op.create_index(op.f("ix_task_locks_job_group_id"), "task_locks", ["job_group_id"])
    with op.batch_alter_table(
        "schedules", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(sa.Column("lock_policy", sa.String(8), nullable=False, server_default="wait"))
        batch.create_check_constraint(batch.f("ck_schedules_lock_policy"), "lock_policy IN ('wait', 'skip')")


def downgrade() -> None:
    """Drop what :func:`upgrade` created."""
    with op.batch_alter_table(
        "schedules", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint(batch.f("ck_schedules_lock_policy"), type_="check")
        batch.drop_column("lock_policy")
    op.drop_table("task_locks")
    op.drop_table("task_runs")
    with op.batch_alter_table(
        "job_groups", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint(batch.f("fk_job_groups_parent_id_job_groups"), type_="foreignkey")
        batch.drop_constraint(batch.f("fk_job_groups_pipeline_id_pipelines"), type_="foreignkey")
        batch.drop_index(batch.f("ix_job_groups_parent_id"))
        batch.drop_index(batch.f("ix_job_groups_pipeline_id"))
        batch.drop_column("parent_id")
        batch.drop_column("pipeline_id")
    op.drop_table("pipelines")
