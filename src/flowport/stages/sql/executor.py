"""SQL Executor: statements run after the run's destinations committed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import field_validator

from flowport.connections.drivers import connect_dbapi
from flowport.connections.spec import ConnectionSpec
from flowport.errors import StageError
from flowport.model.datasets import airflow_context, render_sql_template
from flowport.plugins.contract import Executor, setting
from flowport.stages.sql._common import SqlConnectionConfig, connection_spec, driver_errors
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql.vendors import vendor_class

__all__ = ["SqlExecutor", "SqlExecutorConfig"]

# How much of a failing statement the error message quotes.
_STATEMENT_CHARS = 200


class SqlExecutorConfig(SqlConnectionConfig):
    """Settings of the SQL Executor."""

    statements: list[str] = setting(
        label="Statements",
        description="SQL statements, one per item, run in order after the data was committed "
        "(flow parameters are already substituted).",
        min_length=1,
    )
    transaction: bool = setting(
        True,
        label="One transaction",
        description="Run every statement in one transaction: all or nothing. Off: each statement "
        "commits on its own (needed for e.g. VACUUM). MariaDB commits DDL implicitly whatever this says.",
    )

    template: bool = setting(
        False,
        label="Templated SQL",
        description="Render each statement as a Jinja template (sandboxed) with Airflow's context for the "
        "data interval of `template_context`: ds, ds_nodash, ts, data_interval_start/end, params, macros.",
    )
    template_context: dict[str, str] = setting(
        {},
        label="Template interval",
        description='{"data_interval_start": "${data_interval_start}", "data_interval_end": '
        '"${data_interval_end}"}: ISO timestamps, usually the run\'s parameters.',
    )
    template_params: dict[str, Any] = setting(
        {}, label="Template params", description="What `params` holds in the templates."
    )

    @field_validator("statements")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        for index, statement in enumerate(value, start=1):
            if not statement.strip():
                raise ValueError(f"statement {index} is empty")
        return value


class SqlExecutor(Executor[SqlExecutorConfig]):
    """Runs SQL statements once the run's data is committed (refresh a view, grant, analyze, ...).

    Statements are sent as written, one per driver call, through the
    vendor's standard DB-API driver. With ``transaction`` a failing
    statement rolls back the ones before it.
    """

    name = "sql_executor"
    label = "SQL Executor"
    description = "Runs SQL statements on a database after the run's data was written."
    config_model = SqlExecutorConfig
    restrictions = frozenset({"execute-sql", "network"})

    _vendor: type[SqlConnection]

    def open(self) -> None:
        """Connect (in autocommit unless the statements run in one transaction)."""
        self._spec: ConnectionSpec = connection_spec(self.context, self.config.connection)
        stage = self.context.stage_name
        with driver_errors(stage, self._spec, f"cannot connect to '{self._spec.name}'"):
            vendor = self._vendor = vendor_class(self._spec)
            autocommit = vendor.capabilities.explicit_transactions or not self.config.transaction
            self._raw: Any = connect_dbapi(self._spec, autocommit=autocommit, any_thread=True)

    def close(self) -> None:
        """Close the connection."""
        raw = getattr(self, "_raw", None)
        if raw is not None:
            self._raw = None
            raw.close()

    def _begin(self) -> None:
        self._vendor.dbapi_begin(self._raw)

    def _commit(self) -> None:
        self._vendor.dbapi_commit(self._raw)

    def _rollback(self) -> None:
        try:
            self._vendor.dbapi_rollback(self._raw)
        except Exception as exc:  # the statement's own error is the one to report
            self.context.logger.warning("rollback failed: %s", self._spec.scrub(str(exc)))

    def _run(self, statement: str) -> None:
        self._vendor.dbapi_run(self._raw, statement)

    def _statements(self) -> list[str]:
        if not self.config.template:
            return list(self.config.statements)
        interval = self.config.template_context
        try:
            start = datetime.fromisoformat(interval["data_interval_start"])
            end = datetime.fromisoformat(interval.get("data_interval_end") or interval["data_interval_start"])
        except (KeyError, ValueError) as exc:
            raise StageError(
                self.context.stage_name,
                "template_context needs ISO timestamps data_interval_start and data_interval_end "
                f"(got {dict(interval)!r}): {exc}",
            ) from None
        context = airflow_context(start, end, self.config.template_params)
        rendered = []
        for index, statement in enumerate(self.config.statements, start=1):
            try:
                rendered.append(render_sql_template(statement, context))
            except Exception as exc:  # a template error, or a macro raising
                raise StageError(
                    self.context.stage_name,
                    f"statement {index} could not be rendered: {type(exc).__name__}: {exc}",
                ) from None
        return rendered

    def execute(self) -> None:
        """Run the statements in order."""
        if getattr(self, "_raw", None) is None:
            self.open()
        stage = self.context.stage_name
        transaction = self.config.transaction
        if transaction:
            with driver_errors(stage, self._spec, "cannot start a transaction"):
                self._begin()
        for index, statement in enumerate(self._statements(), start=1):
            shown = " ".join(statement.split())
            if len(shown) > _STATEMENT_CHARS:
                shown = shown[:_STATEMENT_CHARS] + "…"
            try:
                with driver_errors(stage, self._spec, f"statement {index} ({shown}) failed"):
                    self._run(statement)
            except StageError:
                if transaction:
                    self._rollback()
                raise
        if transaction:
            with driver_errors(stage, self._spec, "commit failed"):
                self._commit()
