"""Contract of the connections repository, the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import uuid
from datetime import UTC

import pytest
from sqlalchemy.orm import Session
from tests.connections.live_servers import exception_text

from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.store import connections as repo
from flowport.store import instance
from flowport.store.database import transaction


def _make(session: Session, name: str = "Prod Redshift Conn", **values: object) -> repo.Connection:
    fields: dict[str, object] = {
        "vendor": "redshift",
        "host": "prod-redshift.example.com",
        "port": 5439,
        "params": {"defaultDatabase": "prodWrangleDB", "extraLoadParams": "BLANKSASNULL EMPTYASNULL"},
        "credential_type": "iamRoleArn",
        "username": "prodDBUser",
        "secret": b"gAAAA-not-really-a-token",
        "is_global": True,
        "creator_id": 2,
    }
    fields.update(values)
    return repo.create(session, name=name, **fields)  # type: ignore[arg-type]


def test_create_then_read_back_every_field(store: str) -> None:
    with transaction(store) as s:
        created = _make(s)
    with transaction(store) as s:
        row = repo.get_by_id(s, created.id)
        assert row.name == "Prod Redshift Conn"
        assert isinstance(row.uuid, uuid.UUID) and row.uuid == created.uuid
        assert (row.vendor, row.host, row.port, row.ssl) == (
            "redshift",
            "prod-redshift.example.com",
            5439,
            False,
        )
        assert row.params == {
            "defaultDatabase": "prodWrangleDB",
            "extraLoadParams": "BLANKSASNULL EMPTYASNULL",
        }
        assert (row.credential_type, row.username, row.is_global) == ("iamRoleArn", "prodDBUser", True)
        assert row.secret == b"gAAAA-not-really-a-token"
        assert (row.creator_id, row.updater_id, row.description) == (2, 2, "")
        assert row.created_at.tzinfo is UTC and row.created_at == row.updated_at
        # Microseconds survive (MySQL drops them without DATETIME(6)).
        assert row.created_at == created.created_at


def test_a_given_uuid_is_kept(session: Session) -> None:
    given = uuid.UUID("b8014610-ce56-11e7-9739-27deec2c3249")
    assert _make(session, uuid=str(given)).uuid == given


def test_get_by_uuid_name_and_find_by_any_reference(session: Session) -> None:
    row = _make(session)
    assert repo.get_by_uuid(session, row.uuid) is row
    assert repo.get_by_uuid(session, str(row.uuid)) is row
    assert repo.get_by_name(session, row.name) is row
    for ref in (row.id, str(row.id), str(row.uuid), str(row.uuid).upper(), row.name):
        assert repo.find(session, ref) is row


def test_find_falls_back_to_a_name_that_looks_like_an_id(session: Session) -> None:
    first = _make(session, "first")
    numeric = _make(session, "12345")
    assert repo.find(session, str(first.id)) is first
    assert repo.find(session, "12345") is numeric


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda s: repo.get_by_id(s, 999), "No connection with id 999"),
        (lambda s: repo.get_by_uuid(s, "b8014610-ce56-11e7-9739-27deec2c3249"), "uuid b8014610"),
        (lambda s: repo.get_by_uuid(s, "not-a-uuid"), "uuid not-a-uuid"),
        (lambda s: repo.get_by_name(s, "nope"), "named 'nope'"),
        (lambda s: repo.find(s, "nope"), "id, uuid or name 'nope'"),
    ],
)
def test_missing_connections_are_not_found(session: Session, lookup, message: str) -> None:
    with pytest.raises(NotFound, match=message):
        lookup(session)


def test_duplicate_name_is_a_conflict(store: str) -> None:
    with transaction(store) as s:
        first = _make(s)
    message = f"named 'Prod Redshift Conn' already exists \\(id {first.id}\\)"
    with pytest.raises(Conflict, match=message), transaction(store) as s:
        _make(s)
    with transaction(store) as s:
        assert repo.count(s) == 1


def test_duplicate_uuid_is_a_conflict(session: Session) -> None:
    row = _make(session)
    with pytest.raises(Conflict, match=f"uuid {row.uuid} already exists"):
        _make(session, "other", uuid=row.uuid)


def test_the_unique_constraints_catch_what_the_check_misses(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As with a concurrent writer: the pre-check passes, the constraint fires.
    with transaction(store) as s:
        _make(s)
    monkeypatch.setattr(repo, "_check_unique", lambda *a, **k: None)
    with pytest.raises(Conflict, match="same name or uuid") as info, transaction(store) as s:
        _make(s)
    assert "gAAAA" not in exception_text(info.value)


def test_list_in_creation_order_with_limit_and_offset(session: Session) -> None:
    rows = [_make(session, f"conn {i}") for i in range(5)]
    assert list(repo.list_(session)) == rows
    assert list(repo.list_(session, limit=2)) == rows[:2]
    assert list(repo.list_(session, limit=2, offset=3)) == rows[3:]
    assert list(repo.list_(session, offset=5)) == []
    assert repo.count(session) == 5
    with pytest.raises(ValidationFailed):
        repo.list_(session, limit=0)
    with pytest.raises(ValidationFailed):
        repo.list_(session, offset=-1)


def test_update_changes_fields_and_updated_at_only(store: str) -> None:
    with transaction(store) as s:
        row = _make(s)
    with transaction(store) as s:
        updated = repo.update(
            s, row.id, {"name": "Renamed", "port": 5440, "params": {"a": [1, {"b": None}]}, "updater_id": 3}
        )
    with transaction(store) as s:
        again = repo.get_by_uuid(s, row.uuid)
        assert (again.name, again.port, again.params, again.updater_id) == (
            "Renamed",
            5440,
            {"a": [1, {"b": None}]},
            3,
        )
        assert again.created_at == row.created_at
        assert again.updated_at == updated.updated_at > row.updated_at
        assert again.creator_id == 2


def test_update_refuses_a_taken_name_and_fixed_fields(session: Session) -> None:
    _make(session, "a")
    b = _make(session, "b")
    with pytest.raises(Conflict, match="named 'a' already exists"):
        repo.update(session, b, {"name": "a"})
    with pytest.raises(ValidationFailed, match="created_at, uuid"):
        repo.update(session, b, {"uuid": uuid.uuid4(), "created_at": None})
    assert repo.update(session, b, {"name": "b"}).name == "b"  # its own name is no clash


def test_delete(store: str) -> None:
    with transaction(store) as s:
        row = _make(s)
    with transaction(store) as s:
        repo.delete(s, row.id)
    with transaction(store) as s:
        with pytest.raises(NotFound):
            repo.find(s, row.name)
        with pytest.raises(NotFound):
            repo.delete(s, row.id)


def test_the_instance_row_is_created_once(store: str) -> None:
    with transaction(store) as s:
        with pytest.raises(NotFound, match="flowport init"):
            instance.get(s)
        first = instance.ensure(s)
    with transaction(store) as s:
        assert instance.ensure(s).uuid == first.uuid == instance.get(s).uuid
        assert instance.get(s).created_at.tzinfo is UTC
