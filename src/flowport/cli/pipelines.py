"""``flowport pipelines`` and ``flowport locks``: DAGs of tasks on a Flowport server, their runs, task locks.

They talk to a server through the SDK (``--url``/``--token`` or what
``flowport login`` stored). Exit status: 0 success, 1 refused or a run that
did not complete (with ``--wait``), 2 usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, print_json
from flowport.cli.remote import (
    JsonOpt,
    RunParamOpt,
    TimeoutOpt,
    TokenOpt,
    UrlOpt,
    fail,
    failed,
    open_client,
    parse_params,
)
from flowport.errors import FlowportError, NotFound

if TYPE_CHECKING:
    from flowport.sdk import Client, Pipeline, PipelineRun

__all__ = ["locks", "pipelines_app"]

pipelines_app = typer.Typer(
    help="Pipelines on a Flowport server: DAGs of flow, deployment, shell, dbt, SQL and HTTP tasks.",
    no_args_is_help=True,
)

PipelineArg = Annotated[str, typer.Argument(help="The pipeline's id or name.", metavar="PIPELINE")]
FileArg = Annotated[
    Path, typer.Argument(help="A flowport.pipeline/1 document (JSON or YAML).", exists=True, dir_okay=False)
]
ProjectOpt = Annotated[
    int | None, typer.Option("--project", help="Project id (default: the default project).")
]


def _pipeline(client: Client, wanted: str, as_json: bool) -> Pipeline:
    try:
        if wanted.strip().isdigit():
            try:
                return client.pipelines.get(int(wanted))
            except NotFound:
                pass
        return client.pipelines.get(name=wanted)
    except NotFound:
        fail(f"No pipeline with id or name '{wanted}' on {client.url}", as_json=as_json, code=2)


def _document(path: Path, as_json: bool) -> dict[str, Any]:
    from flowport.model.pipeline import pipeline_from_text, pipeline_to_dict

    try:
        return pipeline_to_dict(pipeline_from_text(path.read_text(encoding="utf-8"), source=str(path)))
    except FlowportError as exc:
        failed(exc, as_json=as_json)


def _show_run(run: PipelineRun) -> None:
    record = run.record
    console.print(
        f"Pipeline run {record['id']}: [bold]{record['status']}[/bold]"
        + (f" ({escape(record['error'])})" if record.get("error") else ""),
        highlight=False,
    )
    table = Table(title_justify="left")
    for column in ("Task", "Type", "Status", "Tries", "Job", "Message"):
        table.add_column(column)
    for task in run.tasks:
        table.add_row(
            escape(task["task"]),
            task["type"],
            task["status"],
            str(task["attempts"]),
            str((task.get("job") or {}).get("id", "")),
            escape(task.get("message") or ""),
        )
    console.print(table)


@pipelines_app.command("list")
def pipelines_list(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List pipelines and their tasks.

    Example: ``flowport pipelines list``
    """
    try:
        with open_client(url, token, as_json) as client:
            records = [p.record for p in client.pipelines.list()]
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": records, "count": len(records)})
        return
    table = Table(title=f"Pipelines ({len(records)})", title_justify="left")
    for column in ("Id", "Name", "Project", "Tasks"):
        table.add_column(column)
    for r in records:
        tasks = ", ".join(f"{t['name']} ({t['type']})" for t in r["tasks"])
        table.add_row(str(r["id"]), escape(r["name"]), str(r["project"]["id"]), escape(tasks))
    console.print(table)


@pipelines_app.command("show")
def pipelines_show(
    pipeline: PipelineArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Print a pipeline's document.

    Example: ``flowport pipelines show nightly > nightly.json``
    """
    try:
        with open_client(url, token, as_json) as client:
            found = _pipeline(client, pipeline, as_json)
            document = found.document
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    print_json(document)


@pipelines_app.command("create")
def pipelines_create(
    file: FileArg,
    project: ProjectOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a pipeline from a document; it is validated (graph, references, permissions) first.

    Example: ``flowport pipelines create nightly.yaml``
    """
    document = _document(file, as_json)
    try:
        with open_client(url, token, as_json) as client:
            created = client.pipelines.create(document, project=project)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(created.record)
    else:
        console.print(f"Pipeline {created.pipeline_id} '{escape(created.name)}' created", highlight=False)


@pipelines_app.command("update")
def pipelines_update(
    pipeline: PipelineArg, file: FileArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Replace a pipeline's document with the file's (runs already started keep theirs).

    Example: ``flowport pipelines update nightly nightly.yaml``
    """
    document = _document(file, as_json)
    try:
        with open_client(url, token, as_json) as client:
            updated = _pipeline(client, pipeline, as_json).update(document)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(updated.record)
    else:
        console.print(f"Pipeline {updated.pipeline_id} '{escape(updated.name)}' updated", highlight=False)


@pipelines_app.command("remove")
def pipelines_remove(
    pipeline: PipelineArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a pipeline and its schedules; its runs stay in the history.

    Example: ``flowport pipelines remove nightly``
    """
    try:
        with open_client(url, token, as_json) as client:
            found = _pipeline(client, pipeline, as_json)
            found.delete()
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"deleted": found.pipeline_id})
    else:
        console.print(f"Pipeline {found.pipeline_id} '{escape(found.name)}' deleted", highlight=False)


@pipelines_app.command("export")
def pipelines_export(
    pipeline: PipelineArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The package ZIP to write.", dir_okay=False)],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a pipeline and the flows its flow tasks run as a package (import: flowport flows import).

    Example: ``flowport pipelines export nightly -o nightly.zip``
    """
    try:
        with open_client(url, token, as_json) as client:
            found = _pipeline(client, pipeline, as_json)
            found.export(output)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    except OSError as exc:
        fail(f"Cannot write {output}: {exc.strerror or exc}", as_json=as_json, code=2)
    if as_json:
        print_json({"pipeline": found.pipeline_id, "file": str(output)})
    else:
        console.print(f"Pipeline '{escape(found.name)}' exported to {escape(str(output))}", highlight=False)


@pipelines_app.command("run")
def pipelines_run(
    pipeline: PipelineArg,
    param: RunParamOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the run to end; exit 1 unless Complete.")
    ] = False,
    timeout: TimeoutOpt = 3600.0,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a run now (``-p target=prod`` picks dbt's prod target); refused while a task lock is held.

    Example: ``flowport pipelines run nightly -p target=prod --wait``
    """
    values = parse_params(param)
    try:
        with open_client(url, token, as_json) as client:
            run = _pipeline(client, pipeline, as_json).run(**values)
            if wait:
                try:
                    run.wait(timeout=timeout)
                except TimeoutError as exc:
                    fail(str(exc), as_json=as_json)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(run.record)
    else:
        _show_run(run)
    if wait and run.status != "Complete":
        raise typer.Exit(1)


@pipelines_app.command("runs")
def pipelines_runs(
    pipeline: Annotated[
        str | None, typer.Argument(help="Only this pipeline's runs.", metavar="[PIPELINE]")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List pipeline runs, newest first.

    Example: ``flowport pipelines runs nightly``
    """
    try:
        with open_client(url, token, as_json) as client:
            if pipeline is None:
                records = client.list_all("/v4/pipelineRuns")
            else:
                records = [r.record for r in _pipeline(client, pipeline, as_json).runs()]
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": records, "count": len(records)})
        return
    table = Table(title=f"Pipeline runs ({len(records)})", title_justify="left")
    for column in ("Run", "Pipeline", "Status", "Trigger", "Logical date", "Started", "Finished"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r["id"]),
            str((r.get("pipeline") or {}).get("id", "-")),
            r["status"],
            r["trigger"],
            r.get("logicalDate") or "-",
            r.get("startedAt") or "-",
            r.get("finishedAt") or "-",
        )
    console.print(table)


@pipelines_app.command("run-show")
def pipelines_run_show(
    run_id: Annotated[int, typer.Argument(help="The run's id.", metavar="RUN")],
    log: Annotated[bool, typer.Option("--log", help="Print each task's log too.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a run: each task's status, tries, job and message.

    Example: ``flowport pipelines run-show 42 --log``
    """
    try:
        with open_client(url, token, as_json) as client:
            run = client.pipelines.run(run_id)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(run.record)
        return
    _show_run(run)
    if log:
        for task in run.tasks:
            if task.get("log"):
                console.print(f"[bold]--- {escape(task['task'])}[/bold]", highlight=False)
                console.print(escape(task["log"]), highlight=False, soft_wrap=True)


@pipelines_app.command("cancel")
def pipelines_cancel(
    run_id: Annotated[int, typer.Argument(help="The run's id.", metavar="RUN")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a run: its running tasks stop, its locks are released.

    Example: ``flowport pipelines cancel 42``
    """
    try:
        with open_client(url, token, as_json) as client:
            run = client.pipelines.run(run_id).cancel()
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(run.record)
    else:
        console.print(f"Pipeline run {run.run_id}: {run.status}", highlight=False)


@pipelines_app.command(
    "compile", hidden=True, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def _moved_compile() -> None:
    """The dataset command's name before 0.9: now ``flowport datasets compile``.

    Example: ``flowport datasets compile datasets.py --json``
    """
    fail("`flowport pipelines compile` is now `flowport datasets compile`", as_json=False, code=2)


def locks(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List held task locks: which task of which run holds each, since when.

    Example: ``flowport locks``
    """
    try:
        with open_client(url, token, as_json) as client:
            held = client.pipelines.locks()
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": held, "count": len(held)})
        return
    table = Table(title=f"Task locks ({len(held)})", title_justify="left")
    for column in ("Lock", "Task", "Pipeline", "Run", "Since"):
        table.add_column(column)
    for lock in held:
        table.add_row(
            escape(lock["name"]),
            escape(lock["task"]),
            str((lock.get("pipeline") or {}).get("id", "-")),
            str(lock["run"]["id"]),
            lock["since"] or "-",
        )
    console.print(table)
