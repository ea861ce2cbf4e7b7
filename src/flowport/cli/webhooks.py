"""``flowport webhooks``: signed POSTs of job and pipeline events from a Flowport server (admins).

Talks to a server through the SDK (``--url``/``--token`` or what ``flowport
login`` stored). The signing secret is printed once, by ``add`` (unless it
came from ``--secret-stdin``) and ``update --new-secret``; the server never
shows it again. Exit status: 0 success, 1 refused, 2 usage error.
"""

from __future__ import annotations

import secrets
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, print_json
from flowport.cli.remote import JsonOpt, TokenOpt, UrlOpt, fail, failed, open_client
from flowport.errors import FlowportError, NotFound

if TYPE_CHECKING:  # the SDK imports httpx: open_client() imports it when a command talks to a server
    from flowport.sdk import Client, Webhook

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(help="Webhooks: signed POSTs of job and pipeline events.", no_args_is_help=True)

WebhookArg = Annotated[
    str, typer.Argument(help="The webhook's id or name.", metavar="WEBHOOK", show_default=False)
]
SecretStdinOpt = Annotated[
    bool, typer.Option("--secret-stdin", help="Read the signing secret from stdin (one line).")
]


def _webhook(client: Client, wanted: str, as_json: bool) -> Webhook:
    try:
        if wanted.strip().isdigit():
            try:
                return client.webhooks.get(int(wanted))
            except NotFound:
                pass
        return client.webhooks.get(name=wanted)
    except NotFound:
        fail(f"No webhook with id or name '{wanted}' on {client.url}", as_json=as_json, code=2)


def _read_secret(as_json: bool) -> str:
    secret = sys.stdin.readline().strip()
    if not secret:
        fail("--secret-stdin: no secret on stdin", as_json=as_json, code=2)
    return secret


def _show(record: dict[str, Any]) -> None:
    lines = [
        f"Webhook {record['id']} '{escape(record['name'])}'"
        + ("" if record["enabled"] else " [yellow](disabled)[/yellow]"),
        f"  url:     {escape(record['url'])}",
        f"  events:  {', '.join(record['events'])}",
        f"  updated: {record.get('updatedAt') or '-'}",
    ]
    if record.get("description"):
        lines.append(f"  {escape(record['description'])}")
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


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


@webhooks_app.command("show")
def webhooks_show(
    webhook: WebhookArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a webhook: URL, events, enabled (never its secret).

    Example: ``flowport webhooks show ops``
    """
    try:
        with open_client(url, token, as_json) as client:
            record = _webhook(client, webhook, as_json).record
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    print_json(record) if as_json else _show(record)


@webhooks_app.command("add")
def webhooks_add(
    name: Annotated[str, typer.Argument(help="A name for the webhook.", show_default=False)],
    target: Annotated[str, typer.Option("--target", help="The URL Flowport POSTs to.")],
    event: Annotated[
        list[str],
        typer.Option("--event", "-e", help="An event or pattern (repeatable): job.failed, job.*, *"),
    ],
    description: Annotated[str, typer.Option("--description", help="What it is for.")] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    secret_stdin: SecretStdinOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe a URL to events; prints the signing secret once (generated unless --secret-stdin).

    Example: ``flowport webhooks add ops --target https://ops.example.com/hook -e job.failed -e 'pipeline.*'``
    """
    secret = _read_secret(as_json) if secret_stdin else None
    try:
        with open_client(url, token, as_json) as client:
            hook = client.webhooks.create(
                name, url=target, events=event, secret=secret, description=description, enabled=not disabled
            )
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({**hook.record, **({"secret": hook.secret} if not secret_stdin else {})})
        return
    _show(hook.record)
    if not secret_stdin:
        console.print(f"Signing secret (shown once, keep it now): {hook.secret}", highlight=False)


@webhooks_app.command("update")
def webhooks_update(
    webhook: WebhookArg,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="A new URL.")] = None,
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="The new events (repeatable; replace the list).")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="A new description.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Send events, or stop (deliveries wait).")
    ] = None,
    secret_stdin: SecretStdinOpt = False,
    new_secret: Annotated[
        bool, typer.Option("--new-secret", help="Generate a new signing secret and print it once.")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a webhook; only the options given change.

    Example: ``flowport webhooks update ops --disable`` or ``flowport webhooks update ops --new-secret``
    """
    if secret_stdin and new_secret:
        fail("give --secret-stdin or --new-secret, not both", as_json=as_json, code=2)
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("name", name),
            ("url", target),
            ("events", event),
            ("description", description),
            ("enabled", enabled),
        )
        if value is not None
    }
    secret = _read_secret(as_json) if secret_stdin else (secrets.token_urlsafe(32) if new_secret else None)
    if secret is not None:
        changes["secret"] = secret
    if not changes:
        fail("nothing to change: give at least one option (see --help)", as_json=as_json, code=2)
    try:
        with open_client(url, token, as_json) as client:
            record = _webhook(client, webhook, as_json).update(**changes).record
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({**record, **({"secret": secret} if new_secret else {})})
        return
    _show(record)
    if new_secret:
        console.print(f"New signing secret (shown once, keep it now): {secret}", highlight=False)


@webhooks_app.command("remove")
def webhooks_remove(
    webhook: WebhookArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a webhook and its delivery log.

    Example: ``flowport webhooks remove 3``
    """
    try:
        with open_client(url, token, as_json) as client:
            found = _webhook(client, webhook, as_json)
            found.delete()
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"deleted": {"id": found.webhook_id}})
    else:
        console.print(f"Webhook {found.webhook_id} deleted", highlight=False)


@webhooks_app.command("test")
def webhooks_test(
    webhook: WebhookArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Queue a ping delivery (see it with `flowport webhooks deliveries`).

    Example: ``flowport webhooks test 3``
    """
    try:
        with open_client(url, token, as_json) as client:
            delivery = _webhook(client, webhook, as_json).test()
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
    """The delivery log, newest first: event, status, tries, last answer, next try.

    Example: ``flowport webhooks deliveries 3``
    """
    try:
        with open_client(url, token, as_json) as client:
            rows = _webhook(client, webhook, as_json).deliveries()
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": rows, "count": len(rows)})
        return
    table = Table(title=f"Deliveries ({len(rows)})", title_justify="left")
    for column in ("Id", "Event", "Status", "Tries", "Last answer", "Next try", "Created"):
        table.add_column(column)
    for r in rows:
        answer = str(r["lastStatusCode"] or "") or escape(r.get("lastError") or "-")
        table.add_row(
            str(r["id"]),
            r["event"],
            r["status"],
            str(r["attempts"]),
            answer,
            r.get("nextAttemptAt") or "-",
            r["createdAt"] or "-",
        )
    console.print(table)


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    webhook: WebhookArg,
    delivery: Annotated[
        int, typer.Argument(help="The delivery's id (see `deliveries`).", show_default=False)
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a delivery again (a failed one gets one more try).

    Example: ``flowport webhooks redeliver 3 41``
    """
    try:
        with open_client(url, token, as_json) as client:
            record = _webhook(client, webhook, as_json).redeliver(delivery)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(record)
    else:
        console.print(f"Delivery {record['id']} ({record['event']}) queued again", highlight=False)
