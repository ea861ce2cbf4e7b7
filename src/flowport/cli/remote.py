"""What the commands that talk to a Flowport server share: options, errors, credentials, the client.

Used by ``flowport login|logout|flows`` and ``flowport deployments``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.cli.params import parse_params
from flowport.errors import FlowportError, Unauthorized

if TYPE_CHECKING:  # the SDK imports httpx: only the commands that talk to a server pay for it
    from flowport.sdk import Client, Job
    from flowport.services.settings import Settings


def settings() -> Settings:
    """The instance's settings (imported on use: pydantic-settings costs start-up time)."""
    from flowport.services.settings import settings as _settings

    return _settings()


__all__ = [
    "CREDENTIALS_FILE",
    "JsonOpt",
    "RunParamOpt",
    "Server",
    "TimeoutOpt",
    "TokenOpt",
    "UrlOpt",
    "WaitOpt",
    "connect",
    "credentials_path",
    "fail",
    "failed",
    "find_server",
    "metrics_table",
    "open_client",
    "parse_params",
    "read_credentials",
    "report_job",
    "wait_for",
    "write_credentials",
]

CREDENTIALS_FILE = "cli-credentials.json"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="FLOWPORT_URL",
        help="Server URL (default: the one `flowport login` stored).",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="FLOWPORT_TOKEN",
        help="API token (default: the one `flowport login` stored). Prefer the environment variable.",
        show_default=False,
    ),
]
RunParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Parameter value NAME=VALUE for this run (repeatable)."),
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the job to end; exit 1 unless Complete.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait with --wait.")]


def fail(message: str, *, as_json: bool, code: int = 1) -> NoReturn:
    if as_json:
        print_json({"error": message})
    else:
        err_console.print(f"[red]Error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def failed(exc: FlowportError, *, as_json: bool) -> NoReturn:
    message = exc.message
    if isinstance(exc, Unauthorized):
        message += " (run `flowport login` again, or check --token / FLOWPORT_TOKEN)"
    fail(message, as_json=as_json, code=1)


def credentials_path() -> Path:
    """Where ``flowport login`` keeps the server URL and API token."""
    return settings().home / CREDENTIALS_FILE


def read_credentials() -> dict[str, Any] | None:
    path = credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"{path} cannot be read ({exc}): run `flowport login` again", param_hint="credentials"
        ) from None
    if not isinstance(data, dict) or not data.get("url") or not data.get("token"):
        raise typer.BadParameter(
            f"{path} is incomplete: run `flowport login` again", param_hint="credentials"
        )
    return data


def write_credentials(data: dict[str, Any]) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    # Created 0600 from the start: the token is never readable by others, not even for a moment.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


@dataclass(frozen=True)
class Server:
    url: str
    token: str


def find_server(url: str | None, token: str | None, local: bool) -> Server | None:
    """The server the command talks to, or None for local files."""
    if local:
        return None
    stored = read_credentials() if url is None or token is None else None
    if url is None and token is None:
        return Server(stored["url"], stored["token"]) if stored else None
    if url is None:
        if stored is None:
            raise typer.BadParameter(
                "give the server's --url (or FLOWPORT_URL) with the token", param_hint="--url"
            )
        url = str(stored["url"])
    if token is None:
        if stored is None or str(stored["url"]).rstrip("/") != url.rstrip("/"):
            raise typer.BadParameter(
                f"no token for {url}: run `flowport login --url {url} --user NAME` or set FLOWPORT_TOKEN",
                param_hint="--token",
            )
        token = str(stored["token"])
    return Server(url, token)


def connect(server: Server) -> Client:
    from flowport.sdk import Client

    try:
        return Client(server.url, token=server.token)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--url") from None


def metrics_table(metrics: dict[str, dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("Stage")
    for column in ("Input", "Output", "Errors"):
        table.add_column(column, justify="right")
    for name, values in metrics.items():
        table.add_row(
            escape(name),
            f"{values.get('inputRecords', 0):,}",
            f"{values.get('outputRecords', 0):,}",
            f"{values.get('errorRecords', 0):,}",
        )
    return table


def open_client(url: str | None, token: str | None, as_json: bool) -> Client:
    """A client of the configured server; exit 2 when none is configured."""
    found = find_server(url, token, local=False)
    if found is None:
        fail(
            "no server configured: run `flowport login --url URL --user NAME` or give --url and --token",
            as_json=as_json,
            code=2,
        )
    return connect(found)


def wait_for(job: Job, timeout: float, as_json: bool) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The job's record and metrics once it has ended; exit 1 when ``timeout`` seconds pass first."""
    try:
        job.wait(timeout=timeout)
    except TimeoutError as exc:
        fail(str(exc), as_json=as_json)
    metrics = job.metrics
    return job.record, metrics


def report_job(
    record: dict[str, Any], metrics: dict[str, dict[str, Any]], name: str, as_json: bool
) -> NoReturn:
    """Print how an ended job went; exit 0 when it is Complete, 1 otherwise."""
    status = str(record.get("status"))
    if as_json:
        print_json({**record, "metrics": metrics})
    else:
        console.print(metrics_table(metrics, title=f"{name} (job {record.get('id')})"))
        colour = {"Complete": "green", "Failed": "red", "Canceled": "yellow"}.get(status, "white")
        line = f"[{colour}]{status}[/{colour}] job {record.get('id')}"
        if record.get("error"):
            line += f"\n[red]{escape(str(record['error']))}[/red]"
        console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if status == "Complete" else 1)
