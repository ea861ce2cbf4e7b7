"""Users, passwords, roles and API tokens.

Every test checks (autouse) that neither a password nor a token ever
reached a log record, SQLAlchemy's included.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import sqlite3
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from flowport.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from flowport.services import auth, flow_records, instance
from flowport.services.settings import settings
from flowport.store import users as users_repo
from flowport.store.database import transaction

PASSWORD = "Corr3ct-horse-battery"
OTHER_PASSWORD = "An0ther-pass-phrase"
_created_tokens: list[str] = []


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("FLOWPORT_DATABASE_URL", raising=False)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    _created_tokens.clear()
    yield
    for record in caplog.records:
        text = f"{record.getMessage()} {record.exc_text or ''}"
        for secret in (PASSWORD, OTHER_PASSWORD, *_created_tokens):
            assert secret not in text, f"secret logged by {record.name}"


@pytest.fixture(autouse=True)
def _initialized() -> None:
    instance.init_instance()


def _token(user: auth.User | str, name: str = "ci", **kwargs: object) -> tuple[str, dict[str, object]]:
    token, record = auth.create_token(user, name, **kwargs)  # type: ignore[arg-type]
    _created_tokens.append(token)
    return token, record


def _basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def _database_text(table: str) -> str:
    with sqlite3.connect(settings().home / "flowport.db") as db:
        return "\n".join(repr(v) for row in db.execute(f"SELECT * FROM {table}").fetchall() for v in row)


# -- passwords ------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2_hashes_and_verified() -> None:
    user = auth.create_user("ann", PASSWORD, "editor")
    assert (user.name, user.role) == ("ann", "editor")
    assert set(user.to_dict()) == {"id", "name", "role", "createdAt", "updatedAt"}
    with transaction(instance.store_url()) as s:
        stored = users_repo.get_by_name(s, "ann").password_hash
    assert stored.startswith("$argon2id$") and stored != PASSWORD and PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)
    assert PASSWORD not in _database_text("users")
    assert auth.authenticate_basic("ann", PASSWORD) == user


def test_a_wrong_password_and_an_unknown_user_are_the_same_unauthorized() -> None:
    auth.create_user("ann", PASSWORD, "viewer")
    with pytest.raises(Unauthorized) as wrong:
        auth.authenticate_basic("ann", OTHER_PASSWORD)
    with pytest.raises(Unauthorized) as unknown:
        auth.authenticate_basic("nobody", PASSWORD)
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("ann", "")
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("a n n", PASSWORD)
    assert wrong.value.message == unknown.value.message == "Invalid user name or password"
    assert OTHER_PASSWORD not in repr(wrong.value) and PASSWORD not in repr(unknown.value)


def test_an_old_hash_is_upgraded_on_login() -> None:
    auth.create_user("ann", PASSWORD, "viewer")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with transaction(instance.store_url()) as s:
        users_repo.update(s, users_repo.get_by_name(s, "ann"), {"password_hash": weak})
    auth.authenticate_basic("ann", PASSWORD)
    with transaction(instance.store_url()) as s:
        upgraded = users_repo.get_by_name(s, "ann").password_hash
    assert upgraded != weak and not PasswordHasher().check_needs_rehash(upgraded)
    assert auth.authenticate_basic("ann", PASSWORD).name == "ann"


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("ann", "short", "viewer", "8 to 1024 characters"),
        ("ann", "x" * 1025, "viewer", "8 to 1024 characters"),
        ("ann:b", PASSWORD, "viewer", "user name"),
        ("", PASSWORD, "viewer", "user name"),
        (" ann", PASSWORD, "viewer", "user name"),
        ("ann", PASSWORD, "root", "Unknown role 'root'"),
    ],
)
def test_bad_users_are_refused(name: str, password: str, role: str, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message) as caught:
        auth.create_user(name, password, role)
    assert password not in caught.value.message


def test_user_names_are_unique() -> None:
    auth.create_user("ann", PASSWORD, "viewer")
    with pytest.raises(Conflict, match="'ann' already exists"):
        auth.create_user("ann", OTHER_PASSWORD, "admin")


def test_users_change_their_password_and_admins_manage_roles() -> None:
    admin = auth.create_user("root", PASSWORD, "admin")
    ann = auth.create_user("ann", PASSWORD, "viewer")
    auth.update_user("ann", password=OTHER_PASSWORD, actor=ann)
    assert auth.authenticate_basic("ann", OTHER_PASSWORD).id == ann.id
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("ann", PASSWORD)
    with pytest.raises(Forbidden):
        auth.update_user("ann", role="admin", actor=ann)
    with pytest.raises(Forbidden):
        auth.update_user("root", password=OTHER_PASSWORD, actor=ann)
    assert auth.update_user("ann", role="editor", actor=admin).role == "editor"
    with pytest.raises(Conflict, match="last admin"):
        auth.update_user("root", role="viewer", actor=admin)
    with pytest.raises(Conflict, match="last admin"):
        auth.delete_user("root", actor=admin)
    assert auth.get_user(ann.id, actor=ann).name == "ann"
    with pytest.raises(Forbidden):
        auth.get_user("root", actor=ann)
    auth.delete_user("ann", actor=admin)
    with pytest.raises(NotFound):
        auth.get_user("ann")


# -- roles ----------------------------------------------------------------------------


def test_roles_are_ordered_viewer_editor_admin() -> None:
    viewer = auth.create_user("vic", PASSWORD, "viewer")
    editor = auth.create_user("eve", PASSWORD, "editor")
    admin = auth.create_user("ada", PASSWORD, "admin")
    for user, allowed in ((viewer, {"viewer"}), (editor, {"viewer", "editor"}), (admin, set(auth.ROLES))):
        for role in auth.ROLES:
            if role in allowed:
                auth.require_role(user, role)
            else:
                with pytest.raises(Forbidden, match=f"needs '{role}'"):
                    auth.require_role(user, role)
    auth.require_role(None, "admin")  # a trusted local caller
    with pytest.raises(ValidationFailed):
        auth.require_role(admin, "owner")


def test_services_check_the_role_of_the_user_they_are_given() -> None:
    viewer = auth.create_user("vic", PASSWORD, "viewer")
    editor = auth.create_user("eve", PASSWORD, "editor")
    with pytest.raises(Forbidden):
        auth.create_user("new", PASSWORD, "viewer", actor=editor)
    with pytest.raises(Forbidden):
        auth.list_users(actor=editor)
    with pytest.raises(Forbidden):
        flow_records.create_flow({"name": "Nope"}, user=viewer)
    created = flow_records.create_flow({"name": "Yes"}, user=editor)
    assert created["creator"] == created["updater"] == {"id": editor.id}
    assert auth.list_users()["count"] == 2


# -- tokens ---------------------------------------------------------------------------


def test_only_the_hash_of_a_token_is_stored_and_the_token_is_shown_once() -> None:
    ann = auth.create_user("ann", PASSWORD, "editor")
    token, record = _token(ann, "ci-deploy")
    assert token.startswith(auth.TOKEN_PREFIX) and len(token) > 40
    assert record["name"] == "ci-deploy" and record["user"] == {"id": ann.id}
    assert token.startswith(str(record["prefix"])) and token != record["prefix"]
    assert token not in repr(record)
    stored = _database_text("api_tokens")
    assert token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    listed = auth.list_tokens(ann)
    assert listed["count"] == 1 and token not in repr(listed)
    assert set(listed["data"][0]) == {
        "id", "name", "prefix", "user", "createdAt", "lastUsedAt", "revokedAt", "revoked",
    }  # fmt: skip


def test_a_token_authenticates_its_user_until_it_is_revoked() -> None:
    ann = auth.create_user("ann", PASSWORD, "editor")
    token, record = _token(ann)
    assert auth.authenticate_token(token) == ann
    assert auth.list_tokens(ann)["data"][0]["lastUsedAt"] is not None
    revoked = auth.revoke_token(int(record["id"]))  # type: ignore[call-overload]
    assert revoked["revoked"] and revoked["revokedAt"] is not None
    with pytest.raises(Unauthorized, match="Invalid or revoked API token"):
        auth.authenticate_token(token)
    assert auth.revoke_token(int(record["id"]))["revokedAt"] == revoked["revokedAt"]  # type: ignore[call-overload]
    assert auth.list_tokens(ann, include_revoked=False)["count"] == 0


@pytest.mark.parametrize("bad", ["", "fpt_", "fpt_nonexistent-token-value", "Bearer x", "x" * 300])
def test_unknown_tokens_are_unauthorized(bad: str) -> None:
    auth.create_user("ann", PASSWORD, "editor")
    with pytest.raises(Unauthorized):
        auth.authenticate_token(bad)


def test_users_see_and_revoke_their_own_tokens_and_admins_everyones() -> None:
    admin = auth.create_user("ada", PASSWORD, "admin")
    ann = auth.create_user("ann", PASSWORD, "editor")
    bob = auth.create_user("bob", PASSWORD, "viewer")
    _, ann_token = _token(ann, actor=ann)
    _, bob_token = _token("bob", actor=admin)
    with pytest.raises(Forbidden):
        _token(admin, actor=ann)
    assert [t["id"] for t in auth.list_tokens(actor=ann)["data"]] == [ann_token["id"]]
    with pytest.raises(Forbidden):
        auth.list_tokens(bob, actor=ann)
    assert auth.list_tokens(actor=admin)["count"] == 2
    with pytest.raises(NotFound):
        auth.revoke_token(int(bob_token["id"]), actor=ann)  # type: ignore[call-overload]
    assert auth.revoke_token(int(bob_token["id"]), actor=bob)["revoked"]  # type: ignore[call-overload]
    assert auth.revoke_token(int(ann_token["id"]), actor=admin)["revoked"]  # type: ignore[call-overload]
    with pytest.raises(NotFound):
        auth.revoke_token(12345)


def test_deleting_a_user_deletes_their_tokens() -> None:
    auth.create_user("ada", PASSWORD, "admin")
    ann = auth.create_user("ann", PASSWORD, "editor")
    token, _ = _token(ann)
    auth.delete_user("ann")
    with pytest.raises(Unauthorized):
        auth.authenticate_token(token)
    assert auth.list_tokens()["count"] == 0


# -- the Authorization header -----------------------------------------------------------


def test_the_authorization_header_takes_basic_or_bearer() -> None:
    ann = auth.create_user("ann", PASSWORD, "editor")
    token, _ = _token(ann)
    assert auth.authenticate(_basic("ann", PASSWORD)) == ann
    assert auth.authenticate(f"Bearer {token}") == ann
    assert auth.authenticate(f"bearer   {token} ") == ann
    bad_headers = [
        None,
        "",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        _basic("ann", OTHER_PASSWORD),
        "Bearer fpt_wrong",
        f"Token {token}",
        "Digest username=ann",
    ]
    for header in bad_headers:
        with pytest.raises(Unauthorized) as caught:
            auth.authenticate(header)
        assert OTHER_PASSWORD not in caught.value.message and token not in caught.value.message
