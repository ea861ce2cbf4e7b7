"""``flowport login|logout`` and ``flowport flows list|export|import|run``: flows on a server, or in files.

The ``flows`` commands talk to a Flowport server through the SDK when one
is configured: ``--url`` (or ``FLOWPORT_URL``) and a token from
``--token`` (or ``FLOWPORT_TOKEN``), or what ``flowport login`` stored in
``$FLOWPORT_HOME/cli-credentials.json`` (mode 0600). Without a server
(or with ``--local``), ``flows export`` packages flow files and ``flows
import`` unpacks a package into flow files.

A password enters through ``--password-stdin`` or a prompt; neither the
password nor a token is ever printed. Exit status: 0 success, 1 failure
(the server refused, a package was refused, a run failed), 2 usage error.
With ``--json`` each command prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import socket
import sys
import uuid as _uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.cli.remote import (
    CREDENTIALS_FILE,
    JsonOpt,
    RunParamOpt,
    Server,
    TimeoutOpt,
    TokenOpt,
    UrlOpt,
    WaitOpt,
    connect,
    credentials_path,
    fail,
    failed,
    find_server,
    parse_params,
    read_credentials,
    report_job,
    wait_for,
    write_credentials,
)
from flowport.errors import FlowportError, NotFound

if TYPE_CHECKING:
    # The SDK (httpx), the services (SQLAlchemy, the engine) and the models (pydantic) are imported by
    # the commands that use them, so that `flowport --help` does not pay for them.
    from flowport.connections.spec import ConnectionSpec
    from flowport.model.flow import Flow as FlowDocument
    from flowport.sdk import Client, Flow, Job, Project
    from flowport.sdk.projects import ImportReport
    from flowport.services.settings import Settings


def settings() -> Settings:
    """The instance's settings (imported on use: pydantic-settings costs start-up time)."""
    from flowport.services.settings import settings as _settings

    return _settings()


__all__ = ["CREDENTIALS_FILE", "flows_app", "login", "logout"]

flows_app = typer.Typer(
    help="Flows on a Flowport server (list, export, import, run); without a server, flow files and packages.",
    no_args_is_help=True,
)

ProjectOpt = Annotated[
    str, typer.Option("--project", envvar="FLOWPORT_PROJECT", help="Project on the server.")
]
LocalOpt = Annotated[
    bool, typer.Option("--local", help="Work on local files even when a server is configured.")
]
Resolution = Annotated[
    str,
    typer.Option(
        "--conflict-resolution",
        help="A flow the target already has: skip it, replace the existing one, or rename the imported one.",
    ),
]
_RESOLUTIONS = ("skip", "replace", "rename")


def _project(client: Client, name: str) -> Project:
    return client.projects.get(name=name)


# -- login ---------------------------------------------------------------------------------


def _read_password(password_stdin: bool) -> str:
    if password_stdin or not sys.stdin.isatty():
        if not password_stdin:
            raise typer.BadParameter("give --password-stdin to read the password from standard input")
        text = sys.stdin.read()
        # Only the line end `echo` or a file adds: spaces may be part of a password.
        return text[:-1] if text.endswith("\n") else text
    return getpass.getpass("Password: ")


def login(
    user: Annotated[str, typer.Option("--user", help="User name on the server.", show_default=False)],
    url: Annotated[
        str,
        typer.Option(
            "--url",
            envvar="FLOWPORT_URL",
            help="Server URL; `flowport server` listens on http://127.0.0.1:8080 by default.",
        ),
    ] = "http://127.0.0.1:8080",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sign in to a server: create an API token and store it for the `flows` commands.

    Example: ``flowport login --user admin --password-stdin < .flowport/initial-admin-password``
    """
    from flowport.sdk import Client

    password = _read_password(password_stdin)
    if not password:
        raise typer.BadParameter("the password is empty", param_hint="password")
    try:
        client = Client(url, username=user, password=password)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--url") from None
    name = f"flowport-cli {user}@{socket.gethostname()} {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    try:
        with client:
            who = client.current_user()
            created = client.create_api_token(name[:255])
    except FlowportError as exc:
        fail(exc.message.replace(password, "***"), as_json=as_json)
    previous = None
    with contextlib.suppress(typer.BadParameter):
        previous = read_credentials()
    path = write_credentials(
        {"url": client.url, "user": user, "tokenId": created.get("id"), "token": created["token"]}
    )
    if previous and previous.get("tokenId") is not None and str(previous["url"]) == client.url:
        _revoke_quietly(Server(str(previous["url"]), str(previous["token"])), previous["tokenId"])
    if as_json:
        print_json(
            {
                "url": client.url,
                "user": user,
                "role": who.get("role"),
                "tokenId": created.get("id"),
                "stored": str(path),
            }
        )
        return
    console.print(
        f"Logged in to {escape(client.url)} as [bold]{escape(user)}[/bold] ({escape(str(who.get('role')))}). "
        f"API token '{escape(str(created.get('name')))}' stored in {escape(str(path))} (mode 0600).",
        highlight=False,
        soft_wrap=True,
    )


def _revoke_quietly(server: Server, token_id: Any) -> bool:
    from flowport.sdk import Client

    try:
        with Client(server.url, token=server.token) as client:
            client.revoke_api_token(int(token_id))
        return True
    except (FlowportError, ValueError, TypeError):
        return False


def logout(as_json: JsonOpt = False) -> None:
    """Revoke the stored API token (when the server can be reached) and forget it.

    Example: ``flowport logout``
    """
    stored = read_credentials()
    path = credentials_path()
    if stored is None:
        if as_json:
            print_json({"loggedOut": False})
        else:
            console.print("Not logged in.")
        return
    revoked = stored.get("tokenId") is not None and _revoke_quietly(
        Server(str(stored["url"]), str(stored["token"])), stored["tokenId"]
    )
    path.unlink(missing_ok=True)
    if as_json:
        print_json({"loggedOut": True, "url": stored["url"], "tokenRevoked": revoked})
        return
    note = "token revoked" if revoked else "the token could not be revoked on the server: revoke it there"
    console.print(f"Logged out of {escape(str(stored['url']))} ({note}).", highlight=False)


# -- list -----------------------------------------------------------------------------------


def _flow_row(flow: Flow) -> dict[str, Any]:
    return {
        "id": flow.flow_id,
        "uuid": flow.uuid,
        "name": flow.name,
        "description": flow.description,
        "type": flow.flow_type,
        "stages": len(flow.document.stages),
        "updatedAt": flow.updated_at,
    }


@flows_app.command("list")
def flows_list(
    url: UrlOpt = None, token: TokenOpt = None, project: ProjectOpt = "default", as_json: JsonOpt = False
) -> None:
    """List the flows of a project on the server.

    Example: ``flowport flows list --project default --json``
    """
    server = find_server(url, token, local=False)
    if server is None:
        fail(
            "no server configured: run `flowport login --url URL --user NAME` or give --url",
            as_json=as_json,
            code=2,
        )
    try:
        with connect(server) as client:
            flows = _project(client, project).flows
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    rows = [_flow_row(flow) for flow in flows]
    if as_json:
        print_json({"data": rows, "count": len(rows)})
        return
    table = Table(title=f"Flows of project {escape(project)} ({len(rows)})", title_justify="left")
    for column in ("Id", "Name", "Type", "Stages", "Updated"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["id"]), escape(row["name"]), row["type"], str(row["stages"]), row["updatedAt"] or "-"
        )
    console.print(table)


# -- export ---------------------------------------------------------------------------------


def _pick(flows: list[Flow], wanted: str) -> Flow:
    for flow in flows:
        if str(flow.flow_id) == wanted or flow.uuid == wanted:
            return flow
    named = [flow for flow in flows if flow.name == wanted]
    if named:
        return named[0]
    hint = " (for a flow file, add --local)" if Path(wanted).is_file() else ""
    raise NotFound(f"No flow with id, uuid or name '{wanted}' in the project{hint}")


def _local_connections(flows: list[FlowDocument], plain_text: bool) -> tuple[list[ConnectionSpec], list[str]]:
    """The local instance's connections the flows refer to (identity only unless plain_text)."""
    from flowport.connections.spec import ConnectionSpec
    from flowport.model.package import referenced_connections
    from flowport.services import connections as _connections

    references = set().union(*(referenced_connections(flow) for flow in flows)) if flows else set()
    specs: list[ConnectionSpec] = []
    notes: list[str] = []
    for reference in sorted(references):
        try:
            if plain_text:
                specs.append(_connections.connection_spec(reference, confined=False))
            else:
                row = _connections.get_connection(reference)
                specs.append(ConnectionSpec(id=row.id, uuid=row.uuid, name=row.name, vendor=row.vendor))
        except NotFound:
            notes.append(f"connection '{reference}' is not defined locally: the manifest does not list it")
        except FlowportError as exc:  # no local instance (flowport init), key problems, ...
            notes.append(f"connection '{reference}' not listed in the manifest: {exc.message}")
    return specs, notes


def _export_local(files: list[str], output: Path, plain_text: bool, as_json: bool) -> None:
    from flowport.services import flows as _flow_files
    from flowport.services.package_archive import build_package

    documents: list[FlowDocument] = []
    for name in files:
        try:
            documents.append(_flow_files.load_flow(name))
        except NotFound as exc:
            fail(exc.message, as_json=as_json, code=2)
        except FlowportError as exc:
            fail(exc.message, as_json=as_json)
    specs, notes = _local_connections(documents, plain_text)
    home = settings().home
    try:
        data = build_package(
            documents,
            specs,
            _uuid.uuid5(_uuid.NAMESPACE_URL, f"flowport-local-files:{home}"),
            plain_text_credentials=plain_text,
            instance_name="local files",
            catalog=_flow_files.plugin_registry(),
        )
    except FlowportError as exc:
        fail(exc.message, as_json=as_json)
    _write_bytes(output, data)
    for note in notes:
        err_console.print(f"[yellow]Warning:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    _exported(output, [(None, d.name, d.type) for d in documents], plain_text, as_json)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def _exported(
    output: Path, flows: list[tuple[int | None, str, str]], plain_text: bool, as_json: bool
) -> None:
    if as_json:
        print_json(
            {
                "output": str(output),
                "flows": [{"id": i, "name": n, "type": t} for i, n, t in flows],
                "withPlainTextCredentials": plain_text,
            }
        )
        return
    console.print(
        f"Exported {len(flows)} flow(s) to {escape(str(output))}: "
        + ", ".join(escape(n) for _, n, _ in flows),
        highlight=False,
        soft_wrap=True,
    )
    if plain_text:
        err_console.print(
            "[yellow]Warning:[/yellow] the package holds connection credentials in plain text: keep it safe",
            highlight=False,
        )


@flows_app.command("export")
def flows_export(
    flows: Annotated[
        list[str],
        typer.Argument(
            help="Flow ids, uuids or names on the server; flow files without a server.", show_default=False
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The package ZIP to write.")] = Path(
        "flows.zip"
    ),
    with_plain_text_credentials: Annotated[
        bool,
        typer.Option(
            "--with-plain-text-credentials",
            help="Also write the connections' credentials in clear (server: admins only).",
        ),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    project: ProjectOpt = "default",
    local: LocalOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export flows as a package ZIP (one flow file per flow, a manifest, no credentials).

    Example: ``flowport flows export 'Wrangle Orders' -o flow-WrangleOrders.zip``
    """
    server = find_server(url, token, local)
    if server is None:
        _export_local(flows, output, with_plain_text_credentials, as_json)
        return
    try:
        with connect(server) as client:
            sdk_project = _project(client, project)
            available = list(sdk_project.flows)
            try:
                chosen = [_pick(available, wanted) for wanted in flows]
            except NotFound as exc:
                fail(exc.message, as_json=as_json, code=2)
            chosen = list({flow.flow_id: flow for flow in chosen}.values())
            sdk_project.export_flows(
                chosen, destination=output, with_plain_text_credentials=with_plain_text_credentials
            )
    except ValueError as exc:  # batch and streaming flows mixed
        fail(str(exc), as_json=as_json, code=2)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    _exported(
        output, [(f.flow_id, f.name, f.flow_type) for f in chosen], with_plain_text_credentials, as_json
    )


# -- import ---------------------------------------------------------------------------------


def _file_stem(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "flow"


def _import_local(package: Path, directory: Path, resolution: str, dry_run: bool, as_json: bool) -> None:
    from flowport.model.package_import import Resolution, plan_flows, retarget_pipeline
    from flowport.services import flows as _flow_files
    from flowport.services.package_archive import read_package

    try:
        data = package.read_bytes()
    except OSError as exc:
        fail(f"Cannot read {package}: {exc.strerror or exc}", as_json=as_json, code=2)
    try:
        checked = read_package(data)
    except FlowportError as exc:
        fail(exc.message, as_json=as_json)
    # The server's plan (same conflicts, same "<name> (N)" copies), over the folder's files.
    plan = plan_flows(
        (flow for _entry, flow in checked.flows),
        cast(Resolution, resolution),
        conflicts=lambda flow: (directory / f"{_file_stem(flow.name)}.json").exists(),
        taken=lambda name: (directory / f"{_file_stem(name)}.json").exists(),
    )
    written: list[dict[str, Any]] = []
    for _placement, flow in plan.stored:
        target = directory / f"{_file_stem(flow.name)}.json"
        if not dry_run:
            _flow_files.save_flow(flow, target)
        written.append({"name": flow.name, "type": flow.type, "uuid": str(flow.uuid), "file": str(target)})
    pipelines: list[dict[str, Any]] = []
    for _entry, original in checked.pipelines:
        # Beside the flows, as <name>.pipeline.json (flow tasks follow renamed flows); never over a file.
        document = retarget_pipeline(original, plan.renamed_flows)
        path = directory / f"{_file_stem(str(document['name']))}.pipeline.json"
        if path.exists() and resolution != "replace":
            pipelines.append({"name": document["name"], "file": str(path), "action": "skipped"})
            continue
        if not dry_run:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        pipelines.append({"name": document["name"], "file": str(path), "action": "written"})
    report = {
        "data": written,
        "count": len(written),
        **plan.report(),
        **({"pipelines": pipelines} if pipelines else {}),
        "dryRun": dry_run,
        "manifest": {
            "instance": str(checked.manifest.instance.uuid),
            "exportedAt": checked.manifest.exported_at,
        },
    }
    if as_json:
        print_json(report)
        return
    verb = "Would write" if dry_run else "Wrote"
    for item in written:
        console.print(
            f"{verb} {escape(item['file'])} ({escape(item['name'])})", highlight=False, soft_wrap=True
        )
    _print_outcome(report["skipped"], report["replaced"], report["renamed"], dry_run)
    for item in pipelines:
        console.print(
            f"Pipeline {escape(str(item['name']))}: {item['action']} {escape(item['file'])}",
            highlight=False,
            soft_wrap=True,
        )


def _print_outcome(
    skipped: list[str], replaced: list[str], renamed: list[dict[str, Any]], dry_run: bool
) -> None:
    would = " (would be)" if dry_run else ""
    if skipped:
        names = ", ".join(escape(n) for n in skipped)
        console.print(f"Skipped{would}, already there: {names}", highlight=False, soft_wrap=True)
    if replaced:
        names = ", ".join(escape(n) for n in replaced)
        console.print(f"Replaced{would}: {names}", highlight=False, soft_wrap=True)
    for item in renamed:
        console.print(
            f"Renamed{would}: {escape(str(item.get('from')))} → {escape(str(item.get('to')))}",
            highlight=False,
            soft_wrap=True,
        )


def _print_report(report: ImportReport, project: str) -> None:
    verb = "Would import" if report.dry_run else "Imported"
    if not report.flows:
        console.print(f"{verb} no flow into project {escape(project)}.", highlight=False)
    table = Table(title=f"{verb} into project {escape(project)} ({len(report.flows)})", title_justify="left")
    for column in ("Id", "Name", "Type"):
        table.add_column(column)
    for flow in report.flows:
        table.add_row(
            str(flow.get("id") if flow.get("id") is not None else "(new)"),
            escape(str(flow.get("name"))),
            str(flow.get("type")),
        )
    if report.flows:
        console.print(table)
    _print_outcome(report.skipped, report.replaced, report.renamed, report.dry_run)
    for item in report.pipelines:
        console.print(
            f"Pipeline {escape(str(item.get('name')))}: {item.get('action')}", highlight=False, soft_wrap=True
        )
    for connection in report.unresolved_connections:
        stages = ", ".join(
            f"{s.get('flow')}/{s.get('stage')}" if isinstance(s, dict) else str(s)
            for s in connection.get("stages") or []
        )
        label = escape(str(connection.get("name") or connection.get("uuid")))
        vendor = escape(str(connection.get("vendor") or "?"))
        err_console.print(
            f"[yellow]Warning:[/yellow] connection {label} ({vendor}) does not exist on the server; "
            f"used by {escape(stages)}",
            highlight=False,
            soft_wrap=True,
        )


@flows_app.command("import")
def flows_import(
    package: Annotated[Path, typer.Argument(help="The package ZIP.", show_default=False)],
    conflict_resolution: Resolution = "skip",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what the import would do.")] = False,
    directory: Annotated[
        Path, typer.Option("--directory", "-d", help="Without a server: where to write the flow files.")
    ] = Path("."),
    url: UrlOpt = None,
    token: TokenOpt = None,
    project: ProjectOpt = "default",
    local: LocalOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import a package ZIP into a project on the server, or into flow files in a directory.

    Example: ``flowport flows import flow-WrangleOrders.zip --conflict-resolution rename``
    """
    if conflict_resolution not in _RESOLUTIONS:
        raise typer.BadParameter(f"one of {', '.join(_RESOLUTIONS)}", param_hint="--conflict-resolution")
    if not package.is_file():
        fail(f"Package file '{package}' does not exist", as_json=as_json, code=2)
    server = find_server(url, token, local)
    if server is None:
        _import_local(package, directory, conflict_resolution, dry_run, as_json)
        return
    try:
        with connect(server) as client:
            report = _project(client, project).import_package(package, conflict_resolution, dry_run=dry_run)  # type: ignore[arg-type]
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(report.to_dict())
        return
    _print_report(report, project)


# -- run ------------------------------------------------------------------------------------


@flows_app.command("run")
def flows_run(
    flow: Annotated[str, typer.Argument(help="Flow id, uuid or name on the server.", show_default=False)],
    param: RunParamOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 3600.0,
    url: UrlOpt = None,
    token: TokenOpt = None,
    project: ProjectOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Run a flow on the server (a flow file runs locally with `flowport run FILE`).

    Example: ``flowport flows run 'Wrangle Orders' --param min_total=100 --wait``
    """
    parameters = parse_params(param)
    server = find_server(url, token, local=False)
    if server is None:
        fail(
            "no server configured: run `flowport login --url URL --user NAME` or give --url; "
            "to run a flow file on this machine use `flowport run FILE`",
            as_json=as_json,
            code=2,
        )
    try:
        with connect(server) as client:
            try:
                chosen = _pick(list(_project(client, project).flows), flow)
            except NotFound as exc:
                fail(exc.message, as_json=as_json, code=2)
            job: Job = chosen.run(parameters=parameters or None)
            if not as_json and not wait:
                console.print(
                    f"Started job {job.job_id} of flow '{escape(chosen.name)}' ({job.status})",
                    highlight=False,
                )
                return
            if not wait:
                print_json(job.record)
                return
            record, metrics = wait_for(job, timeout, as_json)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    report_job(record, metrics, chosen.name, as_json)
