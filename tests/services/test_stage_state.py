"""Stage state in the metadata store: offsets keyed by flow uuid and stage, shared by every worker."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.launchers import run_inline

from flowport.services import connections, flow_records, instance
from flowport.services.settings import data_dir
from flowport.services.stage_state import StoreStageState


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FLOWPORT_DATABASE_URL", "FLOWPORT_DATA_DIR", "FLOWPORT_FILE_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    instance.init_instance()
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "source.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER, name TEXT)")
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    connections.add_connection({"name": "source", "vendor": "sqlite", "params": {"path": "source.sqlite"}})
    return path


def _flow(name: str, output: str) -> dict[str, Any]:
    return {
        "name": name,
        "stages": [
            {
                "name": "Orders_01",  # the same stage name in both flows
                "plugin": {"name": "sql_table_origin"},
                "configuration": {"connection": "source", "table": "orders", "offset_column": "id"},
            },
            {
                "name": "Out_01",
                "plugin": {"name": "json_file_destination"},
                "configuration": {"path": output},
            },
        ],
        "edges": [{"from": "Orders_01", "to": "Out_01"}],
        "configuration": {"fail_on_no_output": False},
    }


def _rows(name: str) -> int:
    return len((data_dir() / name).read_text().splitlines())


def test_two_flows_with_the_same_stage_name_keep_separate_offsets(source: Path) -> None:
    first = flow_records.create_flow(_flow("First", "first.jsonl"))
    second = flow_records.create_flow(_flow("Second", "second.jsonl"))
    assert run_inline(first["id"])["status"] == "Complete"
    assert _rows("first.jsonl") == 3
    with sqlite3.connect(source) as db:
        db.execute("INSERT INTO orders VALUES (4, 'd')")
    # The second flow has read nothing yet: its offset is its own.
    assert run_inline(second["id"])["status"] == "Complete"
    assert _rows("second.jsonl") == 4
    assert run_inline(first["id"])["status"] == "Complete"
    assert _rows("first.jsonl") == 1  # only the new row
    first_state = StoreStageState(first["uuid"]).load("Orders_01")
    second_state = StoreStageState(second["uuid"]).load("Orders_01")
    assert first_state is not None and second_state is not None
    assert first_state["offset"]["value"] == second_state["offset"]["value"] == 4
    assert not (data_dir() / ".flowport-state").exists()  # nothing in local files


def test_a_legacy_offset_file_moves_into_the_store_once(source: Path) -> None:
    flow = flow_records.create_flow(_flow("Legacy", "legacy.jsonl"))
    legacy = data_dir() / ".flowport-state" / "Orders_01.json"
    legacy.parent.mkdir(parents=True)
    saved = {"table": "orders", "offset_column": "id", "offset": {"type": "int", "value": 2}}
    legacy.write_text(json.dumps(saved))
    assert run_inline(flow["id"])["status"] == "Complete"
    assert _rows("legacy.jsonl") == 1  # rows past the old file's offset only
    assert not legacy.exists() and legacy.with_name("Orders_01.json.migrated").exists()
    state = StoreStageState(flow["uuid"]).load("Orders_01")
    assert state is not None and state["offset"]["value"] == 3


def test_partitions_and_flows_do_not_mix(source: Path) -> None:
    one, other = StoreStageState(uuid.uuid4()), StoreStageState(uuid.uuid4())
    one.save("S", {"n": 1})
    one.save("S", {"n": 2}, partition="p1")
    other.save("S", {"n": 3})
    assert one.load("S") == {"n": 1} and one.load("S", "p1") == {"n": 2} and one.load("S", "p2") is None
    assert other.load("S") == {"n": 3}
    one.save("S", {"n": 5})
    assert one.load("S") == {"n": 5}
