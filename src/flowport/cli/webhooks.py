"""``flowport webhooks``: signed POSTs of job and pipeline events from a Flowport server (admins).

Exit status: 0 success, 1 refused, 2 usage error.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, print_json
from flowport.cli.remote import JsonOpt, TokenOpt, UrlOpt, fail, failed, open_client
from flowport.errors import FlowportError

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(help="Webhooks: signed POSTs of job and pipeline events.", no_args_is_help=True)

WebhookArg = Annotated[int, typer.Argument(help="The webhook's id.", metavar="WEBHOOK")]


@webhooks_app.command("list")
def webhooks_list(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List webhooks (never their secrets).

    Example: ``flowport webhooks list``
    """
    try:
        with open_client(url, token, as_json) as client:
            records = [w.record for w in client.webhooks.list()]
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": records, "count": len(records)})
        return
    table = Table(title=f"Webhooks ({len(records)})", title_justify="left")
    for column in ("Id", "Name", "URL", "Events", "Enabled"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r["id"]), escape(r["name"]), escape(r["url"]), ", ".join(r["events"]), str(r["enabled"])
        )
    console.print(table)


@webhooks_app.command("add")
def webhooks_add(
    name: Annotated[str, typer.Argument(help="A name for the webhook.")],
    target: Annotated[str, typer.Option("--target", help="The URL Flowport POSTs to.")],
    event: Annotated[list[str], typer.Option("--event", "-e", help="An event or pattern (repeatable).")],
    secret_stdin: Annotated[
        bool,
        typer.Option("--secret-stdin", help="Read the signing secret from stdin (else one is generated)."),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe a URL to events; prints the signing secret once (generated unless --secret-stdin).

    Example: ``flowport webhooks add ops --target https://ops.example.com/hook -e job.failed -e 'pipeline.*'``
    """
    secret = sys.stdin.readline().strip() if secret_stdin else None
    if secret_stdin and not secret:
        fail("--secret-stdin: no secret on stdin", as_json=as_json, code=2)
    try:
        with open_client(url, token, as_json) as client:
            hook = client.webhooks.create(name, url=target, events=event, secret=secret)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({**hook.record, **({"secret": hook.secret} if not secret_stdin else {})})
        return
    console.print(f"Webhook {hook.webhook_id} '{escape(name)}' created", highlight=False)
    if not secret_stdin:
        console.print(f"Signing secret (shown once): {hook.secret}", highlight=False)


@webhooks_app.command("remove")
def webhooks_remove(webhook: WebhookArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a webhook and its delivery log.

    Example: ``flowport webhooks remove 3``
    """
    try:
        with open_client(url, token, False) as client:
            client.webhooks.get(webhook).delete()
    except FlowportError as exc:
        failed(exc, as_json=False)
    console.print(f"Webhook {webhook} deleted", highlight=False)


@webhooks_app.command("test")
def webhooks_test(
    webhook: WebhookArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Queue a ping delivery (see it with `flowport webhooks deliveries`).

    Example: ``flowport webhooks test 3``
    """
    try:
        with open_client(url, token, as_json) as client:
            delivery = client.webhooks.get(webhook).test()
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(delivery)
    else:
        console.print(f"Ping queued (delivery {delivery['id']})", highlight=False)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook: WebhookArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """The delivery log: event, status, tries, last answer.

    Example: ``flowport webhooks deliveries 3``
    """
    try:
        with open_client(url, token, as_json) as client:
            rows = client.webhooks.get(webhook).deliveries()
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": rows, "count": len(rows)})
        return
    table = Table(title=f"Deliveries ({len(rows)})", title_justify="left")
    for column in ("Id", "Event", "Status", "Tries", "Last answer", "Created"):
        table.add_column(column)
    for r in rows:
        answer = str(r["lastStatusCode"] or "") or escape(r.get("lastError") or "-")
        table.add_row(
            str(r["id"]), r["event"], r["status"], str(r["attempts"]), answer, r["createdAt"] or "-"
        )
    console.print(table)
