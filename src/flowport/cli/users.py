"""``flowport users ...`` and ``flowport tokens ...``: who may use this instance's API.

These commands act on the local instance as a trusted operator (no
sign-in). A password enters through ``--password-stdin``, a prompt, or
(discouraged: shell history) ``--password``; it is never printed. A new
API token is printed once, by ``tokens create``; afterwards only its
prefix is shown. Exit status: 0 success, 1 failure, 2 usage error. With
``--json`` each command prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.errors import FlowportError, ValidationFailed

__all__ = ["tokens_app", "users_app"]

users_app = typer.Typer(help="Users of this instance's API and their roles.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (Authorization: Bearer ...).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]


def _fail(exc: FlowportError, *, as_json: bool, secrets: list[str] | None = None) -> typer.Exit:
    message = exc.message
    for secret in secrets or []:
        if secret:
            message = message.replace(secret, "***")
    if as_json:
        print_json({"error": message})
    else:
        err_console.print(f"[red]Error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    # A value the service rejects is a usage error, like a bad option.
    return typer.Exit(2 if isinstance(exc, ValidationFailed) else 1)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != first:
            raise typer.BadParameter("the two passwords differ", param_hint="password")
        return first
    text = sys.stdin.read()
    # Only the line end `echo` or a file adds: spaces may be part of a password.
    return text[:-1] if text.endswith("\n") else text


def _time(value: str | None) -> str:
    return value or "-"


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="User name (unique; no spaces or ':').", show_default=False)],
    role: Annotated[str, typer.Option(help="admin, editor or viewer.")] = "viewer",
    password: Annotated[
        str | None,
        typer.Option(
            help="The password (stays in shell history: prefer --password-stdin).", show_default=False
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a user with a password (hashed with argon2) and a role.

    Example: ``flowport users create analyst --role editor --password-stdin < password.txt``
    """
    from flowport.services import auth

    if password is not None and password_stdin:
        raise typer.BadParameter("give --password or --password-stdin, not both", param_hint="--password")
    if password is None:
        if not password_stdin and not sys.stdin.isatty():
            raise typer.BadParameter("give --password-stdin (or --password)", param_hint="--password-stdin")
        password = _read_password()
    try:
        user = auth.create_user(name, password, role)
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json, secrets=[password]) from None
    if as_json:
        print_json(user.to_dict())
        return
    console.print(
        f"Created user [bold]{escape(user.name)}[/bold] (id {user.id}, role {user.role})",
        highlight=False,
        soft_wrap=True,
    )


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """List the users and their roles.

    Example: ``flowport users list --json``
    """
    from flowport.services import auth

    try:
        page = auth.list_users(no_limit=True)
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json) from None
    if as_json:
        print_json(page)
        return
    table = Table(title=f"Users ({page['count']})", title_justify="left")
    for column in ("Id", "Name", "Role", "Created"):
        table.add_column(column)
    for user in page["data"]:
        table.add_row(str(user["id"]), escape(user["name"]), user["role"], _time(user["createdAt"]))
    console.print(table)


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="The user the token acts as.", show_default=False)],
    name: Annotated[
        str, typer.Option("--name", help="What the token is for (e.g. ci-deploy).", show_default=False)
    ],
    as_json: JsonOpt = False,
) -> None:
    """Create an API token; it is printed this once and cannot be shown again.

    Example: ``flowport tokens create --user admin --name ci-deploy``
    """
    from flowport.services import auth

    try:
        token, record = auth.create_token(user, name)
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json) from None
    if as_json:
        print_json({**record, "token": token})
        return
    err_console.print(
        f"Created token [bold]{escape(record['name'])}[/bold] (id {record['id']}) for user "
        f"{escape(user)}. Copy it now: it will not be shown again.",
        highlight=False,
        soft_wrap=True,
    )
    # The token alone on stdout, so that `$(flowport tokens create ...)` captures just it.
    sys.stdout.write(token + "\n")
    sys.stdout.flush()


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List API tokens (their prefix, never the token).

    Example: ``flowport tokens list --user admin``
    """
    from flowport.services import auth

    try:
        page: dict[str, Any] = auth.list_tokens(user, no_limit=True)
        names = {u["id"]: u["name"] for u in auth.list_users(no_limit=True)["data"]}
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json) from None
    if as_json:
        print_json(page)
        return
    table = Table(title=f"API tokens ({page['count']})", title_justify="left")
    for column in ("Id", "Name", "User", "Prefix", "Created", "Last used", "Revoked"):
        table.add_column(column)
    for token in page["data"]:
        table.add_row(
            str(token["id"]),
            escape(token["name"]),
            escape(names.get(token["user"]["id"], str(token["user"]["id"]))),
            escape(token["prefix"]) + "…",
            _time(token["createdAt"]),
            _time(token["lastUsedAt"]),
            _time(token["revokedAt"]),
        )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (see tokens list).", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API token: it stops working at once.

    Example: ``flowport tokens revoke 4``
    """
    from flowport.services import auth

    try:
        record = auth.revoke_token(token_id)
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json) from None
    if as_json:
        print_json(record)
        return
    console.print(f"Revoked token {escape(record['name'])} (id {record['id']})", highlight=False)
