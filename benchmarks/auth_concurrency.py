"""Authentication under load: 50 concurrent clients on ``GET /v4/flows``, HTTP Basic against a bearer token.

    .venv/bin/python benchmarks/auth_concurrency.py [--clients 50] [--requests 20]

Starts a real ``flowport server`` on a free loopback port with a temporary
``FLOWPORT_HOME``, stores a few flows and a ``bench`` user, then lets
``--clients`` clients (each its own connection, all started together) send
``--requests`` requests each, one after the other: first with HTTP Basic
(the cache of verified credentials starts cold: the first requests pay for
argon2), then with an API token (``Authorization: Bearer``) of the same
user. Prints p50/p99 latency of both and their ratio (Basic / bearer).
Latencies include the client's own time (the clients share the machine
with the server; they are lean keep-alive clients, ``load_client.py``); a
request that does not answer 200 fails the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_client import run_client

ADMIN_PASSWORD = "Bench-admin-password-1"
BENCH_USER = ("bench", "Bench-user-password-1")
START_TIMEOUT = 90.0
# Variables of the caller's environment that would point the server elsewhere.
_FOREIGN_ENV = (
    "FLOWPORT_DATABASE_URL",
    "FLOWPORT_DATA_DIR",
    "FLOWPORT_URL",
    "FLOWPORT_TOKEN",
    "FLOWPORT_EXECUTOR",
    "FLOWPORT_LAUNCHER",
)


@dataclass(frozen=True)
class Latencies:
    """One phase's request latencies, in seconds, and its wall time."""

    samples: list[float]
    wall: float

    def percentile(self, p: float) -> float:
        """The nearest-rank ``p``-th percentile."""
        ordered = sorted(self.samples)
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]

    @property
    def throughput(self) -> float:
        """Requests per second over the phase."""
        return len(self.samples) / self.wall


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def flowport_server(
    extra_env: dict[str, str] | None = None, prepare_home: Callable[[Path], None] | None = None
) -> Iterator[str]:
    """A ``flowport server`` in a temporary home; yields its URL and stops it afterwards.

    ``extra_env``: more variables for the server (a metadata database URL);
    ``prepare_home``: called with the home before the server starts.
    """
    home = Path(tempfile.mkdtemp(prefix="flowport-bench-auth-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key not in _FOREIGN_ENV}
    env.update({"FLOWPORT_HOME": str(home), "FLOWPORT_ADMIN_PASSWORD": ADMIN_PASSWORD, **(extra_env or {})})
    if prepare_home is not None:
        prepare_home(home)
    command = [
        sys.executable,
        "-m",
        "flowport.cli.main",
        "server",
        "--port",
        str(port),
        "--launcher",
        "thread",
        "--log-level",
        "warning",
    ]
    log = home / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=home)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise SystemExit(f"flowport server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"flowport server did not answer in {START_TIMEOUT:g}s:\n{log.read_text()}")
            time.sleep(0.2)
        try:
            yield url
        except BaseException:
            print(f"server log (last 4,000 characters):\n{log.read_text()[-4000:]}", file=sys.stderr)
            raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def prepare(url: str, flows: int) -> None:
    """A few flows to list and the ``bench`` viewer whose credentials the clients send."""
    with httpx.Client(base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=60) as admin:
        for n in range(flows):
            document = {"name": f"Bench {n}", "stages": [{"name": "Trash_01", "plugin": {"name": "trash"}}]}
            response = admin.post("/v4/flows", json=document)
            response.raise_for_status()
        name, password = BENCH_USER
        response = admin.post("/v4/users", json={"name": name, "password": password, "role": "viewer"})
        response.raise_for_status()


def create_token(url: str) -> str:
    """An API token of the ``bench`` user."""
    response = httpx.post(f"{url}/v4/apiTokens", json={"name": "bench"}, auth=BENCH_USER, timeout=60)
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


async def _client(url: str, headers: dict[str, str], requests: int, start: asyncio.Event) -> list[float]:
    # One connection per client, as separate programs would have.
    failures: list[str] = []
    samples = await run_client(url, "GET", ["/v4/flows"] * requests, headers, start, failures)
    if failures:
        raise SystemExit(failures[0])
    return samples


async def _phase(url: str, headers: dict[str, str], clients: int, requests: int) -> Latencies:
    start = asyncio.Event()
    tasks = [asyncio.create_task(_client(url, headers, requests, start)) for _ in range(clients)]
    await asyncio.sleep(0.1)  # every client is waiting at the start line
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - began
    return Latencies([sample for result in results for sample in result], wall)


def run(clients: int = 50, requests: int = 20, flows: int = 5) -> dict[str, Latencies]:
    """Both phases against a fresh server: ``{"basic": ..., "bearer": ...}``."""
    with flowport_server() as url:
        prepare(url, flows)
        basic = {"Authorization": "Basic " + base64.b64encode(":".join(BENCH_USER).encode()).decode()}
        results = {"basic": asyncio.run(_phase(url, basic, clients, requests))}
        bearer = {"Authorization": f"Bearer {create_token(url)}"}
        results["bearer"] = asyncio.run(_phase(url, bearer, clients, requests))
    return results


def report(results: dict[str, Latencies], clients: int, requests: int) -> None:
    """Print p50/p99 of each phase and the Basic/bearer ratios."""
    print(f"GET /v4/flows, {clients} concurrent clients x {requests} requests each")
    print(f"{'auth':<8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'req/s':>10}")
    for kind, latencies in results.items():
        print(
            f"{kind:<8}{latencies.percentile(50) * 1000:>10.1f}{latencies.percentile(99) * 1000:>10.1f}"
            f"{max(latencies.samples) * 1000:>10.1f}{latencies.throughput:>10.1f}"
        )
    basic, bearer = results["basic"], results["bearer"]
    print(
        f"Basic / bearer: p50 {basic.percentile(50) / bearer.percentile(50):.2f}x, "
        f"p99 {basic.percentile(99) / bearer.percentile(99):.2f}x"
    )


def main() -> None:
    """Parse the arguments, run both phases, print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50, help="Concurrent clients (default 50).")
    parser.add_argument("--requests", type=int, default=20, help="Requests per client (default 20).")
    parser.add_argument("--flows", type=int, default=5, help="Flows stored before measuring (default 5).")
    parser.add_argument("--summary", action="store_true", help="End with a JSON line of summary rows.")
    args = parser.parse_args()
    results = run(args.clients, args.requests, args.flows)
    report(results, args.clients, args.requests)
    if args.summary:
        import json

        basic, bearer = results["basic"], results["bearer"]
        row = {
            "case": "auth GET /v4/flows p99",
            "size": f"{args.clients} clients",
            "flowport": f"bearer {bearer.percentile(99) * 1000:.0f} ms",
            "alternative": f"HTTP Basic {basic.percentile(99) * 1000:.0f} ms",
            "ratio": basic.percentile(99) / bearer.percentile(99),
            "rss": "-",
        }
        print(json.dumps([row]))


if __name__ == "__main__":
    main()
