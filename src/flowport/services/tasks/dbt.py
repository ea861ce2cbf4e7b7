"""dbt tasks: real dbt-core with a ``profiles.yml`` made at run time from a Flowport connection.

The run's ``target`` parameter (``dev`` unless the run says otherwise)
picks one of the task's ``targets``; its connection gives host, port, user
and database, its ``schema`` where models go. The profile is written to a
private temporary folder and deleted afterwards; the password never is in
it: dbt reads it from an environment variable (``env_var``), and it is
masked in the task's log. The dbt executable is ``FLOWPORT_DBT``, else the
``dbt`` beside Flowport's Python, else the one on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from flowport.model.pipeline import DbtTask
from flowport.services.tasks.context import TaskContext
from flowport.services.tasks.shell import run_process

__all__ = ["DBT_ENV", "dbt_executable", "run_dbt_task"]

DBT_ENV = "FLOWPORT_DBT"
_PASSWORD_VARIABLE = "FLOWPORT_DBT_PASSWORD"
_ADAPTERS = {"postgresql": "postgres", "redshift": "redshift"}


def dbt_executable() -> str | None:
    """The dbt program this instance uses, or None when there is none."""
    configured = os.environ.get(DBT_ENV)
    if configured:
        return configured
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    return shutil.which("dbt")


def _profile_name(project: Path, context: TaskContext) -> str:
    try:
        data: Any = yaml.safe_load((project / "dbt_project.yml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise context.fail(f"'{project}' is not a dbt project: it has no dbt_project.yml") from None
    except yaml.YAMLError as exc:
        raise context.fail(f"{project / 'dbt_project.yml'} is not valid YAML: {exc}") from None
    name = data.get("profile") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise context.fail(f"{project / 'dbt_project.yml'} names no 'profile'")
    return name


def run_dbt_task(task: DbtTask, context: TaskContext) -> str:
    """Run ``dbt <command>`` for the run's target."""
    target = context.values.get("target") or "dev"
    if target not in task.targets:
        raise context.fail(
            f"The run's target is '{target}', which task '{task.name}' does not define "
            f"(targets: {', '.join(sorted(task.targets))})"
        )
    chosen = task.targets[target]
    spec = context.connection(chosen.connection)
    adapter = _ADAPTERS.get(spec.vendor)
    if adapter is None:
        raise context.fail(
            f"dbt tasks run on PostgreSQL or Redshift connections; '{spec.name}' is {spec.vendor}"
        )
    executable = dbt_executable()
    if executable is None:
        raise context.fail(f"dbt is not installed: run `make setup` (it installs dbt-core) or set {DBT_ENV}")
    project = context.file_roots.check(task.project_dir, base_dir=context.base_dir, what="the dbt project")
    profile = _profile_name(project, context)
    output = {
        "type": adapter,
        "host": spec.host or "127.0.0.1",
        "port": spec.effective_port(),
        "user": spec.username or "",
        "password": "{{ env_var('" + _PASSWORD_VARIABLE + "', '') }}",
        "dbname": spec.database or "",
        "schema": chosen.schema_,
        "threads": chosen.threads,
    }
    with tempfile.TemporaryDirectory(prefix="flowport-dbt-") as folder:
        profiles = Path(folder)
        (profiles / "profiles.yml").write_text(
            yaml.safe_dump({profile: {"target": target, "outputs": {target: output}}}), encoding="utf-8"
        )
        argv = [
            executable,
            "--no-use-colors",
            task.command,
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(profiles),
            "--target",
            target,
            *task.args,
        ]
        env = {
            _PASSWORD_VARIABLE: spec.password or "",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
            # dbt writes target/ and logs/ into the project folder (inside the roots).
            "DBT_LOG_PATH": str(project / "logs"),
            "DBT_TARGET_PATH": str(project / "target"),
        }
        status = run_process(argv, cwd=project, env=env, context=context, what=f"dbt {task.command}")
    if status != 0:
        lines = [line for line in context.output().splitlines() if line.strip()]
        raise context.fail(f"dbt {task.command} exited with status {status}: " + " | ".join(lines[-3:]))
    return f"dbt {task.command} ({target} -> schema {chosen.schema_}) succeeded"
