"""``flowport init`` and ``flowport connections ...``.

Secrets enter through ``--password-stdin`` (or, discouraged, inside
``--url``) and are never printed: the commands show the user name only,
and every error message is scrubbed of the password given on the command
line before it is shown. Exit status: 0 success, 1 failure (or a failed
``test``), 2 usage error. With ``--json`` each command prints exactly one
JSON document on stdout.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.errors import FlowportError, ValidationFailed
from flowport.services import connections as service

__all__ = ["connections_app", "init"]

connections_app = typer.Typer(
    help="Connections to databases, APIs and folders (credentials are encrypted at rest).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]
RefArg = Annotated[str, typer.Argument(help="Connection id, uuid or name.", show_default=False)]

# URL schemes --url understands, and the vendor each one means.
_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "redshift": "redshift",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "duckdb": "duckdb",
    "http": "http",
    "https": "http",
    "file": "filesystem",
}
_FILE_VENDORS = ("sqlite", "duckdb")
_SSL_MODES = {"require", "verify-ca", "verify-full"}


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _fail(message: str, *, as_json: bool, code: int = 1, secrets: list[str] | None = None) -> typer.Exit:
    message = _scrub(message, secrets or [])
    if as_json:
        print_json({"error": message})
    else:
        err_console.print(f"[red]Error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _error(exc: FlowportError, *, as_json: bool, secrets: list[str] | None = None) -> typer.Exit:
    # A body the service rejects is a usage error, like a bad option.
    code = 2 if isinstance(exc, ValidationFailed) else 1
    return _fail(exc.message, as_json=as_json, code=code, secrets=secrets)


def _parse_params(items: list[str] | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"'{key}' is not KEY=VALUE", param_hint="--param")
        values[key.strip()] = value
    return values


def _file_path(raw: str) -> str:
    # Runs start in other working directories: keep database files absolute.
    if raw in ("", ":memory:"):
        return raw or ":memory:"
    return str(Path(raw).expanduser().resolve())


def _from_url(url: str) -> dict[str, Any]:
    """The connection fields a URL gives (vendor, host, port, params, ssl, user, password)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower().split("+", 1)[0]
    vendor = _SCHEMES.get(scheme)
    if vendor is None:
        raise typer.BadParameter(
            f"unknown scheme '{parts.scheme}:'; expected one of {', '.join(sorted(_SCHEMES))}",
            param_hint="--url",
        )
    fields: dict[str, Any] = {"vendor": vendor, "params": {}, "ssl": False}
    try:
        port = parts.port
    except ValueError:
        raise typer.BadParameter("the port is not a number between 0 and 65535", param_hint="--url") from None
    fields["user"] = unquote(parts.username) if parts.username else None
    fields["password"] = unquote(parts.password) if parts.password is not None else None
    path = unquote(parts.path)
    if vendor in _FILE_VENDORS:
        # sqlite:///relative.db and sqlite:////absolute.db, as in SQLAlchemy.
        fields["params"]["path"] = _file_path(path[1:] if path.startswith("/") else path)
        return fields
    if vendor == "filesystem":
        fields["params"]["path"] = _file_path(path)
        return fields
    fields["host"] = parts.hostname
    fields["port"] = port
    if vendor == "http":
        host = parts.hostname or ""
        netloc = host + (f":{port}" if port else "")
        fields["params"]["baseUrl"] = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        fields["ssl"] = parts.scheme.lower() == "https"
        return fields
    if path.strip("/"):
        fields["params"]["defaultDatabase"] = path.strip("/")
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "sslmode":
            fields["ssl"] = value in _SSL_MODES
        elif key == "ssl":
            fields["ssl"] = value.lower() in ("1", "true", "yes", "require")
        else:
            fields["params"][key] = value
    return fields


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    text = sys.stdin.read()
    # Only the line end `echo` or a file adds: spaces may be part of a password.
    return text[:-1] if text.endswith("\n") else text


def _database(row: Any) -> str:
    params = row.params or {}
    value = (
        params.get("defaultDatabase") or params.get("database") or params.get("path") or params.get("baseUrl")
    )
    return "" if value is None else str(value)


@connections_app.command("add")
def add(
    name: Annotated[
        str, typer.Argument(help="Connection name (unique in this instance).", show_default=False)
    ],
    vendor: Annotated[
        str | None,
        typer.Option(
            help="postgresql, redshift, mysql, sqlite, duckdb, http or filesystem (implied by --url)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Host name or address.")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: the vendor's).")] = None,
    database: Annotated[
        str | None, typer.Option(help="Default database (the file for sqlite/duckdb).", show_default=False)
    ] = None,
    user: Annotated[str | None, typer.Option(help="User name.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            help="postgresql://user@host:port/db, mysql://..., sqlite:///path, duckdb:///path, "
            "https://api..., file:///folder. Instead of --host/--port/--database/--user."
        ),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Vendor parameter KEY=VALUE (repeatable).")
    ] = None,
    ssl: Annotated[bool, typer.Option("--ssl", help="Require TLS.")] = False,
    description: Annotated[str, typer.Option(help="What this connection is for.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a connection; the password is encrypted with the instance's secret key."""
    fields: dict[str, Any] = {"params": {}, "ssl": False}
    if url is not None:
        given = [
            opt
            for opt, value in (("--host", host), ("--port", port), ("--database", database), ("--user", user))
            if value is not None
        ]
        if given:
            raise typer.BadParameter(f"--url cannot be combined with {', '.join(given)}", param_hint="--url")
        fields = _from_url(url)
        if fields["password"] is not None:
            err_console.print(
                "[yellow]Warning:[/yellow] the password given in --url is now in your shell history; "
                "prefer --password-stdin",
                highlight=False,
                soft_wrap=True,
            )
        if vendor is not None:
            vendor = _SCHEMES.get(vendor.strip().lower(), vendor)  # postgres, mariadb, ... as in URLs
        if vendor is not None and vendor != fields["vendor"]:
            # Redshift speaks the PostgreSQL protocol, so postgresql:// URLs serve both.
            if not (fields["vendor"] == "postgresql" and vendor == "redshift"):
                raise typer.BadParameter(
                    f"--vendor {vendor} does not match the --url scheme", param_hint="--vendor"
                )
            fields["vendor"] = vendor
    elif vendor is None:
        raise typer.BadParameter("give --vendor, or a --url", param_hint="--vendor")
    else:
        fields.update(vendor=vendor, host=host, port=port, user=user, password=None)
        if database is not None:
            key = "path" if vendor in _FILE_VENDORS else "defaultDatabase"
            fields["params"][key] = _file_path(database) if vendor in _FILE_VENDORS else database
    if password_stdin:
        if fields.get("password") is not None:
            raise typer.BadParameter("the --url already has a password", param_hint="--password-stdin")
        fields["password"] = _read_password()
        if not fields["password"]:
            raise typer.BadParameter("standard input held no password", param_hint="--password-stdin")
    password: str | None = fields.get("password")
    secrets = [password] if password else []
    credentials: dict[str, str] = {}
    if fields.get("user"):
        credentials["username"] = fields["user"]
    if password:
        credentials["password"] = password
    body = {
        "name": name,
        "vendor": fields["vendor"],
        "host": fields.get("host"),
        "port": fields.get("port"),
        "params": {**fields["params"], **_parse_params(param)},
        "ssl": ssl or fields["ssl"],
        "description": description,
        "credentials": [credentials] if credentials else [],
    }
    try:
        row = service.add_connection(body, confined=False)
    except FlowportError as exc:
        raise _error(exc, as_json=as_json, secrets=secrets) from None
    if as_json:
        print_json(service.connection_public_dict(row))
        return
    console.print(
        f"Added connection [bold]{escape(row.name)}[/bold] (id {row.id}, uuid {row.uuid})",
        highlight=False,
        soft_wrap=True,
    )


@connections_app.command("list")
def list_(
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many.")] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List connections (user names only, never secrets)."""
    try:
        rows = service.list_connections(limit=limit, offset=offset)
        total = service.count_connections()
    except FlowportError as exc:
        raise _error(exc, as_json=as_json) from None
    if as_json:
        print_json({"data": [service.connection_public_dict(r) for r in rows], "count": total})
        return
    table = Table(title=f"Connections ({total})", title_justify="left")
    for column in ("ID", "Name", "Vendor", "Host", "Port", "Database", "User", "UUID"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.id),
            escape(r.name),
            r.vendor,
            escape(r.host or ""),
            str(r.port or ""),
            escape(_database(r)),
            escape(r.username or ""),
            str(r.uuid),
        )
    console.print(table)


@connections_app.command("show")
def show(ref: RefArg, as_json: JsonOpt = False) -> None:
    """Show one connection (the user name, never a secret)."""
    try:
        row = service.get_connection(ref)
    except FlowportError as exc:
        raise _error(exc, as_json=as_json) from None
    data = service.connection_public_dict(row)
    if as_json:
        print_json(data)
        return
    table = Table(show_header=False, box=None, title=escape(row.name), title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("ID", data["id"]),
        ("UUID", data["uuid"]),
        ("Vendor", data["vendor"]),
        ("Type", data["type"]),
        ("Host", data["host"]),
        ("Port", data["port"]),
        *((f"params.{k}", v) for k, v in data["params"].items()),
        ("SSL", data["ssl"]),
        ("Credential type", data["credentialType"]),
        ("User", row.username),
        ("Secrets", "stored, encrypted" if row.secret is not None else "none"),
        ("Global", data["isGlobal"]),
        ("Description", data["description"]),
        ("Created", data["createdAt"]),
        ("Updated", data["updatedAt"]),
    ]
    for label, value in rows:
        table.add_row(label, escape("" if value is None else str(value)))
    console.print(table)


@connections_app.command("test")
def test(ref: RefArg, as_json: JsonOpt = False) -> None:
    """Connect with the stored credentials; exit 1 with the driver's reason when it fails."""
    try:
        row = service.get_connection(ref)
        result = service.test_connection(row.id, confined=False)
    except FlowportError as exc:
        raise _error(exc, as_json=as_json) from None
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "message": result.message,
                "connection": {"id": row.id, "uuid": str(row.uuid), "name": row.name},
            }
        )
    elif result.ok:
        console.print(f"[green]OK[/green] {escape(result.message)}", highlight=False, soft_wrap=True)
    else:
        err_console.print(f"[red]Failed[/red] {escape(result.message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if result.ok else 1)


@connections_app.command("remove")
def remove(ref: RefArg, as_json: JsonOpt = False) -> None:
    """Delete a connection and its stored credentials."""
    try:
        row = service.remove_connection(ref)
    except FlowportError as exc:
        raise _error(exc, as_json=as_json) from None
    if as_json:
        print_json({"deleted": service.connection_public_dict(row)})
        return
    console.print(f"Removed connection [bold]{escape(row.name)}[/bold] (id {row.id})", highlight=False)


def init(as_json: JsonOpt = False) -> None:
    """Create or upgrade this instance's metadata store and secret key (safe to run again)."""
    try:
        info = service.init_instance()
    except FlowportError as exc:
        raise _error(exc, as_json=as_json) from None
    if as_json:
        print_json(info.to_dict())
        return
    console.print(f"Flowport instance [bold]{info.uuid}[/bold] is ready", highlight=False)
    console.print(f"  Home:       {escape(str(info.home))}", highlight=False, soft_wrap=True)
    console.print(
        f"  Database:   {escape(info.database)} (revision {info.revision})", highlight=False, soft_wrap=True
    )
    console.print(f"  Secret key: {escape(info.secret_key.describe())}", highlight=False, soft_wrap=True)
    if info.secret_key.created:
        console.print(
            "  Back the key up: without it the stored credentials cannot be decrypted.", highlight=False
        )
    for warning in info.warnings:
        err_console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
