"""Users, roles and API tokens: who may call the instance, and as whom.

Passwords are kept as argon2 hashes; API tokens as the SHA-256 of the
token, which is shown once, when it is created. Neither a password nor a
token is ever logged, returned after creation, or put in an error message.
Every comparison of a secret is constant-time, and an unknown user name
costs the same argon2 verification as a wrong password, so timing does not
tell which names exist.

Verifying argon2 is slow on purpose (about a tenth of a second of CPU and 64
MiB), too slow to run on every request of a busy client. A successful
Basic verification is therefore remembered in memory for
:data:`BASIC_CACHE_SECONDS`, keyed by an HMAC (with a per-process random
key) of the name and password, never by the password or a plain hash of
it; the entry holds the user's id and the password hash that verified. A
remembered credential is accepted only while the user still exists with
that very hash (read from the store on every request, as is the role), so
a password change, a deletion or a role change takes effect at once, in
every process. Concurrent first requests with one credential verify it
once. Failures are never remembered.

Roles, from least to most: ``viewer`` (read), ``editor`` (also create,
change, run), ``admin`` (also manage users and other users' tokens).
Functions that take ``actor`` check its role when one is given; ``None``
means a trusted local caller (the CLI on the instance's machine).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from flowport.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from flowport.services import read_cache
from flowport.services.instance import page_bounds, ref, store_url, timestamp, transaction
from flowport.services.read_cache import GenerationCache
from flowport.services.schemas.users import USER_NAME_PATTERN, TokenRead, UserRead
from flowport.store import tokens as _tokens
from flowport.store import users as _users
from flowport.store.tables import ROLES, ApiToken, utcnow
from flowport.store.tables import User as UserRow

__all__ = [
    "BASIC_CACHE_SECONDS",
    "BASIC_CACHE_SIZE",
    "ROLES",
    "TOKEN_PREFIX",
    "USER_NAME_PATTERN",
    "Role",
    "User",
    "authenticate",
    "authenticate_basic",
    "authenticate_token",
    "create_token",
    "create_user",
    "delete_user",
    "get_user",
    "has_role",
    "list_tokens",
    "list_users",
    "require_role",
    "revoke_token",
    "revoke_token_value",
    "token_public_dict",
    "update_user",
]

_log = logging.getLogger(__name__)

Role = Literal["admin", "editor", "viewer"]
_RANK = {"viewer": 0, "editor": 1, "admin": 2}

# Every token starts with this, so secret scanners (and people) can recognise one.
TOKEN_PREFIX = "fpt_"
# Characters of the token kept for display: the marker and 8 random characters.
_DISPLAY_CHARS = len(TOKEN_PREFIX) + 8
# A user name: no ':' (HTTP Basic splits on the first one), no spaces or control characters.
_NAME = re.compile(USER_NAME_PATTERN)
_MIN_PASSWORD, _MAX_PASSWORD = 8, 1024
# Writing last_used_at on every request would make each read a write.
_TOUCH_EVERY = timedelta(minutes=1)
# How long a successful Basic verification is trusted without running argon2
# again, and how many are kept (the oldest go first). Short: an entry is
# checked against the stored hash on every use anyway, the window only
# bounds how long a verified password stays in effect in memory.
BASIC_CACHE_SECONDS: Final = 120.0
BASIC_CACHE_SIZE: Final = 4096
# API tokens checked, per store generation of users and tokens: (user, when the token was last used).
_verified_tokens: GenerationCache[tuple[User, datetime]] = GenerationCache(BASIC_CACHE_SIZE)


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified against when the user name is unknown, so that answering
    # "no such user" takes as long as "wrong password".
    return _hasher().hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User:
    """A signed-in user as the services see it: never the password hash."""

    id: int
    name: str
    role: Role
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The user as the API shows it."""
        return UserRead.shape(
            {
                "id": self.id,
                "name": self.name,
                "role": self.role,
                "createdAt": timestamp(self.created_at),
                "updatedAt": timestamp(self.updated_at),
            }
        )


def _user(row: UserRow) -> User:
    return User(row.id, row.name, row.role, row.created_at, row.updated_at)  # type: ignore[arg-type]


# -- verified Basic credentials ----------------------------------------------------


@dataclass(frozen=True)
class _Verified:
    """A Basic credential that verified: whose it is, against which hash, until when (monotonic)."""

    user_id: int
    password_hash: str
    expires: float


class _Flight:
    """The lock that lets one thread verify a credential while others with the same one wait."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class _BasicCache:
    """Successful Basic verifications by keyed hash of the credential; bounded, expiring, thread-safe."""

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds = seconds
        self.size = size
        # Per process and never stored: a key of this cache means nothing anywhere else.
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Verified] = OrderedDict()
        self._flights: dict[bytes, _Flight] = {}
        self._lock = threading.Lock()

    def key(self, name: str, password: str) -> bytes:
        """The HMAC-SHA256 of the name and password (length-prefixed name: no two pairs share a key)."""
        name_bytes = name.encode("utf-8", "surrogatepass")
        message = len(name_bytes).to_bytes(4, "big") + name_bytes + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def get(self, key: bytes) -> _Verified | None:
        """The unexpired entry of ``key``, if any."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires <= time.monotonic():
                del self._entries[key]
                entry = None
            return entry

    def put(self, key: bytes, user_id: int, password_hash: str) -> None:
        """Remember a verification for :attr:`seconds`; the oldest entry goes when the cache is full."""
        entry = _Verified(user_id, password_hash, time.monotonic() + self.seconds)
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def discard(self, key: bytes, entry: _Verified) -> None:
        """Forget ``key`` if it still holds ``entry`` (another thread may have replaced it)."""
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]

    def forget_user(self, user_id: int) -> None:
        """Forget every credential of one user."""
        with self._lock:
            for key in [k for k, entry in self._entries.items() if entry.user_id == user_id]:
                del self._entries[key]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @contextmanager
    def flight(self, key: bytes) -> Iterator[None]:
        """Hold the lock of ``key``: one verification of a credential at a time."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
            flight.users += 1
        try:
            with flight.lock:
                yield
        finally:
            with self._lock:
                flight.users -= 1
                if flight.users == 0:
                    del self._flights[key]


_basic_cache = _BasicCache(BASIC_CACHE_SECONDS, BASIC_CACHE_SIZE)


# -- roles -------------------------------------------------------------------


def _check_role(role: str) -> Role:
    if role not in _RANK:
        raise ValidationFailed(f"Unknown role '{role}'; expected one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def has_role(user: User, role: str) -> bool:
    """Whether ``user``'s role is ``role`` or a stronger one (admin > editor > viewer)."""
    return _RANK.get(user.role, -1) >= _RANK[_check_role(role)]


def require_role(user: User | None, role: str) -> None:
    """Forbidden unless ``user`` has ``role`` or a stronger one; ``None`` (a trusted local caller) passes."""
    if user is None or has_role(user, role):
        return
    raise Forbidden(
        f"User '{user.name}' has the role '{user.role}'; this needs '{role}'"
        + (" or 'admin'" if role == "editor" else "")
    )


# -- users -------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationFailed(
            "A user name is 1 to 255 letters, digits or . _ @ + -, starting with a letter or digit"
        )
    return name


def _check_password(password: str) -> str:
    # The value itself never appears in a message.
    if not isinstance(password, str):
        raise ValidationFailed("The password must be text")
    if not _MIN_PASSWORD <= len(password) <= _MAX_PASSWORD:
        raise ValidationFailed(f"The password must have {_MIN_PASSWORD} to {_MAX_PASSWORD} characters")
    return password


def _hash(password: str) -> str:
    return _hasher().hash(_check_password(password))


def _find_user(session: Session, user: User | int | str) -> UserRow:
    if isinstance(user, User):
        return _users.get_by_id(session, user.id)
    if isinstance(user, int):
        return _users.get_by_id(session, user)
    return _users.get_by_name(session, user)


def create_user(name: str, password: str, role: str = "viewer", *, actor: User | None = None) -> User:
    """Create a user with an argon2-hashed password.

    Raises:
        ValidationFailed: bad name, password (8 to 1024 characters) or role.
        Conflict: the name is taken.
        Forbidden: ``actor`` is not an admin.
    """
    require_role(actor, "admin")
    _check_name(name)
    checked_role = _check_role(role)
    password_hash = _hash(password)
    with transaction() as session:
        row = _users.create(session, name=name, password_hash=password_hash, role=checked_role)
        user = _user(row)
    _log.info("User '%s' created with role %s (id %s)", user.name, user.role, user.id)
    return user


def get_user(user: int | str, *, actor: User | None = None) -> User:
    """The user with this id or name; NotFound otherwise. A non-admin ``actor`` may only see itself."""
    with transaction() as session:
        found = _user(_find_user(session, user))
    if actor is not None and actor.id != found.id:
        require_role(actor, "admin")
    return found


def list_users(
    *, limit: int | None = None, offset: int = 0, no_limit: bool = False, actor: User | None = None
) -> dict[str, Any]:
    """Users in creation order as ``{"data": [user dicts], "count": total}``; admins only."""
    require_role(actor, "admin")
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        rows = _users.list_(session, limit=row_limit, offset=row_offset)
        total = _users.count(session)
        return {"data": [_user(r).to_dict() for r in rows], "count": total}


def _admins(session: Session) -> int:
    return sum(1 for row in _users.list_(session) if row.role == "admin")


def update_user(
    user: int | str,
    *,
    password: str | None = None,
    role: str | None = None,
    actor: User | None = None,
) -> User:
    """Change a user's password and/or role.

    A user may change their own password; changing a role, or another
    user's password, takes an admin. The last admin cannot be demoted (Conflict).
    """
    changes: dict[str, Any] = {}
    if role is not None:
        require_role(actor, "admin")
        changes["role"] = _check_role(role)
    if password is not None:
        changes["password_hash"] = _hash(password)
    with transaction() as session:
        row = _find_user(session, user)
        if actor is not None and actor.id != row.id:
            require_role(actor, "admin")
        if row.role == "admin" and changes.get("role", "admin") != "admin" and _admins(session) <= 1:
            raise Conflict(f"'{row.name}' is the last admin: make another user admin first")
        updated = _user(_users.update(session, row, changes)) if changes else _user(row)
    if changes:
        # A hit checks the stored hash and reads the role anyway; this frees the memory at once.
        _basic_cache.forget_user(updated.id)
    _log.info(
        "User '%s' (id %s) updated: %s", updated.name, updated.id, ", ".join(sorted(changes)) or "nothing"
    )
    return updated


def delete_user(user: int | str, *, actor: User | None = None) -> User:
    """Delete a user and their API tokens (admins only); the last admin cannot be deleted (Conflict)."""
    require_role(actor, "admin")
    with transaction() as session:
        row = _find_user(session, user)
        if row.role == "admin" and _admins(session) <= 1:
            raise Conflict(f"'{row.name}' is the last admin: make another user admin first")
        deleted = _user(row)
        _users.delete(session, row)
    _basic_cache.forget_user(deleted.id)
    _log.info("User '%s' (id %s) deleted", deleted.name, deleted.id)
    return deleted


# -- authentication -------------------------------------------------------------


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate_basic(name: str, password: str) -> User:
    """The user whose name and password these are; Unauthorized otherwise (same message either way).

    A credential that verified in the last :data:`BASIC_CACHE_SECONDS` is
    not verified again while its user still has the same password hash;
    the user (and so the role) is read from the store every time. Of
    concurrent requests with one unverified credential, one runs argon2 and
    the others use its result. A hash made with older argon2 parameters is
    upgraded on a successful login.
    """
    failure = Unauthorized("Invalid user name or password")
    if not isinstance(name, str) or not isinstance(password, str) or len(password) > _MAX_PASSWORD:
        raise failure
    if not _NAME.fullmatch(name):
        _verify(_dummy_hash(), password)  # same work as a real check: no timing oracle
        raise failure
    key = _basic_cache.key(name, password)
    user = _remembered(key, name)
    if user is not None:
        return user
    with _basic_cache.flight(key):
        # Whoever held the lock before may have just verified this very credential.
        user = _remembered(key, name)
        if user is not None:
            return user
        user, verified_hash = _verify_basic(name, password, failure)
        _basic_cache.put(key, user.id, verified_hash)
        return user


def _remembered(key: bytes, name: str) -> User | None:
    """The user of a remembered credential, if that user still exists with the hash that verified."""
    entry = _basic_cache.get(key)
    if entry is None:
        return None
    with transaction() as session:
        try:
            row: UserRow | None = _users.get_by_id(session, entry.user_id)
        except NotFound:
            row = None
        if (
            row is not None
            and row.name == name
            and hmac.compare_digest(row.password_hash.encode(), entry.password_hash.encode())
        ):
            return _user(row)
    # Deleted, or the password changed (perhaps by another process): verify afresh.
    _basic_cache.discard(key, entry)
    return None


def _verify_basic(name: str, password: str, failure: Unauthorized) -> tuple[User, str]:
    """Run argon2 against the stored hash: the user and the hash that now stands; ``failure`` otherwise."""
    with transaction() as session:
        try:
            row: UserRow | None = _users.get_by_name(session, name)
        except NotFound:
            row = None
        if row is None:
            _verify(_dummy_hash(), password)  # same work as a real check: no timing oracle
            raise failure
        if not _verify(row.password_hash, password):
            raise failure
        if _hasher().check_needs_rehash(row.password_hash):
            _users.update(session, row, {"password_hash": _hasher().hash(password)})
        return _user(row), row.password_hash


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate_token(token: str, *, name: str | None = None, max_age: timedelta | None = None) -> User:
    """The user an API token belongs to; Unauthorized for an unknown or revoked token.

    ``name`` and ``max_age``: only a token of that name, created less than ``max_age`` ago
    (a web session is a token named so, and expires).
    """
    failure = Unauthorized(
        "Invalid or revoked API token" if name is None else "Your session has ended: sign in again"
    )
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 256:
        raise failure
    digest = _token_hash(token)
    url = store_url()
    if name is None and max_age is None:
        # An API token: its check is kept per generation of the users and tokens tables, which the
        # store's triggers move on every write to them in any process (a revocation, a role change,
        # a deleted user), so the store is still asked on every request, for one row.

        def check() -> tuple[User, datetime]:
            with transaction(url) as session:
                return _check_token(session, digest, failure, name=None, max_age=None)

        user, used_at = _verified_tokens.get(
            (url, digest), read_cache.generation(read_cache.AUTH, url), check
        )
        if utcnow() - used_at < _TOUCH_EVERY:
            return user
    with transaction(url) as session:
        return _check_token(session, digest, failure, name=name, max_age=max_age)[0]


def known_token_user(authorization: str | None, url: str, generation: int) -> User | None:
    """The user of a bearer token already checked at ``generation`` of the users and tokens (and used
    within the minute), or None: then :func:`authenticate` decides. Reads and writes nothing."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith(TOKEN_PREFIX) or len(value) > 256:
        return None
    found = _verified_tokens.peek((url, _token_hash(value)), generation)
    if found is None:
        return None
    user, used_at = found[0]
    return user if utcnow() - used_at < _TOUCH_EVERY else None


def _check_token(
    session: Session, digest: str, failure: Unauthorized, *, name: str | None, max_age: timedelta | None
) -> tuple[User, datetime]:
    """The user of the token whose hash is ``digest``, and when it was last used (now if touched)."""
    # The token by its hash (a unique index) with its user.
    found = session.execute(
        select(ApiToken, UserRow)
        .join(UserRow, UserRow.id == ApiToken.user_id)
        .where(ApiToken.token_hash == digest)
    ).first()
    if found is None:
        raise failure
    row, owner = found
    # Compare again in constant time anyway.
    if not hmac.compare_digest(row.token_hash, digest) or row.revoked_at is not None:
        raise failure
    now = utcnow()
    if name is not None and row.name != name:
        raise failure
    if max_age is not None and _aware(row.created_at) < now - max_age:
        raise failure
    used_at = row.last_used_at
    if used_at is None or now - used_at >= _TOUCH_EVERY:
        _tokens.touch(session, row, now)
        used_at = now
    return _user(owner), used_at


def authenticate(authorization: str | None) -> User:
    """The user of an HTTP ``Authorization`` header: ``Basic`` (name and password) or ``Bearer`` (token).

    Raises:
        Unauthorized: no header, an unknown scheme, or bad credentials.
    """
    if not authorization or not authorization.strip():
        raise Unauthorized("Authentication required: HTTP Basic or an API token (Authorization: Bearer)")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return authenticate_token(value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Malformed HTTP Basic credentials") from None
        name, sep, password = decoded.partition(":")
        if not sep:
            raise Unauthorized("Malformed HTTP Basic credentials")
        return authenticate_basic(name, password)
    raise Unauthorized("Unsupported authorization scheme: use Basic or Bearer")


# -- tokens ------------------------------------------------------------------


def token_public_dict(row: ApiToken) -> dict[str, Any]:
    """A token record as the API shows it: its display prefix, never the token or its hash."""
    return TokenRead.shape(
        {
            "id": row.id,
            "name": row.name,
            "prefix": row.prefix,
            "user": ref(row.user_id),
            "createdAt": timestamp(row.created_at),
            "lastUsedAt": timestamp(row.last_used_at),
            "revokedAt": timestamp(row.revoked_at),
            "revoked": row.revoked_at is not None,
        }
    )


def create_token(
    user: User | int | str, name: str, *, actor: User | None = None
) -> tuple[str, dict[str, Any]]:
    """Create an API token for ``user``; an admin ``actor`` may create one for someone else.

    Returns:
        ``(token, record)``: the clear token, to show once (only its SHA-256
        is stored), and the record as :func:`token_public_dict` shows it.
    """
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 255:
        raise ValidationFailed("A token name is 1 to 255 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction() as session:
        owner = _find_user(session, user)
        if actor is not None and actor.id != owner.id:
            require_role(actor, "admin")
        row = _tokens.create(
            session,
            user_id=owner.id,
            name=name.strip(),
            token_hash=_token_hash(token),
            prefix=token[:_DISPLAY_CHARS],
        )
        record = token_public_dict(row)
    _log.info("API token '%s' (id %s) created for user '%s'", record["name"], record["id"], owner.name)
    return token, record


def list_tokens(
    user: User | int | str | None = None,
    *,
    include_revoked: bool = True,
    limit: int | None = None,
    offset: int = 0,
    no_limit: bool = False,
    actor: User | None = None,
) -> dict[str, Any]:
    """Token records as ``{"data": [...], "count": total}``: of ``user``, or of everyone when None.

    A non-admin ``actor`` sees its own tokens only (``user`` defaults to it).
    """
    if actor is not None and user is None and not has_role(actor, "admin"):
        user = actor
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        owner_id = _find_user(session, user).id if user is not None else None
        if actor is not None and owner_id != actor.id:
            require_role(actor, "admin")
        rows = _tokens.list_(
            session, user_id=owner_id, include_revoked=include_revoked, limit=row_limit, offset=row_offset
        )
        total = _tokens.count(session, user_id=owner_id, include_revoked=include_revoked)
        return {"data": [token_public_dict(r) for r in rows], "count": total}


def revoke_token(token_id: int, *, actor: User | None = None) -> dict[str, Any]:
    """Revoke a token (idempotent) and return its record.

    Other users' tokens are NotFound to a non-admin ``actor``.
    """
    with transaction() as session:
        row = _tokens.get_by_id(session, token_id)
        if actor is not None and row.user_id != actor.id and not has_role(actor, "admin"):
            raise NotFound(f"No API token with id {token_id}")
        record = token_public_dict(_tokens.revoke(session, row))
    _log.info("API token '%s' (id %s) revoked", record["name"], record["id"])
    return record


def revoke_token_value(token: str) -> None:
    """Revoke the token given by its value (signing out of a web session); nothing if it is unknown."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 256:
        return
    with transaction() as session:
        row = _tokens.get_by_hash(session, _token_hash(token))
        if row is not None and row.revoked_at is None:
            _tokens.revoke(session, row)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
