"""``flowport deployments create|list|rules|import|activate|run|releases``: deployments on a server.

Each command talks to a Flowport server through the SDK, found as for
``flowport flows``: ``--url`` (or ``FLOWPORT_URL``) and ``--token`` (or
``FLOWPORT_TOKEN``), or what ``flowport login`` stored. A DEPLOYMENT is
given by id or by name. Exit status: 0 success, 1 failure (the server
refused, a run did not complete), 2 usage error (no server configured, a
deployment or release that does not exist, an unreadable file). With
``--json`` each command prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.cli.remote import (
    JsonOpt,
    RunParamOpt,
    TimeoutOpt,
    TokenOpt,
    UrlOpt,
    WaitOpt,
    fail,
    failed,
    open_client,
    parse_params,
    report_job,
    wait_for,
)
from flowport.errors import FlowportError, NotFound

if TYPE_CHECKING:  # the SDK imports httpx: open_client() imports it when a command talks to a server
    from flowport.sdk import Client, Deployment, ImportResult, Release

__all__ = ["deployments_app"]

deployments_app = typer.Typer(
    help="Deployments on a Flowport server: import rules, releases (imported packages), runs.",
    no_args_is_help=True,
)

DeploymentArg = Annotated[
    str, typer.Argument(help="The deployment's id or name.", metavar="DEPLOYMENT", show_default=False)
]


def _deployment(client: Client, wanted: str, as_json: bool) -> Deployment:
    """The deployment with this id (when it is a number and one has it) or name; exit 2 when none."""
    text = wanted.strip()
    try:
        if text.isdigit():
            try:
                return client.deployments.get(deployment_id=int(text))
            except NotFound:
                pass  # a deployment may be named "2024"
        return client.deployments.get(name=wanted)
    except NotFound:
        fail(f"No deployment with id or name '{wanted}' on {client.url}", as_json=as_json, code=2)


def _deployment_row(deployment: Deployment) -> dict[str, Any]:
    record = deployment.record
    active = record.get("activeRelease")
    return {
        "id": deployment.deployment_id,
        "name": deployment.name,
        "activeRelease": active.get("id") if isinstance(active, dict) else None,
        "project": deployment.project_id,
        "createdAt": record.get("createdAt"),
        "updatedAt": record.get("updatedAt"),
    }


def _release_label(release: Release) -> str:
    return f"release {release.release_id}" + (" (active)" if release.active else "")


# -- create / list ----------------------------------------------------------------------------


@deployments_app.command("create")
def deployments_create(
    name: Annotated[str, typer.Argument(help="The deployment's name (unique).", show_default=False)],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a deployment.

    Example: ``flowport deployments create orders-prod``
    """
    try:
        with open_client(url, token, as_json) as client:
            deployment = client.deployments.create(name)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(deployment.record)
        return
    console.print(
        f"Created deployment [bold]{escape(deployment.name)}[/bold] (id {deployment.deployment_id})",
        highlight=False,
        soft_wrap=True,
    )


@deployments_app.command("list")
def deployments_list(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List the deployments and their active releases.

    Example: ``flowport deployments list --json``
    """
    try:
        with open_client(url, token, as_json) as client:
            rows = [_deployment_row(d) for d in client.deployments.get_all()]
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": rows, "count": len(rows)})
        return
    table = Table(title=f"Deployments ({len(rows)})", title_justify="left")
    for column in ("Id", "Name", "Active release", "Updated"):
        table.add_column(column)
    for row in rows:
        active = row["activeRelease"]
        table.add_row(
            str(row["id"]),
            escape(row["name"]),
            "-" if active is None else str(active),
            row["updatedAt"] or "-",
        )
    console.print(table)


# -- import rules ---------------------------------------------------------------------------------


def _read_rules(path: Path, option: str, as_json: bool) -> list[dict[str, Any]]:
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"Cannot read {option} {path}: {exc.strerror or exc}", as_json=as_json, code=2)
    except ValueError as exc:
        fail(f"{option} {path} is not JSON: {exc}", as_json=as_json, code=2)
    if isinstance(rules, dict) and isinstance(rules.get("data"), list):
        rules = rules["data"]  # what GET .../importRules answers
    if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
        fail(f"{option} {path} must hold a JSON list of rules (objects)", as_json=as_json, code=2)
    return rules


@deployments_app.command("rules")
def deployments_rules(
    deployment: DeploymentArg,
    object_rules: Annotated[
        Path | None,
        typer.Option(
            "--object",
            help='JSON file: [{"tableName": "connections", "onCondition": {"uuid": ...}, '
            '"withCondition": {"id": ...}}]; replaces the object import rules.',
            show_default=False,
        ),
    ] = None,
    value_rules: Annotated[
        Path | None,
        typer.Option(
            "--value",
            help='JSON file: [{"type": "fileLocation"|"s3Bucket"|"tableName"|"parameter", "on": ..., '
            '"with": ...}] (in order); replaces the value import rules.',
            show_default=False,
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a deployment's import rules; prints the rules that were replaced (deleted).

    Without --object or --value, shows the current rules.

    Example: ``flowport deployments rules orders-prod --object object-rules.json --value value-rules.json``
    """
    given = {
        kind: _read_rules(path, f"--{kind}", as_json)
        for kind, path in (("object", object_rules), ("value", value_rules))
        if path is not None
    }
    current: dict[str, list[dict[str, Any]]] = {}
    deleted: dict[str, list[dict[str, Any]]] = {}
    try:
        with open_client(url, token, as_json) as client:
            chosen = _deployment(client, deployment, as_json)
            if not given:
                current = {"object": chosen.object_import_rules, "value": chosen.value_import_rules}
            for kind, rules in given.items():
                if kind == "object":
                    deleted[kind] = chosen.set_object_import_rules(rules)
                else:
                    deleted[kind] = chosen.set_value_import_rules(rules)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    where = {"id": chosen.deployment_id, "name": chosen.name}
    if not given:
        if as_json:
            print_json({"deployment": where, **{k: {"data": v, "count": len(v)} for k, v in current.items()}})
            return
        for kind, rules in current.items():
            console.print(f"{kind.capitalize()} import rules of {escape(chosen.name)} ({len(rules)}):")
            for rule in rules:
                console.print(f"  {escape(json.dumps(rule))}", highlight=False, soft_wrap=True)
        return
    if as_json:
        print_json(
            {
                "deployment": where,
                **{k: {"set": given[k], "deleted": v} for k, v in deleted.items()},
            }
        )
        return
    for kind, removed in deleted.items():
        console.print(
            f"Set {len(given[kind])} {kind} import rule(s) of deployment {escape(chosen.name)}; "
            f"deleted {len(removed)}" + (":" if removed else "."),
            highlight=False,
            soft_wrap=True,
        )
        for rule in removed:
            console.print(f"  {escape(json.dumps(rule))}", highlight=False, soft_wrap=True)


# -- releases --------------------------------------------------------------------------------------


def _print_import(result: ImportResult, deployment: Deployment) -> None:
    if result.dry_run:
        console.print(
            f"Dry run: importing would create a release of flow '{escape(result.flow_name)}' in "
            f"deployment {escape(deployment.name)}; nothing was stored.",
            highlight=False,
            soft_wrap=True,
        )
    else:
        release = result.release
        label = _release_label(release) if release is not None else "a release"
        console.print(
            f"Imported flow '{escape(result.flow_name)}' into deployment {escape(deployment.name)} as "
            f"{label}; primary flow id {', '.join(str(i) for i in result.primary_flow_ids)}.",
            highlight=False,
            soft_wrap=True,
        )
    for kind in ("object", "value"):
        for rule in result.import_rule_changes.get(kind, []):
            console.print(
                f"  {kind} rule applied: {escape(json.dumps(rule))}", highlight=False, soft_wrap=True
            )
    for change in result.value_changes:
        console.print(
            f"  {escape(str(change.get('stage')))}.{escape(str(change.get('key')))}: "
            f"{escape(str(change.get('from')))} → {escape(str(change.get('to')))}",
            highlight=False,
            soft_wrap=True,
        )
    if not result.dry_run and result.message and not result.activated:
        err_console.print(f"[yellow]{escape(result.message)}[/yellow]", highlight=False, soft_wrap=True)
    for item in result.unresolved_connections:
        err_console.print(
            f"[yellow]Warning:[/yellow] stage {escape(str(item.get('stage')))} uses connection "
            f"{escape(str(item.get('name') or item.get('connection')))}, which this server does not have: "
            "add an object import rule and import again",
            highlight=False,
            soft_wrap=True,
        )


@deployments_app.command("import")
def deployments_import(
    deployment: DeploymentArg,
    package: Annotated[Path, typer.Argument(help="The package ZIP (as exported).", show_default=False)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what the import would do; store nothing.")
    ] = False,
    notes: Annotated[str, typer.Option("--notes", help="Release notes.")] = "",
    force_activate: Annotated[
        bool,
        typer.Option(
            "--force-activate",
            help="Activate the release even when some stages use connections this server lacks.",
        ),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a package ZIP into a deployment as a new release.

    The release becomes the active one unless some of its stages use connections the server lacks
    (then the previous release keeps running; --force-activate overrides).
    Example: ``flowport deployments import "Prod deployment" flow-21.zip``
    """
    if not package.is_file():
        fail(f"Package file '{package}' does not exist", as_json=as_json, code=2)
    try:
        with open_client(url, token, as_json) as client:
            chosen = _deployment(client, deployment, as_json)
            result = chosen.import_package(
                package, dry_run=dry_run, notes=notes, activate="force" if force_activate else "auto"
            )
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(result.to_dict())
        return
    _print_import(result, chosen)


@deployments_app.command("activate")
def deployments_activate(
    release_id: Annotated[int, typer.Argument(help="The release's id.", min=1, show_default=False)],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a release its deployment's active one (a rollback when it is older).

    Example: ``flowport deployments activate 3``
    """
    try:
        with open_client(url, token, as_json) as client:
            try:
                release = client.deployments.get_release(release_id)
            except NotFound:
                fail(f"No release with id {release_id} on {client.url}", as_json=as_json, code=2)
            release.activate()
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(release.record)
        return
    console.print(
        f"Release {release.release_id} of deployment {release.deployment_id} is now active.", highlight=False
    )


@deployments_app.command("diff")
def deployments_diff(
    release_id: Annotated[int, typer.Argument(help="The release's id.", min=1, show_default=False)],
    against: Annotated[
        str, typer.Option("--against", help="The release to compare with: an id, or 'active'.")
    ] = "active",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what a release changes compared with another (default: the active one).

    Example: ``flowport deployments diff 7 --against 5``
    """
    try:
        with open_client(url, token, as_json) as client:
            try:
                release = client.deployments.get_release(release_id)
            except NotFound:
                fail(f"No release with id {release_id} on {client.url}", as_json=as_json, code=2)
            diff = release.diff(against)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(diff)
        return
    for line in _diff_lines(diff):
        console.print(escape(line), highlight=False, soft_wrap=True)


def _diff_lines(diff: dict[str, Any]) -> list[str]:
    lines = [f"{diff['to']} compared with {diff['from']}:"]
    flows = diff["flows"]
    lines += [f"  + flow {name}" for name in flows["added"]]
    lines += [f"  - flow {name}" for name in flows["removed"]]
    lines += [f"  ~ flow {item['from']} -> {item['to']}" for item in flows["renamed"]]
    for flow in flows["changed"]:
        lines.append(f"  flow {flow['flow']}:")
        lines += [f"    + stage {name}" for name in flow["stages"]["added"]]
        lines += [f"    - stage {name}" for name in flow["stages"]["removed"]]
        for stage in flow["stages"]["changed"]:
            for what in ("plugin", "artifact"):
                if what in stage:
                    lines.append(f"    {stage['stage']}.{what}: {stage[what]['from']} -> {stage[what]['to']}")
            config = stage.get("configuration") or {}
            lines += [f"    {stage['stage']}: + {key}" for key in config.get("added", [])]
            lines += [f"    {stage['stage']}: - {key}" for key in config.get("removed", [])]
            lines += [
                f"    {stage['stage']}.{c['key']}: {json.dumps(c['from'])} -> {json.dumps(c['to'])}"
                for c in config.get("changed", [])
            ]
        lines += [f"    + edge {e['from']} -> {e['to']}" for e in flow["edges"]["added"]]
        lines += [f"    - edge {e['from']} -> {e['to']}" for e in flow["edges"]["removed"]]
        for part in ("parameters", "errorStage", "configuration"):
            changes = flow[part]
            lines += [f"    {part}: + {key}" for key in changes["added"]]
            lines += [f"    {part}: - {key}" for key in changes["removed"]]
            lines += [
                f"    {part}.{c['key']}: {json.dumps(c['from'])} -> {json.dumps(c['to'])}"
                for c in changes["changed"]
            ]
    lines += [
        f"  artifact {a['artifact']} ({a['flow']} / {a['stage']}): {a['from']} -> {a['to']}"
        for a in diff["artifacts"]
    ]
    if len(lines) == 1:
        lines.append("  no change")
    return lines


@deployments_app.command("releases")
def deployments_releases(
    deployment: DeploymentArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List a deployment's releases (oldest first) and which one is active.

    Example: ``flowport deployments releases orders-prod``
    """
    try:
        with open_client(url, token, as_json) as client:
            chosen = _deployment(client, deployment, as_json)
            releases = chosen.releases
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": [r.record for r in releases], "count": len(releases)})
        return
    table = Table(title=f"Releases of {escape(chosen.name)} ({len(releases)})", title_justify="left")
    for column in ("Id", "Active", "Primary flow", "Notes", "Created"):
        table.add_column(column)
    for release in releases:
        table.add_row(
            str(release.release_id),
            "[green]yes[/green]" if release.active else "",
            str(release.primary_flow_id or "-"),
            escape(release.notes),
            release.created_at or "-",
        )
    console.print(table)


# -- run --------------------------------------------------------------------------------------------


@deployments_app.command("run")
def deployments_run(
    deployment: DeploymentArg,
    param: RunParamOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 3600.0,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the primary flow of the deployment's active release.

    Example: ``flowport deployments run orders-prod --wait --timeout 600``
    """
    overrides = parse_params(param)
    try:
        with open_client(url, token, as_json) as client:
            chosen = _deployment(client, deployment, as_json)
            job = chosen.run(overrides=overrides or None)
            if not wait:
                if as_json:
                    print_json(job.record)
                else:
                    console.print(
                        f"Started job {job.job_id} of deployment '{escape(chosen.name)}' ({job.status})",
                        highlight=False,
                    )
                return
            record, metrics = wait_for(job, timeout, as_json)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    report_job(record, metrics, chosen.name, as_json)
