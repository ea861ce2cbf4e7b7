"""Instance settings: one :class:`Settings` object, from the environment, then the instance's settings file.

The instance folder is found by :mod:`flowport.home` (``FLOWPORT_HOME``,
else the nearest ``.flowport`` folder upward, else ``~/.flowport``). The
optional settings file ``$FLOWPORT_HOME/flowport.toml`` holds what an
operator sets once; an environment variable of the same setting wins (an
empty one counts as unset, except ``FLOWPORT_EDITOR_PERMISSIONS=""``, which
grants editors nothing)::

    [store]
    url = "postgresql://flowport@db/flowport"          # FLOWPORT_DATABASE_URL

    [files]
    data_dir = "/srv/flowport/data"                     # FLOWPORT_DATA_DIR
    roots = ["/srv/flowport/data", "/mnt/exchange"]   # FLOWPORT_FILE_ROOTS (os.pathsep-separated)

    [jobs]
    workers = 4                                         # FLOWPORT_WORKERS
    launcher = "process"                                # FLOWPORT_LAUNCHER (old name FLOWPORT_EXECUTOR)
    broker_url = "redis://broker:6379/0"                # FLOWPORT_BROKER_URL (implies launcher "celery")

    [permissions]
    editor = ["read-filesystem", "write-filesystem", "execute-sql", "network"]
                                                       # FLOWPORT_EDITOR_PERMISSIONS (comma-separated)

The secret key is not a setting of the file: ``FLOWPORT_SECRET_KEY`` or
``secret.key`` in the instance folder (:mod:`flowport.connections.secrets`);
:class:`Settings` says which, never the key.

:func:`settings` builds the object per call from what the environment and
the file say now (cached on exactly those values and the file's mtime), so a
test or a tool that changes ``FLOWPORT_HOME`` between calls is seen at once.
A setting that does not validate raises :class:`InvalidSettings` when it is
read, with what is wrong, where it was set (the variable, or the file and
its key) and how to fix it; the other settings stay readable, so a bad
worker count does not stop the CLI from opening the store.
:meth:`Settings.check` raises every problem at once (servers call it when
they start). The store layer reads ``FLOWPORT_DATABASE_URL`` and
``[store] url`` the same way (:func:`flowport.store.database.database_url`),
being below this layer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flowport.connections.secrets import KEY_FILE_NAME, SECRET_KEY_ENV
from flowport.home import (
    HOME_ENV,
    SETTINGS_FILE,
    InvalidSettings,
    home_setting,
    locate_home,
    read_settings_file,
    settings_file_stamp,
)
from flowport.model.catalog import RESTRICTIONS

__all__ = [
    "BROKER_URL_ENV",
    "DATABASE_URL_ENV",
    "DATA_DIR_ENV",
    "DEFAULT_EDITOR_PERMISSIONS",
    "EDITOR_PERMISSIONS_ENV",
    "EXECUTOR_ENV",
    "FILE_ROOTS_ENV",
    "LAUNCHER_ENV",
    "SETTINGS_FILE",
    "WORKERS_ENV",
    "InvalidSettings",
    "LauncherKind",
    "Settings",
    "data_dir",
    "file_setting",
    "settings",
]

DATABASE_URL_ENV = "FLOWPORT_DATABASE_URL"
DATA_DIR_ENV = "FLOWPORT_DATA_DIR"
FILE_ROOTS_ENV = "FLOWPORT_FILE_ROOTS"
WORKERS_ENV = "FLOWPORT_WORKERS"
LAUNCHER_ENV = "FLOWPORT_LAUNCHER"
#: The launcher setting's name before 0.1, still read (after ``FLOWPORT_LAUNCHER``).
EXECUTOR_ENV = "FLOWPORT_EXECUTOR"
EDITOR_PERMISSIONS_ENV = "FLOWPORT_EDITOR_PERMISSIONS"
BROKER_URL_ENV = "FLOWPORT_BROKER_URL"

LauncherKind = Literal["inline", "thread", "process", "celery"]
_LAUNCHER_KINDS: tuple[LauncherKind, ...] = ("inline", "thread", "process", "celery")

#: What editors may do unless the operator says otherwise: ``execute-code`` runs programs as the server's
#: own user, past every other confinement, so it is for admins.
DEFAULT_EDITOR_PERMISSIONS: frozenset[str] = frozenset(
    {"read-filesystem", "write-filesystem", "execute-sql", "network"}
)


@dataclass(frozen=True)
class _Spec:
    """One setting: its variables, its key in ``flowport.toml``, and the words its messages use."""

    field: str
    env: tuple[str, ...]
    section: str
    key: str
    what: str
    expected: str
    default: str
    secret: bool = False  # never repeat the value in a message (a URL may carry a password)


_SPECS: tuple[_Spec, ...] = (
    _Spec(
        "database_url",
        (DATABASE_URL_ENV,),
        "store",
        "url",
        "the metadata database URL",
        "a URL such as postgresql://user@host:5432/flowport or sqlite:////path/flowport.db",
        "the default (flowport.db in the instance folder)",
        secret=True,
    ),
    _Spec(
        "data_dir",
        (DATA_DIR_ENV,),
        "files",
        "data_dir",
        "the data folder",
        "a folder path",
        "the default (data in the instance folder)",
    ),
    _Spec(
        "file_roots",
        (FILE_ROOTS_ENV,),
        "files",
        "roots",
        "the file roots",
        f"folder paths ({FILE_ROOTS_ENV}: separated by '{os.pathsep}'; flowport.toml: a list, "
        'e.g. roots = ["/srv/flowport/data"])',
        "the data folder (default)",
    ),
    _Spec(
        "workers",
        (WORKERS_ENV,),
        "jobs",
        "workers",
        "the number of job worker processes",
        "a whole number of at least 1, e.g. 4",
        "the default (2)",
    ),
    _Spec(
        "launcher",
        (LAUNCHER_ENV, EXECUTOR_ENV),
        "jobs",
        "launcher",
        "where jobs run",
        "one of " + ", ".join(_LAUNCHER_KINDS),
        "the default (process)",
    ),
    _Spec(
        "broker_url",
        (BROKER_URL_ENV,),
        "jobs",
        "broker_url",
        "the Celery broker URL",
        "a redis://, rediss:// or amqp:// URL, e.g. redis://127.0.0.1:6379/0",
        "no broker (jobs run in the local pool)",
        secret=True,
    ),
    _Spec(
        "editor_permissions",
        (EDITOR_PERMISSIONS_ENV,),
        "permissions",
        "editor",
        "the permissions editors hold",
        f"permission names among {', '.join(RESTRICTIONS)} ({EDITOR_PERMISSIONS_ENV}: comma-separated; "
        "flowport.toml: a list)",
        "the default (" + ", ".join(sorted(DEFAULT_EDITOR_PERMISSIONS)) + ")",
    ),
)
_BY_FIELD: Mapping[str, _Spec] = {spec.field: spec for spec in _SPECS}


@dataclass(frozen=True)
class _Found:
    """A raw value and where it was set: an environment variable, or the settings file's key."""

    value: Any
    variable: str | None = None
    file: Path | None = None
    problem: str | None = None  # the value could not even be read (the file is not TOML, ...)
    raw: str | None = None  # the variable's text, as the user wrote it (messages quote it)

    def where(self, spec: _Spec) -> str:
        """The variable, or the file and key, for ``flowport info`` and messages."""
        if self.variable is not None:
            return self.variable
        return f"{self.file} [{spec.section}] {spec.key}"


def _from_environment() -> dict[str, _Found]:
    found: dict[str, _Found] = {}
    for spec in _SPECS:
        for name in spec.env:
            raw = os.environ.get(name)
            if raw is None:
                continue
            if spec.field == "editor_permissions":  # set but empty: editors get no restricted stage
                found[spec.field] = _Found([p.strip() for p in raw.split(",") if p.strip()], name, raw=raw)
                break
            if not raw.strip():
                continue
            value: Any = raw.strip()
            if spec.field == "file_roots":
                value = [p for p in raw.split(os.pathsep) if p.strip()]
            found[spec.field] = _Found(value, name, raw=raw)
            break
    return found


def _from_file(home: Path) -> dict[str, _Found]:
    path = home / SETTINGS_FILE
    try:
        document = read_settings_file(home)
    except InvalidSettings as exc:
        # Every setting the file could hold is unreadable; the others (from the environment) are fine.
        return {spec.field: _Found(None, file=path, problem=exc.message) for spec in _SPECS}
    found: dict[str, _Found] = {}
    for spec in _SPECS:
        table = document.get(spec.section)
        if table is None:
            continue
        if not isinstance(table, dict):
            problem = (
                f"The settings file {path}: [{spec.section}] must be a table "
                f"(a [{spec.section}] header followed by key = value lines)"
            )
            found[spec.field] = _Found(None, file=path, problem=problem)
            continue
        if spec.key not in table:
            continue
        value = table[spec.key]
        if spec.field == "database_url" and isinstance(value, str) and not value.strip():
            continue  # url = "" means the default, as an empty variable does
        found[spec.field] = _Found(value, file=path)
    return found


class _Source(PydanticBaseSettingsSource):
    """The values one place (the environment, or flowport.toml) sets, as pydantic-settings reads them."""

    def __init__(self, settings_cls: type[BaseSettings], read: Callable[[], dict[str, _Found]]) -> None:
        super().__init__(settings_cls)
        self._read = read

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        found = self._read().get(field_name)
        return (found.value if found else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {name: found.value for name, found in self._read().items() if found.problem is None}


def _home_of(values: Mapping[str, Any]) -> Path:
    home = values.get("home")
    return Path(home) if home is not None else locate_home()[0]


class Settings(BaseSettings):
    """Every setting of this instance, validated, with where each came from.

    Build it with :func:`settings`. ``Settings()`` alone also reads
    the environment and that instance's ``flowport.toml`` (pydantic-settings
    sources, the environment first), raising pydantic's ValidationError on
    a bad value; :func:`settings` turns those into messages that say where
    and how to fix, setting by setting.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=False)

    home: Path = Field(
        default_factory=lambda: locate_home()[0],
        description="The instance folder (FLOWPORT_HOME, the nearest .flowport, ~/.flowport).",
    )
    home_from: str = Field("", description="Why the instance folder is that one, in words.")
    database_url: str = Field("", description="The metadata database URL; default: flowport.db in home.")
    data_dir: Path = Field(Path(), description="Where relative paths of stored flows resolve.")
    file_roots: tuple[Path, ...] = Field((), description="Folders flows on a server may read and write.")
    workers: int = Field(2, ge=1, description="Job worker processes of the local pool.")
    launcher: LauncherKind = Field(
        "process", description="Where jobs run: inline, thread, process or celery (implied by a broker)."
    )
    broker_url: str = Field("", description="The Celery broker jobs go to (Redis or RabbitMQ); empty: none.")
    editor_permissions: frozenset[str] = Field(
        DEFAULT_EDITOR_PERMISSIONS, description="Restricted-stage permissions editors hold."
    )
    secret_key_in_env: bool = Field(
        default_factory=lambda: bool(os.environ.get(SECRET_KEY_ENV, "").strip()),
        description="The secret key comes from FLOWPORT_SECRET_KEY (never the key itself).",
    )
    origins: dict[str, str] = Field(default_factory=dict, description="Where each setting came from.")
    problems: dict[str, str] = Field(default_factory=dict, description="Settings that did not validate.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values, then the environment, then the instance's flowport.toml."""
        del env_settings, dotenv_settings, file_secret_settings
        init = getattr(init_settings, "init_kwargs", {})
        return (
            init_settings,
            _Source(settings_cls, _from_environment),
            _Source(settings_cls, lambda: _from_file(_home_of(init))),
        )

    @field_validator("database_url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("it is not text")
        if value.strip():
            # Imported here: SQLAlchemy would cost `flowport --help` a fifth of a second.
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(value.strip())
            except (ArgumentError, ValueError):  # ValueError: a port that is not a number
                raise ValueError("it is not a valid URL") from None
        return value.strip()

    @field_validator("data_dir", mode="before")
    @classmethod
    def _folder(cls, value: Any) -> Any:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("it is not a folder path")
        return Path(value.strip()).expanduser().resolve()

    @field_validator("file_roots", mode="before")
    @classmethod
    def _roots(cls, value: Any) -> Any:
        if value == ():
            return ()  # the default: the data folder
        if not isinstance(value, list | tuple) or not all(isinstance(p, str | Path) for p in value):
            raise ValueError("it is not a list of folder paths")
        if not value or not all(str(p).strip() for p in value):
            raise ValueError("it has an empty folder path")
        return tuple(Path(p).expanduser() for p in value)

    @field_validator("workers", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("it is not a whole number")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError("it is not a whole number") from None
        if value < 1:
            raise ValueError("it is less than 1")
        return value

    @field_validator("launcher", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if not isinstance(value, str) or value.strip() not in _LAUNCHER_KINDS:
            raise ValueError(f"no launcher is called {value!r}")
        return value.strip()

    @field_validator("broker_url", mode="before")
    @classmethod
    def _broker(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("it is not text")
        text = value.strip()
        if text and text.split("://", 1)[0] not in ("redis", "rediss", "amqp", "amqps", "pyamqp"):
            raise ValueError("it is not a redis://, rediss:// or amqp:// URL")
        return text

    @field_validator("editor_permissions", mode="before")
    @classmethod
    def _permissions(cls, value: Any) -> Any:
        if isinstance(value, frozenset | set):
            value = sorted(value)
        if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
            raise ValueError("it is not a list of permission names")
        granted = frozenset(p.strip() for p in value if p.strip())
        unknown = sorted(granted - set(RESTRICTIONS))
        if unknown:
            raise ValueError(f"it names unknown permission(s) {', '.join(unknown)}")
        return granted

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        # Defaults that depend on the instance folder (the model is frozen: set once, here).
        if not self.database_url and "database_url" not in self.problems:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'flowport.db'}")
        if self.data_dir == Path() and "data_dir" not in self.problems:
            object.__setattr__(self, "data_dir", (self.home / "data").resolve())
        if not self.file_roots and "file_roots" not in self.problems and "data_dir" not in self.problems:
            object.__setattr__(self, "file_roots", (self.data_dir,))
        # A broker means Celery workers take the jobs, unless a launcher is named explicitly.
        if self.broker_url and "launcher" not in self.origins and "launcher" not in self.problems:
            object.__setattr__(self, "launcher", "celery")
        return self

    if not TYPE_CHECKING:  # hidden from type checkers: a misspelt setting must stay a typing error

        def __getattr__(self, name: str) -> Any:
            problems = self.__dict__.get("problems") or {}
            if name in problems:
                raise InvalidSettings(problems[name])
            return super().__getattr__(name)

    def __repr_args__(self) -> Any:
        return [(k, v) for k, v in super().__repr_args__() if k not in self.problems]

    def check(self) -> Settings:
        """This object when every setting is valid; InvalidSettings naming every one that is not."""
        if self.problems:
            raise InvalidSettings("; ".join(dict.fromkeys(self.problems.values())))
        return self

    def origin(self, name: str) -> str:
        """Where a setting came from: its environment variable, ``FILE [section] key``, or the default."""
        return self.origins.get(name) or _BY_FIELD[name].default

    @property
    def examples_dir(self) -> Path:
        """Where the shipped examples are unpacked and run."""
        return self.home / "examples"

    @property
    def settings_file(self) -> Path:
        """The instance's settings file (it need not exist)."""
        return self.home / SETTINGS_FILE

    @property
    def secret_key_file(self) -> Path:
        """The instance's key file (used when ``FLOWPORT_SECRET_KEY`` is not set)."""
        return self.home / KEY_FILE_NAME

    @property
    def secret_key_location(self) -> str:
        """Where the secret key is read from: ``FLOWPORT_SECRET_KEY`` or the key file's path."""
        return SECRET_KEY_ENV if self.secret_key_in_env else str(self.secret_key_file)


def _message(spec: _Spec, found: _Found, reason: str) -> str:
    """What is wrong, where, and how to fix it, in one line."""
    where = found.where(spec)
    if found.problem is not None:
        return found.problem
    shown = "" if spec.secret else f" {found.raw if found.raw is not None else found.value!r}"
    if found.variable is not None:
        old = f" (the old name of {spec.env[0]})" if found.variable != spec.env[0] else ""
        return (
            f"{where}{old}{shown} is not valid for {spec.what}: {reason}. Set {found.variable} to "
            f"{spec.expected}, or unset it to use {spec.default}"
        )
    return (
        f"The settings file {found.file}: [{spec.section}] {spec.key}{shown} is not valid for {spec.what}: "
        f"{reason}. Change it to {spec.expected}, or remove the key to use {spec.default}"
    )


def _reason(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


# A valid value for each setting, standing in for one that is not while the others are validated.
_STAND_IN: Mapping[str, Any] = {
    "database_url": "",
    "data_dir": Path(),
    "file_roots": (),
    "workers": 2,
    "launcher": "process",
    "broker_url": "",
    "editor_permissions": frozenset(),
}


def _build(home: Path, home_from: str) -> Settings:
    found = {**_from_file(home), **_from_environment()}
    values: dict[str, Any] = {name: item.value for name, item in found.items() if item.problem is None}
    problems = {name: item.problem for name, item in found.items() if item.problem is not None}
    base: dict[str, Any] = {
        "home": home,
        "home_from": home_from,
        "origins": {name: item.where(_BY_FIELD[name]) for name, item in found.items()},
    }
    for name in problems:
        values[name] = _STAND_IN[name]
    while True:
        try:
            built = Settings.model_validate({**base, **values, "problems": problems})
            break
        except ValidationError as exc:
            bad = {
                str(e["loc"][0]): _reason(e)
                for e in exc.errors()
                if e["loc"] and e["loc"][0] in found and e["loc"][0] not in problems
            }
            if not bad:
                raise
            for name, reason in bad.items():
                problems[name] = _message(_BY_FIELD[name], found[name], reason)
                # Explicit values win over the sources: this stands in for the bad one, which is then removed.
                values[name] = _STAND_IN[name]
    if "data_dir" in problems and "file_roots" not in found:
        # The default roots are the data folder: never confine to nothing because it is invalid.
        problems["file_roots"] = problems["data_dir"]
    if built.launcher == "celery" and not built.broker_url and not {"launcher", "broker_url"} & set(problems):
        problems["launcher"] = (
            f"{built.origin('launcher')} names the launcher 'celery', which needs a broker: set "
            f"{BROKER_URL_ENV} (or [jobs] broker_url in flowport.toml) to a redis:// or amqp:// URL, "
            "or choose the launcher process"
        )
    built.__dict__["problems"] = problems
    for name in problems:
        built.__dict__.pop(name, None)  # read through __getattr__: raises with the message
    return built


_cache: dict[tuple[Any, ...], Settings] = {}
_cache_lock = threading.Lock()
_WATCHED = (HOME_ENV, SECRET_KEY_ENV, *(name for spec in _SPECS for name in spec.env))


def settings() -> Settings:
    """The settings of the instance :func:`flowport.home.locate_home` finds, as the environment says now.

    Rebuilt when a variable, the instance folder or its ``flowport.toml`` changed since the last call.
    """
    home, home_from = locate_home()
    key = (
        home,
        home_from,
        settings_file_stamp(home),
        os.getcwd(),  # relative folders resolve against it
        os.environ.get("HOME"),  # and ~ against this
        # The secret key itself never sits in the cache key: whether it is set is all Settings says of it.
        *(
            bool(os.environ.get(n, "").strip()) if n == SECRET_KEY_ENV else os.environ.get(n)
            for n in _WATCHED
        ),
    )
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    built = _build(home, home_from)
    with _cache_lock:
        if len(_cache) >= 16:
            _cache.clear()
        _cache[key] = built
    return built


def file_setting(section: str, key: str) -> Any:
    """``[section] key`` of the instance's settings file, or None when the file or the key is absent."""
    return home_setting(section, key, settings().home)


def data_dir() -> Path:
    """Where stored flows' relative paths resolve: FLOWPORT_DATA_DIR, ``[files] data_dir`` or HOME/data."""
    return settings().data_dir
