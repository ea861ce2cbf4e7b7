"""``flowport init`` and ``flowport connections ...``.

Secrets (password, bearer token, API key, Hawk id and key, IAM role ARN)
enter through ``--...-stdin`` options (or, discouraged, as option values or
inside ``--url``) and are never printed: the commands show the user name
and the credential type only, and every error message is scrubbed of the
secrets given before it is shown. Exit status: 0 success, 1 failure (or a failed
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
from flowport.cli.params import parse_params
from flowport.errors import FlowportError, ValidationFailed

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


def _read_secret(label: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"{label}: ")
    text = sys.stdin.read()
    # Only the line end `echo` or a file adds: spaces may be part of a secret.
    return text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text


def _database(row: Any) -> str:
    params = row.params or {}
    value = (
        params.get("defaultDatabase") or params.get("database") or params.get("path") or params.get("baseUrl")
    )
    return "" if value is None else str(value)


# -- credentials -------------------------------------------------------------------------------
#
# The keys each credential type stores, named as the drivers and stages read them
# (flowport/stages/http/_auth.py; the seed's Redshift connection for iamRoleArn). ``username`` is
# public (shown as the user); every other key is a secret, encrypted at rest and never shown.
_TYPE_KEYS: dict[str, frozenset[str]] = {
    "basic": frozenset({"username", "password"}),
    "bearer": frozenset({"token"}),
    "api_key": frozenset({"api_key"}),
    "hawk": frozenset({"username", "hawk_id", "hawk_key"}),
    "iamRoleArn": frozenset({"username", "password", "iamRoleArn"}),
}
# What each type needs: one key of every group.
_REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "bearer": (("token",),),
    "api_key": (("api_key",),),
    "hawk": (("hawk_key",), ("hawk_id", "username")),
    "iamRoleArn": (("iamRoleArn",),),
}
# The type a key or a parameter implies (a user name and a password fit several).
_IMPLIES = {
    "token": "bearer",
    "api_key": "api_key",
    "apiKeyHeader": "api_key",
    "hawk_id": "hawk",
    "hawk_key": "hawk",
    "hawkAlgorithm": "hawk",
    "iamRoleArn": "iamRoleArn",
}
_OPTIONS = {
    "username": "--user",
    "password": "--password",
    "token": "--token",
    "api_key": "--api-key",
    "apiKeyHeader": "--api-key-header",
    "hawk_id": "--hawk-id",
    "hawk_key": "--hawk-key",
    "hawkAlgorithm": "--hawk-algorithm",
    "iamRoleArn": "--iam-role-arn",
}
_NOUNS = {
    "password": "password",
    "token": "token",
    "api_key": "API key",
    "hawk_id": "Hawk id",
    "hawk_key": "Hawk key",
    "iamRoleArn": "IAM role ARN",
}
# Secrets proper: given as an option value they stay in the shell history.
_HISTORY_WARNED = ("password", "token", "api_key", "hawk_key")
# Types that share the user name and password: switching between them keeps those.
_SHARED_TYPES = frozenset({"basic", "iamRoleArn"})
_HAWK_ALGORITHMS = ("sha256", "sha1")
_PANEL = "Credentials"

UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user", help="User name (shown by list and show; never a secret).", rich_help_panel=_PANEL
    ),
]
PasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--password",
        help="Password (basic or IAM role credentials); prefer --password-stdin, a value here stays in "
        "your shell history.",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input.", rich_help_panel=_PANEL),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Bearer token (credential type bearer, sent as Authorization: Bearer); prefer --token-stdin.",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
TokenStdinOpt = Annotated[
    bool,
    typer.Option("--token-stdin", help="Read the bearer token from standard input.", rich_help_panel=_PANEL),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key value (credential type api_key); prefer --api-key-stdin.",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
ApiKeyStdinOpt = Annotated[
    bool,
    typer.Option("--api-key-stdin", help="Read the API key from standard input.", rich_help_panel=_PANEL),
]
ApiKeyHeaderOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key-header",
        "--api-key-name",
        help="Header that carries the API key (params.apiKeyHeader; stages default to X-API-Key).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
HawkIdOpt = Annotated[
    str | None,
    typer.Option(
        "--hawk-id",
        help="Hawk id (credential type hawk; stored encrypted).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
HawkIdStdinOpt = Annotated[
    bool,
    typer.Option("--hawk-id-stdin", help="Read the Hawk id from standard input.", rich_help_panel=_PANEL),
]
HawkKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--hawk-key",
        help="Hawk key (credential type hawk); prefer --hawk-key-stdin.",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
HawkKeyStdinOpt = Annotated[
    bool,
    typer.Option("--hawk-key-stdin", help="Read the Hawk key from standard input.", rich_help_panel=_PANEL),
]
HawkAlgorithmOpt = Annotated[
    str | None,
    typer.Option(
        "--hawk-algorithm",
        help="Hawk MAC algorithm, sha256 or sha1 (params.hawkAlgorithm; stages default to sha256).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
IamRoleArnOpt = Annotated[
    str | None,
    typer.Option(
        "--iam-role-arn",
        help="IAM role ARN (credential type iamRoleArn, with --user and a password; stored encrypted).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
IamRoleArnStdinOpt = Annotated[
    bool,
    typer.Option(
        "--iam-role-arn-stdin", help="Read the IAM role ARN from standard input.", rich_help_panel=_PANEL
    ),
]


def _with_stdin(key: str) -> str:
    option = _OPTIONS[key]
    return option if key == "username" else f"{option} (or {option}-stdin)"


def _gather(inline: dict[str, str | None], from_stdin: dict[str, bool]) -> dict[str, str]:
    """The credentials given: option values, and at most one secret read from standard input.

    Raises:
        typer.BadParameter: a key given twice, two keys asked from standard input, an empty value.
    """
    wanted = [key for key, asked in from_stdin.items() if asked]
    for key in wanted:
        if inline.get(key) is not None:
            raise typer.BadParameter(
                f"give {_OPTIONS[key]} or {_OPTIONS[key]}-stdin, not both",
                param_hint=f"{_OPTIONS[key]}-stdin",
            )
    if len(wanted) > 1:
        options = ", ".join(f"{_OPTIONS[key]}-stdin" for key in wanted)
        raise typer.BadParameter(
            f"standard input gives one secret: use one of {options}, and the option itself for the others",
            param_hint="credentials",
        )
    given: dict[str, str] = {}
    for key, value in inline.items():
        if value is None:
            continue
        if not value:
            raise typer.BadParameter("the value is empty", param_hint=_OPTIONS[key])
        given[key] = value
        if key in _HISTORY_WARNED:
            err_console.print(
                f"[yellow]Warning:[/yellow] the {_NOUNS[key]} given with {_OPTIONS[key]} is now in your "
                f"shell history; prefer {_OPTIONS[key]}-stdin",
                highlight=False,
                soft_wrap=True,
            )
    for key in wanted:
        noun = _NOUNS[key]
        value = _read_secret(noun[:1].upper() + noun[1:])
        if not value:
            raise typer.BadParameter(
                f"standard input held no {noun}",
                param_hint=f"{_OPTIONS[key]}-stdin",
            )
        given[key] = value
    return given


def _credential_type(given: set[str], params: set[str], current: str | None) -> str:
    """The credential type the given keys and parameters mean (``current`` when they fit it)."""
    implying = sorted(key for key in given | params if key in _IMPLIES)
    implied = {_IMPLIES[key] for key in implying}
    if len(implied) > 1:
        raise typer.BadParameter(
            f"{', '.join(_OPTIONS[key] for key in implying)} belong to different credential types "
            f"({', '.join(sorted(implied))}): give the options of one",
            param_hint="credentials",
        )
    if implied:
        kind = implied.pop()
    elif current in _TYPE_KEYS and given <= _TYPE_KEYS[current]:
        kind = current
    else:
        kind = "basic"
    extra = sorted(given - _TYPE_KEYS[kind])
    if extra:
        raise typer.BadParameter(
            f"{', '.join(_OPTIONS[key] for key in extra)} cannot be used with {kind} credentials",
            param_hint="credentials",
        )
    return kind


def _check_complete(kind: str, credentials: dict[str, str]) -> None:
    for group in _REQUIRED.get(kind, ()):
        if not any(credentials.get(key) for key in group):
            raise typer.BadParameter(
                f"{kind} credentials need {' or '.join(_with_stdin(key) for key in group)}",
                param_hint="credentials",
            )


def _option_params(api_key_header: str | None, hawk_algorithm: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if api_key_header is not None:
        if not api_key_header.strip():
            raise typer.BadParameter("the header name is empty", param_hint="--api-key-header")
        params["apiKeyHeader"] = api_key_header.strip()
    if hawk_algorithm is not None:
        algorithm = hawk_algorithm.strip().lower()
        if algorithm not in _HAWK_ALGORITHMS:
            raise typer.BadParameter(f"one of {', '.join(_HAWK_ALGORITHMS)}", param_hint="--hawk-algorithm")
        params["hawkAlgorithm"] = algorithm
    return params


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
    user: UserOpt = None,
    password: PasswordOpt = None,
    password_stdin: PasswordStdinOpt = False,
    token: TokenOpt = None,
    token_stdin: TokenStdinOpt = False,
    api_key: ApiKeyOpt = None,
    api_key_stdin: ApiKeyStdinOpt = False,
    api_key_header: ApiKeyHeaderOpt = None,
    hawk_id: HawkIdOpt = None,
    hawk_id_stdin: HawkIdStdinOpt = False,
    hawk_key: HawkKeyOpt = None,
    hawk_key_stdin: HawkKeyStdinOpt = False,
    hawk_algorithm: HawkAlgorithmOpt = None,
    iam_role_arn: IamRoleArnOpt = None,
    iam_role_arn_stdin: IamRoleArnStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a connection; its secrets are encrypted with the instance's secret key.

    Credential types: --user/--password basic, --token bearer, --api-key api_key,
    --hawk-id/--hawk-key hawk, --iam-role-arn iamRoleArn (with --user/--password).
    Each secret has a --...-stdin variant (one per command): no shell history.

    Example: ``flowport connections add dw --url postgresql://loader@db/analytics --password-stdin < pw.txt``

    Example: ``flowport connections add hub --url https://hub.example --hawk-id ID --hawk-key-stdin < key``
    """
    from flowport.services import connections as service

    fields: dict[str, Any] = {"params": {}, "ssl": False}
    url_password: str | None = None
    if url is not None:
        given = [
            opt
            for opt, value in (("--host", host), ("--port", port), ("--database", database), ("--user", user))
            if value is not None
        ]
        if given:
            raise typer.BadParameter(f"--url cannot be combined with {', '.join(given)}", param_hint="--url")
        fields = _from_url(url)
        url_password = fields["password"]
        if url_password is not None:
            err_console.print(
                "[yellow]Warning:[/yellow] the password given in --url is now in your shell history; "
                "prefer --password-stdin",
                highlight=False,
                soft_wrap=True,
            )
            if password_stdin or password is not None:
                option = "--password-stdin" if password_stdin else "--password"
                raise typer.BadParameter("the --url already has a password", param_hint=option)
        user = fields["user"]
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
        fields.update(vendor=vendor, host=host, port=port)
        if database is not None:
            key = "path" if vendor in _FILE_VENDORS else "defaultDatabase"
            fields["params"][key] = _file_path(database) if vendor in _FILE_VENDORS else database
    credentials = _gather(
        {
            "username": user,
            "password": password,
            "token": token,
            "api_key": api_key,
            "hawk_id": hawk_id,
            "hawk_key": hawk_key,
            "iamRoleArn": iam_role_arn,
        },
        {
            "password": password_stdin,
            "token": token_stdin,
            "api_key": api_key_stdin,
            "hawk_id": hawk_id_stdin,
            "hawk_key": hawk_key_stdin,
            "iamRoleArn": iam_role_arn_stdin,
        },
    )
    if url_password is not None:
        credentials["password"] = url_password
    # Scrubbed from any message shown.
    secrets = [value for key, value in credentials.items() if key != "username"]
    option_params = _option_params(api_key_header, hawk_algorithm)
    kind = _credential_type(set(credentials), set(option_params), None)
    _check_complete(kind, credentials)
    body = {
        "name": name,
        "vendor": fields["vendor"],
        "host": fields.get("host"),
        "port": fields.get("port"),
        "params": {**fields["params"], **parse_params(param, form="KEY=VALUE"), **option_params},
        "ssl": ssl or fields["ssl"],
        "description": description,
        "credentialType": kind,
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


def _merged_credentials(row: Any, kind: str, given: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The credentials after an update: the given ones over the stored ones the new type keeps.

    The stored values kept are those of the same type (or, between basic and iamRoleArn, the
    user name and password); another type's keys are dropped. Returns the credentials and the
    stored secret values read (to scrub from messages).
    """
    from flowport.services import connections as service

    same = kind == row.credential_type or {kind, row.credential_type} <= _SHARED_TYPES
    keep = set(_TYPE_KEYS[kind] - set(given)) if same else set()
    if kind == "hawk" and "hawk_id" in given:
        keep.discard("username")  # the stages take a user name as the Hawk id before hawk_id
    merged: dict[str, str] = {}
    if "username" in keep and row.username:
        merged["username"] = row.username
    stored_secrets: list[str] = []
    if keep - {"username"} and row.secret is not None:
        try:
            spec = service.connection_spec(row.id, confined=False)
        except FlowportError as exc:  # the secret key changed: what is not given cannot be kept
            options = ", ".join(_OPTIONS[key] for key in sorted(_TYPE_KEYS[kind]))
            raise FlowportError(f"{exc.message} Here: give every {kind} credential ({options}).") from None
        for key in sorted(keep - {"username"}):
            value = spec.secret(key)
            if value:
                merged[key] = value
        stored_secrets = spec.secret_values()
    merged.update(given)
    return merged, stored_secrets


@connections_app.command("update")
def update(
    ref: RefArg,
    new_name: Annotated[
        str | None, typer.Option("--name", help="A new name for the connection.", show_default=False)
    ] = None,
    host: Annotated[str | None, typer.Option(help="Host name or address.", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port.", show_default=False)] = None,
    database: Annotated[
        str | None, typer.Option(help="Default database (the file for sqlite/duckdb).", show_default=False)
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Set a vendor parameter KEY=VALUE (repeatable); others are kept."),
    ] = None,
    remove_param: Annotated[
        list[str] | None,
        typer.Option(
            "--remove-param", help="Remove a vendor parameter KEY (repeatable).", show_default=False
        ),
    ] = None,
    ssl: Annotated[
        bool | None,
        typer.Option("--ssl/--no-ssl", help="Require TLS, or stop requiring it.", show_default=False),
    ] = None,
    description: Annotated[
        str | None, typer.Option(help="What this connection is for.", show_default=False)
    ] = None,
    user: UserOpt = None,
    password: PasswordOpt = None,
    password_stdin: PasswordStdinOpt = False,
    token: TokenOpt = None,
    token_stdin: TokenStdinOpt = False,
    api_key: ApiKeyOpt = None,
    api_key_stdin: ApiKeyStdinOpt = False,
    api_key_header: ApiKeyHeaderOpt = None,
    hawk_id: HawkIdOpt = None,
    hawk_id_stdin: HawkIdStdinOpt = False,
    hawk_key: HawkKeyOpt = None,
    hawk_key_stdin: HawkKeyStdinOpt = False,
    hawk_algorithm: HawkAlgorithmOpt = None,
    iam_role_arn: IamRoleArnOpt = None,
    iam_role_arn_stdin: IamRoleArnStdinOpt = False,
    no_credentials: Annotated[
        bool,
        typer.Option(
            "--no-credentials", help="Remove the stored user name and secrets.", rich_help_panel=_PANEL
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change some fields of a connection; what is not given is kept.

    Credential options change only the credentials given: a new password keeps
    the user name. Options of another credential type switch to it and drop the
    old type's secrets (basic and iamRoleArn share the user name and password).

    Example: ``flowport connections update dw --host db2.internal --password-stdin < new-password.txt``

    Example: ``flowport connections update hub --token-stdin --param timeout=30 <<< "$API_TOKEN"``
    """
    from flowport.services import connections as service

    credentials = _gather(
        {
            "username": user,
            "password": password,
            "token": token,
            "api_key": api_key,
            "hawk_id": hawk_id,
            "hawk_key": hawk_key,
            "iamRoleArn": iam_role_arn,
        },
        {
            "password": password_stdin,
            "token": token_stdin,
            "api_key": api_key_stdin,
            "hawk_id": hawk_id_stdin,
            "hawk_key": hawk_key_stdin,
            "iamRoleArn": iam_role_arn_stdin,
        },
    )
    secrets = [value for key, value in credentials.items() if key != "username"]
    option_params = _option_params(api_key_header, hawk_algorithm)
    if no_credentials and (credentials or option_params):
        raise typer.BadParameter("cannot be combined with credential options", param_hint="--no-credentials")
    try:
        row = service.get_connection(ref)
        changes: dict[str, Any] = {}
        for key, value in (("name", new_name), ("host", host), ("port", port), ("ssl", ssl)):
            if value is not None:
                changes[key] = value
        if description is not None:
            changes["description"] = description
        params = dict(row.params or {})
        if database is not None:
            local_file = row.vendor in _FILE_VENDORS
            key = next(
                (k for k in ("defaultDatabase", "database", "path") if k in params),
                "path" if local_file else "defaultDatabase",
            )
            params[key] = _file_path(database) if local_file else database
        for key in remove_param or []:
            if key not in params:
                raise typer.BadParameter(
                    f"the connection has no parameter '{key}'", param_hint="--remove-param"
                )
            del params[key]
        params.update({**parse_params(param, form="KEY=VALUE"), **option_params})
        if params != (row.params or {}):
            changes["params"] = params
        if no_credentials:
            changes["credentials"] = []
            if row.credential_type != "basic":
                changes["credentialType"] = "basic"  # what a connection added without credentials has
        elif credentials or option_params:
            kind = _credential_type(set(credentials), set(option_params), row.credential_type)
            if credentials or kind != row.credential_type:
                merged, stored = _merged_credentials(row, kind, credentials)
                secrets += stored
                _check_complete(kind, merged)
                changes["credentials"] = [merged] if merged else []
                if kind != row.credential_type:
                    changes["credentialType"] = kind
        if not changes:
            raise typer.BadParameter("nothing to change: give the fields to change", param_hint="options")
        row = service.update_connection(row.id, changes, confined=False)
    except FlowportError as exc:
        raise _error(exc, as_json=as_json, secrets=secrets) from None
    if as_json:
        print_json(service.connection_public_dict(row))
        return
    what = ", ".join(sorted(changes))
    console.print(
        f"Updated connection [bold]{escape(row.name)}[/bold] (id {row.id}): {escape(what)}",
        highlight=False,
        soft_wrap=True,
    )


@connections_app.command("list")
def list_(
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many.")] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List connections (user names only, never secrets).

    Example: ``flowport connections list --json``
    """
    from flowport.services import connections as service

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
    """Show one connection (the user name and credential type, never a secret).

    Example: ``flowport connections show warehouse``
    """
    from flowport.services import connections as service

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
    """Connect with the stored credentials; exit 1 with the driver's reason when it fails.

    Example: ``flowport connections test warehouse``
    """
    from flowport.services import connections as service

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
    """Delete a connection and its stored credentials.

    Example: ``flowport connections remove 3``
    """
    from flowport.services import connections as service

    try:
        row = service.remove_connection(ref)
    except FlowportError as exc:
        raise _error(exc, as_json=as_json) from None
    if as_json:
        print_json({"deleted": service.connection_public_dict(row)})
        return
    console.print(f"Removed connection [bold]{escape(row.name)}[/bold] (id {row.id})", highlight=False)


def init(as_json: JsonOpt = False) -> None:
    """Create or upgrade this instance's metadata store and secret key (safe to run again).

    Example: ``flowport init --json``
    """
    from flowport.services import connections as service

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
