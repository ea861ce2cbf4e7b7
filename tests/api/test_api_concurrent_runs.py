"""Many clients starting runs at once on the SQLite store: every one answered 201, every job recorded and run.

A real ``flowport server`` (jobs on threads of the server's own process, so
the API's writers and the jobs' status updates share the database file)
gets concurrent ``POST /v4/flows/{id}/run`` from 50 clients, each with an
API token. Before SQLite writers were serialized (``BEGIN IMMEDIATE`` after
the writers of the same process), a few of these answered 500 ("database is
locked" inserting into job_groups) once their wait passed the busy timeout.
No timing is asserted: a load may be slow, it may not fail.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.sdk.flowport_server import ADMIN_PASSWORD, running_server

CLIENTS = 50
RUNS_PER_CLIENT = 3
FLOWS = 10
FINAL = {"Complete", "Failed", "Canceled"}


def _flow(n: int) -> dict[str, object]:
    return {
        "name": f"Concurrent {n}",
        "stages": [
            {"name": "Csv_01", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": "tiny.csv"}},
            {"name": "Trash_01", "plugin": {"name": "trash"}},
        ],
        "edges": [{"from": "Csv_01", "to": "Trash_01"}],
    }


async def _start_runs(url: str, token: str, flow_ids: list[int]) -> list[httpx.Response]:
    start = asyncio.Event()

    async def client(c: int) -> list[httpx.Response]:
        answers = []
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        ) as http:
            await start.wait()
            for r in range(RUNS_PER_CLIENT):
                flow_id = flow_ids[(c * RUNS_PER_CLIENT + r) % len(flow_ids)]
                answers.append(await http.post(f"/v4/flows/{flow_id}/run"))
        return answers

    tasks = [asyncio.create_task(client(c)) for c in range(CLIENTS)]
    await asyncio.sleep(0.2)  # every client connected and waiting
    start.set()
    return [answer for answers in await asyncio.gather(*tasks) for answer in answers]


def test_concurrent_runs_on_sqlite_all_answer_and_every_job_is_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "tiny.csv").write_text("id,name\n1,a\n2,b\n", encoding="utf-8")
    with (
        running_server(home, "--launcher", "thread") as server,
        httpx.Client(base_url=server.url, auth=("admin", ADMIN_PASSWORD), timeout=60) as admin,
    ):
        flow_ids = []
        for n in range(FLOWS):
            created = admin.post("/v4/flows", json=_flow(n))
            assert created.status_code == 201, created.text
            flow_ids.append(int(created.json()["id"]))
        token = admin.post("/v4/apiTokens", json={"name": "concurrent"}).json()["token"]

        # In a thread of its own: an earlier test of this process (Playwright's sync API) may have left
        # an event loop running in the main thread, where asyncio.run() refuses to start another.
        with ThreadPoolExecutor(max_workers=1) as runner:
            answers = runner.submit(asyncio.run, _start_runs(server.url, token, flow_ids)).result()

        failed = [(a.status_code, a.text[:300]) for a in answers if a.status_code != 201]
        assert failed == [], f"{len(failed)} of {len(answers)} run requests failed, first: {failed[0]}"
        started = {int(a.json()["id"]) for a in answers}
        assert len(started) == CLIENTS * RUNS_PER_CLIENT

        # Every job group is in the store, and each of its jobs runs to the end (their status
        # updates are writes too, alongside the API's).
        deadline = time.monotonic() + 300
        while True:
            listed = admin.get("/v4/jobGroups", params={"noLimit": "true"})
            assert listed.status_code == 200, listed.text
            groups = {int(g["id"]): g["status"] for g in listed.json()["data"]}
            assert started <= groups.keys()
            if all(groups[i] in FINAL for i in started) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        statuses = {groups[i] for i in started}
        assert statuses == {"Complete"}, {i: groups[i] for i in started if groups[i] != "Complete"}
    assert "database is locked" not in server.log.read_text(errors="replace")
