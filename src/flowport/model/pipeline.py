"""The pipeline document: an orchestration DAG of tasks (``flowport.pipeline/1``).

A pipeline runs tasks — a stored flow, a deployment's active release, a shell
command, a dbt command, SQL statements on a connection, an HTTP call — in the
order their ``after`` lists give, independent tasks in parallel. Pure: these
models validate a document (unknown keys, unknown or cyclic dependencies,
duplicate names, parameter references) and answer questions about it
(order, downstream tasks, lock names, restrictions); running it is the
services' business.

Sketch::

    {"format": "flowport.pipeline/1", "name": "nightly",
     "parameters": {"target": "dev"}, "continue_on_failure": false,
     "tasks": [
       {"name": "pull", "type": "shell", "command": ["git", "pull"], "cwd": "repo"},
       {"name": "load", "type": "flow", "flow": "Wrangle Orders", "after": ["pull"]},
       {"name": "models", "type": "dbt", "command": "build", "project_dir": "repo/dbt",
        "targets": {"dev": {"connection": "warehouse", "schema": "dev"}}, "after": ["load"]},
       {"name": "notify", "type": "http", "url": "https://hooks.example.com/x", "after": ["models"]}]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flowport.errors import PipelineDocumentError
from flowport.model.document import describe_validation_error, document_from_text
from flowport.model.parameters import find_references

__all__ = [
    "BUILTIN_PARAMETERS",
    "DBT_COMMANDS",
    "PIPELINE_FORMAT",
    "TASK_TYPES",
    "DbtTarget",
    "DbtTask",
    "DeploymentTask",
    "EmptyTask",
    "FlowTask",
    "HttpTask",
    "Pipeline",
    "PipelineDocumentError",
    "SecretRef",
    "ShellTask",
    "SqlTask",
    "Task",
    "pipeline_from_dict",
    "pipeline_from_text",
    "pipeline_json_schema",
    "pipeline_to_dict",
]

PIPELINE_FORMAT: Final = "flowport.pipeline/1"
TASK_TYPES = ("flow", "deployment", "shell", "dbt", "sql", "http", "empty")
DBT_COMMANDS = ("deps", "run", "test", "build", "seed", "compile", "debug", "snapshot", "source")
#: Parameters every run has (a scheduled run's interval; empty strings for a manual one) and ``target``.
BUILTIN_PARAMETERS = frozenset(
    {"ds", "ds_nodash", "ts", "logical_date", "data_interval_start", "data_interval_end", "target", "run_id"}
)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TaskBase(_Strict):
    name: str = Field(pattern=_NAME, description="Unique in the pipeline: letters, digits, _ . -")
    after: list[str] = Field(default_factory=list, description="Tasks that must complete first")
    timeout: float | None = Field(None, gt=0, description="Seconds before a try is stopped and fails")
    retries: int = Field(0, ge=0, le=20, description="Tries after the first one fails")
    retry_delay: float = Field(10.0, ge=0, le=86400, description="Seconds before the first retry")
    retry_backoff: float = Field(2.0, ge=1, le=10, description="Each further retry waits this times longer")
    lock: str | bool | None = Field(
        None,
        description="A task lock name held while the run lasts; true: the task's default lock "
        "(flow, deployment and dbt tasks have one), false: none",
    )

    def default_lock(self) -> str | None:
        """The lock a task of this type holds unless it says otherwise."""
        return None

    def lock_name(self) -> str | None:
        """The task lock this task holds while its run lasts (None: none)."""
        if self.lock is False:
            return None
        if isinstance(self.lock, str):
            return self.lock
        default = self.default_lock()
        if self.lock is True and default is None:
            return f"task:{self.name}"
        return default

    def restrictions(self) -> frozenset[str]:
        """The permissions (restricted-stage vocabulary) creating or running this task needs."""
        return frozenset()

    def retry_wait(self, attempt: int) -> float:
        """Seconds to wait after try ``attempt`` (1-based) failed: exponential backoff."""
        return float(self.retry_delay * self.retry_backoff ** max(attempt - 1, 0))


class FlowTask(_TaskBase):
    """Run a stored flow of the pipeline's project (by name or id) and wait for its job."""

    type: Literal["flow"]
    flow: str | int = Field(description="The flow's name in the pipeline's project, or its id")
    parameters: dict[str, str] = Field(default_factory=dict)

    def default_lock(self) -> str | None:
        """Locked by the flow it runs."""
        return f"flow:{self.flow}"


class DeploymentTask(_TaskBase):
    """Run a deployment's active release (by name or id) and wait for its job."""

    type: Literal["deployment"]
    deployment: str | int
    parameters: dict[str, str] = Field(default_factory=dict)

    def default_lock(self) -> str | None:
        """Locked by the deployment it runs."""
        return f"deployment:{self.deployment}"


class SecretRef(_Strict):
    """A secret of a stored connection (``password``, ``token``, ...) injected as an environment variable."""

    connection: str = Field(min_length=1, description="The connection's name, id or uuid")
    key: str = Field("password", min_length=1, description="Which credential: password, token, ...")


class ShellTask(_TaskBase):
    """Run a program (``git pull``) in a folder inside the file roots; its output is kept, secrets masked."""

    type: Literal["shell"]
    command: list[str] | str = Field(
        description="The program and its arguments (a list), or one line run by /bin/sh -c"
    )
    cwd: str | None = Field(None, description="Working folder, inside the file roots (default: data folder)")
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, SecretRef] = Field(
        default_factory=dict, description="Variable name -> connection secret"
    )

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | str) -> list[str] | str:
        if (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
            raise ValueError("the command is empty")
        return value

    @field_validator("env", "secrets")
    @classmethod
    def _env_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(_ENV_NAME, name):
                raise ValueError(f"'{name}' is not a valid environment variable name")
        return value

    def restrictions(self) -> frozenset[str]:
        """A program runs as the server's user: execute-code."""
        return frozenset({"execute-code"})


class DbtTarget(_Strict):
    """A dbt target: the connection whose credentials make the profile, and the schema models go to."""

    connection: str = Field(min_length=1)
    schema_: str = Field(alias="schema", min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    threads: int = Field(1, ge=1, le=64)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DbtTask(_TaskBase):
    """Run a dbt command (real dbt-core) on a project folder with a profile generated from a connection.

    The target is the run's ``target`` parameter (``dev`` unless the run or
    the pipeline says otherwise), one of ``targets``.
    """

    type: Literal["dbt"]
    command: Literal["deps", "run", "test", "build", "seed", "compile", "debug", "snapshot", "source"]
    project_dir: str = Field(min_length=1, description="The dbt project folder, inside the file roots")
    targets: dict[str, DbtTarget] = Field(min_length=1)
    args: list[str] = Field(default_factory=list, description="More arguments: --select, --full-refresh ...")

    def default_lock(self) -> str | None:
        """Locked by the dbt project it runs."""
        return f"dbt:{self.project_dir}"

    def restrictions(self) -> frozenset[str]:
        """dbt runs Jinja and macros, and connects: execute-code, execute-sql, network."""
        return frozenset({"execute-code", "execute-sql", "network"})


class SqlTask(_TaskBase):
    """Run SQL statements on a connection in one transaction (all or nothing)."""

    type: Literal["sql"]
    connection: str = Field(min_length=1)
    statements: list[str] = Field(min_length=1)

    @field_validator("statements")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        for index, statement in enumerate(value, start=1):
            if not statement.strip():
                raise ValueError(f"statement {index} is empty")
        return value

    def restrictions(self) -> frozenset[str]:
        """SQL on a database: execute-sql, network."""
        return frozenset({"execute-sql", "network"})


class HttpTask(_TaskBase):
    """Call a URL and check the answer's status."""

    type: Literal["http"]
    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    json_body: Any = Field(None, alias="json")
    expect_status: list[int] = Field(
        default_factory=lambda: [200, 201, 202, 204], description="Statuses that mean success"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_body(self) -> HttpTask:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give 'body' or 'json', not both")
        return self

    def restrictions(self) -> frozenset[str]:
        """A request leaves the server: network."""
        return frozenset({"network"})


class EmptyTask(_TaskBase):
    """Does nothing: a join point or a marker in the graph (Airflow's ``EmptyOperator``)."""

    type: Literal["empty"]


Task = Annotated[
    FlowTask | DeploymentTask | ShellTask | DbtTask | SqlTask | HttpTask | EmptyTask,
    Field(discriminator="type"),
]


class Pipeline(_Strict):
    """A pipeline: tasks with dependencies, parameters with defaults, a failure policy."""

    format: Literal["flowport.pipeline/1"] = PIPELINE_FORMAT
    name: str = Field(min_length=1, max_length=255)
    description: str = ""
    parameters: dict[str, str] = Field(default_factory=dict, description="Defaults; a run may override them")
    continue_on_failure: bool = Field(
        False, description="Let independent tasks go on after a failure (false: stop starting tasks)"
    )
    max_parallel: int = Field(4, ge=1, le=64, description="Tasks running at once")
    tasks: list[Task] = Field(min_length=1)

    @model_validator(mode="after")
    def _graph(self) -> Pipeline:
        problems: list[str] = []
        names = [t.name for t in self.tasks]
        seen: set[str] = set()
        for index, name in enumerate(names):
            if name in seen:
                problems.append(
                    f"tasks[{index}].name: '{name}' is used by another task; names must be unique"
                )
            seen.add(name)
        for index, task in enumerate(self.tasks):
            for dep in task.after:
                if dep == task.name:
                    problems.append(f"tasks[{index}].after: task '{task.name}' cannot wait for itself")
                elif dep not in seen:
                    problems.append(
                        f"tasks[{index}].after: task '{task.name}' waits for '{dep}', which is not a task "
                        f"of this pipeline (tasks: {', '.join(names)})"
                    )
        if not problems:
            cycle = _find_cycle({t.name: list(t.after) for t in self.tasks})
            if cycle:
                problems.append("tasks: the dependencies form a cycle: " + " -> ".join(cycle))
        declared = set(self.parameters) | BUILTIN_PARAMETERS
        for index, task in enumerate(self.tasks):
            data = task.model_dump(exclude={"name", "after", "type"})
            unknown = sorted(find_references(data) - declared)
            if unknown:
                problems.append(
                    f"tasks[{index}]: task '{task.name}' refers to "
                    + ", ".join("${" + u + "}" for u in unknown)
                    + "; declare "
                    + ("it" if len(unknown) == 1 else "them")
                    + " in the pipeline's parameters"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def task(self, name: str) -> Task:
        """The task called ``name`` (KeyError otherwise)."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def dependents(self) -> dict[str, list[str]]:
        """Task name -> the tasks that wait for it directly (in the document's order)."""
        found: dict[str, list[str]] = {t.name: [] for t in self.tasks}
        for task in self.tasks:
            for dep in task.after:
                found[dep].append(task.name)
        return found

    def order(self) -> list[str]:
        """Task names in a dependency order (Kahn's algorithm; among ready tasks, the document's order)."""
        waiting = {t.name: len(set(t.after)) for t in self.tasks}
        dependents = self.dependents()
        ready = [t.name for t in self.tasks if waiting[t.name] == 0]
        done: list[str] = []
        while ready:
            name = ready.pop(0)
            done.append(name)
            for child in dict.fromkeys(dependents[name]):
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        return done

    def downstream(self, name: str) -> set[str]:
        """Every task that waits, directly or not, for ``name``."""
        dependents = self.dependents()
        found: set[str] = set()
        frontier = list(dependents[name])
        while frontier:
            child = frontier.pop()
            if child not in found:
                found.add(child)
                frontier.extend(dependents[child])
        return found

    def locks(self) -> dict[str, str]:
        """Lock name -> the (first) task holding it, for every task that holds one."""
        held: dict[str, str] = {}
        for task in self.tasks:
            name = task.lock_name()
            if name is not None:
                held.setdefault(name, task.name)
        return held

    def restrictions(self) -> frozenset[str]:
        """Every permission the pipeline's own tasks need (a flow task's flow is checked apart)."""
        return frozenset().union(*(t.restrictions() for t in self.tasks))


def _find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A cycle of ``graph`` (node -> what it waits for) as ``[a, b, ..., a]``, or [] (iterative DFS)."""
    state: dict[str, int] = {}
    for root in graph:
        if root in state:
            continue
        path: list[str] = [root]
        stack = [iter(graph.get(root, ()))]
        state[root] = 1
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append(iter(graph.get(dep, ())))
    return []


def pipeline_from_dict(data: Any, *, source: str = "pipeline") -> Pipeline:
    """Build a pipeline from parsed JSON/YAML; PipelineDocumentError lists every problem with where it is."""
    if not isinstance(data, dict):
        raise PipelineDocumentError(
            f"{source}: a pipeline document must be a JSON/YAML object, got {type(data).__name__}"
        )
    fmt = data.get("format", PIPELINE_FORMAT)
    if fmt != PIPELINE_FORMAT:
        raise PipelineDocumentError(
            f"{source}: unsupported pipeline format '{fmt}'; this Flowport reads '{PIPELINE_FORMAT}'"
        )
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        lines: list[str] = []
        for line in describe_validation_error(exc):
            # The graph check reports several problems in one message.
            head, _, rest = line.partition(": Value error, ")
            if not rest:
                lines.append(line)
            elif head == "(document)":
                lines.extend(rest.split("; "))
            else:
                lines.append(f"{head}: {rest}")
        raise PipelineDocumentError(
            f"{source}: invalid pipeline document:\n  " + "\n  ".join(lines), details=lines
        ) from None


def pipeline_from_text(text: str, *, source: str = "pipeline") -> Pipeline:
    """Parse a JSON or YAML pipeline document."""
    data = document_from_text(text, source=source, error=PipelineDocumentError)
    return pipeline_from_dict(data, source=source)


def pipeline_to_dict(pipeline: Pipeline) -> dict[str, Any]:
    """The pipeline as plain JSON-compatible data (defaults left out, so documents stay short)."""
    return pipeline.model_dump(mode="json", by_alias=True, exclude_defaults=True) | {
        "format": PIPELINE_FORMAT,
        "name": pipeline.name,
    }


def pipeline_json_schema() -> dict[str, Any]:
    """The JSON Schema of the pipeline document."""
    schema = Pipeline.model_json_schema(by_alias=True)
    schema["title"] = f"Flowport pipeline ({PIPELINE_FORMAT})"
    return schema
